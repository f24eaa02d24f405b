"""Every event the shell feeds the host reducer, and every action it gets back.

Events say what happened (a unit changed, a probe answered, a job ended, a timer
fired, an operator asked); actions say what to do (run a repair, start a unit,
record, alert, save, set a timer). All are frozen dataclasses: the shell performs
an action and feeds its outcome back as an event, h11-style.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.config import LoadedConfig
from supervisor.core import cluster
from supervisor.core.alerting import Alert
from supervisor.core.failover import Verb
from supervisor.core.values import CheckResult, RepairResult, Rung, UnitSnapshot

# -- timers ----------------------------------------------------------------------------

TimerKey = tuple[str, str]
"""(machine, unit): ("ladder", "web.service"), ("guard", ""), ..."""

LADDER = "ladder"
GRACE = "grace"
SNAPSHOT = "snapshot"
FAILOVER = "failover"
JUDGE = "judge"
GUARD = "guard"
FLAPPING = "flapping"
CLUSTER = "cluster"
PAUSE = "pause"
INCIDENT = "incident"


# -- events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Starting:
    """The daemon is connected; units are about to be watched. Repairs wait until
    `observe_until` unless every check has reported once before."""

    observe_until: float


@dataclass(frozen=True)
class Started:
    """Every unit and backup is watched: take up failovers, arm the timers."""


@dataclass(frozen=True)
class Stopping:
    """The daemon is about to stop."""


@dataclass(frozen=True)
class UnitChanged:
    """systemd's view of a watched unit (a policy's unit or a backup)."""

    snapshot: UnitSnapshot


@dataclass(frozen=True)
class BackupWatched:
    """A backup unit without a policy of its own is watched (or could not be)."""

    snapshot: UnitSnapshot | None
    unit: str
    error: str = ""


@dataclass(frozen=True)
class ProbeDone:
    """A check of a unit ran; `index` is its place in the policy's `checks:`."""

    unit: str
    index: int
    result: CheckResult


@dataclass(frozen=True)
class ProbesDone:
    """Several probe results at once, in the order they arrived: the scheduler hands
    over what finished in one turn of the loop as one event, so the work done per step
    (copying the host state, the STATUS= update) is shared by the batch."""

    results: tuple[ProbeDone, ...]


@dataclass(frozen=True)
class TimerFired:
    key: TimerKey


@dataclass(frozen=True)
class PreconditionsChecked:
    """The answer to `CheckPreconditions`: why a repair may not run, or "" to go;
    `unsaved` says why the state queued with the request is not on disk ("" if it is)."""

    unit: str
    reason: str
    unsaved: str = ""


@dataclass(frozen=True)
class RepairDone:
    """The answer to `RunRepair`: result is done, failed or skipped."""

    unit: str
    rung: Rung
    attempt: int
    max_attempts: int
    result: RepairResult
    detail: str
    took_ms: float
    diff: str = ""  # for a restore: what it changed, as a masked unified diff


@dataclass(frozen=True)
class FailoverJobDone:
    """The answer to `RunFailoverJob`."""

    primary: str
    target: str
    verb: Verb
    ok: bool
    detail: str


@dataclass(frozen=True)
class CanRecoverDone:
    """The answer to `RunCanRecover`."""

    unit: str
    ok: bool
    status: str
    message: str


@dataclass(frozen=True)
class SnapshotDone:
    """The answer to `TakeSnapshot`: the snapshot's path, "" when none was taken;
    `known_good` says which snapshot a restore would use now, and why."""

    unit: str
    path: str
    error: str = ""
    known_good: str = ""
    proven: bool = False  # a proven snapshot exists now


@dataclass(frozen=True)
class ConfigChanged:
    """The content of a unit's restore paths changed (the shell's watcher saw it)."""

    unit: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ConfigWatched:
    """The answer to `WatchConfig`: the restore paths are watched (or `error` says why
    not), and whether a proven snapshot a rollback could restore exists."""

    unit: str
    proven: bool
    known_good: str = ""
    error: str = ""


@dataclass(frozen=True)
class SaveFailed:
    """A `SaveUnit` could not be written: write the unit's state again at its next change."""

    unit: str


@dataclass(frozen=True)
class PoliciesLoaded:
    """A reload read every policy without error."""

    loaded: LoadedConfig


@dataclass(frozen=True)
class ReloadRefused:
    problems: tuple[str, ...]
    caller: str = ""


@dataclass(frozen=True)
class ReloadDone:
    """The units a reload added are watched."""

    caller: str = ""


@dataclass(frozen=True)
class DependenciesKnown:
    """What the supervised units depend on, as systemd says (read at the start, after a
    reload of the policies and after a daemon-reload): unit -> the units its Requires=,
    BindsTo=, PartOf= and After= name."""

    graph: Mapping[str, frozenset[str]]


@dataclass(frozen=True)
class OperatorPause:
    unit: str
    caller: str = ""  # who asked, as the control socket saw them: "uid 0 (root)"
    duration: float | None = None  # seconds until the pause ends on its own; None: never
    reason: str = ""


@dataclass(frozen=True)
class OperatorResume:
    unit: str | None  # None: every unit, and a frozen automation
    caller: str = ""


@dataclass(frozen=True)
class OperatorReset:
    unit: str
    caller: str = ""


@dataclass(frozen=True)
class OperatorFailover:
    unit: str
    to: str | None
    caller: str = ""


@dataclass(frozen=True)
class OperatorFailback:
    unit: str
    caller: str = ""


@dataclass(frozen=True)
class ClusterEvent:
    """What etcd, the lease or the unit's stop said, for a clustered unit's machine."""

    unit: str
    event: cluster.Event


@dataclass(frozen=True)
class OperatorHandover:
    """`failover UNIT --to-host HOST` for a clustered unit."""

    unit: str
    to_host: str
    caller: str = ""


Event = (
    Starting
    | Started
    | Stopping
    | UnitChanged
    | BackupWatched
    | ProbeDone
    | ProbesDone
    | TimerFired
    | PreconditionsChecked
    | RepairDone
    | FailoverJobDone
    | CanRecoverDone
    | SnapshotDone
    | ConfigChanged
    | ConfigWatched
    | SaveFailed
    | PoliciesLoaded
    | ReloadRefused
    | ReloadDone
    | DependenciesKnown
    | OperatorPause
    | OperatorResume
    | OperatorReset
    | OperatorFailover
    | OperatorFailback
    | ClusterEvent
    | OperatorHandover
)


# -- actions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Log:
    level: str  # debug | info | warning | error | critical
    message: str
    fields: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class RecordHistory:
    unit: str | None
    kind: str
    message: str
    data: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class SendAlert:
    alert: Alert


@dataclass(frozen=True)
class SaveUnit:
    unit: str
    doc: dict[str, Any]


@dataclass(frozen=True)
class DeleteUnit:
    unit: str


@dataclass(frozen=True)
class SaveGuard:
    doc: dict[str, Any]


@dataclass(frozen=True)
class SetTimer:
    key: TimerKey
    at: float | None  # wall-clock time; None cancels


@dataclass(frozen=True)
class CheckPreconditions:
    unit: str


@dataclass(frozen=True)
class RunRepair:
    unit: str
    rung: Rung
    attempt: int
    max_attempts: int
    unit_failed: bool


@dataclass(frozen=True)
class RunFailoverJob:
    primary: str
    target: str
    verb: Verb
    reset_failed_first: bool


@dataclass(frozen=True)
class RunCanRecover:
    unit: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class TakeSnapshot:
    """Snapshot the unit's restore paths as last-known-good: proven if no file changed
    since `applied_at` (its last successful start or reload began; None: unknown)."""

    unit: str
    applied_at: float | None
    healthy_since: float | None


@dataclass(frozen=True)
class Watch:
    unit: str


@dataclass(frozen=True)
class WatchConfig:
    """Watch the unit's restore paths for changes (`ConfigChanged`); answer
    `ConfigWatched`. Watching them again replaces the previous watch."""

    unit: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class UnwatchConfig:
    unit: str


@dataclass(frozen=True)
class WatchBackup:
    """Watch a backup unit that has no policy of its own; answer `BackupWatched`."""

    unit: str


@dataclass(frozen=True)
class Unwatch:
    unit: str


@dataclass(frozen=True)
class StartChecks:
    unit: str


@dataclass(frozen=True)
class StopChecks:
    unit: str


@dataclass(frozen=True)
class StatusChanged:
    """STATUS= should say something new (the shell coalesces these)."""


@dataclass(frozen=True)
class Ready:
    """READY=1 with the status line: start-up or a reload is complete."""


@dataclass(frozen=True)
class Answer:
    """The reply to an operator's request: None when accepted, else why not."""

    refused: str | None


@dataclass(frozen=True)
class ClusterAct:
    """Perform what a clustered unit's machine decided (etcd, fence files, the unit)."""

    unit: str
    action: cluster.Action


@dataclass(frozen=True)
class ClusterRole:
    """A clustered unit's role here changed: publish this host's view in etcd."""

    unit: str
    role: cluster.Role
    holder: str | None
    token: int


Action = (
    Log
    | RecordHistory
    | SendAlert
    | SaveUnit
    | DeleteUnit
    | SaveGuard
    | SetTimer
    | CheckPreconditions
    | RunRepair
    | RunFailoverJob
    | RunCanRecover
    | TakeSnapshot
    | Watch
    | WatchConfig
    | UnwatchConfig
    | WatchBackup
    | Unwatch
    | StartChecks
    | StopChecks
    | StatusChanged
    | Ready
    | Answer
    | ClusterAct
    | ClusterRole
)
