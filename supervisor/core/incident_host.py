"""Incidents inside the host reducer: a root's failure, its symptoms, one message each
way.

`unit_failed` classifies a unit that turned unhealthy: a symptom of a supervised unit
it depends on that failed within `guard.incidents.window` (its repair then waits:
the "waiting for root" hold), the root of dependents that failed up to `window`
before it and whose repairs have not started, or a unit alone. The root's problem
message waits `gather` to name its symptoms; the symptoms alert nothing of their own.
`unit_healthy` lets the symptoms be judged afresh once the root is healthy, and
closes the incident with one recovery message when the root and every symptom are
well again (or given up on).
"""

from __future__ import annotations

import dataclasses

from supervisor.core import incident_notices, incidents
from supervisor.core.actions import INCIDENT
from supervisor.core.health import Condition, describe
from supervisor.core.incidents import WELL, Graph, Incident
from supervisor.core.recovery import Observed, Phase, Resume
from supervisor.core.state import Tx
from supervisor.core.unit import UnitState

RULE = "waiting for root"  # the hold's name, as `UnitState.held_by` keeps it
DEPENDENCY_GRACE = 0.3
"""How long the first repair of a unit with supervised dependencies waits after its
failure: when a dependency dies, its dependents may be seen failing a moment before it
(signals come in any order), and a repair started then would pull the failed root up
with it, ahead of the root's own ladder."""


def graph_known(tx: Tx, graph: Graph) -> None:
    if graph != tx.dependencies:
        edges = sum(len(deps & set(tx.units)) for deps in graph.values())
        tx.log("info", "unit dependencies read from systemd", units=len(graph), edges=edges)
    tx.dependencies = dict(graph)


def unit_failed(tx: Tx, state: UnitState) -> None:
    """`state` just turned unhealthy: symptom, root, or a unit alone."""
    config = tx.loaded.main.guard.incidents
    unit = state.unit
    if config.window <= 0 or not tx.dependencies:
        return
    tx.failed_at = {name: at for name, at in tx.failed_at.items() if tx.now - at <= config.window}
    tx.failed_at[unit] = tx.now
    if (open_ := tx.incidents.get(unit)) is not None:
        tx.incidents[unit] = dataclasses.replace(open_, root_healthy_at=None)
        return
    if incidents.symptom_of(tx.incidents, unit) is not None:
        return
    if (root := _failed_dependency(tx, unit)) is not None:
        _add_symptoms(tx, root, [unit])
        return
    dependents = incidents.dependents_of(tx.dependencies, unit, tx.units)
    if dependents:
        _open(tx, unit)
        earlier = sorted(
            (tx.failed_at[name], name)
            for name in dependents
            if _is_earlier_symptom(tx, name, config.window)
        )
        if earlier:
            _add_symptoms(tx, unit, [name for _, name in earlier])
        for name in sorted(dependents, key=lambda name: tx.stopped_at.get(name, 0.0)):
            if _stopped_earlier(tx, name, config.window):
                _stopped_with(tx, unit, name)
    elif incidents.dependencies_of(tx.dependencies, unit, tx.units):
        # Perhaps a symptom of a unit whose failure is seen later: its problem waits.
        tx.deferred.setdefault(unit, None)
        tx.arm_once((INCIDENT, unit), tx.now + config.gather)


def _open(tx: Tx, root: str) -> None:
    """An incident for `root`, whose problem message waits `gather`."""
    state = tx.units[root]
    since = tx.failed_at.get(root, tx.now)
    healthy_at = tx.now if state.condition in WELL else None
    tx.incidents[root] = Incident(root, since, root_healthy_at=healthy_at, why=_why(state))
    tx.deferred.pop(root, None)
    tx.set_timer((INCIDENT, root), max(tx.now, since + tx.loaded.main.guard.incidents.gather))


def _why(state: UnitState) -> str:
    view = state.view
    if state.condition is not Condition.UNHEALTHY or view is None:
        return "failed"
    if view.active_state == "failed":
        return f"failed ({view.result or 'failed'})"
    return f"unhealthy ({', '.join(state.failing_checks()) or describe(view)})"


def _failed_dependency(tx: Tx, unit: str) -> str | None:
    """The root of the incident `unit` joins: a dependency that failed within the window
    (the earliest; healthy again or not: a quick repair of the root does not make its
    dependents' failures news of their own), or the root whose symptom it is."""
    window = tx.loaded.main.guard.incidents.window
    candidates = sorted(
        (tx.failed_at[name], name)
        for name in incidents.dependencies_of(tx.dependencies, unit, tx.units)
        if name in tx.failed_at and tx.now - tx.failed_at[name] <= window
    )
    for _, name in candidates:
        root = incidents.root_of(tx.incidents, name)
        if root is not None:
            return root
    if candidates:
        name = candidates[0][1]
        _open(tx, name)
        return name
    return None


def _is_earlier_symptom(tx: Tx, name: str, window: float) -> bool:
    """A dependent that failed before the root, within the window, unrepaired so far."""
    state = tx.units[name]
    since = tx.failed_at.get(name)
    return (
        since is not None
        and tx.now - since <= window
        and state.condition is Condition.UNHEALTHY
        and incidents.root_of(tx.incidents, name) is None
        # Asked for and waiting for its preconditions, or held: nothing ran yet.
        and (state.asked is not None or not state.recovery.episode_open)
    )


def _add_symptoms(tx: Tx, root: str, units: list[str]) -> None:
    incident = tx.incidents[root]
    tx.incidents[root] = incident.with_symptoms(units)
    for name in units:
        tx.deferred.pop(name, None)
        tx.set_timer((INCIDENT, name), None)
        tx.log("info", "symptom of another unit's failure", unit=name, root=root)
        tx.history(name, "incident", f"symptom of {root}'s failure: repairs wait for it")


def unit_changed(tx: Tx, state: UnitState) -> None:
    """`state`'s condition changed to anything but unhealthy."""
    if state.condition in WELL:
        unit_healthy(tx, state)
        return
    if (root := incidents.symptom_of(tx.incidents, state.unit)) is not None:
        maybe_close(tx, root)
    elif state.condition is Condition.STOPPED and tx.loaded.main.guard.incidents.window > 0:
        _stopped_with_root(tx, state.unit)


def _stopped_earlier(tx: Tx, name: str, window: float) -> bool:
    """A dependent systemd stopped a moment before its root's failure was seen."""
    since = tx.stopped_at.get(name)
    return (
        since is not None
        and tx.now - since <= window
        and tx.units[name].condition is Condition.STOPPED
        and incidents.root_of(tx.incidents, name) is None
    )


def _stopped_with_root(tx: Tx, unit: str) -> None:
    """Stopped by systemd because a unit it binds to failed a moment ago (not by a
    person): a symptom too, started again once the root is back. A stop seen before
    the root's failure is remembered for `window`: the root's failure may come later."""
    if not tx.dependencies:
        return
    window = tx.loaded.main.guard.incidents.window
    tx.stopped_at = {name: at for name, at in tx.stopped_at.items() if tx.now - at <= window}
    tx.stopped_at[unit] = tx.now
    root = _failed_dependency(tx, unit)
    if root is not None:
        _stopped_with(tx, root, unit)


def _stopped_with(tx: Tx, root: str, unit: str) -> None:
    _add_symptoms(tx, root, [unit])
    incident = tx.incidents[root]
    tx.incidents[root] = dataclasses.replace(incident, stopped=(*incident.stopped, unit))
    _wake_stopped(tx, root, unit)


def _wake_stopped(tx: Tx, root: str, unit: str) -> None:
    """A symptom systemd stopped, still stopped once its root is healthy: its ladder is
    told it is unhealthy, so that it is started (after the root's settle, as any
    symptom; the guard and its policy's ladder still apply)."""
    from supervisor.core import ladder

    incident, state = tx.incidents[root], tx.unit(unit)
    root_state = tx.units.get(root)
    if (
        state is None
        or root_state is None
        or incident.root_healthy_at is None
        or root_state.condition not in WELL
        or state.condition is not Condition.STOPPED
        or state.recovery.phase is not Phase.IDLE
    ):
        return
    tx.history(unit, "incident", f"stopped with {root}'s failure: started again once it settled")
    ladder.feed(tx, state, Observed(Condition.UNHEALTHY))


def symptom_exhausted(tx: Tx, state: UnitState) -> None:
    """A ladder gave up. A symptom's: the incident may end without it. A root's: its
    symptoms wait no longer (it may never be healthy again) and are judged on their own,
    so that no unit is left unsupervised behind a root nobody repairs."""
    if (root := incidents.symptom_of(tx.incidents, state.unit)) is not None:
        maybe_close(tx, root)
    if (incident := tx.incidents.get(state.unit)) is not None:
        for name in incident.symptoms:
            symptom = tx.units.get(name)
            if symptom is not None and symptom.held_by == RULE:
                tx.history(name, "incident", f"{state.unit} given up on: judged on its own")
                _resume(tx, name)


def unit_healthy(tx: Tx, state: UnitState) -> None:
    """`state` is healthy again: the root's symptoms may be judged; the incident may end."""
    unit = state.unit
    if (incident := tx.incidents.get(unit)) is not None:
        tx.incidents[unit] = incident = dataclasses.replace(incident, root_healthy_at=tx.now)
        for name in incident.symptoms:
            symptom = tx.units.get(name)
            if symptom is not None and symptom.held_by == RULE:
                _resume(tx, name)
        for name in incident.stopped:
            _wake_stopped(tx, unit, name)
        maybe_close(tx, unit)
    elif (root := incidents.symptom_of(tx.incidents, unit)) is not None:
        maybe_close(tx, root)


def _resume(tx: Tx, unit: str) -> None:
    from supervisor.core import ladder  # ladder asks holds, which ask this module

    state = tx.unit(unit)
    if state is not None and state.recovery.phase is Phase.HELD:
        ladder.feed(tx, state, Resume())


def hold(tx: Tx, state: UnitState) -> tuple[str, float | None] | None:
    """The "waiting for root" hold: a symptom's repair waits for its root's health, then
    its own settle time, and is then judged afresh."""
    root = incidents.symptom_of(tx.incidents, state.unit)
    if root is None:
        return _grace(tx, state)
    incident = tx.incidents[root]
    root_state = tx.units.get(root)
    if root_state is not None and root_state.recovery.phase is Phase.EXHAUSTED:
        return None  # the root's repairs gave up: the symptom is judged on its own
    if incident.root_healthy_at is None or root_state is None or root_state.condition not in WELL:
        return f"waiting for {root}: repairs resume once it is healthy", None
    ready_at = incident.root_healthy_at + state.policy.recovery.settle
    if tx.now < ready_at:
        return f"waiting for {root}: healthy again; judged again after settle", ready_at
    return None


def _grace(tx: Tx, state: UnitState) -> tuple[str, float | None] | None:
    failed_at = tx.failed_at.get(state.unit)
    if failed_at is None or tx.now >= failed_at + DEPENDENCY_GRACE:
        return None
    if not incidents.dependencies_of(tx.dependencies, state.unit, tx.units):
        return None
    return "waiting a moment: a unit it depends on may be failing too", failed_at + DEPENDENCY_GRACE


def gathered(tx: Tx, unit: str) -> None:
    """The `gather` time after a failure: a root's problem message, or a deferred one;
    the `window` after a root's failure: late symptoms can no longer join."""
    if (incident := tx.incidents.get(unit)) is not None:
        if not incident.alerted:
            incident_notices.problem(tx, incident)
        maybe_close(tx, unit)
        return
    if unit not in tx.deferred:
        return
    alert = tx.deferred.pop(unit)
    if alert is not None and incidents.root_of(tx.incidents, unit) is None:
        tx.send(alert)
        state = tx.unit(unit)
        if state is not None and state.condition in WELL:
            from supervisor.core import ladder

            ladder.announce_recovered(tx, state)


def maybe_close(tx: Tx, root: str) -> None:
    """The root and every symptom well again (or given up on): one recovery message."""
    incident = tx.incidents.get(root)
    root_state = tx.units.get(root)
    if incident is None or root_state is None or root_state.condition not in WELL:
        return
    if not incident.alerted:
        return  # the problem message comes first, at gather time
    closes_at = incident.since + tx.loaded.main.guard.incidents.window
    if tx.now < closes_at:
        tx.set_timer((INCIDENT, root), closes_at)  # a late symptom may still join
        return
    still: list[str] = []
    for name in incident.symptoms:
        symptom = tx.units.get(name)
        if symptom is None or symptom.condition in WELL:
            continue
        if symptom.recovery.phase is Phase.EXHAUSTED:
            still.append(name)
        elif symptom.condition is Condition.UNHEALTHY or (
            name in incident.stopped and symptom.condition is Condition.STOPPED
        ):
            return  # still waiting, or still being repaired
        # otherwise stopped or gone by a person's hand, not this incident's
    del tx.incidents[root]
    tx.set_timer((INCIDENT, root), None)
    incident_notices.recovered(tx, incident, still)


def forget(tx: Tx, unit: str) -> None:
    """A unit no longer supervised leaves every incident."""
    tx.failed_at.pop(unit, None)
    tx.deferred.pop(unit, None)
    tx.set_timer((INCIDENT, unit), None)
    if (incident := tx.incidents.pop(unit, None)) is not None:
        for name in incident.symptoms:  # nothing to wait for any more
            symptom = tx.units.get(name)
            if symptom is not None and symptom.held_by == RULE:
                _resume(tx, name)
    for root, incident in list(tx.incidents.items()):
        if unit in incident.symptoms:
            kept = tuple(name for name in incident.symptoms if name != unit)
            tx.incidents[root] = dataclasses.replace(incident, symptoms=kept)
