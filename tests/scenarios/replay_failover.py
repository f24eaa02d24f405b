"""Replays a recorded scenario through the failover machine, the way the daemon would.

A failover scenario is `tests/scenarios/NAME/failover.yaml` (not `input.yaml`, which
is the ladder's replayer's):

    description: one line
    primary: web.service
    failover: {...}                   # a policy's `failover:` section
    events:                           # in time order
      - {at: 0s, ladder: exhausted}               # LadderExhausted
      - {at: 0s, hard_failure: "http check"}      # PrimaryHardFailure
      - {at: 0s, primary: stable}                 # PrimaryStable
      - {at: 1s, stopped: web.service}            # JobDone(stop, ok)
      - {at: 1s, stop_failed: web.service, detail: "timeout"}
      - {at: 2s, started: b1.service}             # JobDone(start, ok)
      - {at: 2s, start_failed: b1.service, detail: "unit not found"}
      - {at: 5s, healthy: b1.service}             # Health(unit, True)
      - {at: 5s, unhealthy: b1.service, detail: "http 502"}
      - {at: 40s, can_recover: ok}                # Recoverable (ok | failed)
      - {at: 60s, operator: failover, to: b2.service}   # or {operator: failback}
      - {at: 70s, daemon: restart}                # to_dict -> JSON -> from_dict, resume()
    until: 10m                        # keep firing deadlines until then

Between events, every deadline the machine sets is fired as a Tick at exactly that
time, as the daemon's timers do. The replay simulates which units run (a unit runs
from the StartUnit asked for it until a successful stop of it is reported) and fails
at once if the primary and a backup, or two backups, could run together. The summary
lists each step with its time, the state after it and the actions taken, then the
final state and the units running; `expected.txt` holds the reviewed summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from supervisor.config import Failover
from supervisor.config.values import parse_duration
from supervisor.core.failover import (
    Action,
    Event,
    FailoverState,
    Health,
    JobDone,
    LadderExhausted,
    ManualFailback,
    ManualFailover,
    Notify,
    PrimaryHardFailure,
    PrimaryStable,
    Record,
    Recoverable,
    RunCanRecover,
    StartUnit,
    Step,
    StopUnit,
    Tick,
    Verb,
    resume,
    step,
)

SCENARIO_FILE = "failover.yaml"


@dataclass(frozen=True)
class Timed:
    at: float
    event: Event | None  # None: the daemon restarts
    label: str


_JOBS = {
    "stopped": (Verb.STOP, True),
    "stop_failed": (Verb.STOP, False),
    "started": (Verb.START, True),
    "start_failed": (Verb.START, False),
}


def _event(raw: dict[str, Any]) -> Timed:
    at = parse_duration(raw["at"])
    detail = str(raw.get("detail", ""))
    for key, (verb, ok) in _JOBS.items():
        if key in raw:
            unit = raw[key]
            job = JobDone(unit, verb, ok, detail or ("" if ok else "job failed"))
            return Timed(at, job, f"{key} {unit}")
    if raw.get("ladder") == "exhausted":
        return Timed(at, LadderExhausted(detail), "ladder exhausted")
    if "hard_failure" in raw:
        return Timed(at, PrimaryHardFailure(str(raw["hard_failure"])), "hard failure")
    if raw.get("primary") == "stable":
        return Timed(at, PrimaryStable(), "primary stable")
    if "healthy" in raw:
        return Timed(at, Health(raw["healthy"], True, detail), f"healthy {raw['healthy']}")
    if "unhealthy" in raw:
        unit = raw["unhealthy"]
        return Timed(at, Health(unit, False, detail), f"unhealthy {unit}")
    if "can_recover" in raw:
        ok = raw["can_recover"] == "ok"
        return Timed(at, Recoverable(ok, detail), f"can_recover {raw['can_recover']}")
    if raw.get("operator") == "failover":
        to = raw.get("to")
        return Timed(at, ManualFailover(to), "operator failover" + (f" {to}" if to else ""))
    if raw.get("operator") == "failback":
        return Timed(at, ManualFailback(), "operator failback")
    if raw.get("daemon") == "restart":
        return Timed(at, None, "daemon restart")
    raise ValueError(f"unknown scenario event {raw!r}")


def _fmt_actions(actions: list[Action]) -> str:
    parts = []
    for action in actions:
        match action:
            case StopUnit(unit):
                parts.append(f"STOP {unit}")
            case StartUnit(unit):
                parts.append(f"START {unit}")
            case RunCanRecover():
                parts.append("RUN can_recover")
            case Notify(kind, severity, message):
                parts.append(f"NOTIFY {severity.label} {kind.value}: {message}")
            case Record(message):
                parts.append(f"RECORD {message}")
    return "; ".join(parts)


def _fmt_state(state: FailoverState) -> str:
    text = state.phase.value
    if state.serving is not None:
        text += f" serving={state.serving}"
    if state.in_flight is not Step.NONE:
        text += f" {state.in_flight.value}" + (f" {state.unit}" if state.unit else "")
    if state.successes:
        text += f" successes={state.successes}"
    if state.deadline is not None:
        text += f" until={state.deadline:g}"
    return text


def replay(scenario_dir: Path) -> str:
    raw = yaml.safe_load((scenario_dir / SCENARIO_FILE).read_text())
    spec = Failover.model_validate(raw["failover"])
    primary = raw["primary"]
    events = [_event(item) for item in raw["events"]]
    until = parse_duration(raw.get("until", "0s"))
    units = {primary, *spec.backup}
    state = FailoverState.initial(primary)
    running = {primary}
    lines = [f"# {raw['description']}"]

    def record(now: float, label: str, event: Event | None, actions: list[Action]) -> None:
        if isinstance(event, JobDone) and event.verb is Verb.STOP and event.ok:
            running.discard(event.unit)
        running.update(a.unit for a in actions if isinstance(a, StartUnit))
        if len(running & units) > 1:
            raise AssertionError(f"at {now:g}: {sorted(running)} could run together")
        done = _fmt_actions(actions)
        lines.append(
            f"{now:>9.3f}  {label:<26} -> {_fmt_state(state)}" + (f"  | {done}" if done else "")
        )

    def fire_deadlines(limit: float) -> None:
        nonlocal state
        while state.deadline is not None and state.deadline <= limit:
            now = state.deadline
            state, actions = step(spec, state, Tick(), now)
            record(now, "tick", None, actions)

    for timed in events:
        fire_deadlines(timed.at)
        if timed.event is None:
            stored = json.loads(json.dumps(state.to_dict()))
            state, actions = resume(FailoverState.from_dict(stored), timed.at)
        else:
            state, actions = step(spec, state, timed.event, timed.at)
        record(timed.at, timed.label, timed.event, actions)
    fire_deadlines(until)
    tried = ", ".join(f"{unit} ({why})" for unit, why in state.tried) or "none"
    lines.append(
        f"final: {_fmt_state(state)} running={','.join(sorted(running)) or 'nothing'} tried={tried}"
    )
    return "\n".join(lines) + "\n"
