"""The cluster driver: carries the cluster machines' actions out through etcd and
systemd, and feeds back what etcd says.

One etcd client; one watch of the whole prefix, mirrored in memory (`keys.py`), from
which each clustered unit's `Seen` is made; this host's registration
(``PREFIX/hosts/HOST``, bound to a lease of its own, holding its view of each unit as
JSON); one loop per lease held for a unit, renewing it and writing the key (`leases.py`);
the fence files and drop-ins (`fence.py`). Actions for one unit are performed in order
(a lock per unit): the fence deadline is written before the unit starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog

from supervisor.cluster.fence import FenceFiles, lease_unit
from supervisor.cluster.keys import Keys
from supervisor.cluster.leases import Beats, compact_history, evict, keep_lease
from supervisor.config.cluster import ClusterConfig
from supervisor.core import actions as ev
from supervisor.core import cluster
from supervisor.errors import BusError, JobFailed
from supervisor.etcd import EtcdClient, EtcdError, EtcdTLS, WatchCompacted

__all__ = ["ClusterDriver"]

log = structlog.get_logger("host-supervisor")

JOB_TIMEOUT = 90.0
RETRY_MIN, RETRY_MAX = 0.5, 5.0
RESYNC = 1.0
"""How often the keys are read to check the watch, and how long it may lag a read."""
HANDOVER_TTL = 10


class Jobs(Protocol):
    async def start(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def stop(self, unit: str, timeout: float = 90.0) -> str: ...  # noqa: ASYNC109
    async def reset_failed(self, unit: str) -> None: ...
    async def daemon_reload(self) -> None: ...


class ClusterDriver:
    """The shell of every clustered unit on this host."""

    def __init__(
        self,
        config: ClusterConfig,
        me: str,
        units: Mapping[str, float],
        jobs: Jobs,
        feed: Callable[[ev.Event], object],
        fence: FenceFiles | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.me = me
        self.units = dict(units)  # clustered unit -> its lease TTL
        self.jobs = jobs
        self._feed = feed
        self.fence = fence or FenceFiles()
        self.clock = clock
        """The reducer's clock: times fed to the machines are on it."""
        self.client = EtcdClient(
            config.endpoints,
            _tls(config),
            timeout=config.timeout,
        )
        self.keys = Keys(config.prefix)
        self.views: dict[str, dict[str, Any]] = {}  # unit -> this host's view, published
        self.beats = Beats()
        self._locks: dict[str, asyncio.Lock] = {}
        self._keepalives: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._main: asyncio.Task[None] | None = None
        self._host_lease = 0
        self._published = asyncio.Event()
        self.error = ""
        self._reached = False  # etcd answered once since the start

    def host_views(self) -> dict[str, Any]:
        """Each registered host's published view (for `status`)."""
        return self.keys.host_views()

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Install the fence glue, then follow etcd in the background (retrying)."""
        try:
            changed = await asyncio.to_thread(self.fence.install, sorted(self.units))
            if changed:
                await self.jobs.daemon_reload()
        except (OSError, BusError) as exc:
            # Without the drop-ins PID 1 cannot fence: the units are not started here.
            log.error(
                "cannot install the cluster drop-ins; clustered units stay stopped", error=str(exc)
            )
            self.error = f"cluster drop-ins not installed: {exc}"
            return
        self._main = asyncio.create_task(self._follow(), name="cluster:follow")
        if self.config.compact > 0:
            every = self.config.compact
            self._spawn(compact_history(self.client, every, lambda: self.keys.revision))

    async def close(self) -> None:
        tasks = [t for t in (self._main, *self._keepalives.values(), *self._tasks) if t]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.close()

    def set_units(self, units: Mapping[str, float]) -> None:
        """After a reload: the clustered units and their TTLs now."""
        self.units = dict(units)
        self._spawn(self._reinstall())

    async def _reinstall(self) -> None:
        if await asyncio.to_thread(self.fence.install, sorted(self.units)):
            with contextlib.suppress(BusError):
                await self.jobs.daemon_reload()
        for unit in self.units:
            self._feed(ev.ClusterEvent(unit, self.keys.seen(unit)))

    async def _follow(self) -> None:
        """Register, read the prefix, watch it; on any failure say so and start over."""
        delay = RETRY_MIN
        while True:
            try:
                await self._register()
                revision = await self._read()
                delay = RETRY_MIN
                watcher = asyncio.create_task(self._watch(revision), name="cluster:watch")
                try:
                    await self._check_watch(watcher)
                finally:
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
                log.warning(
                    "cluster: the etcd watch fell behind a read of the keys; watching again"
                )
            except asyncio.CancelledError:
                raise
            except WatchCompacted:
                continue  # read again from now
            except EtcdError as exc:
                if not self.error:
                    first = not self._reached
                    (log.error if first else log.warning)(
                        "etcd unreachable: clustered units are not started here"
                        if first
                        else "lost touch with etcd; trying again",
                        endpoints=list(self.config.endpoints),
                        error=str(exc),
                    )
                self.error = str(exc)
                self._host_lease = 0
                for unit in self.units:
                    self._feed(ev.ClusterEvent(unit, cluster.EtcdLost(str(exc))))
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX, delay * 2)

    async def _read(self) -> int:
        """The prefix as it is now, fed to every machine; its revision."""
        revision, kvs = await self.client.get_prefix(self.keys.prefix)
        self.keys.revision = revision
        if self.error:
            log.info("etcd reachable again", endpoint=self.client.endpoint)
        self.keys.mirror = {kv.key: kv for kv in kvs}
        self.error = ""
        self._reached = True
        for unit in self.units:
            self._note_beat(unit)
            self._feed(ev.ClusterEvent(unit, self.keys.seen(unit)))
        return revision

    async def _watch(self, revision: int) -> None:
        async for event in self.client.watch(self.keys.prefix, revision + 1):
            self.keys.revision = max(self.keys.revision, event.revision)
            if event.kind == "put":
                self.keys.mirror[event.kv.key] = event.kv
            else:
                self.keys.mirror.pop(event.kv.key, None)
            self._changed(event.kv.key)
        raise EtcdError("the watch ended")

    async def _check_watch(self, watcher: asyncio.Task[None]) -> None:
        """Read the keys every RESYNC seconds; return once a read has shown for RESYNC
        what the watch did not tell (its member went away without closing the stream:
        nothing else would notice), raise what the watch raised."""
        loop = asyncio.get_running_loop()
        behind_since: float | None = None
        while True:
            done, _ = await asyncio.wait({watcher}, timeout=RESYNC)
            if done:
                watcher.result()
            _, kvs = await self.client.get_prefix(self.keys.prefix)
            fresh = {kv.key: kv.mod_revision for kv in kvs}
            if fresh == {key: kv.mod_revision for key, kv in self.keys.mirror.items()}:
                behind_since = None
            elif behind_since is None:
                behind_since = loop.time()
            elif loop.time() - behind_since >= RESYNC:
                return

    def _changed(self, key: str) -> None:
        for unit in self.keys.units_touched(key, self.units):
            self._note_beat(unit)
            self._feed(ev.ClusterEvent(unit, self.keys.seen(unit)))

    def _note_beat(self, unit: str) -> None:
        leader = self.keys.mirror.get(self.keys.leader(unit))
        self.beats.note(unit, leader.mod_revision if leader is not None else 0)

    # -- this host's registration --------------------------------------------------------

    async def _register(self) -> None:
        ttl = int(min(self.units.values(), default=5.0))
        lease, _ = await self.client.lease_grant(ttl)
        self._host_lease = lease
        await self.client.put(self.keys.host(self.me), self._view_text(), lease)
        task = self._keepalives.pop("", None)
        if task is not None:
            task.cancel()
        self._keepalives[""] = asyncio.create_task(self._keep_host(lease, ttl))

    async def _keep_host(self, lease: int, ttl: float) -> None:
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if await self.client.lease_keepalive(lease) <= 0:
                    lease, _ = await self.client.lease_grant(int(ttl))  # expired: again
                    self._host_lease = lease
                    self._published.set()
                if self._published.is_set():
                    self._published.clear()
                    await self.client.put(self.keys.host(self.me), self._view_text(), lease)
            except EtcdError as exc:
                log.debug("host registration not renewed", error=str(exc))

    def _view_text(self) -> str:
        view = {"units": self.views, "at": round(time.time(), 3), "beats": True}
        return json.dumps(view, sort_keys=True)

    def role_changed(self, change: ev.ClusterRole) -> None:
        self.views[change.unit] = {
            "role": change.role.value,
            "holder": change.holder,
            "token": change.token,
        }
        lease = self._host_lease
        if lease:
            self._spawn(self._publish(lease))

    async def _publish(self, lease: int) -> None:
        try:
            await self.client.put(self.keys.host(self.me), self._view_text(), lease)
        except EtcdError:
            self._published.set()  # the keepalive loop tries again

    # -- actions -------------------------------------------------------------------------

    def perform(self, unit: str, action: cluster.Action) -> None:
        if isinstance(action, cluster.Fence):
            # At once, never behind a unit's job: a stop or start that takes long must
            # not let the keeper's deadline pass. /run is a tmpfs: this does not wait on
            # a disk, and it is written before the start queued after it.
            self._fence_now(unit, action.deadline)
        elif isinstance(action, cluster.KeepAlive):
            self._keep(unit, action)
        elif isinstance(action, cluster.Drop):
            task = self._keepalives.pop(unit, None)
            if task is not None:
                task.cancel()
        else:
            self._spawn(self._in_order(unit, action))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _in_order(self, unit: str, action: cluster.Action) -> None:
        lock = self._locks.setdefault(unit, asyncio.Lock())
        async with lock:
            try:
                await self._do(unit, action)
            except Exception:
                log.exception("cluster action failed", unit=unit, action=type(action).__name__)

    async def _do(self, unit: str, action: cluster.Action) -> None:
        match action:
            case cluster.Acquire(ttl):
                await self._acquire(unit, int(ttl))
            case cluster.Start(token):
                await asyncio.to_thread(self.fence.token, unit, token)
                await self._job("start", unit)
            case cluster.Stop(reason):
                log.info("cluster: stopping the unit", unit=unit, reason=reason)
                await asyncio.to_thread(self.fence.deadline, unit, 0.0)
                await self._job("stop", unit)
                self._feed(ev.ClusterEvent(unit, cluster.Stopped()))
            case cluster.Release(token, lease, to_host):
                await self._release(unit, token, lease, to_host)
            case cluster.Evict(token, beat, holder):
                silent = self.beats.silent_for(unit, beat)
                key, ttl = self.keys.leader(unit), self.units.get(unit, 0.0)
                await evict(self.client, key, token, beat, holder, silent, ttl)

    def _fence_now(self, unit: str, deadline: float) -> None:
        # The keeper counts on CLOCK_MONOTONIC: a step of the wall clock after this
        # cannot move its deadline.
        monotonic = time.monotonic() + (deadline - self.clock())
        try:
            self.fence.deadline(unit, monotonic)
        except OSError as exc:
            log.error(
                "cannot write the fence deadline; the keeper will stop the unit",
                unit=unit,
                error=str(exc),
            )

    async def _job(self, verb: str, unit: str) -> None:
        try:
            if verb == "start":
                with contextlib.suppress(BusError):  # not loaded: nothing to reset
                    await self.jobs.reset_failed(lease_unit(unit))
                result = await self.jobs.start(unit, timeout=JOB_TIMEOUT)
            else:
                result = await self.jobs.stop(unit, timeout=JOB_TIMEOUT)
            if result != "done":
                log.warning(f"cluster {verb} did not complete", unit=unit, result=result)
        except (BusError, JobFailed) as exc:
            log.error(f"cluster {verb} failed", unit=unit, error=str(exc))

    async def _acquire(self, unit: str, ttl: int) -> None:
        sent = self.clock()
        try:
            lease, _ = await self.client.lease_grant(ttl)
        except EtcdError as exc:
            self._feed(ev.ClusterEvent(unit, cluster.AcquireFailed(str(exc))))
            return
        try:
            ok, revision, kv = await self.client.create(self.keys.leader(unit), self.me, lease)
        except EtcdError as exc:
            self._spawn(self._revoke(lease))
            self._feed(ev.ClusterEvent(unit, cluster.AcquireFailed(str(exc))))
            return
        if not ok:
            self._spawn(self._revoke(lease))
        holder = kv.value if kv is not None else None
        token = kv.create_revision if kv is not None else 0
        acquired = cluster.Acquired(ok, holder, token, lease, sent, revision)
        self._feed(ev.ClusterEvent(unit, acquired))

    async def _revoke(self, lease: int) -> None:
        with contextlib.suppress(EtcdError):
            await self.client.lease_revoke(lease)

    async def _release(self, unit: str, token: int, lease: int, to_host: str | None) -> None:
        try:
            if to_host is not None:
                note, _ = await self.client.lease_grant(HANDOVER_TTL)
                await self.client.put(self.keys.handover(unit), to_host, note)
            await self.client.delete_if_created(self.keys.leader(unit), token)
        except EtcdError as exc:
            log.warning(
                "could not free the key; it expires with the lease", unit=unit, error=str(exc)
            )
        if lease:
            await self._revoke(lease)

    def _keep(self, unit: str, action: cluster.KeepAlive) -> None:
        old = self._keepalives.pop(unit, None)
        if old is not None:
            old.cancel()
        key, patience = self.keys.leader(unit), min(self.config.timeout, action.ttl / 6)

        def tell(event: cluster.Event) -> None:
            self._feed(ev.ClusterEvent(unit, event))

        keeping = keep_lease(
            self.client,
            key,
            self.me,
            action.token,
            action.lease,
            action.ttl,
            patience,
            self.clock,
            tell,
        )
        self._keepalives[unit] = asyncio.create_task(keeping, name=f"cluster:lease:{unit}")

    # -- status --------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "host": self.me,
            "endpoint": self.client.endpoint,
            "error": self.error,
            "hosts": self.host_views(),
            "roles": {unit: view.get("role") for unit, view in self.views.items()},
        }


def _tls(config: ClusterConfig) -> EtcdTLS | None:
    tls = config.tls
    if tls is None:
        return None
    return EtcdTLS(
        ca=Path(tls.ca) if tls.ca else None,
        cert=Path(tls.cert) if tls.cert else None,
        key=Path(tls.key) if tls.key else None,
    )
