"""Health: what a unit's systemd state and its check results mean. Pure, no I/O.

The D-Bus snapshot of a unit is reduced to one `Condition`. Only `UNHEALTHY`
starts or continues a repair; `STOPPED` is an operator's (or a clean) stop that
we respect the way systemd's `Restart=on-failure` does; `TRANSIENT` covers the
moments when systemd itself is busy with the unit (starting, stopping, or
about to restart it under its own `Restart=`), which we leave alone.

Each check's results go through thresholds (`record`): `failures` bad results in a
row make the check hard-failed, `successes` good ones make it healthy again, and
bad results inside the unit's `start_period` are not counted. A unit whose systemd
state is healthy is then unhealthy when a critical check is hard CRITICAL,
degraded when any check is hard-failed otherwise, unknown while no check has
reported since the unit (re)started, and healthy otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from supervisor.core.values import Status


class Condition(enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    STOPPED = "stopped"
    TRANSIENT = "transient"
    MISSING = "missing"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class UnitView:
    """The part of a unit's systemd state that health decisions read."""

    load_state: str
    active_state: str
    sub_state: str
    result: str


_MISSING_LOAD_STATES = frozenset({"not-found", "masked", "error", "bad-setting"})


def unit_condition(view: UnitView) -> Condition:
    """Classify a unit from its systemd states alone."""
    if view.load_state in _MISSING_LOAD_STATES:
        return Condition.MISSING
    match view.active_state:
        case "active" | "reloading":
            return Condition.HEALTHY
        case "failed":
            return Condition.UNHEALTHY
        case "inactive":
            # A service's Result stays at its failure until the next start; an
            # inactive unit whose last run did not succeed was not stopped cleanly.
            if view.result in ("", "success"):
                return Condition.STOPPED
            return Condition.UNHEALTHY
        case "activating" | "deactivating":
            return Condition.TRANSIENT
        case _:
            return Condition.UNKNOWN


def describe(view: UnitView) -> str:
    """A short human description, e.g. `failed/failed (signal)`."""
    text = f"{view.active_state or '?'}/{view.sub_state or '?'}"
    if view.result and view.result != "success":
        text += f" ({view.result})"
    return text


# -- checks ------------------------------------------------------------------


class HardState(enum.Enum):
    """A check's state after thresholds; PENDING until its first counted result."""

    PENDING = "pending"
    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


_HARD_OF = {
    Status.OK: HardState.OK,
    Status.WARNING: HardState.WARNING,
    Status.CRITICAL: HardState.CRITICAL,
    Status.UNKNOWN: HardState.UNKNOWN,
}
_BAD = (Status.WARNING, Status.CRITICAL)


class Thresholds(Protocol):
    """A check's thresholds (satisfied by `config.Check`)."""

    @property
    def failures(self) -> int: ...
    @property
    def successes(self) -> int: ...
    @property
    def start_period(self) -> float: ...


@dataclass(frozen=True)
class CheckHealth:
    hard: HardState = HardState.PENDING
    streak_of: Status | None = None  # the kind of result the streak counts (OK, bad, UNKNOWN)
    streak: int = 0
    last: Status | None = None

    @property
    def soft(self) -> bool:
        """The latest result disagrees with the hard state (a threshold is being counted)."""
        return self.last is not None and self.hard is not _HARD_OF[self.last]


def _kind(status: Status) -> Status:
    return Status.CRITICAL if status in _BAD else status


def record(
    thresholds: Thresholds,
    state: CheckHealth,
    status: Status,
    now: float,
    started_at: float | None,
) -> CheckHealth:
    """Apply one result. `started_at` is when the unit last became active."""
    in_start_period = started_at is not None and now < started_at + thresholds.start_period
    if status is not Status.OK and in_start_period:
        return replace(state, last=status)
    kind = _kind(status)
    streak = state.streak + 1 if state.streak_of is kind else 1
    hard = state.hard
    if status is Status.OK:
        if hard in (HardState.PENDING, HardState.OK) or streak >= thresholds.successes:
            hard = HardState.OK
    elif status in _BAD:
        if hard in (HardState.WARNING, HardState.CRITICAL) or streak >= thresholds.failures:
            hard = _HARD_OF[status]
    elif streak >= thresholds.failures:
        hard = HardState.UNKNOWN
    return CheckHealth(hard=hard, streak_of=kind, streak=streak, last=status)


def unit_health(condition: Condition, checks: Iterable[tuple[bool, HardState]]) -> Condition:
    """Combine systemd's view with the checks' hard states, `(critical, hard)` each."""
    if condition is not Condition.HEALTHY:
        return condition
    states = list(checks)
    if not states:
        return Condition.HEALTHY
    if any(critical and hard is HardState.CRITICAL for critical, hard in states):
        return Condition.UNHEALTHY
    if any(hard in (HardState.WARNING, HardState.CRITICAL) for _, hard in states):
        return Condition.DEGRADED
    if all(hard is HardState.PENDING for _, hard in states):
        return Condition.UNKNOWN
    return Condition.HEALTHY


# -- when a check runs next ---------------------------------------------------------


class Schedule(Protocol):
    """A check's schedule (satisfied by `config.Check`)."""

    @property
    def interval(self) -> float: ...
    @property
    def confirm_interval(self) -> float | None: ...


def confirming(state: CheckHealth) -> bool:
    """A failure is being counted toward `failures`: the latest result is bad (or
    UNKNOWN), counted (not inside the start period), and not yet the hard state."""
    last = state.last
    return (
        last is not None
        and last is not Status.OK
        and state.streak_of is _kind(last)
        and state.hard is not _HARD_OF[last]
    )


def next_run(schedule: Schedule, state: CheckHealth, due: float, now: float) -> float:
    """When a check whose run was due at `due` runs next, its result recorded in `state`
    at `now`. Fixed-rate: `due + interval`, or `now` if the run outlasted its interval
    (once, not a burst). With a `confirm_interval`, while a failure is being confirmed
    (`confirming`): `now + confirm_interval`, unless the regular time comes first."""
    regular = due + schedule.interval
    confirm = schedule.confirm_interval
    if confirm is not None and confirming(state):
        regular = min(regular, now + confirm)
    return regular if regular > now else now
