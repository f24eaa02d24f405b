"""Clustered units inside the host reducer: feeds `cluster.step` and turns what it
decides into actions for the shell, timers, history and alerts.

A clustered unit's ladder repairs it only where it is held: elsewhere its repairs
are held ("standby"). The ladder giving up, or the unit turning unhealthy when the
policy says so, makes the holder give the unit up to the next host.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.config import Policy
from supervisor.core import actions as ev
from supervisor.core import cluster
from supervisor.core.actions import CLUSTER, Event
from supervisor.core.cluster import ClusterSpec, ClusterState, Role
from supervisor.core.notices import AlertKind
from supervisor.core.state import AlertText, Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import Severity

_ALERT_KINDS = {
    "fence": AlertKind.CLUSTER_FENCED,
    "release": AlertKind.CLUSTER_RELEASED,
    "cluster": AlertKind.CLUSTER_TAKEN,
}


def me(tx: Tx) -> str:
    """This host's name in policies' cluster.hosts."""
    config = tx.loaded.main.cluster
    return config.host if config is not None and config.host else tx.hostname


def spec_for(tx: Tx, unit: str) -> ClusterSpec | None:
    state = tx.units.get(unit)
    if state is None or state.policy.cluster is None or tx.loaded.main.cluster is None:
        return None
    section = state.policy.cluster
    return ClusterSpec(
        unit=unit,
        me=me(tx),
        hosts=section.hosts,
        ttl=section.ttl,
        failback=section.failback,
        hold_off=section.hold_off,
        release_on=section.release_on,
    )


def clustered_units(policies: Mapping[str, Policy]) -> dict[str, float]:
    """unit -> lease TTL, for every policy with a cluster: section."""
    return {
        unit: float(policy.cluster.ttl)
        for unit, policy in policies.items()
        if policy.cluster is not None
    }


def init(tx: Tx) -> None:
    for unit in tx.units:
        if spec_for(tx, unit) is not None:
            tx.clusters[unit] = ClusterState()


def start(tx: Tx) -> None:
    """Until etcd answers, nothing starts; a unit left running is stopped after a TTL."""
    for unit, state in tx.clusters.items():
        spec = spec_for(tx, unit)
        if spec is not None and state.role is Role.WAITING:
            tx.set_timer((CLUSTER, unit), tx.now + spec.ttl)
            if not spec.eligible:
                tx.log(
                    "warning",
                    "this host is not in the unit's cluster.hosts",
                    unit=unit,
                    host=spec.me,
                    hosts=",".join(spec.hosts),
                )


def policies_changed(tx: Tx) -> None:
    """After a reload: a machine for each clustered policy; a unit no longer clustered
    that this host holds is stopped and its key freed (it would otherwise run twice)."""
    for unit in list(tx.clusters):
        if spec_for(tx, unit) is not None:
            continue
        state = tx.clusters.pop(unit)
        tx.set_timer((CLUSTER, unit), None)
        if state.role in (Role.HOLDER, Role.RELEASING, Role.RECLAIMING):
            tx.log(
                "warning", "cluster section removed: stopping the unit, freeing its key", unit=unit
            )
            tx.history(unit, "cluster", "cluster section removed: unit stopped, key freed")
            tx.actions += [
                ev.ClusterAct(unit, cluster.Drop()),
                ev.ClusterAct(unit, cluster.Stop("cluster section removed")),
                ev.ClusterAct(unit, cluster.Release(state.token, state.lease, None)),
            ]
    for unit in tx.units:
        if unit not in tx.clusters and spec_for(tx, unit) is not None:
            tx.clusters[unit] = ClusterState()
            tx.log("info", "clustered by a reload", unit=unit)
            spec = spec_for(tx, unit)
            if tx.started and spec is not None:
                tx.set_timer((CLUSTER, unit), tx.now + spec.ttl)


def handle(tx: Tx, event: Event) -> None:
    match event:
        case ev.ClusterEvent(unit, inner):
            feed(tx, unit, inner)
        case ev.OperatorHandover(unit, to_host, caller):
            refused = _handover_refused(tx, unit, to_host)
            if refused is None:
                feed(tx, unit, cluster.Handover(to_host, caller))
            else:
                tx.operator(unit, f"handover to {to_host} refused: {refused}", caller)
            tx.actions.append(ev.Answer(refused))


def _handover_refused(tx: Tx, unit: str, to_host: str) -> str | None:
    state, spec = tx.clusters.get(unit), spec_for(tx, unit)
    if state is None or spec is None:
        return f"{unit} has no cluster: section"
    if state.role is not Role.HOLDER:
        holder = state.holder or "nobody"
        return f"this host ({spec.me}) does not hold {unit}: {holder} does; ask there"
    if to_host == spec.me:
        return f"this host ({spec.me}) already holds {unit}"
    if to_host not in spec.hosts:
        return f"{to_host} is not in cluster.hosts ({', '.join(spec.hosts)})"
    return None


def timer(tx: Tx, unit: str) -> None:
    feed(tx, unit, cluster.Tick())


def exhausted(tx: Tx, state: UnitState, detail: str) -> None:
    feed(tx, state.unit, cluster.Exhausted(detail))


def cannot_repair(tx: Tx, state: UnitState, why: str) -> None:
    """A hold keeps the holder from repairing the unit: another host may run it."""
    feed(tx, state.unit, cluster.Exhausted(why, "it cannot be repaired here"))


def unhealthy(tx: Tx, state: UnitState, detail: str) -> None:
    feed(tx, state.unit, cluster.Unhealthy(detail))


def standby_reason(tx: Tx, unit: str) -> str | None:
    """Why the ladder may not repair a clustered unit here (None: this host holds it)."""
    state = tx.clusters.get(unit)
    if state is None or state.role is Role.HOLDER:
        return None
    where = f"{state.holder} holds it" if state.holder else "nobody holds it yet"
    return f"clustered: {state.role.value} on this host ({where})"


def feed(tx: Tx, unit: str, event: cluster.Event) -> None:
    spec = spec_for(tx, unit)
    before = tx.clusters.get(unit)
    if spec is None or before is None:
        return
    after, decided = cluster.step(spec, before, event, tx.now)
    tx.clusters[unit] = after
    about = tx.units.get(unit)
    for action in decided:
        match action:
            case cluster.Wake(at):
                tx.set_timer((CLUSTER, unit), at)
            case cluster.Say(kind, message, level, alert):
                _say(tx, about, kind, message, level, alert)
            case _:
                tx.actions.append(ev.ClusterAct(unit, action))
    if (after.role, after.holder, after.token) != (before.role, before.holder, before.token):
        tx.actions.append(ev.ClusterRole(unit, after.role, after.holder, after.token))
        tx.status_changed()


def took(before: ClusterState, after: ClusterState) -> bool:
    """The step made this host the holder."""
    return after.role is Role.HOLDER and before.role is not Role.HOLDER


def _say(
    tx: Tx, about: UnitState | None, kind: str, message: str, level: str, alert: str | None
) -> None:
    text = None
    if alert is not None and about is not None:
        severity = Severity.from_name(alert)
        text = AlertText(
            _ALERT_KINDS.get(kind, AlertKind.CLUSTER_TAKEN),
            severity,
            f"{about.unit} on {me(tx)}: {message.split(':', 1)[0]}",
            message,
        )
    tx.tell(about, level, message, record=kind, alert=text)


def status(states: Mapping[str, ClusterState], unit: str, now: float) -> dict[str, Any] | None:
    state = states.get(unit)
    if state is None:
        return None
    row: dict[str, Any] = {
        "role": state.role.value,
        "holder": state.holder,
        "token": state.token or None,
        "alive": list(state.alive),
    }
    if state.role in (Role.HOLDER, Role.RELEASING):
        row["lease_left_s"] = round(max(0.0, state.deadline - now), 1)
    if state.etcd_error:
        row["etcd_error"] = state.etcd_error
    return row
