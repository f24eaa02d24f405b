"""One supervised unit's state: its policy, what we last saw of it, its checks and
its ladder.

`observe` (a systemd snapshot) and `record` (a probe's result) update the checks'
thresholds and the unit's condition and feed the recovery machine. The host
reducer works on a `copy()` and never changes the state it was given, so a
`UnitState` inside a `HostState` is never changed in place. Nothing here does I/O
or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.checks.result import CheckResult, ProbeContext
from supervisor.checks.unit import judge
from supervisor.config import Check, Policy, UnitProbe
from supervisor.core.health import (
    CheckHealth,
    Condition,
    HardState,
    UnitView,
    describe,
    record,
    unit_condition,
    unit_health,
)
from supervisor.core.recovery import Action, Event, Observed, RecoveryState, RunRung, step
from supervisor.core.rollback import ConfigChange, redirect, seen_start
from supervisor.core.rollback import reason as rollback_reason

RUNNING_STATES = ("active", "reloading")


@dataclass(frozen=True)
class CheckChange:
    """A check's hard state changed (logged; later alerted)."""

    check: Check
    before: HardState
    after: HardState
    result: CheckResult


@dataclass
class Update:
    """What one observation or result changed, for the shell to log and act on."""

    previous: Condition
    condition: Condition
    actions: list[Action] = field(default_factory=list)
    check_changes: list[CheckChange] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.previous is not self.condition


@dataclass
class UnitState:
    policy: Policy
    view: UnitView | None = None
    condition: Condition = Condition.UNKNOWN
    recovery: RecoveryState = field(default_factory=RecoveryState)
    last_event: str = ""
    started_at: float | None = None
    main_pid: int = 0
    checks: list[CheckHealth] = field(default_factory=list)
    results: list[CheckResult | None] = field(default_factory=list)
    runs: list[int] = field(default_factory=list)
    saved: object = None  # what was last written to the store (the reducer compares it)
    asked: RunRung | None = None  # the rung asked for, while its preconditions are read
    allowed_at: float | None = None  # when the guard allowed the action in flight
    held_by: str = ""  # the hold rule that held the last repair asked for
    recovered_pending: bool = False  # healthy again while its repair was in flight
    applying_since: float | None = None  # a start or reload under way began then
    applied_at: float | None = None  # the last successful start or reload began then
    known_good: str = ""  # which snapshot a restore would use, and why
    proven: bool = False  # a proven snapshot exists: a rollback may restore it
    config_change: ConfigChange | None = None  # the latest change to the restore paths
    _context: ProbeContext | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._reset_checks()
        self.runs = [0 for _ in self.policy.checks]

    def copy(self) -> UnitState:
        """A copy to change, sharing nothing mutable with this one."""
        # Not dataclasses.replace (__post_init__ would reset the checks), nor copy.copy
        # (a tenth of a probe result's cost at 1,000 units): the fields, shallow.
        new = object.__new__(UnitState)
        new.__dict__.update(self.__dict__)
        new.checks, new.results, new.runs = list(self.checks), list(self.results), list(self.runs)
        return new

    @property
    def unit(self) -> str:
        return self.policy.unit

    @property
    def running(self) -> bool:
        return self.view is not None and self.view.active_state in RUNNING_STATES

    def set_policy(self, policy: Policy) -> None:
        """A reload: keep the ladder's state; start the checks afresh if they changed."""
        changed = policy.checks != self.policy.checks
        self.policy = policy
        if changed:
            self._reset_checks()
            self.runs = [0 for _ in self.policy.checks]

    def observe(self, view: UnitView, now: float) -> Update:
        """Record a new systemd view of the unit."""
        was_running = self.running
        self._track_applied(view.active_state, now)
        self.view = view
        if self.running and not was_running:
            # A (re)started unit is judged afresh, from its start period on.
            self.started_at = now
            self._reset_checks()
        changes = [
            change
            for index, check in enumerate(self.policy.checks)
            if isinstance(check.probe, UnitProbe)
            for change in self._record_unit_check(index, check.probe, now)
        ]
        update = self._reassess(now)
        update.check_changes = changes
        if update.changed:
            self.last_event = f"{describe(view)} -> {self.condition.value}"
        return update

    def record(self, index: int, result: CheckResult, now: float) -> Update:
        """Record a probe's result for check number `index` of the policy."""
        change = self._record(index, result, now)
        if change is None:  # the unit's health depends on hard states only
            return Update(self.condition, self.condition)
        update = self._reassess(now)
        update.check_changes = [change]
        self.last_event = f"check {change.check.name}: {change.after.value}: {result.message}"
        return update

    def _track_applied(self, active: str, now: float) -> None:
        """When the files the unit runs with were last applied: a start or reload that
        began at `applying_since` and succeeded. Unknown (None) for a unit first seen
        already running: it may run with files older than those on disk."""
        before = self.view.active_state if self.view is not None else None
        if active == before:
            return
        if active in ("activating", "reloading"):
            self.applying_since = now
            if active == "activating":
                self.config_change = seen_start(self.config_change, now)
        elif active == "active" and before is not None:
            began = self.applying_since if before in ("activating", "reloading") else None
            self.applied_at = began if began is not None else now
            self.config_change = seen_start(self.config_change, self.applied_at)
            self.applying_since = None
        elif active in ("failed", "inactive"):
            self.applying_since = None

    @property
    def context(self) -> ProbeContext:
        """What probes may know of the unit from systemd; rebuilt only when it changes."""
        active_state = self.view.active_state if self.view is not None else ""
        cached = self._context
        if (
            cached is None
            or cached.main_pid != (self.main_pid or None)
            or cached.active_state != active_state
        ):
            cached = self._context = ProbeContext(
                unit=self.unit, main_pid=self.main_pid, active_state=active_state
            )
        return cached

    def feed(self, event: Event, now: float) -> list[Action]:
        """Step the ladder; a rung it asks for may become a rollback (`core.rollback`)."""
        spec = self.policy.recovery
        self.recovery, actions = step(spec, self.recovery, event, now)
        if any(isinstance(action, RunRung) for action in actions):
            why = rollback_reason(spec, self.config_change, self.proven, now)
            self.recovery, actions = redirect(spec, self.recovery, actions, why)
        return actions

    @property
    def deadline(self) -> float | None:
        return self.recovery.deadline

    def failing_checks(self) -> list[str]:
        """Names of the critical checks that are hard CRITICAL."""
        return [
            check.name
            for check, state in zip(self.policy.checks, self.checks, strict=True)
            if check.critical and state.hard is HardState.CRITICAL
        ]

    def check_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for state in self.checks:
            counts[state.hard.value] = counts.get(state.hard.value, 0) + 1
        return counts

    # -- internals ---------------------------------------------------------

    def _reset_checks(self) -> None:
        self.checks = [CheckHealth() for _ in self.policy.checks]
        self.results = [None for _ in self.policy.checks]

    def _record_unit_check(self, index: int, probe: UnitProbe, now: float) -> list[CheckChange]:
        assert self.view is not None
        status, message = judge(probe, self.unit, self.view.active_state)
        change = self._record(index, CheckResult(status, message, 0.0), now)
        return [change] if change is not None else []

    def _record(self, index: int, result: CheckResult, now: float) -> CheckChange | None:
        check = self.policy.checks[index]
        before = self.checks[index]
        after = record(check, before, result.status, now, self.started_at)
        self.checks[index] = after
        self.results[index] = result
        self.runs[index] += 1
        if after.hard is before.hard:
            return None
        return CheckChange(check, before.hard, after.hard, result)

    def _reassess(self, now: float) -> Update:
        previous = self.condition
        base = unit_condition(self.view) if self.view is not None else Condition.UNKNOWN
        self.condition = unit_health(
            base,
            [
                (check.critical, state.hard)
                for check, state in zip(self.policy.checks, self.checks, strict=True)
            ],
        )
        update = Update(previous, self.condition)
        if update.changed:
            update.actions = self.feed(Observed(self.condition), now)
        return update
