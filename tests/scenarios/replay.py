"""Replays a recorded scenario through the recovery machine, the way the daemon would.

A scenario is `tests/scenarios/NAME/input.yaml`:

    description: one line
    recovery: {...}          # a policy's `recovery:` section
    events:                  # in time order
      - {at: 0s, unit: unhealthy}      # the unit's observed condition
      - {at: 2s, action: ok}           # the pending action's outcome (ok | failed)
      - {at: 9s, operator: reset}
      - {at: 9s, held: "repair budget spent", until: 60s}   # the guard refused
      - {at: 9s, resume: true}
      - {at: 9s, skipped: "no ExecReload="}
    until: 2h                # keep firing deadlines until then

Between events, every deadline the machine sets is fired as a Tick at exactly
that time, as the daemon's timers do. The summary lists each step with its time,
the actions taken, and the final state; `expected.txt` holds the reviewed summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervisor.config import Recovery
from supervisor.config.values import parse_duration
from supervisor.core.health import Condition
from supervisor.core.recovery import (
    Action,
    ActionFinished,
    Event,
    Held,
    Observed,
    OperatorReset,
    RecoveryState,
    Report,
    Resume,
    RunRung,
    Skipped,
    Tick,
    step,
)


@dataclass(frozen=True)
class Timed:
    at: float
    event: Event
    label: str


def _event(raw: dict[str, Any]) -> Timed:
    at = parse_duration(raw["at"])
    if "unit" in raw:
        return Timed(at, Observed(Condition(raw["unit"])), f"observe {raw['unit']}")
    if "action" in raw:
        ok = raw["action"] == "ok"
        detail = raw.get("detail", "" if ok else "job failed")
        return Timed(at, ActionFinished(ok, detail), f"action {raw['action']}")
    if raw.get("operator") == "reset":
        return Timed(at, OperatorReset(), "operator reset")
    if "held" in raw:
        until = parse_duration(raw["until"]) if "until" in raw else None
        return Timed(at, Held(raw["held"], until), "held")
    if "resume" in raw:
        return Timed(at, Resume(), "resume")
    if "skipped" in raw:
        return Timed(at, Skipped(raw["skipped"]), "skipped")
    raise ValueError(f"unknown scenario event {raw!r}")


def _fmt_actions(actions: list[Action]) -> str:
    parts = []
    for action in actions:
        match action:
            case RunRung(rung, attempt, of):
                parts.append(f"RUN {rung} ({attempt}/{of})")
            case Report(notice, detail):
                parts.append(f"REPORT {notice.value}: {detail}")
    return "; ".join(parts)


def _fmt_state(state: RecoveryState) -> str:
    text = f"{state.phase.value} attempts={state.attempts}"
    if state.deadline is not None:
        text += f" until={state.deadline:g}"
    return text


def replay(scenario_dir: Path) -> str:
    spec_raw = yaml.safe_load((scenario_dir / "input.yaml").read_text())
    spec = Recovery.model_validate(spec_raw.get("recovery", {}))
    events = [_event(raw) for raw in spec_raw["events"]]
    until = parse_duration(spec_raw.get("until", "0s"))
    state = RecoveryState()
    lines = [f"# {spec_raw['description']}"]

    def record(now: float, label: str, actions: list[Action]) -> None:
        done = _fmt_actions(actions)
        lines.append(
            f"{now:>9.3f}  {label:<18} -> {_fmt_state(state)}" + (f"  | {done}" if done else "")
        )

    def fire_deadlines(limit: float) -> None:
        nonlocal state
        while state.deadline is not None and state.deadline <= limit:
            now = state.deadline
            state, actions = step(spec, state, Tick(), now)
            record(now, "tick", actions)

    for timed in events:
        fire_deadlines(timed.at)
        state, actions = step(spec, state, timed.event, timed.at)
        record(timed.at, timed.label, actions)
    fire_deadlines(until)
    lines.append(f"final: {_fmt_state(state)} condition={state.condition.value}")
    return "\n".join(lines) + "\n"
