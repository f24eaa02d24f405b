"""Primary, backup and failback as a pure state machine: `step(spec, state, event, now)`.

One machine per policy with a `failover:` section (cold standby: at most one of the
primary and its backups is ever started by this machine). It is fed the triggers
(`LadderExhausted`, `PrimaryHardFailure`), the result of every job it asked for
(`JobDone`), health judgements (`Health`), the result of the policy's `can_recover`
command (`Recoverable`), the passing of time (`Tick`, whenever `state.deadline` is
reached) and operator commands (`ManualFailover`, `ManualFailback`). It returns the
new state and the actions for the shell to perform; it never reads the clock and
does no I/O. The shell performs each action and feeds its outcome back as an event.

Phases:

- PRIMARY: the primary serves. The primary's repair ladder runs only here
  (`repairs_allowed`); in every other phase this machine owns the primary.
- FAILING_OVER: stop what runs, then try the candidates in `order` one at a time:
  start, judge (one `Health(unit, True)` within `settle`), or stop it again and try
  the next. When none is left the primary is started again (the best state known:
  a failing primary is no worse than nothing, and after a manual failover it may be
  perfectly healthy), then FAILED.
- BACKUP: a backup serves. Automatic failback waits `failback.delay` (doubled after
  each failed failback, at most `MAX_FAILBACK_WAIT`), asks `can_recover` if the
  policy has one (`Recoverable(False)`: ask again after the same wait), then fails
  back. With `failback: manual`, or after a manual failover (`manual_hold`, like
  keepalived's nopreempt), only `ManualFailback` does. If the serving backup turns
  hard-unhealthy, the other backups are tried as in FAILING_OVER. `ManualFailover`
  here switches to the named backup (the serving one is tried last).
- FAILING_BACK: stop the backup, start the primary, then require
  `failback.successes` `Health(primary, True)` within `settle` (1 with `manual`).
  A `Health(primary, False)` or the deadline fails it: that is a failover back to
  the backup that served (it first, then the others), and the wait doubles.
- FAILED: nothing works; a person must act. Only `ManualFailover`,
  `ManualFailback` or a `Health(primary, True)` (someone fixed it) move on.

Each job is a step in flight (`in_flight`, on `unit`): STOP and START wait for the
matching `JobDone`, JUDGE for `Health` or the deadline, CHECK for `Recoverable`.
A unit is started only after the stop of the previous one was confirmed. A stop
that fails starts nothing else, since that unit may still run: a failover goes to
FAILED; a backup that cannot be stopped for a failback keeps serving (BACKUP, and
the next failback waits twice as long). After a daemon restart, `resume` asks again
for the step in flight (stopping or starting a unit twice is harmless) and never
starts the primary behind a serving backup.

The shell records every action and event in the history; `Notify` (alerted) and
`Record` (history only) carry the decisions, each saying what was tried and what
happens next.

The shell feeds `Health` for the unit being judged at each of its judgements (the
hard state from `health`, not only its changes): one that arrives before its start
job is done is ignored. Illegal events (not in the table, a `JobDone` for another
unit or verb, a `Health` for a unit not being judged, a `Tick` before the deadline)
leave the state unchanged; a refused operator command also returns a `Record`
saying why.

Transition table (`render_table()` draws it from `RULES`, the table `step` runs):

| phase        | in flight   | event              | what happens                                   |
| ------------ | ----------- | ------------------ | ---------------------------------------------- |
| primary      | none        | LadderExhausted    | FAILING_OVER: stop the primary, then backups   |
|              |             |                    | in order                                       |
| primary      | none        | PrimaryHardFailure | count it; at after_failures (when set) as      |
|              |             |                    | LadderExhausted                                |
| primary      | none        | PrimaryStable      | forget the counted hard failures               |
| primary      | none        | ManualFailover     | as LadderExhausted, the named backup first;    |
|              |             |                    | manual_hold                                    |
| failing-over | stop        | JobDone            | ok: start the next candidate, or the primary   |
|              |             |                    | when none is left; failed: FAILED              |
| failing-over | start       | JobDone            | backup ok: JUDGE until settle; backup failed:  |
|              |             |                    | stop it; the primary (none left): FAILED       |
| failing-over | judge       | Health             | healthy: BACKUP; unhealthy: stop it, next      |
|              |             |                    | candidate                                      |
| failing-over | judge       | Tick               | settle over, not judged healthy: stop it, next |
|              |             |                    | candidate                                      |
| backup       | none        | Tick               | failback time: CHECK (RunCanRecover) or,       |
|              |             |                    | without can_recover, FAILING_BACK              |
| backup       | check       | Recoverable        | ok: FAILING_BACK; not: ask again after the     |
|              |             |                    | wait                                           |
| backup       | none, check | Health             | the serving backup unhealthy: FAILING_OVER to  |
|              |             |                    | the other backups                              |
| backup       | none, check | ManualFailback     | FAILING_BACK now (clears manual_hold)          |
| backup       | none, check | ManualFailover     | switch to the named backup (the serving one    |
|              |             |                    | last); manual_hold                             |
| failing-back | stop        | JobDone            | ok: start the primary; failed: BACKUP again    |
|              |             |                    | (back off), or FAILED                          |
| failing-back | start       | JobDone            | ok: JUDGE the primary until settle; failed:    |
|              |             |                    | failback failed                                |
| failing-back | judge       | Health             | healthy: count; at successes PRIMARY;          |
|              |             |                    | unhealthy: failback failed                     |
| failing-back | judge       | Tick               | settle over without enough successes: failback |
|              |             |                    | failed                                         |
| failed       | none        | Health             | the primary healthy: PRIMARY                   |
| failed       | none        | ManualFailover     | FAILING_OVER again, the named backup first     |
| failed       | none        | ManualFailback     | FAILING_BACK: stop a started backup, start the |
|              |             |                    | primary, judge it                              |

"failback failed": with a backup to return to, FAILING_OVER back to it (stop the
primary, start it, judge it) and the next failback waits twice as long; without
one (a failback from FAILED), FAILED with the primary left started.

`resume(state, now)` after a restart: STOP and START ask again; JUDGE starts the unit
again (a fresh settle window, counts from zero); CHECK runs can_recover again;
BACKUP also stops the primary (something at boot may have started it); PRIMARY and
FAILED ask for nothing.
"""

from __future__ import annotations

import dataclasses
import enum
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from supervisor.config.values import format_duration
from supervisor.core.notices import AlertKind
from supervisor.core.stored import build
from supervisor.core.values import Severity

__all__ = [
    "MAX_FAILBACK_WAIT",
    "RULES",
    "Action",
    "Event",
    "FailbackSpec",
    "FailoverSpec",
    "FailoverState",
    "Health",
    "JobDone",
    "Kind",
    "LadderExhausted",
    "ManualFailback",
    "ManualFailover",
    "Notify",
    "Phase",
    "PrimaryHardFailure",
    "PrimaryStable",
    "Record",
    "Recoverable",
    "Rule",
    "RunCanRecover",
    "Severity",
    "StartUnit",
    "Step",
    "StopUnit",
    "Tick",
    "Verb",
    "failback_wait",
    "render_table",
    "repairs_allowed",
    "resume",
    "step",
]

MAX_FAILBACK_WAIT = 3600.0
"""The doubling wait between failed failbacks stops here (or at `delay`, if longer)."""


class FailbackSpec(Protocol):
    """Automatic failback settings (satisfied by `config.Failback`)."""

    @property
    def delay(self) -> float: ...
    @property
    def successes(self) -> int: ...


class FailoverSpec(Protocol):
    """A policy's failover settings (satisfied by `config.Failover`)."""

    @property
    def backup(self) -> Sequence[str]: ...
    @property
    def after_failures(self) -> int | None: ...
    @property
    def can_recover(self) -> Sequence[str] | None: ...
    @property
    def settle(self) -> float: ...
    @property
    def failback(self) -> FailbackSpec | str: ...  # the word "manual", or the settings


class Phase(enum.Enum):
    PRIMARY = "primary"
    FAILING_OVER = "failing-over"
    BACKUP = "backup"
    FAILING_BACK = "failing-back"
    FAILED = "failed"


class Step(enum.Enum):
    """What the machine waits for."""

    NONE = "none"
    STOP = "stop"  # JobDone(unit, stop)
    START = "start"  # JobDone(unit, start)
    JUDGE = "judge"  # Health(unit, ...) or the deadline
    CHECK = "check"  # Recoverable


class Verb(enum.Enum):
    START = "start"
    STOP = "stop"


@dataclass(frozen=True)
class FailoverState:
    """Where the failover of one primary stands. Build the first with `initial`.

    Times are whatever clock the shell passes as `now` (wall-clock seconds, as
    they are stored and must survive a restart).
    """

    primary: str
    phase: Phase = Phase.PRIMARY
    serving: str | None = None  # judged serving: the primary (PRIMARY), a backup (BACKUP), or None
    active: str | None = None  # the unit this machine started and has not seen stopped
    in_flight: Step = Step.NONE
    unit: str | None = None  # the unit of the step in flight (None for NONE and CHECK)
    deadline: float | None = None  # JUDGE: end of settle; BACKUP: failback time; else None
    order: tuple[str, ...] = ()  # FAILING_OVER: the candidates, in the order tried
    candidate: int = -1  # index in `order` of the candidate being tried; -1 before the first
    tried: tuple[tuple[str, str], ...] = ()  # (backup, what went wrong), this episode
    back_to: str | None = None  # FAILING_BACK: the backup to return to if the primary fails
    failures: int = 0  # hard failures of the primary counted toward after_failures
    successes: int = 0  # FAILING_BACK: healthy judgements of the primary so far
    failed_failbacks: int = 0  # since the last time the primary served; doubles the wait
    failback_at: float | None = None  # BACKUP: when the primary may next be tried
    manual_hold: bool = False  # an operator failed over: only ManualFailback fails back
    manual_notified: bool = False  # manual-needed was sent in this episode
    since: float | None = None  # when the phase was entered

    @classmethod
    def initial(cls, primary: str) -> FailoverState:
        """The primary serves; nothing has happened yet."""
        return cls(primary=primary, serving=primary, active=primary)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (only str, numbers, bools, None, lists and dicts), for the store."""
        doc = dataclasses.asdict(self)
        doc["phase"] = self.phase.value
        doc["in_flight"] = self.in_flight.value
        doc["order"] = list(self.order)
        doc["tried"] = [list(pair) for pair in self.tried]
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> FailoverState:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in fields}
        values["phase"] = Phase(values.get("phase", Phase.PRIMARY.value))
        values["in_flight"] = Step(values.get("in_flight", Step.NONE.value))
        values["order"] = tuple(values.get("order", ()))
        values["tried"] = tuple(tuple(pair) for pair in values.get("tried", ()))
        return build(cls, values)


# Events -------------------------------------------------------------------


@dataclass(frozen=True)
class LadderExhausted:
    """The primary's repair ladder gave up: the default trigger."""

    detail: str = ""


@dataclass(frozen=True)
class PrimaryHardFailure:
    """The primary became hard-unhealthy: counts toward `after_failures` when set."""

    detail: str = ""


@dataclass(frozen=True)
class PrimaryStable:
    """The primary was healthy long enough that its ladder forgot its attempts."""


@dataclass(frozen=True)
class JobDone:
    """The result of a StopUnit or StartUnit this machine asked for."""

    unit: str
    verb: Verb
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Health:
    """One judgement of a unit's health (its checks, or its unit state)."""

    unit: str
    healthy: bool
    detail: str = ""


@dataclass(frozen=True)
class Recoverable:
    """The result of the policy's `can_recover` command."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class ManualFailover:
    """An operator: fail over now, to the named backup first if `to` is given."""

    to: str | None = None


@dataclass(frozen=True)
class ManualFailback:
    """An operator: fail back to the primary now."""


Event = (
    LadderExhausted
    | PrimaryHardFailure
    | PrimaryStable
    | JobDone
    | Health
    | Recoverable
    | Tick
    | ManualFailover
    | ManualFailback
)


# Actions ------------------------------------------------------------------


@dataclass(frozen=True)
class StopUnit:
    unit: str


@dataclass(frozen=True)
class StartUnit:
    unit: str


@dataclass(frozen=True)
class RunCanRecover:
    """Run the policy's `can_recover` command; report `Recoverable`."""


Kind = AlertKind  # the failover machine's notices are alert kinds, defined once


_SEVERITY: dict[Kind, Severity] = {
    Kind.FAILOVER_STARTED: Severity.WARNING,
    Kind.FAILOVER_DONE: Severity.INFO,
    Kind.BACKUP_FAILED: Severity.WARNING,
    Kind.FAILOVER_FAILED: Severity.CRITICAL,
    Kind.FAILBACK_STARTED: Severity.INFO,
    Kind.FAILBACK_DONE: Severity.INFO,
    Kind.FAILBACK_FAILED: Severity.WARNING,
    Kind.MANUAL_NEEDED: Severity.WARNING,
}


@dataclass(frozen=True)
class Notify:
    """Something people should hear about (recorded in the history, and alerted)."""

    kind: Kind
    severity: Severity
    message: str


@dataclass(frozen=True)
class Record:
    """A step worth keeping in the history that is not worth an alert."""

    message: str


Action = StopUnit | StartUnit | RunCanRecover | Notify | Record
Result = tuple[FailoverState, list[Action]]
Handler = Callable[[FailoverSpec, FailoverState, Any, float], Result | None]


def _notify(kind: Kind, message: str, severity: Severity | None = None) -> Notify:
    return Notify(kind, severity if severity is not None else _SEVERITY[kind], message)


# Helpers ------------------------------------------------------------------


def repairs_allowed(state: FailoverState) -> bool:
    """May the primary's own repair ladder act? Only while the primary serves."""
    return state.phase is Phase.PRIMARY


def _manual_mode(spec: FailoverSpec) -> bool:
    return isinstance(spec.failback, str)


def failback_wait(spec: FailoverSpec, state: FailoverState) -> float:
    """The wait before the next failback: `delay`, doubled per failed failback, capped."""
    if isinstance(spec.failback, str):
        return 0.0
    delay = float(spec.failback.delay)
    doubled = delay * 2.0 ** min(state.failed_failbacks, 32)
    return min(doubled, max(MAX_FAILBACK_WAIT, delay))


def _successes_needed(spec: FailoverSpec) -> int:
    return 1 if isinstance(spec.failback, str) else spec.failback.successes


def _first(units: Sequence[str], to: str | None) -> tuple[str, ...]:
    """`units` in order, with `to` moved to the front."""
    if to is None:
        return tuple(units)
    return (to, *(u for u in units if u != to))


def _tried_text(tried: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{unit} ({why})" for unit, why in tried) or "none"


def _next_text(spec: FailoverSpec, state: FailoverState) -> str:
    """What happens next once a backup serves."""
    if state.manual_hold:
        return f"held by an operator: fail back with `host-supervisor failback {state.primary}`"
    if _manual_mode(spec):
        return f"failback is manual: `host-supervisor failback {state.primary}`"
    check = ", if can_recover agrees" if spec.can_recover else ""
    return f"failback in {format_duration(failback_wait(spec, state))}{check}"


def _refused(state: FailoverState, what: str, why: str) -> Result:
    return state, [Record(f"{what} refused: {why}")]


# Failing over -------------------------------------------------------------


def _begin_failover(
    state: FailoverState,
    now: float,
    order: Sequence[str],
    *,
    notice: Notify | None,
    hold: bool,
    tried: tuple[tuple[str, str], ...] = (),
) -> Result:
    """Stop what runs, then try `order`; the primary is started again if none works."""
    stop = state.active or state.primary
    state = replace(
        state,
        phase=Phase.FAILING_OVER,
        serving=None,
        in_flight=Step.STOP,
        unit=stop,
        deadline=None,
        order=tuple(order),
        candidate=-1,
        tried=tried,
        back_to=None,
        successes=0,
        failback_at=None,
        manual_hold=hold,
        since=now,
    )
    return state, [*([notice] if notice else []), StopUnit(stop)]


def _plan_text(state: FailoverState, order: Sequence[str]) -> str:
    then = f"then trying {', '.join(order)}; " if order else "no other backup to try; "
    stop = state.active or state.primary
    return f"stopping {stop}, {then}if none works, {state.primary} is started again"


def _trigger(state: FailoverState, now: float, spec: FailoverSpec, reason: str) -> Result:
    order = tuple(spec.backup)
    notice = _notify(Kind.FAILOVER_STARTED, f"{reason}: {_plan_text(state, order)}")
    return _begin_failover(state, now, order, notice=notice, hold=False)


def _on_exhausted(
    spec: FailoverSpec, state: FailoverState, event: LadderExhausted, now: float
) -> Result:
    detail = f" ({event.detail})" if event.detail else ""
    return _trigger(state, now, spec, f"the repair ladder of {state.primary} gave up{detail}")


def _on_hard_failure(
    spec: FailoverSpec, state: FailoverState, event: PrimaryHardFailure, now: float
) -> Result | None:
    if spec.after_failures is None:
        return None
    failures = state.failures + 1
    detail = f": {event.detail}" if event.detail else ""
    if failures < spec.after_failures:
        note = f"hard failure {failures}/{spec.after_failures} of {state.primary}{detail}"
        return replace(state, failures=failures), [Record(note)]
    state = replace(state, failures=failures)
    last = f" (last: {event.detail})" if event.detail else ""
    reason = f"{state.primary} failed hard {failures} time(s){last}"
    return _trigger(state, now, spec, reason)


def _on_stable(
    spec: FailoverSpec, state: FailoverState, event: PrimaryStable, now: float
) -> Result | None:
    if state.failures == 0:
        return None
    note = f"{state.primary} stable: {state.failures} hard failure(s) forgotten"
    return replace(state, failures=0), [Record(note)]


def _check_target(spec: FailoverSpec, to: str | None) -> str | None:
    if to is not None and to not in spec.backup:
        return f"{to} is not a backup of this unit (backups: {', '.join(spec.backup)})"
    return None


def _on_manual_failover(
    spec: FailoverSpec, state: FailoverState, event: ManualFailover, now: float
) -> Result:
    why = _check_target(spec, event.to)
    if why is not None:
        return _refused(state, "manual failover", why)
    order = _first(spec.backup, event.to)
    notice = _notify(Kind.FAILOVER_STARTED, f"asked by an operator: {_plan_text(state, order)}")
    return _begin_failover(state, now, order, notice=notice, hold=True)


def _next_candidate(state: FailoverState) -> Result:
    index = state.candidate + 1
    unit = state.order[index] if index < len(state.order) else state.primary
    state = replace(
        state, in_flight=Step.START, unit=unit, active=unit, deadline=None, candidate=index
    )
    return state, [StartUnit(unit)]


def _failed(state: FailoverState, now: float, message: str, *, active: str | None) -> Result:
    state = replace(
        state,
        phase=Phase.FAILED,
        serving=None,
        active=active,
        in_flight=Step.NONE,
        unit=None,
        deadline=None,
        order=(),
        candidate=-1,
        back_to=None,
        successes=0,
        failback_at=None,
        since=now,
    )
    return state, [_notify(Kind.FAILOVER_FAILED, f"{message}; a person must act")]


def _backup_failed(state: FailoverState, unit: str, why: str) -> Result:
    """Stop the candidate that did not work; the next is tried once it is stopped."""
    rest = state.order[state.candidate + 1 :]
    then = f"then trying {rest[0]}" if rest else f"then starting {state.primary} again"
    state = replace(
        state,
        in_flight=Step.STOP,
        unit=unit,
        deadline=None,
        tried=(*state.tried, (unit, why)),
    )
    notice = _notify(Kind.BACKUP_FAILED, f"{unit} does not work ({why}): stopping it, {then}")
    return state, [notice, StopUnit(unit)]


def _stop_failed(state: FailoverState, now: float, event: JobDone) -> Result:
    message = (
        f"could not stop {event.unit} ({event.detail or 'job failed'}): nothing else is "
        f"started while it may still run; tried: {_tried_text(state.tried)}"
    )
    return _failed(state, now, message, active=event.unit)


def _matches(state: FailoverState, event: JobDone, verb: Verb) -> bool:
    return event.unit == state.unit and event.verb is verb


def _over_stopped(
    spec: FailoverSpec, state: FailoverState, event: JobDone, now: float
) -> Result | None:
    if not _matches(state, event, Verb.STOP):
        return None
    if not event.ok:
        return _stop_failed(state, now, event)
    return _next_candidate(replace(state, active=None))


def _over_started(
    spec: FailoverSpec, state: FailoverState, event: JobDone, now: float
) -> Result | None:
    if not _matches(state, event, Verb.START):
        return None
    if event.unit == state.primary:  # no candidate was left: the primary, as the best known
        started = (
            f"{state.primary} was started again"
            if event.ok
            else f"{state.primary} could not be started again ({event.detail or 'job failed'})"
        )
        message = f"no backup works: tried {_tried_text(state.tried)}; {started}"
        return _failed(state, now, message, active=state.primary)
    if not event.ok:
        return _backup_failed(state, event.unit, f"start failed: {event.detail or 'job failed'}")
    return replace(state, in_flight=Step.JUDGE, deadline=now + spec.settle), []


def _over_health(
    spec: FailoverSpec, state: FailoverState, event: Health, now: float
) -> Result | None:
    if event.unit != state.unit:
        return None
    if not event.healthy:
        detail = f": {event.detail}" if event.detail else ""
        return _backup_failed(state, event.unit, f"unhealthy{detail}")
    return _enter_backup(spec, state, event.unit, now)


def _over_deadline(
    spec: FailoverSpec, state: FailoverState, event: Tick, now: float
) -> Result | None:
    if state.deadline is None or now < state.deadline or state.unit is None:
        return None
    why = f"not judged healthy within {format_duration(spec.settle)}"
    return _backup_failed(state, state.unit, why)


def _settle_in_backup(
    spec: FailoverSpec, state: FailoverState, unit: str, now: float
) -> FailoverState:
    automatic = not (_manual_mode(spec) or state.manual_hold)
    failback_at = now + failback_wait(spec, state) if automatic else None
    return replace(
        state,
        phase=Phase.BACKUP,
        serving=unit,
        active=unit,
        in_flight=Step.NONE,
        unit=None,
        deadline=failback_at,
        order=(),
        candidate=-1,
        back_to=None,
        successes=0,
        failback_at=failback_at,
        since=now,
    )


def _enter_backup(spec: FailoverSpec, state: FailoverState, unit: str, now: float) -> Result:
    state = _settle_in_backup(spec, state, unit, now)
    tried = f" (did not work: {_tried_text(state.tried)})" if state.tried else ""
    actions: list[Action] = [
        _notify(
            Kind.FAILOVER_DONE,
            f"{unit} serves in place of {state.primary}{tried}; {_next_text(spec, state)}",
        )
    ]
    if _manual_mode(spec) and not state.manual_hold and not state.manual_notified:
        state = replace(state, manual_notified=True)
        actions.append(
            _notify(
                Kind.MANUAL_NEEDED,
                f"{unit} serves; failback is manual: once {state.primary} is repaired, run "
                f"`host-supervisor failback {state.primary}`",
            )
        )
    return state, actions


# While a backup serves ----------------------------------------------------


def _backup_tick(
    spec: FailoverSpec, state: FailoverState, event: Tick, now: float
) -> Result | None:
    if state.deadline is None or now < state.deadline:
        return None
    if spec.can_recover:
        return replace(state, in_flight=Step.CHECK, deadline=None), [RunCanRecover()]
    waited = format_duration(failback_wait(spec, state))
    return _begin_failback(spec, state, now, f"{waited} on {state.serving}")


def _recoverable(
    spec: FailoverSpec, state: FailoverState, event: Recoverable, now: float
) -> Result:
    if event.ok:
        return _begin_failback(spec, state, now, "can_recover says the primary can recover")
    wait = failback_wait(spec, state)
    state = replace(state, in_flight=Step.NONE, failback_at=now + wait, deadline=now + wait)
    detail = f" ({event.detail})" if event.detail else ""
    note = f"{state.primary} cannot recover yet{detail}; asking again in {format_duration(wait)}"
    return state, [Record(note)]


def _backup_health(
    spec: FailoverSpec, state: FailoverState, event: Health, now: float
) -> Result | None:
    if event.unit != state.serving or event.healthy:
        return None
    detail = f": {event.detail}" if event.detail else ""
    served = state.serving
    tried = (*state.tried, (served, f"unhealthy while serving{detail}"))
    order = tuple(u for u in spec.backup if u != served)
    notice = _notify(
        Kind.BACKUP_FAILED,
        f"{served} became unhealthy while serving{detail}: {_plan_text(state, order)}",
    )
    return _begin_failover(state, now, order, notice=notice, hold=state.manual_hold, tried=tried)


def _backup_manual_failback(
    spec: FailoverSpec, state: FailoverState, event: ManualFailback, now: float
) -> Result:
    return _begin_failback(spec, replace(state, manual_hold=False), now, "asked by an operator")


def _backup_manual_failover(
    spec: FailoverSpec, state: FailoverState, event: ManualFailover, now: float
) -> Result:
    served = state.serving or state.primary
    if event.to is None or event.to == served:
        return _refused(state, "manual failover", f"{served} already serves: name another backup")
    why = _check_target(spec, event.to)
    if why is not None:
        return _refused(state, "manual failover", why)
    # The serving backup goes last: if nothing else works, it is the best state known.
    order = (event.to, *(u for u in spec.backup if u not in (event.to, served)), served)
    notice = _notify(Kind.FAILOVER_STARTED, f"asked by an operator: {_plan_text(state, order)}")
    return _begin_failover(state, now, order, notice=notice, hold=True)


# Failing back -------------------------------------------------------------


def _begin_failback(spec: FailoverSpec, state: FailoverState, now: float, reason: str) -> Result:
    """Stop the serving backup (if any), start the primary, judge it."""
    back_to = state.serving if state.phase is Phase.BACKUP else None
    stop = back_to or (state.active if state.active != state.primary else None)
    needed = _successes_needed(spec)
    plan = (
        f"starting {state.primary}, then {needed} healthy result(s) within "
        f"{format_duration(spec.settle)}"
    )
    if stop is not None:
        plan = f"stopping {stop}, {plan}"
    state = replace(
        state,
        phase=Phase.FAILING_BACK,
        serving=None,
        in_flight=Step.STOP if stop else Step.START,
        unit=stop or state.primary,
        active=state.active if stop else state.primary,
        deadline=None,
        back_to=back_to,
        successes=0,
        failback_at=None,
        since=now,
    )
    first: Action = StopUnit(stop) if stop else StartUnit(state.primary)
    return state, [_notify(Kind.FAILBACK_STARTED, f"{reason}: {plan}"), first]


def _back_stopped(
    spec: FailoverSpec, state: FailoverState, event: JobDone, now: float
) -> Result | None:
    if not _matches(state, event, Verb.STOP):
        return None
    if event.ok:
        state = replace(state, in_flight=Step.START, unit=state.primary, active=state.primary)
        return state, [StartUnit(state.primary)]
    detail = event.detail or "job failed"
    back_to = state.back_to
    if back_to is None:
        return _stop_failed(state, now, event)
    # The backup could not be stopped: it keeps serving, and the primary stays stopped.
    state = replace(state, failed_failbacks=state.failed_failbacks + 1)
    state = _settle_in_backup(spec, state, back_to, now)
    message = (
        f"could not stop {event.unit} ({detail}): it keeps serving, {state.primary} stays "
        f"stopped; {_next_text(spec, state)}"
    )
    return state, [_notify(Kind.FAILBACK_FAILED, message)]


def _back_started(
    spec: FailoverSpec, state: FailoverState, event: JobDone, now: float
) -> Result | None:
    if not _matches(state, event, Verb.START):
        return None
    if not event.ok:
        return _failback_failed(
            spec, state, now, f"{state.primary} did not start ({event.detail or 'job failed'})"
        )
    return replace(state, in_flight=Step.JUDGE, deadline=now + spec.settle), []


def _back_health(
    spec: FailoverSpec, state: FailoverState, event: Health, now: float
) -> Result | None:
    if event.unit != state.primary:
        return None
    needed = _successes_needed(spec)
    if not event.healthy:
        detail = f": {event.detail}" if event.detail else ""
        why = f"{state.primary} unhealthy{detail} after {state.successes}/{needed} healthy"
        return _failback_failed(spec, state, now, why)
    successes = state.successes + 1
    if successes < needed:
        return replace(state, successes=successes), []
    return _enter_primary(state, now, f"{state.primary} serves again ({successes} healthy)")


def _back_deadline(
    spec: FailoverSpec, state: FailoverState, event: Tick, now: float
) -> Result | None:
    if state.deadline is None or now < state.deadline:
        return None
    why = (
        f"{state.primary} had {state.successes}/{_successes_needed(spec)} healthy result(s) "
        f"within {format_duration(spec.settle)}"
    )
    return _failback_failed(spec, state, now, why)


def _failback_failed(spec: FailoverSpec, state: FailoverState, now: float, why: str) -> Result:
    state = replace(state, failed_failbacks=state.failed_failbacks + 1, successes=0)
    back_to = state.back_to
    if back_to is None:  # a failback from FAILED: the primary is the best there is
        state, _ = _failed(state, now, why, active=state.primary)
        message = f"{why}: {state.primary} is left started; a person must act"
        return state, [_notify(Kind.FAILBACK_FAILED, message, Severity.CRITICAL)]
    order = (back_to, *(u for u in spec.backup if u != back_to))
    automatic = not (_manual_mode(spec) or state.manual_hold)
    then = (
        f"the next failback waits {format_duration(failback_wait(spec, state))}"
        if automatic
        else _next_text(spec, state)
    )
    message = f"{why}: stopping {state.primary}, starting {back_to} again; {then}"
    notice = _notify(Kind.FAILBACK_FAILED, message)
    return _begin_failover(state, now, order, notice=notice, hold=state.manual_hold)


def _enter_primary(state: FailoverState, now: float, message: str) -> Result:
    fresh = replace(FailoverState.initial(state.primary), since=now)
    return fresh, [_notify(Kind.FAILBACK_DONE, message)]


# FAILED -------------------------------------------------------------------


def _failed_health(
    spec: FailoverSpec, state: FailoverState, event: Health, now: float
) -> Result | None:
    if event.unit != state.primary or not event.healthy:
        return None
    return _enter_primary(state, now, f"{state.primary} is healthy again and serves")


def _failed_manual_failback(
    spec: FailoverSpec, state: FailoverState, event: ManualFailback, now: float
) -> Result:
    return _begin_failback(spec, state, now, "asked by an operator")


# The table ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One row of the transition table: in `phase`, with `in_flight`, on `event`."""

    phase: Phase
    in_flight: tuple[Step, ...]
    event: type
    does: str  # for people: the table in the module docstring and docs/decisions.md
    handler: Handler


_NONE = (Step.NONE,)
_IDLE = (Step.NONE, Step.CHECK)

RULES: tuple[Rule, ...] = (
    Rule(
        Phase.PRIMARY,
        _NONE,
        LadderExhausted,
        "FAILING_OVER: stop the primary, then backups in order",
        _on_exhausted,
    ),
    Rule(
        Phase.PRIMARY,
        _NONE,
        PrimaryHardFailure,
        "count it; at after_failures (when set) as LadderExhausted",
        _on_hard_failure,
    ),
    Rule(Phase.PRIMARY, _NONE, PrimaryStable, "forget the counted hard failures", _on_stable),
    Rule(
        Phase.PRIMARY,
        _NONE,
        ManualFailover,
        "as LadderExhausted, the named backup first; manual_hold",
        _on_manual_failover,
    ),
    Rule(
        Phase.FAILING_OVER,
        (Step.STOP,),
        JobDone,
        "ok: start the next candidate, or the primary when none is left; failed: FAILED",
        _over_stopped,
    ),
    Rule(
        Phase.FAILING_OVER,
        (Step.START,),
        JobDone,
        "backup ok: JUDGE until settle; backup failed: stop it; the primary (none left): FAILED",
        _over_started,
    ),
    Rule(
        Phase.FAILING_OVER,
        (Step.JUDGE,),
        Health,
        "healthy: BACKUP; unhealthy: stop it, next candidate",
        _over_health,
    ),
    Rule(
        Phase.FAILING_OVER,
        (Step.JUDGE,),
        Tick,
        "settle over, not judged healthy: stop it, next candidate",
        _over_deadline,
    ),
    Rule(
        Phase.BACKUP,
        _NONE,
        Tick,
        "failback time: CHECK (RunCanRecover) or, without can_recover, FAILING_BACK",
        _backup_tick,
    ),
    Rule(
        Phase.BACKUP,
        (Step.CHECK,),
        Recoverable,
        "ok: FAILING_BACK; not: ask again after the wait",
        _recoverable,
    ),
    Rule(
        Phase.BACKUP,
        _IDLE,
        Health,
        "the serving backup unhealthy: FAILING_OVER to the other backups",
        _backup_health,
    ),
    Rule(
        Phase.BACKUP,
        _IDLE,
        ManualFailback,
        "FAILING_BACK now (clears manual_hold)",
        _backup_manual_failback,
    ),
    Rule(
        Phase.BACKUP,
        _IDLE,
        ManualFailover,
        "switch to the named backup (the serving one last); manual_hold",
        _backup_manual_failover,
    ),
    Rule(
        Phase.FAILING_BACK,
        (Step.STOP,),
        JobDone,
        "ok: start the primary; failed: BACKUP again (back off), or FAILED",
        _back_stopped,
    ),
    Rule(
        Phase.FAILING_BACK,
        (Step.START,),
        JobDone,
        "ok: JUDGE the primary until settle; failed: failback failed",
        _back_started,
    ),
    Rule(
        Phase.FAILING_BACK,
        (Step.JUDGE,),
        Health,
        "healthy: count; at successes PRIMARY; unhealthy: failback failed",
        _back_health,
    ),
    Rule(
        Phase.FAILING_BACK,
        (Step.JUDGE,),
        Tick,
        "settle over without enough successes: failback failed",
        _back_deadline,
    ),
    Rule(Phase.FAILED, _NONE, Health, "the primary healthy: PRIMARY", _failed_health),
    Rule(
        Phase.FAILED,
        _NONE,
        ManualFailover,
        "FAILING_OVER again, the named backup first",
        _on_manual_failover,
    ),
    Rule(
        Phase.FAILED,
        _NONE,
        ManualFailback,
        "FAILING_BACK: stop a started backup, start the primary, judge it",
        _failed_manual_failback,
    ),
)

_TABLE: dict[tuple[Phase, Step, type], Rule] = {
    (rule.phase, in_flight, rule.event): rule for rule in RULES for in_flight in rule.in_flight
}


def render_table(width: int = 100) -> str:
    """The transition table as Markdown, `width` characters at most (docstring, docs/decisions.md).

    A long "what happens" wraps onto continuation rows whose other cells are empty.
    """
    header = ("phase", "in flight", "event", "what happens")
    rows = [
        (
            rule.phase.value,
            ", ".join(s.value for s in rule.in_flight),
            rule.event.__name__,
            rule.does,
        )
        for rule in RULES
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    widths.append(width - sum(widths) - 13)  # the rest: 4 cells take sum + 13 characters

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(w) for cell, w in zip(cells, widths, strict=True)]
        return f"| {' | '.join(padded)} |"

    lines = [line(header), line(["-" * w for w in widths])]
    for *first, does in rows:
        for i, part in enumerate(textwrap.wrap(does, widths[3])):
            lines.append(line([*first, part] if i == 0 else ["", "", "", part]))
    return "\n".join(lines)


def step(spec: FailoverSpec, state: FailoverState, event: Event, now: float) -> Result:
    """Decide what `event` at `now` changes: the new state and the actions to perform."""
    rule = _TABLE.get((state.phase, state.in_flight, type(event)))
    if rule is not None:
        result = rule.handler(spec, state, event, now)
        if result is not None:
            return result
    if isinstance(event, ManualFailover | ManualFailback):
        what = "manual failover" if isinstance(event, ManualFailover) else "manual failback"
        return _refused(state, what, _describe(state))
    return state, []


def _describe(state: FailoverState) -> str:
    match state.phase:
        case Phase.PRIMARY:
            return f"{state.primary} already serves"
        case Phase.FAILING_OVER | Phase.FAILING_BACK:
            return f"{state.phase.value}: {state.in_flight.value} {state.unit} in flight"
    return f"not possible while {state.phase.value}"


def resume(state: FailoverState, now: float) -> Result:
    """After a daemon restart: ask again for the step in flight, safely.

    STOP and START are asked again (the unit before it was confirmed stopped, so a
    start never lands beside a running unit); JUDGE asks for its start again and
    judges afresh once it is done (a fresh settle window from `now` on); CHECK runs
    can_recover again. In BACKUP the primary is stopped again (its `JobDone` is
    ignored): something at boot may have started it behind the serving backup.
    """
    match state.in_flight, state.unit:
        case Step.STOP, str(unit):
            return state, [StopUnit(unit)]
        case Step.START | Step.JUDGE, str(unit):
            state = replace(state, in_flight=Step.START, deadline=None, successes=0)
            return state, [StartUnit(unit)]
        case Step.CHECK, _:
            return state, [RunCanRecover()]
    if state.phase is Phase.BACKUP:
        return state, [StopUnit(state.primary)]
    return state, []
