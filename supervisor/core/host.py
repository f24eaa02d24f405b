"""The host reducer: `step(HostState, Event, now) -> (HostState, list[Action])`.

One pure function for the whole host. It composes the per-unit machines (health,
recovery, flapping, failover) with the host-wide guard, and turns what they decide
into actions for the shell: systemd jobs, repairs, history, alerts, saved state and
timers. It reads no clock and does no I/O; the shell performs every action and
feeds its outcome back as an event.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from supervisor.config import LoadedConfig, UnitProbe
from supervisor.core import actions as ev
from supervisor.core import cluster_host, failover_host, holds, incident_host, ladder, rollback_host
from supervisor.core.actions import (
    LADDER,
    SNAPSHOT,
    Action,
    Event,
)
from supervisor.core.failover import FailoverState
from supervisor.core.guard import GuardState
from supervisor.core.health import Condition
from supervisor.core.notices import AlertKind
from supervisor.core.observe import arm_snapshot, expire_flapping, on_result, on_unit_change
from supervisor.core.recovery import ActionFinished, Phase, RecoveryState, Resume, Tick
from supervisor.core.recovery import step as recovery_step
from supervisor.core.rollback import ConfigChange
from supervisor.core.state import HostState, Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import Severity


def initial(
    loaded: LoadedConfig,
    stored_units: dict[str, dict[str, Any]],
    stored_guard: dict[str, Any],
    *,
    hostname: str,
    dry_run: bool,
    now: float,
) -> tuple[HostState, list[Action]]:
    """The state a daemon starts from: its policies, and what the store kept."""
    # Actions in flight died with the previous process: nothing is running now.
    guard_state = dataclasses.replace(GuardState.from_dict(stored_guard), running=frozenset())
    state = HostState(loaded=loaded, hostname=hostname, dry_run=dry_run, guard=guard_state)
    tx = Tx(state, now)
    for policy in loaded.policies.values():
        tx.add_unit(policy)
    _resume_stored(tx, stored_units)
    failover_host.init(tx, stored_units)
    cluster_host.init(tx)
    return tx.freeze(), tx.actions


def _resume_stored(tx: Tx, stored: dict[str, dict[str, Any]]) -> None:
    """Take up each unit's ladder where the previous process left it."""
    for unit in list(tx.units):
        doc = stored.get(unit)
        if doc is None or "recovery" not in doc:
            continue
        state = tx.unit(unit)
        assert state is not None
        recovery = RecoveryState.from_dict(doc["recovery"])
        if recovery.phase is Phase.ACTING:
            # The previous process died during the action: it was performed (or not),
            # but never again: judge it after settle like any other.
            recovery, _ = recovery_step(
                state.policy.recovery, recovery, ActionFinished(True), tx.now
            )
        state.recovery = dataclasses.replace(recovery, condition=Condition.UNKNOWN)
        if "config_change" in doc:
            state.config_change = ConfigChange.from_dict(doc["config_change"])
        tx.log(
            "info",
            "resumed stored state",
            unit=unit,
            phase=recovery.phase.value,
            attempts=recovery.attempts,
            next_in_s=round(recovery.deadline - tx.now, 1) if recovery.deadline else None,
        )


def checked_unit_doc(unit: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A unit's stored document, once its ladder and failover states parse (ValueError,
    TypeError or KeyError if not: the store then discards it and the unit starts fresh)."""
    if "recovery" in doc:
        RecoveryState.from_dict(doc["recovery"])
    if "failover" in doc:
        FailoverState.from_dict(doc["failover"])
    if "config_change" in doc:
        ConfigChange.from_dict(doc["config_change"])
    return doc


def checked_guard_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """The guard's stored document, once it parses."""
    GuardState.from_dict(doc)
    return doc


def step(state: HostState, event: Event, now: float) -> tuple[HostState, list[Action]]:
    """Apply one event; return the new state and what the shell must do."""
    tx = Tx(state, now)
    _handle(tx, event)
    if tx.thawed:
        ladder.resume_held_by_guard(tx)
    tx.drain()
    return tx.freeze(), tx.actions


def _handle(tx: Tx, event: Event) -> None:
    match event:
        case ev.UnitChanged(snapshot):
            on_unit_change(tx, snapshot)
        case ev.ProbeDone():
            _probe_done(tx, event)
        case ev.ProbesDone(results):
            for done in results:
                # Each result as if it were its own step (what it deferred runs before
                # the next one), in one Tx: one copy of the state and one STATUS=.
                _probe_done(tx, done)
                if tx.thawed:
                    ladder.resume_held_by_guard(tx)
                    tx.thawed = False
                tx.drain()
        case ev.TimerFired(key):
            _timer(tx, key)
        case ev.PreconditionsChecked() | ev.RepairDone():
            ladder.handle(tx, event)
        case ev.FailoverJobDone() | ev.CanRecoverDone() | ev.BackupWatched():
            failover_host.handle(tx, event)
        case ev.OperatorFailover() | ev.OperatorFailback():
            failover_host.handle(tx, event)
        case ev.ClusterEvent(unit) | ev.OperatorHandover(unit):
            before = tx.clusters.get(unit)
            cluster_host.handle(tx, event)
            after = tx.clusters.get(unit)
            if before is not None and after is not None and cluster_host.took(before, after):
                _fresh_ladder(tx, unit)
        case ev.OperatorPause() | ev.OperatorResume() | ev.OperatorReset():
            ladder.handle(tx, event)
        case ev.SaveFailed(unit):
            if (state := tx.unit(unit)) is not None:
                state.saved = None
        case ev.SnapshotDone(unit, path, error, known_good, proven):
            _snapshot_done(tx, unit, path, error, known_good, proven)
        case ev.ConfigChanged():
            rollback_host.changed(tx, event)
            ladder.redirect_asked(tx, event.unit)
        case ev.ConfigWatched():
            rollback_host.watched(tx, event)
        case ev.Starting(observe_until):
            tx.observe_until = observe_until
        case ev.Started():
            _started(tx)
        case ev.Stopping():
            tx.log("info", "stopping")
            tx.history(None, "daemon", "stopping")
            tx.alert(
                None,
                AlertKind.DAEMON,
                Severity.INFO,
                f"host-supervisor stopping on {tx.hostname}",
                "Units are no longer watched or repaired until it starts again.",
            )
        case ev.DependenciesKnown(graph):
            incident_host.graph_known(tx, graph)
        case ev.PoliciesLoaded(loaded):
            _apply_policies(tx, loaded)
        case ev.ReloadRefused(problems, caller):
            _reload_refused(tx, problems, caller)
        case ev.ReloadDone(caller):
            tx.reload_note = ""
            by = f" (by {caller})" if caller else ""
            tx.history(None, "daemon", f"policies reloaded: {len(tx.units)} units{by}")
            tx.actions.append(ev.Ready())


def _probe_done(tx: Tx, done: ev.ProbeDone) -> None:
    if (state := tx.unit(done.unit)) is not None and done.index < len(state.policy.checks):
        on_result(tx, state, done.index, done.result)


def _fresh_ladder(tx: Tx, unit: str) -> None:
    """A host that takes a clustered unit repairs it from the first rung: what its ladder
    tried the last time it held the unit (up to exhaustion) is forgotten."""
    state = tx.unit(unit)
    if state is None:
        return
    recovery = state.recovery
    if recovery.attempts or recovery.phase is not Phase.IDLE:
        # Fresh, not reset: a reset of a unit seen failed would restart it at once,
        # beside the start the cluster machine asked for; the start's outcome is judged.
        state.recovery = RecoveryState()
        tx.set_timer((LADDER, unit), None)
        tx.history(unit, "cluster", "ladder reset: this host holds the unit again")


# -- start -------------------------------------------------------------------------------


def _started(tx: Tx) -> None:
    tx.started = True
    failover_host.start(tx)
    cluster_host.start(tx)
    rollback_host.start(tx)
    for name in list(tx.units):
        state = tx.unit(name)
        assert state is not None
        tx.schedule_ladder(state)
        arm_snapshot(tx, state)
    tx.schedule_guard()
    ladder.arm_pause_timers(tx)
    tx.history(None, "daemon", "started", units=len(tx.units))
    tx.alert(
        None,
        AlertKind.DAEMON,
        Severity.INFO,
        f"host-supervisor started on {tx.hostname}",
        f"Supervising {len(tx.units)} units"
        + (" (dry run: no action is taken)." if tx.dry_run else "."),
    )


# -- timers ------------------------------------------------------------------------------


def _timer(tx: Tx, key: ev.TimerKey) -> None:
    machine, unit = key
    if tx.timers.get(key) is None:
        return  # cancelled after it fired, before its event arrived
    tx.fired(key)
    match machine:
        case "ladder":
            if (state := tx.unit(unit)) is not None:
                ladder.feed(tx, state, Tick())
        case "grace":
            snapshot = tx.snapshots.get(unit)
            if snapshot is not None:
                on_unit_change(tx, snapshot, after_grace=True)
        case "snapshot":
            _snapshot_due(tx, unit)
        case "guard":
            ladder.guard_tick(tx)
        case "failover" | "judge":
            failover_host.timer(tx, machine, unit)
        case "cluster":
            cluster_host.timer(tx, unit)
        case "flapping":
            expire_flapping(tx, unit)
        case "pause":
            ladder.pause_timer(tx, unit)
        case "incident":
            incident_host.gathered(tx, unit)


# -- last-known-good snapshots ------------------------------------------------------------


def _snapshot_due(tx: Tx, unit: str) -> None:
    state = tx.unit(unit)
    if state is None:
        return
    restore = state.policy.recovery.restore
    since = state.recovery.healthy_since
    healthy = state.condition in (Condition.HEALTHY, Condition.DEGRADED)
    if restore is None or not healthy or since is None:
        return  # armed again when it is healthy again
    if tx.now - since >= restore.snapshot_after:
        tx.actions.append(ev.TakeSnapshot(unit, state.applied_at, since))
    arm_snapshot(tx, state)  # files may change later: look again


def _snapshot_done(tx: Tx, unit: str, path: str, error: str, known_good: str, proven: bool) -> None:
    if (state := tx.unit(unit)) is not None and known_good:
        state.known_good = known_good
        state.proven = proven
    if error:
        tx.log("error", "cannot snapshot the configuration", unit=unit, error=error)
    elif path:
        tx.log("info", "known-good configuration saved", unit=unit, snapshot=path)
        tx.history(unit, "restore", f"snapshot taken: {path}; {known_good}")


# -- reload --------------------------------------------------------------------------------


def _reload_refused(tx: Tx, problems: tuple[str, ...], caller: str) -> None:
    for problem in problems:
        tx.log("error", "policy error", error=problem)
    first = problems[0] if problems else "unknown error"
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    tx.reload_note = f"reload refused: {first}{more}"
    tx.log("error", "reload refused; keeping the previous policies", errors=len(problems))
    tx.history(None, "daemon", tx.reload_note + (f" (by {caller})" if caller else ""))
    tx.actions.append(ev.Ready())


def _apply_policies(tx: Tx, loaded: LoadedConfig) -> None:
    old, new = set(tx.units), set(loaded.policies)
    before = {name: state.policy for name, state in tx.units.items()}
    watched_backups = failover_host.backups(tx)
    for unit in sorted(old - new):
        tx.actions.append(ev.Unwatch(unit))
        tx.actions.append(ev.StopChecks(unit))
        for machine in (LADDER, SNAPSHOT):
            tx.set_timer((machine, unit), None)
        del tx.units[unit]
        incident_host.forget(tx, unit)
        tx.actions.append(ev.DeleteUnit(unit))
        tx.log("info", "no longer supervising", unit=unit)
    promoted: list[UnitState] = []
    for unit in sorted(old & new):
        state = tx.unit(unit)
        assert state is not None
        if state.policy != loaded.policies[unit]:
            checks_changed = state.policy.checks != loaded.policies[unit].checks
            state.set_policy(loaded.policies[unit])
            if checks_changed:
                tx.actions.append(ev.StopChecks(unit))
                tx.actions.append(ev.StartChecks(unit))
            if state.recovery.phase is Phase.HELD and state.held_by == holds.OBSERVE_RULE:
                promoted.append(state)
    tx.loaded = loaded
    for state in promoted:
        # Held only because the policy said observe: ask again under the new policy,
        # or a unit promoted while it is down would wait for a resume.
        if state.policy.mode == "act":
            tx.log("info", "promoted to mode act: repairs may run", unit=state.unit)
            ladder.feed(tx, state, Resume())
    added = sorted(new - old)
    for unit in added:
        tx.add_unit(loaded.policies[unit])
    for unit in added:
        tx.actions.append(ev.Watch(unit))
    for unit in added:
        tx.actions.append(ev.StartChecks(unit))
        tx.log("info", "now supervising", unit=unit)
    failover_host.policies_changed(tx, watched_backups)
    cluster_host.policies_changed(tx)
    rollback_host.policies_changed(tx, before)
    tx.log("info", "policies reloaded", units=len(tx.units))


def scheduled_checks(state: UnitState) -> list[int]:
    """The indexes of the checks the shell probes on a schedule (not `unit:` ones,
    which are judged on every signal)."""
    return [
        index
        for index, check in enumerate(state.policy.checks)
        if not isinstance(check.probe, UnitProbe)
    ]
