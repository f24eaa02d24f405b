"""The whole host's state, and the transaction one step of the reducer works in.

`HostState` is frozen and never changed in place. A step copies what it touches
into a `Tx` (copy-on-write per unit), collects actions there, and freezes the
result into a new `HostState`. The helpers here are the vocabulary every part
of the reducer speaks: log, record, alert, save, set a timer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.config import LoadedConfig, Policy
from supervisor.core import guard
from supervisor.core.actions import (
    GUARD,
    LADDER,
    Action,
    Log,
    RecordHistory,
    SaveGuard,
    SaveUnit,
    SendAlert,
    SetTimer,
    StatusChanged,
    TimerKey,
)
from supervisor.core.alerting import Alert
from supervisor.core.cluster import ClusterState
from supervisor.core.failover import FailoverState
from supervisor.core.flapping import FlapState
from supervisor.core.guard import GuardNotice, GuardState
from supervisor.core.incidents import Graph, Incident, root_of
from supervisor.core.notices import AlertKind, MessageId
from supervisor.core.unit import UnitState
from supervisor.core.values import Severity, UnitSnapshot

_GUARD_IDS = {"frozen": MessageId.FROZEN, "thawed": MessageId.THAWED}


@dataclass(frozen=True)
class HostState:
    """Everything the daemon knows and decides from, for every unit of the host."""

    loaded: LoadedConfig
    hostname: str
    dry_run: bool = False
    units: Mapping[str, UnitState] = field(default_factory=dict)
    guard: GuardState = field(default_factory=GuardState)
    flaps: Mapping[str, FlapState] = field(default_factory=dict)
    failovers: Mapping[str, FailoverState] = field(default_factory=dict)
    clusters: Mapping[str, ClusterState] = field(default_factory=dict)
    """Clustered units' machines (who runs the unit, across hosts)."""
    snapshots: Mapping[str, UnitSnapshot] = field(default_factory=dict)
    """The last systemd snapshot of every watched unit, backups included."""
    timers: Mapping[TimerKey, float] = field(default_factory=dict)
    """Every timer the shell has armed, and when it fires."""
    waiting: tuple[str, ...] = ()
    """Units held for a free repair slot, in order."""
    problem_alerted: frozenset[str] = frozenset()
    """Units whose recovery people should hear of."""
    observe_until: float = 0.0
    started: bool = False
    """Every unit and backup is watched and the failover machines are taken up."""
    early: tuple[tuple[str, Any], ...] = ()
    """Events for failover machines that came before they were taken up, in order."""
    reload_note: str = ""
    repairs: int = 0
    dependencies: Graph = field(default_factory=dict)
    """What each supervised unit depends on, as systemd said last."""
    incidents: Mapping[str, Incident] = field(default_factory=dict)
    """Open incidents by root unit."""
    failed_at: Mapping[str, float] = field(default_factory=dict)
    """When each unit last turned unhealthy (while the dependency graph is known)."""
    stopped_at: Mapping[str, float] = field(default_factory=dict)
    """When units of the dependency graph were last seen stopping (within the window)."""
    deferred: Mapping[str, Alert | None] = field(default_factory=dict)
    """Units whose first problem alert waits for `guard.incidents.gather` (the alert,
    once made), to learn whether they are symptoms of another unit's failure."""


QUIET_IN_INCIDENT = ("unhealthy", "action", "result", "recovered")
"""What a unit of an open incident does not alert on its own: the incident tells it."""


@dataclass(frozen=True)
class AlertText:
    """What people read of one event: `Tx.tell` sends it to the unit's channels."""

    kind: AlertKind
    severity: Severity
    title: str
    body: str
    problem: bool = False
    resolves: tuple[AlertKind, ...] = ()


class Tx:
    """One step's working copy of the host state, and the actions it produces."""

    def __init__(self, state: HostState, now: float) -> None:
        self.now = now
        self.loaded = state.loaded
        self.hostname = state.hostname
        self.dry_run = state.dry_run
        self.units: dict[str, UnitState] = dict(state.units)
        self._copied: set[str] = set()
        self.guard = state.guard
        self.flaps = dict(state.flaps)
        self.failovers = dict(state.failovers)
        self.clusters = dict(state.clusters)
        self.snapshots = dict(state.snapshots)
        self.timers = dict(state.timers)
        self.waiting = list(state.waiting)
        self.problem_alerted = set(state.problem_alerted)
        self.observe_until = state.observe_until
        self.started = state.started
        self.early = list(state.early)
        self.reload_note = state.reload_note
        self.repairs = state.repairs
        self.dependencies = state.dependencies
        self.incidents = dict(state.incidents)
        self.failed_at = dict(state.failed_at)
        self.stopped_at = dict(state.stopped_at)
        self.deferred = dict(state.deferred)
        self.actions: list[Action] = []
        self.thawed = False  # the guard's freeze ended in this step
        self._later: deque[Callable[[], None]] = deque()
        self._status_changed = False

    def freeze(self) -> HostState:
        return HostState(
            loaded=self.loaded,
            hostname=self.hostname,
            dry_run=self.dry_run,
            units=self.units,
            guard=self.guard,
            flaps=self.flaps,
            failovers=self.failovers,
            clusters=self.clusters,
            snapshots=self.snapshots,
            timers=self.timers,
            waiting=tuple(self.waiting),
            problem_alerted=frozenset(self.problem_alerted),
            observe_until=self.observe_until,
            started=self.started,
            early=tuple(self.early),
            reload_note=self.reload_note,
            repairs=self.repairs,
            dependencies=self.dependencies,
            incidents=self.incidents,
            failed_at=self.failed_at,
            stopped_at=self.stopped_at,
            deferred=self.deferred,
        )

    # -- units, copy-on-write ------------------------------------------------------------

    def unit(self, name: str) -> UnitState | None:
        """The unit's state to read and change in this step (a private copy)."""
        state = self.units.get(name)
        if state is None:
            return None
        if name not in self._copied:
            state = self.units[name] = state.copy()
            self._copied.add(name)
        return state

    def add_unit(self, policy: Policy) -> UnitState:
        state = self.units[policy.unit] = UnitState(policy)
        self._copied.add(policy.unit)
        return state

    def later(self, work: Callable[[], None]) -> None:
        """Run `work` once the current handler is done, in order: what the shell used to
        spawn as a task, without feeding the reducer from inside itself."""
        self._later.append(work)

    def drain(self) -> None:
        while self._later:
            self._later.popleft()()

    # -- the shell's vocabulary ----------------------------------------------------------

    def log(self, level: str, message: str, /, **fields: Any) -> None:
        self.actions.append(Log(level, message, tuple(fields.items())))

    def operator(self, unit: str | None, message: str, caller: str) -> None:
        """An operator's request in the history, with who asked when the socket said."""
        if caller:
            self.history(unit, "operator", f"{message} (by {caller})", caller=caller)
        else:
            self.history(unit, "operator", message)

    def history(self, unit: str | None, kind: str, message: str, /, **data: Any) -> None:
        self.actions.append(RecordHistory(unit, kind, message, tuple(data.items())))

    def tell(
        self,
        about: UnitState | None,
        level: str,
        message: str,
        /,
        *,
        record: str,
        recorded: str | None = None,
        alert: AlertText | None = None,
        message_id: MessageId | None = None,
        **fields: Any,
    ) -> None:
        """The one path for news: a log line, a history entry (`record` is its kind;
        `recorded` its text when it differs from the log line), and an alert.
        `message_id` goes on the log line only (the journal's MESSAGE_ID=)."""
        unit = about.unit if about is not None else None
        log_fields = {"unit": unit, **fields} if unit is not None else dict(fields)
        if message_id is not None:
            log_fields["message_id"] = message_id.value
        self.log(level, message, **log_fields)
        self.history(unit, record, recorded if recorded is not None else message, **fields)
        if alert is not None:
            self.alert(
                about,
                alert.kind,
                alert.severity,
                alert.title,
                alert.body,
                problem=alert.problem,
                resolves=alert.resolves,
            )

    def alert(
        self,
        unit: UnitState | None,
        kind: AlertKind | str,
        severity: Severity,
        title: str,
        body: str,
        *,
        problem: bool = False,
        resolves: tuple[AlertKind, ...] = (),
        incident: bool = False,
    ) -> None:
        """Tell people: the policy's channels for a unit, every channel for the host.
        `kind` is an AlertKind, or a numbered one (`AlertKind.numbered`) for news.

        A unit's own news is held back while it is part of an open incident (the
        incident's messages tell it; `incident=True` is one of those), and its first
        problem alert waits while its unit is `deferred`."""
        event = kind.value if isinstance(kind, AlertKind) else kind
        name = unit.unit if unit is not None else None
        quiet = event.split(":")[0] in QUIET_IN_INCIDENT
        if name is not None and not incident and quiet and root_of(self.incidents, name):
            return
        channels = tuple(self.loaded.main.alerts.channels) if unit is None else unit.policy.alerts
        if not channels:
            return
        alert = Alert(
            unit=name,
            event=event,
            severity=severity,
            title=title,
            body=body,
            channels=channels,
            time=self.now,
            resolves=tuple(k.value for k in resolves),
            problem=problem,
        )
        if name is not None and name in self.deferred and event == AlertKind.UNHEALTHY.value:
            self.deferred[name] = alert
            return
        self.send(alert)

    def send(self, alert: Alert) -> None:
        """Hand a made alert to the shell; a unit's problem makes its recovery news."""
        if alert.unit is not None and alert.event == AlertKind.UNHEALTHY.value:
            self.problem_alerted.add(alert.unit)
        self.actions.append(SendAlert(alert))

    def status_changed(self) -> None:
        if not self._status_changed:  # one STATUS= update per step, however many changes
            self._status_changed = True
            self.actions.append(StatusChanged())

    def set_timer(self, key: TimerKey, at: float | None) -> None:
        """Arm, move, or with None cancel one timer; `at` is wall-clock time."""
        if at is None:
            if self.timers.pop(key, None) is not None:
                self.actions.append(SetTimer(key, None))
            return
        self.timers[key] = at
        self.actions.append(SetTimer(key, at))

    def arm_once(self, key: TimerKey, at: float) -> None:
        """Arm a timer unless it is armed already."""
        if key not in self.timers:
            self.set_timer(key, at)

    def fired(self, key: TimerKey) -> None:
        """A timer went off: it is armed no more."""
        self.timers.pop(key, None)

    # -- persistence and the guard --------------------------------------------------------

    def save(self, unit: UnitState) -> None:
        """Store the unit's ladder (and failover) state, and the latest change to its
        restore paths, if any of them changed since last saved."""
        fo = self.failovers.get(unit.unit)
        change = unit.config_change
        if (unit.recovery, fo, change) == unit.saved:
            return
        doc: dict[str, Any] = {"recovery": unit.recovery.to_dict()}
        if fo is not None:
            doc["failover"] = fo.to_dict()
        if change is not None:
            doc["config_change"] = change.to_dict()
        self.actions.append(SaveUnit(unit.unit, doc))
        unit.saved = (unit.recovery, fo, change)

    def schedule_ladder(self, unit: UnitState) -> None:
        self.set_timer((LADDER, unit.unit), unit.deadline)

    def guard_changed(self, notices: list[GuardNotice]) -> None:
        for notice in notices:
            alert = None
            if notice.kind == "frozen":
                alert = AlertText(
                    AlertKind.FROZEN,
                    Severity.CRITICAL,
                    f"automation frozen on {self.hostname}",
                    f"{notice.message}. Units are still watched and alerted, not repaired.",
                    problem=True,
                )
            elif notice.kind == "thawed":
                self.thawed = True
                alert = AlertText(
                    AlertKind.THAWED,
                    Severity.INFO,
                    f"automation resumed on {self.hostname}",
                    notice.message,
                    resolves=(AlertKind.FROZEN,),
                )
            level = max(notice.severity, Severity.WARNING).log_level
            self.tell(
                None,
                level,
                notice.message,
                record="guard",
                alert=alert,
                message_id=_GUARD_IDS.get(notice.kind),
                notice=notice.kind,
            )
        self.actions.append(SaveGuard(self.guard.to_dict()))
        self.schedule_guard()

    def schedule_guard(self) -> None:
        self.set_timer((GUARD, ""), guard.next_deadline(self.guard))
