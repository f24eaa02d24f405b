"""Watching the units inside the host reducer: systemd's view and probe results
become each unit's condition, logged, recorded and alerted once per change; flap
detection samples them; a healthy unit arms its last-known-good snapshot."""

from __future__ import annotations

from typing import Any

from supervisor.core import cluster_host, failover_host, flapping, incident_host, ladder
from supervisor.core.actions import FLAPPING, GRACE, SNAPSHOT
from supervisor.core.flapping import FlapState
from supervisor.core.health import Condition, UnitView, describe, unit_condition
from supervisor.core.notices import AlertKind, MessageId
from supervisor.core.reasons import cause, check_fields
from supervisor.core.recovery import Phase, Resume
from supervisor.core.state import AlertText, Tx
from supervisor.core.unit import CheckChange, UnitState, Update
from supervisor.core.values import Severity, UnitSnapshot

FAILED_GRACE = 0.5  # how long a unit with its own Restart= may look failed before we act


def _systemd_may_restart(snapshot: UnitSnapshot) -> bool:
    """Failed, but with a Restart= of its own that has not given up (start limit)."""
    return (
        snapshot.active_state == "failed"
        and snapshot.restart not in ("", "no")
        and snapshot.result != "start-limit-hit"
    )


def on_unit_change(tx: Tx, snapshot: UnitSnapshot, *, after_grace: bool = False) -> None:
    unit = snapshot.name
    state = tx.unit(unit)
    tx.snapshots[unit] = snapshot
    if state is None:  # a backup without a policy of its own
        failover_host.observe(tx, unit)
        return
    if _systemd_may_restart(snapshot) and not after_grace:
        # systemd 252 shows a unit with its own Restart= as failed for a moment on its
        # way to auto-restart: judge it only if it is still failed after a grace.
        tx.arm_once((GRACE, unit), tx.now + FAILED_GRACE)
        return
    tx.set_timer((GRACE, unit), None)
    view = UnitView(snapshot.load_state, snapshot.active_state, snapshot.sub_state, snapshot.result)
    state.main_pid = snapshot.main_pid
    apply_update(tx, state, state.observe(view, tx.now), snapshot)
    failover_host.observe(tx, unit)


def on_result(tx: Tx, state: UnitState, index: int, result: Any) -> None:
    update = state.record(index, result, tx.now)
    if not update.changed:
        # Flap detection samples every check-in, as Nagios does (a changed condition is
        # sampled in apply_update).
        observe_flapping(tx, state)
    apply_update(tx, state, update)
    if update.changed:
        failover_host.observe(tx, state.unit)


def apply_update(
    tx: Tx, state: UnitState, update: Update, snapshot: UnitSnapshot | None = None
) -> None:
    unit = state.unit
    for change in update.check_changes:
        _log_check_change(tx, unit, change)
    if update.changed:
        if state.condition is Condition.UNHEALTHY:
            incident_host.unit_failed(tx, state)  # before its alert: it may be a symptom
        _log_transition(tx, state, update.previous, snapshot)
        if state.condition is not Condition.UNHEALTHY:
            incident_host.unit_changed(tx, state)
        observe_flapping(tx, state)
    if update.changed or update.check_changes:
        tx.status_changed()
    ladder.perform(tx, state, update.actions)


def _log_check_change(tx: Tx, unit: str, change: CheckChange) -> None:
    level = "info" if change.after.value in ("ok", "pending") else "warning"
    tx.log(
        level,
        "check state changed",
        unit=unit,
        check=change.check.name,
        before=change.before.value,
        after=change.after.value,
        critical=change.check.critical,
        message=change.result.message,
    )
    if change.after.value != "pending":
        tx.history(
            unit,
            "check",
            f"{change.check.name}: {change.before.value} -> {change.after.value}: "
            f"{change.result.message}",
            check=change.check.name,
            state=change.after.value,
            **check_fields(change),
        )


def _log_transition(
    tx: Tx, state: UnitState, previous: Condition, snapshot: UnitSnapshot | None
) -> None:
    unit, condition, view = state.unit, state.condition, state.view
    fields: dict[str, Any] = {"unit": unit, "state": describe(view) if view else ""}
    if snapshot is not None:
        fields["main_pid"] = snapshot.main_pid
    match condition:
        case Condition.UNHEALTHY if view and unit_condition(view) is Condition.UNHEALTHY:
            tx.log(
                "warning",
                "unit failed",
                action="detect",
                message_id=MessageId.DETECTED.value,
                **fields,
            )
            failover_host.primary_failed(tx, state, fields["state"])
            cluster_host.unhealthy(tx, state, fields["state"])
            tx.history(
                unit,
                "health",
                f"failed: {fields['state']}",
                condition="unhealthy",
                reason=cause(state),
            )
            tx.alert(
                state,
                AlertKind.UNHEALTHY,
                Severity.WARNING,
                f"{unit} failed ({view.result or view.active_state})",
                f"systemd reports {unit} as {fields['state']}. {ladder.next_steps(tx, state)}",
                problem=True,
            )
        case Condition.UNHEALTHY:
            failing = ",".join(state.failing_checks())
            tx.log(
                "warning",
                "unit unhealthy",
                action="detect",
                checks=failing,
                message_id=MessageId.DETECTED.value,
                **fields,
            )
            failover_host.primary_failed(tx, state, f"checks {failing}")
            cluster_host.unhealthy(tx, state, f"checks {failing}")
            tx.history(
                unit,
                "health",
                f"unhealthy: failing checks {failing}",
                condition="unhealthy",
                reason=cause(state),
            )
            messages = "; ".join(
                f"{check.name}: {result.message}"
                for check, result in zip(state.policy.checks, state.results, strict=True)
                if check.name in state.failing_checks() and result is not None
            )
            tx.alert(
                state,
                AlertKind.UNHEALTHY,
                Severity.WARNING,
                f"{unit} unhealthy: {failing}",
                f"Critical checks failing: {messages}. {ladder.next_steps(tx, state)}",
                problem=True,
            )
        case Condition.STOPPED if state.recovery.phase is Phase.ACTING:
            # The stop half of our own restart: not an operator's stop to respect.
            tx.log("info", "unit stopped by its repair in progress", **fields)
            tx.history(unit, "health", "stopped by its repair in progress", condition="stopped")
        case Condition.STOPPED if previous in (
            Condition.HEALTHY,
            Condition.DEGRADED,
            Condition.TRANSIENT,
            Condition.UNKNOWN,
        ):
            tx.log("info", "unit stopped cleanly; respecting the stop", action="none", **fields)
            tx.history(unit, "health", "stopped cleanly; not restarted", condition="stopped")
        case Condition.MISSING if previous is not Condition.UNKNOWN:
            tx.log("warning", "unit disappeared", **fields)
            tx.history(unit, "health", "disappeared", condition="missing")
        case Condition.HEALTHY if previous is Condition.MISSING:
            tx.log("info", "unit appeared", **fields)
            tx.history(unit, "health", "appeared", condition="healthy")
        case _:
            tx.log("info", "unit state", condition=condition.value, **fields)
            if previous is not Condition.UNKNOWN or condition is not Condition.HEALTHY:
                tx.history(unit, "health", condition.value, condition=condition.value)
    if condition in (Condition.HEALTHY, Condition.DEGRADED):
        arm_snapshot(tx, state)
        ladder.announce_recovered(tx, state)


def observe_flapping(tx: Tx, state: UnitState) -> None:
    condition = state.condition
    if condition not in (Condition.HEALTHY, Condition.DEGRADED, Condition.UNHEALTHY):
        return
    cfg = tx.loaded.main.guard.flapping
    healthy = condition is not Condition.UNHEALTHY
    flap = tx.flaps.get(state.unit, FlapState())
    tx.flaps[state.unit], change = flapping.observe(cfg, flap, healthy, tx.now)
    _flapping_changed(tx, state, change)


def expire_flapping(tx: Tx, unit: str) -> None:
    """Time passed: samples that left the window may end flapping, even for a unit
    that stopped changing (a failed unit runs no checks: nothing else would)."""
    state, flap = tx.unit(unit), tx.flaps.get(unit)
    if state is None or flap is None:
        return
    tx.flaps[unit], change = flapping.expire(tx.loaded.main.guard.flapping, flap, tx.now)
    _flapping_changed(tx, state, change)


def _flapping_changed(tx: Tx, state: UnitState, change: str | None) -> None:
    unit = state.unit
    tx.set_timer(
        (FLAPPING, unit), flapping.next_deadline(tx.loaded.main.guard.flapping, tx.flaps[unit])
    )
    if change == "started":
        tx.tell(
            state,
            "error",
            "unit is flapping; repairs paused until it settles",
            record="alert",
            recorded="flapping: repairs paused until it settles",
            alert=AlertText(
                AlertKind.FLAPPING,
                Severity.WARNING,
                f"{unit} is flapping",
                f"{unit} changes between healthy and unhealthy too often. Repairs are "
                "paused until it settles; it is still watched.",
                problem=True,
            ),
        )
    elif change == "stopped":
        tx.tell(
            state,
            "info",
            "unit stopped flapping; repairs resume",
            record="alert",
            recorded="no longer flapping: repairs resume",
            alert=AlertText(
                AlertKind.SETTLED,
                Severity.INFO,
                f"{unit} stopped flapping",
                "Repairs resume.",
                resolves=(AlertKind.FLAPPING,),
            ),
        )
        ladder.feed(tx, state, Resume())


# -- last-known-good snapshots ------------------------------------------------------------


def arm_snapshot(tx: Tx, state: UnitState) -> None:
    restore = state.policy.recovery.restore
    if restore is None or restore.source != "last-known-good":
        return
    tx.arm_once((SNAPSHOT, state.unit), tx.now + restore.snapshot_after)
