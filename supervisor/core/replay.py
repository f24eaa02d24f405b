"""Replaying a recorded history through the host reducer: what would these policies
have decided, and when?

The history's unit state changes (`health` rows) and check transitions (`check`
rows) become the events the daemon was fed; `host.step` runs in shadow mode on the
recorded timestamps (a timer fires at its deadline, between two records), so it
records every repair it would have made instead of asking for it. The recorded
world is replayed as it was: a repair the replay decides does not change what the
unit did next, and every precondition holds. Pure: no clock, no I/O.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.config import LoadedConfig, UnitProbe
from supervisor.core import actions as ev
from supervisor.core import host
from supervisor.core.actions import Action, Event, TimerKey
from supervisor.core.holds import OBSERVE_ONLY
from supervisor.core.shadow import NOT_RUN, OBSERVE_NOTE
from supervisor.core.state import HostState
from supervisor.core.values import CheckResult, Status, UnitSnapshot

MAX_STEPS = 1_000_000  # a replay that takes more steps is a loop, not a history
MAX_RESULTS_PER_CHANGE = 50  # results fed to reproduce one recorded check transition


class ReplayError(Exception):
    """The replay cannot go on; the message says why."""


@dataclass(frozen=True)
class Entry:
    """One history row, as the store returns it."""

    time: float
    unit: str | None
    kind: str
    message: str
    data: Mapping[str, Any]


@dataclass(frozen=True)
class Decision:
    """One thing decided for a unit: a rung (`restart (1/3)`), a failover job, a hold,
    exhaustion."""

    time: float
    unit: str
    text: str


@dataclass(frozen=True)
class _CheckTo:
    """A recorded check transition: feed results until the check's hard state is `state`."""

    unit: str
    index: int
    state: str
    message: str


_FAILED = re.compile(r"^failed: (?P<active>[^/ ]+)/(?P<sub>[^ ]+)(?: \((?P<result>.+)\))?$")
_STEADY = {
    "healthy": ("loaded", "active", "running"),
    "degraded": ("loaded", "active", "running"),
    "appeared": ("loaded", "active", "running"),
    "transient": ("loaded", "activating", "start"),
    "stopped cleanly; not restarted": ("loaded", "inactive", "dead"),
    "disappeared": ("not-found", "inactive", "dead"),
}
_ACTION = re.compile(r"^(?P<rung>\w+) \(attempt (?P<attempt>\d+/\d+)\)")
_JOB = re.compile(r"^(?P<verb>start|stop) (?P<target>\S+): ")


def snapshot_of(unit: str, message: str) -> UnitSnapshot | None:
    """The systemd view a `health` row describes, or None if it names none."""
    if (failed := _FAILED.match(message)) is not None:
        active, sub = failed["active"], failed["sub"]
        result = failed["result"] or "success"
        return _snapshot(unit, "loaded", "" if active == "?" else active, sub, result)
    if message in _STEADY:
        return _snapshot(unit, *_STEADY[message], "success")
    return None


def _snapshot(unit: str, load: str, active: str, sub: str, result: str) -> UnitSnapshot:
    # Restart=no: whether systemd would have restarted it is not in the history.
    return UnitSnapshot(unit, load, active, "" if sub == "?" else sub, result, 0, 0, True, "no")


def decision_of(entry: Entry) -> str | None:
    """What a history row says was decided (done, or only recorded), or None."""
    message, data = entry.message, entry.data
    match entry.kind:
        case "action" | "failover" if data.get("shadow"):
            what = str(data.get("rung", "?"))
            if "target" in data:
                return f"{what} {data['target']}"
            text = f"{what} ({data.get('attempt', '?')}/{data.get('max_attempts', '?')})"
            return text + (f", {OBSERVE_NOTE}" if data.get("not_done") == OBSERVE_NOTE else "")
        case "action":
            if (action := _ACTION.match(message)) is not None:
                return f"{action['rung']} ({action['attempt']})"
            return message
        case "result":
            job = _JOB.match(message)
            return f"{job['verb']} {job['target']}" if job is not None else None
        case "alert" if message.startswith("exhausted"):
            return "exhausted"
        case "recovery" if message.startswith("held: "):
            reason = message.removeprefix("held: ")
            if reason.startswith(OBSERVE_ONLY):
                return None  # its "would have" row says it
            return "held: " + (reason if len(reason) <= 40 else reason[:37] + "...")
    return None


def actual(entries: Iterable[Entry]) -> list[Decision]:
    """What the recording daemon decided. Rows it only recorded (shadow mode, mode
    observe) say `(not done)`."""
    out: list[Decision] = []
    for entry in entries:
        text = decision_of(entry)
        if text is None or entry.unit is None:
            continue
        if entry.kind in ("action", "failover") and entry.data.get("shadow"):
            text += " (not done)"
        out.append(Decision(entry.time, entry.unit, text))
    return out


def replay(loaded: LoadedConfig, entries: Iterable[Entry], *, end: float) -> list[Decision]:
    """What `loaded`'s policies would have decided on the recorded `entries` (oldest
    first), with timers run on to `end`."""
    rows = list(entries)
    start = rows[0].time if rows else end
    machine = _Replay(loaded, start)
    for entry in rows:
        machine.run_timers(entry.time)
        for item in _inputs(machine.state, entry):
            machine.apply(item, entry.time)
    machine.run_timers(end)
    return machine.decisions


def _inputs(state: HostState, entry: Entry) -> list[Event | _CheckTo]:
    unit = entry.unit
    if unit is None or unit not in state.units:
        return []
    running = _snapshot(unit, "loaded", "active", "running", "success")
    known = state.units[unit].view is not None
    match entry.kind:
        case "health":
            seen = snapshot_of(unit, entry.message)
            if seen is not None:
                return [ev.UnitChanged(seen)]
            if entry.message.startswith("unhealthy") and not known:
                return [ev.UnitChanged(running)]  # failing checks: it ran
        case "check":
            index = _check_index(state, unit, str(entry.data.get("check", "")))
            target = str(entry.data.get("state", ""))
            if index is None or target not in {s.value for s in Status}:
                return []
            message = entry.message.split(": ", 2)[-1]
            change = _CheckTo(unit, index, target, message)
            return [change] if known else [ev.UnitChanged(running), change]
    return []


def _check_index(state: HostState, unit: str, name: str) -> int | None:
    for index, check in enumerate(state.units[unit].policy.checks):
        if check.name == name and not isinstance(check.probe, UnitProbe):
            return index
    return None  # renamed or removed in the policies replayed, or judged on signals


class _Replay:
    def __init__(self, loaded: LoadedConfig, start: float) -> None:
        self.now = start
        self.steps = 0
        self.timers: dict[TimerKey, float] = {}
        self.decisions: list[Decision] = []
        self.state, actions = host.initial(
            loaded, {}, {}, hostname="replay", dry_run=True, now=start
        )
        self._absorb(actions, deque())
        # observe_until = the start: the first round of checks is not waited for.
        self.feed(ev.Starting(start), start)
        self.feed(ev.Started(), start)

    def apply(self, item: Event | _CheckTo, now: float) -> None:
        if not isinstance(item, _CheckTo):
            self.feed(item, now)
            return
        result = CheckResult(Status(item.state), item.message, 0.0)
        for _ in range(MAX_RESULTS_PER_CHANGE):
            unit = self.state.units.get(item.unit)
            if unit is None or unit.checks[item.index].hard.value == item.state:
                return
            self.feed(ev.ProbeDone(item.unit, item.index, result), now)

    def run_timers(self, until: float) -> None:
        while self.timers:
            key, at = min(self.timers.items(), key=lambda item: (item[1], item[0]))
            if at > until:
                return
            del self.timers[key]
            self.feed(ev.TimerFired(key), at)

    def feed(self, event: Event, now: float) -> None:
        self.now = max(self.now, now)
        queue: deque[Event] = deque([event])
        while queue:
            self.steps += 1
            if self.steps > MAX_STEPS:
                raise ReplayError(f"more than {MAX_STEPS} steps: the replay does not settle")
            self.state, actions = host.step(self.state, queue.popleft(), self.now)
            self._absorb(actions, queue)

    def _absorb(self, actions: list[Action], queue: deque[Event]) -> None:
        """Answer what the shell would answer; keep the timers and the decisions."""
        for action in actions:
            match action:
                case ev.SetTimer(key, None):
                    self.timers.pop(key, None)
                case ev.SetTimer(key, at) if at is not None:
                    self.timers[key] = at
                case ev.CheckPreconditions(unit):
                    queue.append(ev.PreconditionsChecked(unit, ""))
                case ev.RunFailoverJob(primary, target, verb):
                    queue.append(ev.FailoverJobDone(primary, target, verb, True, NOT_RUN))
                case ev.RunCanRecover(unit):
                    queue.append(ev.CanRecoverDone(unit, False, "unknown", "not run in a replay"))
                case ev.RecordHistory(unit, kind, message, data) if unit is not None:
                    text = decision_of(Entry(self.now, unit, kind, message, dict(data)))
                    if text is not None:
                        self.decisions.append(Decision(self.now, unit, text))
