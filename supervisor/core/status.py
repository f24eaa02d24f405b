"""What the host state looks like to a person: the STATUS= line and `status` rows."""

from __future__ import annotations

from supervisor.core import cluster_host, failover_host, guard
from supervisor.core.flapping import FlapState
from supervisor.core.health import describe
from supervisor.core.state import HostState


def status_line(state: HostState, now: float) -> str:
    units: dict[str, int] = {}
    checks: dict[str, int] = {}
    for unit in state.units.values():
        units[unit.condition.value] = units.get(unit.condition.value, 0) + 1
        for hard, n in unit.check_counts().items():
            checks[hard] = checks.get(hard, 0) + n
    noun = "unit" if len(state.units) == 1 else "units"
    text = f"{len(state.units)} {noun}: " + (_counts(units) or "none")
    if checks:
        text += f"; checks: {_counts(checks)}"
    text += f"; {state.repairs} repairs"
    if state.guard.frozen_until is not None and state.guard.frozen_until > now:
        text += "; AUTOMATION FROZEN (repair budget spent)"
    if state.dry_run:
        text += "; SHADOW MODE: nothing is acted on, what would be done is in the history"
    if state.reload_note:
        text += f"; {state.reload_note}"
    return text


def unit_rows(state: HostState, now: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for unit, sup in sorted(state.units.items()):
        view = sup.view
        rows.append(
            {
                "unit": unit,
                "mode": "shadow" if state.dry_run else sup.policy.mode,
                "condition": sup.condition.value,
                "state": describe(view) if view else "",
                "systemd": (
                    {
                        "load_state": view.load_state,
                        "active_state": view.active_state,
                        "sub_state": view.sub_state,
                        "result": view.result,
                    }
                    if view
                    else None
                ),
                "phase": sup.recovery.phase.value,
                "attempts": sup.recovery.attempts,
                "max_attempts": sup.policy.recovery.max_attempts,
                "next_action_in_s": (
                    round(max(0.0, sup.deadline - now), 1) if sup.deadline is not None else None
                ),
                "held": sup.recovery.held_reason,
                "paused": unit in state.guard.paused or state.guard.paused_all,
                **_pause_fields(state, unit, now),
                "flapping": state.flaps.get(unit, FlapState()).flapping,
                "last_event": sup.last_event,
                "failover": failover_host.status(state.failovers, unit, now),
                "cluster": cluster_host.status(state.clusters, unit, now),
                "policy": str(state.loaded.sources.get(unit, "")),
                "last_known_good": sup.known_good,
                "config_changed": (
                    {
                        "at": change.at,
                        "paths": list(change.paths),
                        "while_stopped": change.while_stopped,
                    }
                    if (change := sup.config_change) is not None
                    else None
                ),
                "checks": [
                    {
                        "name": check.name,
                        "kind": check.kind,
                        "critical": check.critical,
                        "state": health.hard.value,
                        "soft": health.soft,
                        "message": result.message if result else "",
                        "duration_ms": round(result.duration * 1000, 1) if result else None,
                        "runs": runs,
                    }
                    for check, health, result, runs in zip(
                        sup.policy.checks, sup.checks, sup.results, sup.runs, strict=True
                    )
                ],
            }
        )
    return rows


def _pause_fields(state: HostState, unit: str, now: float) -> dict[str, object]:
    note = state.guard.pause_note(unit) if unit in state.guard.paused else None
    until = note.until if note is not None else None
    return {
        "pause_left_s": None if until is None else round(max(0.0, until - now), 1),
        "pause_reason": note.reason if note is not None else "",
    }


def guard_row(state: HostState, now: float) -> dict[str, object]:
    """The guard as `status` shows it: the repair budget, the freeze, the breaker."""
    cfg, g = state.loaded.main.guard, state.guard
    used = guard.budget_used(cfg, g, now)
    frozen = g.frozen_until is not None and g.frozen_until > now
    breaker = guard.breaker_phase(cfg, g)
    return {
        "budget_max": cfg.repair_budget.max,
        "budget_window_s": cfg.repair_budget.window,
        "budget_used": used,
        "budget_left": max(0, cfg.repair_budget.max - used),
        "frozen": frozen,
        "frozen_for_s": round(g.frozen_until - now, 1) if frozen and g.frozen_until else None,
        "breaker": breaker.value,
        "breaker_open_for_s": (
            round(max(0.0, g.breaker_open_until - now), 1)
            if g.breaker_open_until is not None
            else None
        ),
        "failures_in_a_row": g.failures_in_a_row,
        "running": sorted(g.running),
        "paused_all": g.paused_all,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
