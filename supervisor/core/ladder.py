"""The repair ladder inside the host reducer: ask, hold or act, judge the outcome.

When a unit's recovery machine asks for a rung, the request passes the holds in
`holds.HOLDS` (the first that applies wins, the guard last); an allowed rung is
recorded, alerted and handed to the shell as `RunRepair`, and its outcome comes
back as `RepairDone`. Operator verbs on the ladder (pause, resume, reset) live
here too.
"""

from __future__ import annotations

from supervisor.config.values import format_duration
from supervisor.core import actions as ev
from supervisor.core import cluster_host, failover_host, guard, incident_host, rollback_host, shadow
from supervisor.core.actions import PAUSE, Event
from supervisor.core.health import Condition, describe
from supervisor.core.holds import OBSERVE_RULE, Checked, hold_reason
from supervisor.core.notices import UNIT_PROBLEMS, AlertKind, MessageId, doing
from supervisor.core.reasons import cause, rung_fields
from supervisor.core.recovery import (
    Action,
    ActionFinished,
    Held,
    Notice,
    OperatorReset,
    Phase,
    Report,
    Resume,
    RunRung,
    Skipped,
)
from supervisor.core.recovery import Event as LadderEvent
from supervisor.core.rollback import reason as rollback_reason
from supervisor.core.rollback import redirect
from supervisor.core.state import Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import RepairResult, Severity

_NOTICE_ID = {
    Notice.RECOVERED: MessageId.REPAIRED,
    Notice.EXHAUSTED: MessageId.EXHAUSTED,
}

_NOTICE_LEVEL = {
    Notice.EXHAUSTED: "error",
    Notice.ACTION_FAILED: "warning",
    Notice.HELD: "warning",
    Notice.ROLLBACK: "warning",
}


def handle(tx: Tx, event: Event) -> None:
    match event:
        case ev.PreconditionsChecked(unit, reason, unsaved):
            if (state := tx.unit(unit)) is not None:
                _decide(tx, state, Checked(reason, unsaved))
        case ev.RepairDone():
            _repair_done(tx, event)
        case ev.OperatorPause(unit, caller, duration, reason):
            _pause(tx, unit, caller, duration, reason)
        case ev.OperatorResume(unit, caller):
            _resume(tx, unit, caller)
        case ev.OperatorReset(unit, caller):
            _reset(tx, unit, caller)


def feed(tx: Tx, state: UnitState, event: LadderEvent) -> None:
    perform(tx, state, state.feed(event, tx.now))


def perform(tx: Tx, state: UnitState, actions: list[Action]) -> None:
    for action in actions:
        match action:
            case RunRung():
                tx.actions.append(ev.CheckPreconditions(state.unit))
                state.asked = action
            case Report():
                _report(tx, state, action)
    tx.save(state)
    tx.schedule_ladder(state)


def redirect_asked(tx: Tx, unit: str) -> None:
    """The restore paths changed while a rung's preconditions are read: if that makes
    it a rollback (`core.rollback`), the rung asked for becomes restore before it runs."""
    state = tx.unit(unit)
    if state is None or state.asked is None:
        return
    spec = state.policy.recovery
    why = rollback_reason(spec, state.config_change, state.proven, tx.now)
    state.recovery, actions = redirect(spec, state.recovery, [state.asked], why)
    for action in actions:
        match action:
            case RunRung():
                state.asked = action
            case Report():
                _report(tx, state, action)
    tx.save(state)


def next_steps(tx: Tx, state: UnitState) -> str:
    recovery = state.policy.recovery
    if state.policy.mode == "observe":
        return (
            "Observe only (mode: observe): it is not repaired automatically; "
            "its policy's mode: act would let the daemon repair it."
        )
    if guard.is_protected(state.unit, tx.loaded.main.guard, state.policy.allow_automatic):
        return "It is protected: it is not repaired automatically; a person must act."
    rungs = ", ".join(recovery.ladder)
    return f"Next: the repair ladder ({rungs}), up to {recovery.max_attempts} attempts."


def _report(tx: Tx, state: UnitState, report: Report) -> None:
    level = _NOTICE_LEVEL.get(report.notice, "info")
    unit = state.unit
    message_id = _NOTICE_ID.get(report.notice)
    if message_id is not None:
        tx.log(
            level,
            report.notice.value,
            unit=unit,
            detail=report.detail,
            message_id=message_id.value,
        )
    else:
        tx.log(level, report.notice.value, unit=unit, detail=report.detail)
    kind = "alert" if report.notice is Notice.EXHAUSTED else "recovery"
    data: dict[str, object] = {"notice": report.notice.value}
    if report.notice is Notice.HELD:
        data["held_by"] = state.held_by
    elif report.notice is Notice.EXHAUSTED:
        data["attempts"] = state.recovery.attempts
        data["max_attempts"] = state.policy.recovery.max_attempts
        data["tried"] = list(state.recovery.ran)
    tx.history(unit, kind, f"{report.notice.value}: {report.detail}", **data)
    state.last_event = f"{report.notice.value}: {report.detail}"
    tx.status_changed()
    match report.notice:
        case Notice.ROLLBACK:
            tx.alert(
                state,
                AlertKind.ROLLBACK,
                Severity.WARNING,
                f"{unit}: rolling back to its last proven configuration",
                f"{unit} is {state.condition.value}; {report.detail}. The restored files are "
                "validated before the restart; the diff follows with the result.",
            )
        case Notice.ATTEMPTS_RESET:
            failover_host.primary_stable(tx, state)
        case Notice.EXHAUSTED:
            incident_host.symptom_exhausted(tx, state)
            failover_host.ladder_exhausted(tx, state, report.detail)
            cluster_host.exhausted(tx, state, report.detail)
            failover = state.policy.failover
            after = (
                f"Next: failover to {', '.join(failover.backup)}."
                if failover is not None
                else "Nothing more is tried automatically."
            )
            tx.alert(
                state,
                AlertKind.EXHAUSTED,
                Severity.CRITICAL,
                f"{unit}: repairs exhausted, a person must act",
                f"{report.detail}. {after} `host-supervisor reset {unit}` re-arms the ladder.",
                problem=True,
            )


# -- asking for a rung ----------------------------------------------------------------


def _decide(tx: Tx, state: UnitState, checked: Checked) -> None:
    """The shell has read the preconditions: hold, or record and run the rung."""
    action = state.asked
    if action is None:
        return
    state.asked = None
    unit = state.unit
    held = hold_reason(tx, state, checked)
    if held is not None:
        state.held_by, (reason, until) = held
        if state.held_by == OBSERVE_RULE:
            shadow.would_repair(tx, state, action, shadow.OBSERVE_NOTE)
        feed(tx, state, Held(reason, until))
        return
    attempt = f"{action.attempt}/{action.max_attempts}"
    if tx.dry_run:
        shadow.would_repair(tx, state, action, shadow.SHADOW_NOTE)
    else:
        tx.history(
            unit,
            "action",
            f"{action.rung} (attempt {attempt})",
            reason=cause(state),
            condition=state.condition.value,
            **rung_fields(state.policy.recovery, state.recovery, action),
        )
    tx.alert(
        state,
        AlertKind.ACTION.numbered(action.rung, action.attempt),
        Severity.INFO,
        f"{action.rung} {unit} (attempt {attempt})" + (" [shadow]" if tx.dry_run else ""),
        f"{unit} is {state.condition.value}; trying {action.rung}"
        + (f" ({shadow.SHADOW_NOTE})." if tx.dry_run else "."),
    )
    state.allowed_at = tx.now
    if tx.dry_run:
        # The guard counted it as if done, and the ladder goes on as after an action
        # that did not help (nothing changed): what a failure that persists would see.
        tx.log(
            "warning",
            f"would {action.rung} unit (shadow)",
            dry_run=True,
            unit=unit,
            action=action.rung,
            attempt=attempt,
        )
        guard_finished(tx, unit, True)
        feed(tx, state, ActionFinished(True, shadow.SHADOW_NOTE))
        return
    tx.log("warning", f"{doing(action.rung)} unit", unit=unit, action=action.rung, attempt=attempt)
    failed_now = state.view is not None and state.view.active_state == "failed"
    tx.actions.append(
        ev.RunRepair(unit, action.rung, action.attempt, action.max_attempts, failed_now)
    )


# -- the outcome ---------------------------------------------------------------------------


def _repair_done(tx: Tx, done: ev.RepairDone) -> None:
    unit = done.unit
    attempt = f"{done.attempt}/{done.max_attempts}"
    tx.history(
        unit,
        "result",
        f"{done.rung} {done.result}: {done.detail}",
        rung=str(done.rung),
        attempt=done.attempt,
        max_attempts=done.max_attempts,
        result=str(done.result),
        took_ms=done.took_ms,
    )
    state = tx.unit(unit)
    if state is not None:
        settle = state.policy.recovery.settle
        tx.alert(
            state,
            AlertKind.RESULT.numbered(done.rung, done.attempt),
            Severity.INFO if done.result is RepairResult.DONE else Severity.WARNING,
            f"{done.rung} {unit}: {done.result}",
            f"{done.detail}. Next: judged again after {settle:g}s."
            + rollback_host.result_text(done),
        )
    if done.result is RepairResult.SKIPPED:
        allowed_at = state.allowed_at if state is not None else None
        tx.guard = guard.cancelled(tx.guard, unit, allowed_at if allowed_at is not None else tx.now)
        tx.guard_changed([])
        release_waiting(tx)
    else:
        guard_finished(tx, unit, done.result is RepairResult.DONE)
    if state is None:
        return  # the policy was removed meanwhile
    if state.recovered_pending and state.condition in (Condition.HEALTHY, Condition.DEGRADED):
        announce_recovered(tx, state, after_result=True)
    state.recovered_pending = False
    rollback_host.restored(state, done)
    fields = {"unit": unit, "action": done.rung, "attempt": attempt}
    match done.result:
        case RepairResult.DONE:
            tx.repairs += 1
            tx.log(
                "info", f"{done.rung} finished", result=done.detail, took_ms=done.took_ms, **fields
            )
            feed(tx, state, ActionFinished(True, done.detail))
        case RepairResult.SKIPPED:
            tx.log("warning", f"{done.rung} skipped", result=done.detail, **fields)
            feed(tx, state, Skipped(done.detail))
        case _:
            tx.log(
                "error", f"{done.rung} failed", result=done.detail, took_ms=done.took_ms, **fields
            )
            feed(tx, state, ActionFinished(False, done.detail))


def announce_recovered(tx: Tx, state: UnitState, *, after_result: bool = False) -> None:
    """Tell people the unit is well again: only if they heard of the problem, once, and
    never before the result of the repair in flight (that comes first)."""
    unit = state.unit
    if unit not in tx.problem_alerted:
        return
    if state.recovery.phase is Phase.ACTING and not after_result:
        state.recovered_pending = True
        return
    state.recovered_pending = False
    tx.problem_alerted.discard(unit)
    tx.alert(
        state,
        AlertKind.RECOVERED,
        Severity.INFO,
        f"{unit} recovered",
        f"{unit} is {state.condition.value} again ({describe(state.view) if state.view else ''}).",
        resolves=UNIT_PROBLEMS,
    )


def guard_finished(tx: Tx, unit: str, ok: bool) -> None:
    tx.guard, notices = guard.finished(tx.loaded.main.guard, tx.guard, unit, ok, tx.now)
    tx.guard_changed(notices)
    release_waiting(tx)


def release_waiting(tx: Tx) -> None:
    """A slot is free: the units waiting for one may ask again, in order."""
    waiting, tx.waiting = tx.waiting, []
    for name in waiting:
        if (state := tx.unit(name)) is not None:
            feed(tx, state, Resume())


def resume_held_by_guard(tx: Tx) -> None:
    """The budget thawed: units the guard held without a retry time may ask again."""
    for name in list(tx.units):
        unit = tx.units[name]
        if unit.recovery.phase is Phase.HELD and unit.held_by == "guard":
            state = tx.unit(name)
            assert state is not None
            feed(tx, state, Resume())


def guard_tick(tx: Tx) -> None:
    tx.guard, notices = guard.tick(tx.loaded.main.guard, tx.guard, tx.now)
    tx.guard_changed(notices)


# -- operator verbs --------------------------------------------------------------------------


def _reset(tx: Tx, unit: str, caller: str) -> None:
    state = tx.unit(unit)
    if state is None:
        tx.actions.append(ev.Answer(f"no policy for unit {unit}"))
        return
    tx.log("info", "reset by operator", unit=unit, action="reset")
    tx.operator(unit, "reset: attempts and exhaustion forgotten", caller)
    feed(tx, state, OperatorReset())
    tx.actions.append(ev.Answer(None))


def _pause(tx: Tx, unit: str, caller: str, duration: float | None, reason: str) -> None:
    if unit not in tx.units:
        tx.actions.append(ev.Answer(f"no policy for unit {unit}"))
        return
    until = None if duration is None else tx.now + duration
    span = "" if duration is None else f" for {format_duration(duration)}"
    why = f"; reason: {reason}" if reason else ""
    tx.log(
        "info",
        "paused by operator: watching, not acting",
        unit=unit,
        action="pause",
        until=until,
        reason=reason or None,
    )
    tx.operator(unit, f"paused{span}: watched and alerted, not repaired{why}", caller)
    tx.guard = guard.pause(tx.guard, unit, until, reason)
    tx.set_timer((PAUSE, unit), until)
    tx.guard_changed([])
    tx.actions.append(ev.Answer(None))


def pause_timer(tx: Tx, unit: str) -> None:
    """A pause's end came: the unit is repaired again, as after `resume`."""
    if not guard.pause_expired(tx.guard, unit, tx.now):
        return  # resumed, or paused again with another end, since the timer was armed
    note = tx.guard.pause_note(unit)
    why = f" ({note.reason})" if note is not None and note.reason else ""
    tx.log("info", "pause ended: its time is up", unit=unit, action="resume")
    tx.history(unit, "operator", f"pause ended{why}: its time is up; repaired again if it fails")
    tx.guard = guard.resume(tx.guard, unit)
    tx.guard_changed([])
    if (state := tx.unit(unit)) is not None:
        feed(tx, state, Resume())


def arm_pause_timers(tx: Tx) -> None:
    """At start: the pauses the store kept end when they were meant to (at once if the
    daemon was down then)."""
    for unit, until in sorted(guard.pause_ends(tx.guard).items()):
        tx.set_timer((PAUSE, unit), until)


def _resume(tx: Tx, unit: str | None, caller: str) -> None:
    """Resume one unit, or with None every unit and a frozen automation."""
    if unit is not None and unit not in tx.units:
        tx.actions.append(ev.Answer(f"no policy for unit {unit}"))
        return
    if unit is None:
        tx.log("info", "resumed by operator: all units, and the repair budget", action="resume")
        tx.operator(None, "resume --all", caller)
        for paused in guard.pause_ends(tx.guard):
            tx.set_timer((PAUSE, paused), None)
        tx.guard, notices = guard.resume_all(tx.guard, tx.now)
        targets = list(tx.units)
    else:
        tx.log("info", "resumed by operator", unit=unit, action="resume")
        tx.operator(unit, "resumed", caller)
        tx.guard, notices = guard.resume(tx.guard, unit), []
        tx.set_timer((PAUSE, unit), None)
        targets = [unit]
    tx.guard_changed(notices)
    for name in targets:
        if (state := tx.unit(name)) is not None:
            feed(tx, state, Resume())
    tx.actions.append(ev.Answer(None))
