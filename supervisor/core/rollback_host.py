"""Change-aware rollback inside the host reducer: which units have their restore paths
watched, what a change records, and what a rollback tells people.

The decision itself is `core.rollback`; this module keeps the unit's state current
(the latest change, whether a proven snapshot exists) and asks the shell to watch or
stop watching the paths when policies come and go.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.config import Policy
from supervisor.core import actions as ev
from supervisor.core.recovery import Phase
from supervisor.core.rollback import ConfigChange
from supervisor.core.state import Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import RepairResult, Rung

LAST_KNOWN_GOOD = "last-known-good"
DIFF_HEADING = "What was rolled back (- the files found, + the proven snapshot restored):"


def watched_paths(policy: Policy) -> tuple[str, ...]:
    """The paths whose changes may lead to a rollback; () when the policy cannot roll
    back (no restore, restore not in the ladder, a window of 0, or defaults)."""
    recovery = policy.recovery
    restore = recovery.restore
    if restore is None or restore.rollback_window <= 0 or Rung.RESTORE not in recovery.ladder:
        return ()
    if restore.source != LAST_KNOWN_GOOD:
        return ()
    return tuple(restore.paths)


def start(tx: Tx) -> None:
    """The daemon started: watch the paths of every policy that can roll back."""
    for name, state in tx.units.items():
        if paths := watched_paths(state.policy):
            tx.actions.append(ev.WatchConfig(name, paths))


def policies_changed(tx: Tx, before: Mapping[str, Policy]) -> None:
    """After a reload: watch what is new or changed, stop watching what is gone."""
    for name, policy in before.items():
        if name not in tx.units and watched_paths(policy):
            tx.actions.append(ev.UnwatchConfig(name))
    for name in sorted(tx.units):
        old = before.get(name)
        was = watched_paths(old) if old is not None else ()
        now = watched_paths(tx.units[name].policy)
        if now == was:
            continue
        state = tx.unit(name)
        assert state is not None
        state.config_change = None  # a change to other paths says nothing of these
        tx.save(state)
        if now:
            tx.actions.append(ev.WatchConfig(name, now))
        else:
            state.proven = False
            tx.actions.append(ev.UnwatchConfig(name))


def changed(tx: Tx, event: ev.ConfigChanged) -> None:
    state = tx.unit(event.unit)
    if state is None or not watched_paths(state.policy):
        return
    recovery = state.recovery
    if recovery.phase is Phase.ACTING and recovery.ran[-1:] == (Rung.RESTORE.value,):
        return  # the restore in flight writing the files
    paths = ", ".join(event.paths)
    stopped = not state.running
    state.config_change = ConfigChange(tx.now, event.paths, while_stopped=stopped)
    while_stopped = " while the unit is not running" if stopped else ""
    tx.log("info", "configuration changed", unit=state.unit, paths=paths, running=not stopped)
    tx.history(state.unit, "restore", f"configuration changed{while_stopped}: {paths}")
    tx.save(state)  # a daemon restarted within the window still rolls back


def watched(tx: Tx, event: ev.ConfigWatched) -> None:
    state = tx.unit(event.unit)
    if state is None:
        return
    state.proven = event.proven
    if event.known_good:
        state.known_good = event.known_good
    if event.error:
        tx.log(
            "error",
            "cannot watch the restore paths; a bad change will not be rolled back at once",
            unit=state.unit,
            error=event.error,
        )
        tx.history(state.unit, "restore", f"restore paths not watched: {event.error}")


def restored(state: UnitState, done: ev.RepairDone) -> None:
    """A restore wrote the proven files: the change it undid is gone with it."""
    if done.rung is Rung.RESTORE and done.result is RepairResult.DONE:
        state.config_change = None


def result_text(done: ev.RepairDone) -> str:
    """The diff of a restore, for the alert of its result ("" without one)."""
    return f"\n\n{DIFF_HEADING}\n{done.diff}" if done.diff else ""
