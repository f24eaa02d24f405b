"""A fake etcd and cluster driver for the whole-host scenarios.

`FakeEtcd` outlives daemon processes, as etcd does: keys with their create revision
and lease, leases that expire `ttl` after their last renewal, other hosts' keys a
scenario puts, and an outage switch. `FakeCluster` is the daemon's `ClusterPort`: it
carries the cluster machines' actions out against the fake etcd and fake systemd,
and feeds back what the real driver would (`supervisor.cluster.driver`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.core import actions as ev
from supervisor.core import cluster
from supervisor.testing.fakes import FakeSystemd, Timeline

EXPIRY_POLL = 0.25


@dataclass
class FakeEtcd:
    timeline: Timeline
    clock: Callable[[], float]
    revision: int = 1
    keys: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    """unit -> (holder, create revision, lease)"""
    leases: dict[int, tuple[float, float]] = field(default_factory=dict)
    """lease -> (ttl, expiry)"""
    down: bool = False
    watchers: list[Callable[[str], None]] = field(default_factory=list)
    mods: dict[str, int] = field(default_factory=dict)
    """unit -> its key's mod revision"""
    beating: set[str] = field(default_factory=set)
    """Hosts whose daemons say they beat (this fake's own daemon does not: one daemon per
    scenario, and its writes would renumber every token after them)."""

    def grant(self, ttl: float) -> int:
        self.revision += 1
        lease = 1000 + self.revision
        self.leases[lease] = (ttl, self.clock() + ttl)
        return lease

    def create(self, unit: str, holder: str, lease: int) -> tuple[bool, str, int]:
        if unit in self.keys:
            held, token, _ = self.keys[unit]
            return False, held, token
        self.revision += 1
        self.keys[unit] = (holder, self.revision, lease)
        self.mods[unit] = self.revision
        self.timeline.add(f"etcd: {unit} key created by {holder} (token {self.revision})")
        self._tell(unit)
        return True, holder, self.revision

    def keepalive(self, lease: int) -> float:
        found = self.leases.get(lease)
        if found is None:
            return 0.0
        self.leases[lease] = (found[0], self.clock() + found[0])
        return found[0]

    def delete(self, unit: str, token: int | None = None, why: str = "deleted") -> bool:
        found = self.keys.get(unit)
        if found is None or (token is not None and found[1] != token):
            return False
        del self.keys[unit]
        self.revision += 1
        self.timeline.add(f"etcd: {unit} key {why} (token {found[1]} of {found[0]})")
        self._tell(unit)
        return True

    def revoke(self, lease: int) -> None:
        self.leases.pop(lease, None)
        for unit, (_, token, bound) in list(self.keys.items()):
            if bound == lease:
                self.delete(unit, token, "deleted with its lease")

    def expire(self) -> None:
        now = self.clock()
        for lease, (_ttl, expiry) in list(self.leases.items()):
            if expiry <= now:
                self.leases.pop(lease)
                for unit, (_, token, bound) in list(self.keys.items()):
                    if bound == lease:
                        self.delete(unit, token, "expired with its lease")

    def put_other(self, unit: str, holder: str, beats: bool = False) -> None:
        """Another host takes the key (its daemon is not in the scenario)."""
        if beats:
            self.beating.add(holder)
        self.create(unit, holder, lease=0)

    def beat(self, unit: str) -> None:
        """The holder writes its key again."""
        if unit in self.keys:
            self.revision += 1
            self.mods[unit] = self.revision
            self._tell(unit)

    def delete_unchanged(self, unit: str, token: int, mod: int, why: str) -> bool:
        if self.mods.get(unit) != mod:
            return False
        return self.delete(unit, token, why)

    def _tell(self, unit: str) -> None:
        for watcher in list(self.watchers):
            watcher(unit)


class FakeCluster:
    """The cluster driver against `FakeEtcd` and `FakeSystemd`."""

    def __init__(
        self,
        etcd: FakeEtcd,
        systemd: FakeSystemd,
        me: str,
        units: Mapping[str, float],
        feed: Callable[[ev.Event], object],
    ) -> None:
        self.etcd, self.systemd, self.me = etcd, systemd, me
        self.units = dict(units)
        self._feed = feed
        self._keepalives: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._was_down = False
        self._locks: dict[str, asyncio.Lock] = {}

    def _seen(self, unit: str) -> cluster.Seen:
        found = self.etcd.keys.get(unit)
        revision = self.etcd.revision
        if found is None:
            return cluster.Seen(None, alive=(self.me,), revision=revision)
        holder, token, lease = found
        return cluster.Seen(
            holder,
            token,
            lease,
            alive=(self.me,),
            revision=revision,
            beat=self.etcd.mods.get(unit, 0),
            holder_beats=holder in self.etcd.beating,
        )

    def _on_change(self, unit: str) -> None:
        if unit in self.units and not self.etcd.down:
            self._feed(ev.ClusterEvent(unit, self._seen(unit)))

    async def start(self) -> None:
        self.etcd.watchers.append(self._on_change)
        self.etcd.expire()
        self._was_down = self.etcd.down
        for unit in self.units:
            if self.etcd.down:
                self._feed(ev.ClusterEvent(unit, cluster.EtcdLost("fake etcd down")))
            else:
                self._feed(ev.ClusterEvent(unit, self._seen(unit)))
        self._spawn(self._follow())

    async def _follow(self) -> None:
        """Expire leases, and tell of an outage and its end, as the watch would."""
        while True:
            self.etcd.expire()
            if self.etcd.down and not self._was_down:
                for unit in self.units:
                    self._feed(ev.ClusterEvent(unit, cluster.EtcdLost("fake etcd down")))
            elif self._was_down and not self.etcd.down:
                for unit in self.units:
                    self._feed(ev.ClusterEvent(unit, self._seen(unit)))
            self._was_down = self.etcd.down
            await asyncio.sleep(EXPIRY_POLL)

    async def close(self) -> None:
        if self._on_change in self.etcd.watchers:
            self.etcd.watchers.remove(self._on_change)
        for task in [*self._keepalives.values(), *self._tasks]:
            task.cancel()

    def set_units(self, units: dict[str, float]) -> None:
        self.units = dict(units)

    def host_views(self) -> dict[str, Any]:
        return {}

    def status(self) -> dict[str, Any]:
        return {}

    def role_changed(self, change: Any) -> None:
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def perform(self, unit: str, action: Any) -> None:
        timeline = self.etcd.timeline
        match action:
            case cluster.Acquire(ttl):
                if self.etcd.down:
                    self._feed(ev.ClusterEvent(unit, cluster.AcquireFailed("fake etcd down")))
                    return
                sent = self.etcd.clock()
                lease = self.etcd.grant(ttl)
                ok, holder, token = self.etcd.create(unit, self.me, lease)
                if not ok:
                    self.etcd.revoke(lease)
                event = cluster.Acquired(
                    ok, holder, token, lease if ok else 0, sent, self.etcd.revision
                )
                self._feed(ev.ClusterEvent(unit, event))
            case cluster.Start(token):
                timeline.add(f"cluster: start {unit} with token {token}")
                self._spawn(self._in_order(unit, self.systemd.start(unit)))
            case cluster.Stop(reason):
                timeline.add(f"cluster: stop {unit} ({reason})")
                self._spawn(self._in_order(unit, self._stop(unit)))
            case cluster.Release(token, lease, to_host):
                if to_host is not None:
                    timeline.add(f"etcd: handover note for {to_host}")
                if not self.etcd.down:
                    self.etcd.delete(unit, token, "deleted by its holder")
                    self.etcd.revoke(lease)
            case cluster.Evict(token, beat, holder):
                if not self.etcd.down:
                    self.etcd.delete_unchanged(unit, token, beat, f"freed: {holder} silent")
            case cluster.KeepAlive(lease, ttl, _token):
                self._drop(unit)
                self._keepalives[unit] = asyncio.ensure_future(self._keep(unit, lease, ttl))
            case cluster.Drop():
                self._drop(unit)
            case cluster.Fence():
                pass  # the keeper's deadline file: nothing to fake

    async def _in_order(self, unit: str, job: Any) -> None:
        """One unit's jobs one after the other, in the order asked (as the driver)."""
        async with self._locks.setdefault(unit, asyncio.Lock()):
            await job

    def _drop(self, unit: str) -> None:
        task = self._keepalives.pop(unit, None)
        if task is not None:
            task.cancel()

    async def _stop(self, unit: str) -> None:
        await self.systemd.stop(unit)
        self._feed(ev.ClusterEvent(unit, cluster.Stopped()))

    async def _keep(self, unit: str, lease: int, ttl: float) -> None:
        while True:
            sent = self.etcd.clock()
            if self.etcd.down:
                self._feed(ev.ClusterEvent(unit, cluster.RenewFailed("fake etcd down")))
            else:
                left = self.etcd.keepalive(lease)
                self._feed(ev.ClusterEvent(unit, cluster.Renewed(sent, left)))
                if left <= 0:
                    return
            await asyncio.sleep(ttl / 3)
