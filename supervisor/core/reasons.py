"""Why a decision was taken, as history data: the cause and the rule of every automatic
action, so `host-supervisor why` can tell the chain from the history alone (even when
the rows before the action are gone).

Pure: the unit's state and its policy in, plain JSON-safe fields out.
"""

from __future__ import annotations

from typing import Any

from supervisor.core.health import Condition, HardState, describe, unit_condition
from supervisor.core.recovery import LadderSpec, RecoveryState, RunRung, cooldown_before
from supervisor.core.unit import CheckChange, UnitState


def cause(state: UnitState) -> str:
    """What makes the unit unhealthy now, in words: systemd's state, or each failing
    critical check with its threshold and last message."""
    view = state.view
    if view is not None and unit_condition(view) is Condition.UNHEALTHY:
        return f"systemd reports {describe(view)}"
    failing: list[str] = []
    for check, health, result in zip(state.policy.checks, state.checks, state.results, strict=True):
        if not (check.critical and health.hard is HardState.CRITICAL):
            continue
        text = (
            f"{check.name} check failed {health.streak} time(s) in a row "
            f"(threshold {check.failures})"
        )
        if result is not None and result.message:
            text += f": {result.message}"
        failing.append(text)
    if failing:
        return "; ".join(failing)
    return state.condition.value


def rung_fields(spec: LadderSpec, recovery: RecoveryState, action: RunRung) -> dict[str, Any]:
    """The ladder rule behind one repair: which rung of which ladder, the attempt, and
    the waits that follow it (read after the recovery machine chose the rung)."""
    ladder = list(spec.ladder)
    index = max(0, min(recovery.attempts - 1 + recovery.skips, len(ladder) - 1))
    cooldown = cooldown_before(spec, action.attempt)
    rule = (
        f"ladder rung {index + 1} of {len(ladder)} ({action.rung}), "
        f"attempt {action.attempt} of {action.max_attempts}"
    )
    if action.attempt < action.max_attempts:
        rule += f", cooldown {cooldown:g}s before the next"
    return {
        "rule": rule,
        "rung": str(action.rung),
        "rung_index": index + 1,
        "ladder": ladder,
        "attempt": action.attempt,
        "max_attempts": action.max_attempts,
        "cooldown_s": cooldown,
        "settle_s": float(spec.settle),
    }


def check_fields(change: CheckChange) -> dict[str, Any]:
    """The threshold that turned a check's hard state."""
    bad = change.after in (HardState.CRITICAL, HardState.WARNING, HardState.UNKNOWN)
    return {
        "threshold": change.check.failures if bad else change.check.successes,
        "critical": change.check.critical,
    }
