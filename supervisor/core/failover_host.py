"""Failover inside the host reducer: feeds `failover.step` and carries out its jobs.

For each policy with a `failover:` section it keeps a `FailoverState`, judges the
unit the machine is judging (a unit's own policy and checks when it has one,
otherwise its systemd state), asks the shell to start and stop units and to run
`can_recover`, and records, alerts and saves every step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.core import actions as ev
from supervisor.core import failover, guard, shadow
from supervisor.core.actions import FAILOVER, JUDGE, Event
from supervisor.core.failover import (
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
    Verb,
)
from supervisor.core.guard import Verdict
from supervisor.core.health import Condition, UnitView, unit_condition
from supervisor.core.notices import FAILOVER_PROBLEMS, AlertKind, MessageId, doing
from supervisor.core.state import AlertText, Tx
from supervisor.core.unit import UnitState

JUDGE_EVERY = 1.0  # while judging a unit, its health is reported this often

_DONE_IDS = {
    AlertKind.FAILOVER_DONE: MessageId.FAILED_OVER,
    AlertKind.FAILBACK_DONE: MessageId.FAILED_BACK,
}


def init(tx: Tx, stored: dict[str, dict[str, Any]]) -> None:
    for unit, state in tx.units.items():
        if state.policy.failover is None:
            continue
        doc = stored.get(unit, {}).get("failover")
        tx.failovers[unit] = FailoverState.from_dict(doc) if doc else FailoverState(primary=unit)


def policies_changed(tx: Tx, watched_backups: set[str]) -> None:
    """After a reload: a machine for every policy that has a `failover:` section now,
    none for the others, and every backup watched (and none that no policy names).
    `watched_backups` are the backups named before the reload."""
    for unit in list(tx.failovers):
        state = tx.units.get(unit)
        if state is not None and state.policy.failover is not None:
            continue
        fo = tx.failovers.pop(unit)
        tx.set_timer((FAILOVER, unit), None)
        tx.set_timer((JUDGE, unit), None)
        if fo.serving not in (None, unit):
            message = (
                f"failover section removed while {fo.serving} serves in place of {unit}: "
                f"nothing moves {unit} back automatically; start it and stop {fo.serving} by hand"
            )
            tx.log("warning", message, unit=unit)
            tx.history(unit, "failover", message)
        if (state := tx.unit(unit)) is not None:
            tx.save(state)
    gained = [u for u, s in tx.units.items() if s.policy.failover and u not in tx.failovers]
    for unit in gained:
        tx.failovers[unit] = FailoverState(primary=unit)
        tx.log("info", "failover armed by a reload", unit=unit)
        if (state := tx.unit(unit)) is not None:
            tx.save(state)
    now_backups = backups(tx)
    for backup in sorted(now_backups - watched_backups):
        if backup not in tx.units:
            tx.actions.append(ev.WatchBackup(backup))
    for backup in sorted(watched_backups - now_backups):
        if backup not in tx.units:
            tx.actions.append(ev.Unwatch(backup))
            tx.snapshots.pop(backup, None)


def backups(tx: Tx) -> set[str]:
    """Every backup unit named by a policy with a failover machine."""
    return {
        backup
        for unit in tx.failovers
        if unit in tx.units and (spec := tx.units[unit].policy.failover) is not None
        for backup in spec.backup
    }


def start(tx: Tx) -> None:
    """Every backup is watched: take up each machine where it was left."""
    for unit, state in list(tx.failovers.items()):
        if state.phase is not failover.Phase.PRIMARY or state.in_flight is not Step.NONE:
            tx.log("info", "resuming failover", unit=unit, phase=state.phase.value)
        state, actions = failover.resume(state, tx.now)
        _apply(tx, unit, state, actions)
    early, tx.early = tx.early, []
    for unit, event in early:
        _feed(tx, unit, event)


def handle(tx: Tx, event: Event) -> None:
    match event:
        case ev.FailoverJobDone(primary, target, verb, ok, detail):
            if detail == shadow.NOT_RUN:
                shadow.would_switch(tx, primary, verb.value, target)
            elif detail != "dry run":
                tx.history(
                    primary,
                    "result",
                    f"{verb.value} {target}: {detail}",
                    failover=verb.value,
                    target=target,
                    result="done" if ok else "failed",
                )
            _feed(tx, primary, JobDone(target, verb, ok, detail))
        case ev.CanRecoverDone(unit, ok, status, message):
            tx.history(unit, "failover", f"can_recover: {status}: {message}")
            _feed(tx, unit, Recoverable(ok, message))
        case ev.BackupWatched(snapshot, unit, error):
            _backup_watched(tx, unit, snapshot, error)
        case ev.OperatorFailover(unit, to, caller):
            refused = _not_a_backup(tx, unit, to, caller) or _manual_guard(
                tx, unit, f"failover (to {to or 'the first backup'})", caller
            )
            if refused is None:
                _feed(tx, unit, ManualFailover(to))
            tx.actions.append(ev.Answer(refused))
        case ev.OperatorFailback(unit, caller):
            refused = _manual_guard(tx, unit, "failback", caller)
            if refused is None:
                _feed(tx, unit, ManualFailback())
            tx.actions.append(ev.Answer(refused))


def _backup_watched(tx: Tx, unit: str, snapshot: Any, error: str) -> None:
    if snapshot is None:
        tx.log("error", "cannot watch backup unit", unit=unit, error=error)
        return
    if snapshot.load_state == "not-found":
        referrers = [
            str(tx.loaded.sources.get(primary, primary))
            for primary in tx.failovers
            if (spec := tx.units[primary].policy.failover) and unit in spec.backup
        ]
        tx.log(
            "error",
            "backup unit not found: a failover to it will fail",
            unit=unit,
            policy=", ".join(referrers),
        )
        tx.history(None, "alert", f"backup unit {unit} not found ({', '.join(referrers)})")
    tx.snapshots[unit] = snapshot


def timer(tx: Tx, machine: str, primary: str) -> None:
    if machine == FAILOVER:
        _feed(tx, primary, failover.Tick())
    else:
        _judge(tx, primary)


# -- health of any unit the machines judge ------------------------------------------------


def _unit_healthy(tx: Tx, unit: str) -> bool | None:
    """Healthy, unhealthy, or None while not judgeable (starting, unknown)."""
    state = tx.units.get(unit)
    if state is not None:
        condition = state.condition
    elif (snapshot := tx.snapshots.get(unit)) is not None:
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


def observe(tx: Tx, unit: str) -> None:
    """A unit's state changed. Bad news reaches every machine judging it at once; good
    news waits for the judge's rhythm, so that a failback's `successes` are judgements
    a second apart, not one probe's result counted once per signal it caused."""
    if _unit_healthy(tx, unit) is not False:
        return
    for primary, state in list(tx.failovers.items()):
        if _judged(state) == unit:
            tx.set_timer((JUDGE, primary), None)
            _arm_judge(tx, primary, 0.0)


def _arm_judge(tx: Tx, primary: str, delay: float) -> None:
    """Judge soon, from a timer: never from inside a step (no feedback loop)."""
    tx.arm_once((JUDGE, primary), tx.now + delay)


def _judge(tx: Tx, primary: str) -> None:
    state = tx.failovers.get(primary)
    unit = _judged(state) if state is not None else None
    if unit is None:
        return
    healthy = _unit_healthy(tx, unit)
    if healthy is not None:
        _feed(tx, primary, Health(unit, healthy))
    # Judge again: failback counts successive healthy judgements.
    _arm_judge(tx, primary, JUDGE_EVERY)


# -- triggers from the primary's ladder and health ------------------------------------------


def primary_failed(tx: Tx, state: UnitState, reason: str) -> None:
    if state.unit in tx.failovers:
        _feed(tx, state.unit, PrimaryHardFailure(reason))


def primary_stable(tx: Tx, state: UnitState) -> None:
    if state.unit in tx.failovers:
        _feed(tx, state.unit, PrimaryStable())


def ladder_exhausted(tx: Tx, state: UnitState, detail: str) -> None:
    if state.unit in tx.failovers:
        _feed(tx, state.unit, LadderExhausted(detail))


def owns(tx: Tx, unit: str) -> bool:
    """Outside PRIMARY the failover machine, not the ladder, acts on the primary."""
    state = tx.failovers.get(unit)
    return state is not None and not failover.repairs_allowed(state)


# -- operator commands -------------------------------------------------------------------


def _not_a_backup(tx: Tx, unit: str, to: str | None, caller: str) -> str | None:
    """A failover to a unit that is not one of the policy's backups is refused before
    the guard is asked: it would otherwise count in the repair budget for nothing."""
    state = tx.units.get(unit)
    spec = state.policy.failover if state is not None else None
    if to is None or spec is None or to in spec.backup:
        return None
    refused = f"{to} is not a backup of {unit} (backups: {', '.join(spec.backup)})"
    tx.operator(unit, f"failover refused: {refused}", caller)
    return refused


def _manual_guard(tx: Tx, unit: str, what: str, caller: str) -> str | None:
    """An operator's failover passes the guard (pause, frozen budget, breaker,
    concurrency) and counts in the budget, as an operator's action: not protected
    (a person asked), and no evidence for or against the circuit breaker."""
    if unit not in tx.failovers:
        return f"{unit} has no failover in its policy"
    tx.guard, decision, notices = guard.operator_request(
        tx.loaded.main.guard, tx.guard, unit, now=tx.now
    )
    tx.guard_changed(notices)
    if decision.verdict is not Verdict.ALLOW:
        tx.operator(unit, f"{what} refused: {decision.reason}", caller)
        return decision.reason
    tx.operator(unit, f"{what} requested", caller)
    return None


# -- the machine -----------------------------------------------------------------------------


def _feed(tx: Tx, unit: str, event: Any) -> None:
    if not tx.started:
        # Until `start` has taken each machine up where the last process left it, an
        # event (a timer that fell due while the daemon was down, the ladder giving up
        # during the start) would act on a machine that does not know its own step in
        # flight: it waits, and is fed right after.
        tx.early.append((unit, event))
        return
    state = tx.failovers.get(unit)
    spec = tx.units[unit].policy.failover if unit in tx.units else None
    if state is None or spec is None:
        return
    state, actions = failover.step(spec, state, event, tx.now)
    _apply(tx, unit, state, actions)


def _apply(tx: Tx, unit: str, state: FailoverState, actions: list[Any]) -> None:
    previous = tx.failovers.get(unit)
    changed = state != previous
    tx.failovers[unit] = state
    primary = tx.unit(unit)
    assert primary is not None
    if changed:
        tx.save(primary)  # before any job runs
    for action in actions:
        match action:
            case StopUnit(target):
                _job(tx, unit, target, Verb.STOP)
            case StartUnit(target):
                _job(tx, unit, target, Verb.START)
            case RunCanRecover():
                spec = primary.policy.failover
                if spec is None or spec.can_recover is None:
                    tx.later(lambda: _feed(tx, unit, Recoverable(True, "no can_recover command")))
                else:
                    tx.actions.append(ev.RunCanRecover(unit, spec.can_recover))
            case Notify(kind, severity, message):
                done = kind in (AlertKind.FAILOVER_DONE, AlertKind.FAILBACK_DONE)
                tx.tell(
                    primary,
                    severity.log_level,
                    message,
                    record="failover",
                    alert=AlertText(
                        kind,
                        severity,
                        f"{unit}: {kind.value.replace('-', ' ')}",
                        message,
                        problem=kind in FAILOVER_PROBLEMS,
                        resolves=FAILOVER_PROBLEMS if done else (),
                    ),
                    message_id=_DONE_IDS.get(kind),
                    action=kind.value,
                )
            case Record(message):
                tx.history(unit, "failover", message)
    tx.set_timer((FAILOVER, unit), state.deadline)
    judged = _judged(state)
    if judged is not None and (previous is None or _judged(previous) != judged):
        # A new unit to judge: at once. The same one: on the judge's own rhythm, or every
        # judgement would arm the next at once and the loop would spin.
        _arm_judge(tx, unit, 0.0)
    tx.status_changed()


def _job(tx: Tx, primary: str, target: str, verb: Verb) -> None:
    tx.log("warning", f"{doing(verb.value)} unit for failover", unit=target, action=verb.value)
    snapshot = tx.snapshots.get(target)
    reset_first = verb is Verb.START and snapshot is not None and snapshot.active_state == "failed"
    tx.actions.append(ev.RunFailoverJob(primary, target, verb, reset_first))


def status(
    failovers: Mapping[str, FailoverState], unit: str, now: float
) -> dict[str, object] | None:
    """A failover machine's state as `status` shows it; None without failover."""
    state = failovers.get(unit)
    if state is None:
        return None
    return {
        "phase": state.phase.value,
        "serving": state.serving,
        "step": state.in_flight.value,
        "on": state.unit,
        "failback_in_s": (
            round(max(0.0, state.failback_at - now), 1) if state.failback_at is not None else None
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
