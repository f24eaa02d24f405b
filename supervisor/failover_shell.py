# A mixin whose methods annotate `self: Daemon`, so that their bodies are checked
# against the daemon they run in; mypy calls that annotation [misc] on a base class.
# mypy: disable-error-code="misc"
"""The shell around `failover.step`: performs its jobs and feeds their outcomes back.

Mixed into the daemon. For each policy with a `failover:` section it keeps a
`FailoverState`, watches the backups over D-Bus, judges the unit the machine is
judging (a unit's own policy and checks when it has one, otherwise its systemd
state), starts and stops units through the manager, runs `can_recover`, and
records, alerts and persists every step.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.core import failover
from supervisor.core.alerting import Severity
from supervisor.core.failover import (
    FailoverState,
    Health,
    JobDone,
    ManualFailback,
    ManualFailover,
    Notify,
    Record,
    Recoverable,
    RunCanRecover,
    StartUnit,
    Step,
    StopUnit,
    Tick,
    Verb,
)
from supervisor.core.guard import Verdict
from supervisor.core.guard import finished as guard_finished
from supervisor.core.guard import request as guard_request
from supervisor.core.health import Condition, UnitView, unit_condition
from supervisor.errors import BusError, JobFailed

if TYPE_CHECKING:
    from supervisor.daemon import Daemon
    from supervisor.unit_supervisor import UnitSupervisor

log = structlog.get_logger("host-supervisor")

JOB_TIMEOUT = 90.0
CAN_RECOVER_TIMEOUT = 60.0
JUDGE_EVERY = 1.0  # while judging a unit, its health is reported this often
_SEVERITY = {"info": Severity.INFO, "warning": Severity.WARNING, "critical": Severity.CRITICAL}
_PROBLEMS = {failover.Kind.FAILOVER_FAILED, failover.Kind.MANUAL_NEEDED}


class FailoverShell:
    """The daemon's failover duties (a mixin: `self` is the Daemon)."""

    def _failover_init(self: Daemon, stored: dict[str, dict[str, Any]]) -> None:
        self.failovers: dict[str, FailoverState] = {}
        self._failover_timers: dict[str, asyncio.TimerHandle] = {}
        self._judge_timers: dict[str, asyncio.TimerHandle] = {}
        for unit, supervisor in self.units.items():
            if supervisor.policy.failover is None:
                continue
            doc = stored.get(unit, {}).get("failover")
            state = FailoverState.from_dict(doc) if doc else FailoverState(primary=unit)
            self.failovers[unit] = state

    def _backups(self: Daemon) -> set[str]:
        return {
            backup
            for unit in self.failovers
            if (spec := self.units[unit].policy.failover) is not None
            for backup in spec.backup
        }

    async def _failover_start(self: Daemon) -> None:
        """Watch the backups, then take up each machine where it was left."""
        await asyncio.gather(*(self._watch_backup(b) for b in self._backups()))
        now = self.clock()
        for unit, state in list(self.failovers.items()):
            if state.phase is not failover.Phase.PRIMARY or state.in_flight is not Step.NONE:
                log.info("resuming failover", unit=unit, phase=state.phase.value)
            state, actions = failover.resume(state, now)
            self._failover_apply(unit, state, actions)

    async def _watch_backup(self: Daemon, unit: str) -> None:
        if unit in self.units:
            return  # it has a policy of its own: watched and judged like any unit
        try:
            snapshot = await self.manager.watch(unit)
        except BusError as exc:
            log.error("cannot watch backup unit", unit=unit, error=str(exc))
            return
        if snapshot.load_state == "not-found":
            referrers = [
                str(self.loaded.sources.get(primary, primary))
                for primary in self.failovers
                if (spec := self.units[primary].policy.failover) and unit in spec.backup
            ]
            log.error(
                "backup unit not found: a failover to it will fail",
                unit=unit,
                policy=", ".join(referrers),
            )
            self._history(None, "alert", f"backup unit {unit} not found ({', '.join(referrers)})")
        self._last_snapshot[unit] = snapshot

    # -- health of any unit the machines judge --------------------------------

    def _unit_healthy(self: Daemon, unit: str) -> bool | None:
        """Healthy, unhealthy, or None while not judgeable (starting, unknown)."""
        supervisor = self.units.get(unit)
        if supervisor is not None:
            condition = supervisor.condition
        elif (snapshot := self._last_snapshot.get(unit)) is not None:
            view = UnitView(
                snapshot.load_state, snapshot.active_state, snapshot.sub_state, snapshot.result
            )
            condition = unit_condition(view)
        else:
            return None
        if condition in (Condition.HEALTHY, Condition.DEGRADED):
            return True
        if condition in (Condition.UNHEALTHY, Condition.STOPPED, Condition.MISSING):
            return False
        return None

    def _failover_observe(self: Daemon, unit: str) -> None:
        """A unit's state changed: tell every machine that is judging it, at once."""
        for primary, state in list(self.failovers.items()):
            if _judged(state) == unit:
                if (timer := self._judge_timers.pop(primary, None)) is not None:
                    timer.cancel()
                self._arm_judge(primary, 0.0)

    def _arm_judge(self: Daemon, primary: str, delay: float) -> None:
        """Judge soon, from a timer: never from inside a step (no feedback loop)."""
        if primary not in self._judge_timers:
            self._judge_timers[primary] = asyncio.get_running_loop().call_later(
                delay, self._judge, primary
            )

    def _judge(self: Daemon, primary: str) -> None:
        self._judge_timers.pop(primary, None)
        state = self.failovers.get(primary)
        unit = _judged(state) if state is not None else None
        if unit is None:
            return
        healthy = self._unit_healthy(unit)
        if healthy is not None:
            self._failover_feed(primary, Health(unit, healthy))
        # Judge again: failback counts successive healthy judgements.
        self._arm_judge(primary, JUDGE_EVERY)

    # -- triggers from the primary's ladder and health ------------------------

    def _failover_trigger(self: Daemon, supervisor: UnitSupervisor, event: Any) -> None:
        if supervisor.unit in self.failovers:
            self._failover_feed(supervisor.unit, event)

    def failover_owns(self: Daemon, unit: str) -> bool:
        """Outside PRIMARY the failover machine, not the ladder, acts on the primary."""
        state = self.failovers.get(unit)
        return state is not None and not failover.repairs_allowed(state)

    # -- operator commands ---------------------------------------------------

    def manual_failover(self: Daemon, unit: str, to: str | None) -> str | None:
        """None when accepted, else why not."""
        refused = self._manual_guard(unit, f"failover (to {to or 'the first backup'})")
        if refused is None:
            self._failover_feed(unit, ManualFailover(to))
        return refused

    def manual_failback(self: Daemon, unit: str) -> str | None:
        refused = self._manual_guard(unit, "failback")
        if refused is None:
            self._failover_feed(unit, ManualFailback())
        return refused

    def _manual_guard(self: Daemon, unit: str, what: str) -> str | None:
        """An operator's failover passes the guard like a repair (pause, frozen budget,
        breaker, concurrency) and counts in the budget; only the protected rule is
        lifted: a person asked for it."""
        if unit not in self.failovers:
            return f"{unit} has no failover in its policy"
        now = self.clock()
        self.guard, decision, notices = guard_request(
            self.loaded.main.guard, self.guard, unit, allow_automatic=True, now=now
        )
        self._guard_changed(notices)
        if decision.verdict is not Verdict.ALLOW:
            self._history(unit, "operator", f"{what} refused: {decision.reason}")
            return decision.reason
        # The machine's own steps are not tracked as guard actions: release the slot.
        self.guard, notices = guard_finished(self.loaded.main.guard, self.guard, unit, True, now)
        self._guard_changed(notices)
        self._history(unit, "operator", f"{what} requested")
        return None

    # -- the machine ----------------------------------------------------------

    def _failover_feed(self: Daemon, unit: str, event: Any) -> None:
        state = self.failovers.get(unit)
        spec = self.units[unit].policy.failover if unit in self.units else None
        if state is None or spec is None:
            return
        state, actions = failover.step(spec, state, event, self.clock())
        self._failover_apply(unit, state, actions)

    def _failover_apply(self: Daemon, unit: str, state: FailoverState, actions: list[Any]) -> None:
        previous = self.failovers.get(unit)
        changed = state != previous
        self.failovers[unit] = state
        if changed:
            self._save(self.units[unit])  # before any job runs
        supervisor = self.units[unit]
        for action in actions:
            match action:
                case StopUnit(target):
                    self._spawn(self._failover_job(unit, target, Verb.STOP))
                case StartUnit(target):
                    self._spawn(self._failover_job(unit, target, Verb.START))
                case RunCanRecover():
                    self._spawn(self._can_recover(unit))
                case Notify(kind, severity, message):
                    level = {"critical": "error", "warning": "warning"}.get(severity, "info")
                    getattr(log, level)(message, unit=unit, action=kind.value)
                    self._history(unit, "failover", message, notice=kind.value)
                    self._alert(
                        supervisor,
                        kind.value,
                        _SEVERITY[severity],
                        f"{unit}: {kind.value.replace('-', ' ')}",
                        message,
                        problem=kind in _PROBLEMS,
                        resolves=(
                            ("failover-failed", "manual-needed")
                            if kind in (failover.Kind.FAILOVER_DONE, failover.Kind.FAILBACK_DONE)
                            else ()
                        ),
                    )
                case Record(message):
                    self._history(unit, "failover", message)
        self._schedule_failover(unit)
        judged = _judged(state)
        if judged is not None and (previous is None or _judged(previous) != judged):
            # A new unit to judge: at once. The same one: on the judge's own rhythm, or
            # every judgement would arm the next at once and the loop would spin.
            self._arm_judge(unit, 0.0)
        self._update_status()

    def _schedule_failover(self: Daemon, unit: str) -> None:
        if (old := self._failover_timers.pop(unit, None)) is not None:
            old.cancel()
        deadline = self.failovers[unit].deadline
        if deadline is None:
            return
        delay = max(0.0, deadline - self.clock())
        self._failover_timers[unit] = asyncio.get_running_loop().call_later(
            delay, self._failover_tick, unit
        )

    def _failover_tick(self: Daemon, unit: str) -> None:
        self._failover_timers.pop(unit, None)
        self._failover_feed(unit, Tick())

    async def _failover_job(self: Daemon, primary: str, target: str, verb: Verb) -> None:
        log.warning(f"{verb.value}ing unit for failover", unit=target, action=verb.value)
        if self.options.dry_run:
            self._failover_feed(primary, JobDone(target, verb, True, "dry run"))
            return
        try:
            if verb is Verb.START:
                snapshot = self._last_snapshot.get(target)
                if snapshot is not None and snapshot.active_state == "failed":
                    await self.manager.reset_failed(target)
                result = await self.manager.start(target, timeout=JOB_TIMEOUT)
            else:
                result = await self.manager.stop(target, timeout=JOB_TIMEOUT)
            ok, detail = result == "done", f"job {result}"
        except (BusError, JobFailed) as exc:
            ok, detail = False, str(exc)
        self._history(primary, "result", f"{verb.value} {target}: {detail}")
        self._failover_feed(primary, JobDone(target, verb, ok, detail))

    async def _can_recover(self: Daemon, unit: str) -> None:
        spec = self.units[unit].policy.failover
        if spec is None or spec.can_recover is None:
            self._failover_feed(unit, Recoverable(True, "no can_recover command"))
            return
        result = await self.ports.commands.run(spec.can_recover, unit, CAN_RECOVER_TIMEOUT)
        ok = result.status.value == "ok"
        self._history(unit, "failover", f"can_recover: {result.status.value}: {result.message}")
        self._failover_feed(unit, Recoverable(ok, result.message))

    def failover_status(self: Daemon, unit: str) -> dict[str, object] | None:
        state = self.failovers.get(unit)
        if state is None:
            return None
        return {
            "phase": state.phase.value,
            "serving": state.serving,
            "step": state.in_flight.value,
            "on": state.unit,
            "failback_in_s": (
                round(max(0.0, state.failback_at - self.clock()), 1)
                if state.failback_at is not None
                else None
            ),
        }


def _judged(state: FailoverState) -> str | None:
    """The unit whose health the machine wants to hear about now, if any."""
    if state.in_flight is Step.JUDGE:
        return state.unit
    if state.phase is failover.Phase.BACKUP and state.in_flight in (Step.NONE, Step.CHECK):
        return state.serving
    if state.phase is failover.Phase.FAILED:
        return state.primary
    return None
