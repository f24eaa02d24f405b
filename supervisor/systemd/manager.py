"""systemd's manager over D-Bus (dbus-fast, asyncio): unit state by signal, jobs, reconnects.

The daemon learns a unit's state from systemd's ``PropertiesChanged`` signals, never by
polling: :meth:`SystemdManager.watch` loads the unit, subscribes to its object path and
then reads its properties once; every later change is merged into the unit's snapshot
and reported through ``on_change``, only when a field of the snapshot changed.

Things that are not obvious, all seen against systemd 252:

* ``JobRemoved`` can arrive before the ``StartUnit`` reply carrying the job path: results
  are kept by job path for a while, and a waiter looks there first.
* ``LoadUnit`` of a unit that does not exist succeeds (``LoadState`` ``not-found``), but
  systemd unloads it again at once (``UnitNew`` then ``UnitRemoved``), so re-checking it on
  every ``UnitNew`` would loop. Watched units are pinned with ``Unit.Ref()`` (released by
  ``Unref()`` or when our connection closes), and ``UnitNew``-driven re-checks are rate
  limited in case ``Ref()`` is refused (it is a privileged call).
* ``LoadState`` and ``CanReload`` are constant: no signal tells that a unit file appeared or
  changed. ``Reloading(false)`` (end of a daemon-reload) re-reads every watched unit.
  During a daemon-reload systemd announces every unit as removed and new again; those
  ``UnitNew`` signals are ignored.
* systemd sends the Service interface's ``PropertiesChanged`` just before the Unit
  interface's, often in separate reads: a Service change waits (up to PAIR_WAIT) for the
  Unit one, so that ``on_change`` never sees e.g. Result=signal with ActiveState=active.
* A property value read while a signal about it arrives is stale: a value from a signal
  received during a read wins over the read.
* dbus-fast calls have no timeout: every call here runs under ``asyncio.timeout()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from supervisor.core.values import UnitSnapshot as UnitSnapshot
from supervisor.errors import BusError
from supervisor.systemd.bus import (
    UNIT_NODE,
    Caller,
    Connection,
    Signals,
    definitive,
    describe,
    open_connection,
    system_bus_address,
    wait_for_disconnect,
)
from supervisor.systemd.introspection import (
    BUS_NAME,
    PROPERTIES_INTERFACE,
    SERVICE_INTERFACE,
    UNIT_INTERFACE,
)
from supervisor.systemd.jobs import JobTracker
from supervisor.systemd.watches import Watch, Watches, read_properties

log = structlog.get_logger("supervisor.systemd")

JOB_MODE = "replace"
RECONNECT_MIN = 0.1
RECONNECT_MAX = 10.0

OnChange = Callable[[UnitSnapshot], None]
DEPENDENCY_PROPS = ("Requires", "BindsTo", "PartOf", "After")


class SystemdManager:
    """A client of systemd's manager on the system bus.

    ``on_change`` is called from the event loop with the new snapshot of a watched unit
    whenever a field of it changes (and for every watched unit after a reconnect).
    """

    def __init__(
        self,
        on_change: OnChange | None = None,
        *,
        address: str | None = None,
        call_timeout: float = 10.0,
    ) -> None:
        self._on_change: OnChange = on_change or (lambda snapshot: None)
        self._address = address
        self._call = Caller(call_timeout)
        self._conn: Connection | None = None
        self._watches = Watches(self._emit, self._recheck, self._background)
        self._jobs = JobTracker()
        self._closed = False
        self._close_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_lock: asyncio.Lock | None = None
        self._on_reloaded: Callable[[], None] = lambda: None

    def listen(self, on_change: OnChange) -> None:
        """Call `on_change` for every change of a watched unit from now on."""
        self._on_change = on_change

    def listen_reloaded(self, on_reloaded: Callable[[], None]) -> None:
        """Call `on_reloaded` at the end of every daemon-reload of systemd's."""
        self._on_reloaded = on_reloaded

    def _reloading(self, active: bool) -> None:
        self._watches.on_reloading(active)
        if not active:
            self._on_reloaded()

    async def dependencies(self, unit: str) -> tuple[str, ...]:
        """The units a watched unit's Requires=, BindsTo=, PartOf= and After= name: one
        GetAll of its Unit interface; () for a unit not watched (yet)."""
        watch = self._watches.by_name.get(unit)
        if watch is None or watch.props_iface is None:
            return ()
        props = await self._call(
            watch.props_iface.call_get_all(UNIT_INTERFACE, unpack_variants=True),
            f"{unit}: GetAll(Unit)",
        )
        return tuple(
            dict.fromkeys(name for prop in DEPENDENCY_PROPS for name in props.get(prop) or ())
        )

    # -- connection -------------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._address or system_bus_address()

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.bus.connected

    async def connect(self) -> None:
        """Connect to the system bus and Subscribe(); re-attach units already watched.

        Raises BusError naming the address when the bus or systemd cannot be reached.
        """
        if self._closed:
            raise BusError("the systemd manager client is closed")
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        async with self._connect_lock:
            if self.connected:
                return
            if self._conn is not None:  # the bus went away while nobody ran run()
                self._lost(self._conn, "disconnected")
            watches = self._watches
            signals = Signals(
                on_message=watches.on_message,
                on_job_removed=self._on_job_removed,
                on_unit_new=watches.on_unit_new,
                on_reloading=self._reloading,
            )
            conn = await open_connection(self.address, self._call, signals)
            watches.reloading = False
            if self._closed:
                conn.bus.disconnect()
                raise BusError("the systemd manager client was closed while connecting")
            self._conn = conn
            log.info("connected to the system bus", address=conn.address)
            for watch in list(watches.by_name.values()):
                try:
                    await self._attach(watch, conn, notify=False)
                except BusError as exc:
                    log.error("cannot watch unit", unit=watch.name, error=str(exc))

    async def run(self) -> None:
        """Stay connected until :meth:`close`: on bus loss reconnect with exponential backoff
        (0.1 s to 10 s), Subscribe again, re-read every watched unit and report each."""
        if self._close_event is None:
            self._close_event = asyncio.Event()
            if self._closed:
                self._close_event.set()
        delay = RECONNECT_MIN
        first = self._conn is None
        while not self._closed:
            conn = self._conn
            if conn is None:
                try:
                    await self.connect()
                except BusError as exc:
                    log.warning("system bus unreachable", error=str(exc), retry_in_s=delay)
                    await self._sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX)
                    continue
                delay = RECONNECT_MIN
                if not first:
                    for watch in list(self._watches.by_name.values()):
                        if watch.conn is self._conn and watch.last is not None:
                            self._emit(watch.last)
                first = False
                continue
            first = False
            reason = "closed"
            try:
                await wait_for_disconnect(conn.bus)
            except Exception as exc:  # dbus-fast raises e.g. a bare EOFError here
                reason = describe(exc)
            if self._closed:
                break
            self._lost(conn, reason)

    def _lost(self, conn: Connection, reason: str) -> None:
        if self._conn is not conn:
            return
        self._conn = None
        log.warning("lost the system bus; reconnecting", address=conn.address, reason=reason)
        self._jobs.fail_waiters(BusError(f"lost the system bus at {conn.address}: {reason}"))
        for watch in self._watches.by_name.values():
            if watch.conn is conn:
                self._detach(watch, unref=False)
        conn.bus.disconnect()

    async def _sleep(self, seconds: float) -> None:
        assert self._close_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._close_event.wait(), seconds)

    async def close(self) -> None:
        """Disconnect; :meth:`run` returns. Job waiters fail with BusError."""
        self._closed = True
        if self._close_event is not None:
            self._close_event.set()
        for watch in self._watches.by_name.values():
            watch.cancel_timers()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._jobs.fail_waiters(BusError("the systemd manager client was closed"))
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.bus.disconnect()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await wait_for_disconnect(conn.bus)

    # -- watching ---------------------------------------------------------------------

    def watched(self) -> frozenset[str]:
        return frozenset(self._watches.by_name)

    async def watch(self, unit: str) -> UnitSnapshot:
        """Follow ``unit``'s state by signal and return its current snapshot.

        A unit that does not exist is watched too (``load_state`` ``not-found``); when it
        appears, ``on_change`` reports it. Raises BusError when systemd refuses the name
        (the unit is then not watched) or the bus is lost (the unit stays watched and is
        attached again after the reconnect).
        """
        watch = self._watches.by_name.get(unit)
        if watch is None:
            watch = self._watches.by_name[unit] = Watch(unit)
        conn = self._require_conn(unit)
        if watch.conn is conn and watch.last is not None:
            return watch.last
        try:
            await self._attach(watch, conn, notify=False)
        except BusError as exc:
            if definitive(exc) and self._watches.current(watch):
                self.unwatch(unit)
            raise
        assert watch.last is not None
        return watch.last

    def unwatch(self, unit: str) -> None:
        watch = self._watches.by_name.pop(unit, None)
        if watch is not None:
            watch.cancel_timers()
            self._detach(watch, unref=True)

    async def snapshot(self, unit: str) -> UnitSnapshot:
        """A fresh read of ``unit`` (of any unit; a watched one is updated and reported)."""
        conn = self._require_conn(unit)
        watch = self._watches.by_name.get(unit)
        if watch is not None:
            await self._attach(watch, conn, notify=True)
            assert watch.last is not None
            return watch.last
        temp = Watch(unit)
        path = await self._call(conn.manager.call_load_unit(unit), f"LoadUnit({unit})")
        props = conn.bus.get_proxy_object(BUS_NAME, path, UNIT_NODE).get_interface(
            PROPERTIES_INTERFACE
        )
        await read_properties(temp, props, self._call)
        return temp.snapshot()

    async def memory_current(self, unit: str) -> int | None:
        """The unit's cgroup memory (MemoryCurrent) in bytes; None when accounting is off.

        Read on demand: systemd does not signal changes of this property.
        """
        watch = self._watches.by_name.get(unit)
        if watch is None or watch.props_iface is None or not watch.is_service:
            return None
        value = await self._call(
            watch.props_iface.call_get(SERVICE_INTERFACE, "MemoryCurrent", unpack_variants=True),
            f"{unit}: Get(MemoryCurrent)",
        )
        memory = int(value)
        return None if memory >= 2**64 - 1 else memory

    def _require_conn(self, unit: str) -> Connection:
        conn = self._conn
        if conn is None or not conn.bus.connected:
            raise BusError(f"{unit}: not connected to the system bus at {self.address}")
        return conn

    async def _attach(self, watch: Watch, conn: Connection, *, notify: bool) -> None:
        """LoadUnit, subscribe to the unit's path (again if it moved), read its properties."""
        async with watch.lock:
            watch.last_check = time.monotonic()  # before LoadUnit: its UnitNew comes first
            path = await self._call(
                conn.manager.call_load_unit(watch.name), f"LoadUnit({watch.name})"
            )
            if not self._watches.current(watch):
                return  # unwatched meanwhile
            if watch.conn is not conn or watch.path != path:
                self._detach(watch, unref=watch.conn is conn)
                obj = conn.bus.get_proxy_object(BUS_NAME, path, UNIT_NODE)
                watch.props_iface = obj.get_interface(PROPERTIES_INTERFACE)
                watch.unit_iface = obj.get_interface(UNIT_INTERFACE)
                watch.handler = self._watches.make_handler(watch)
                self._watches.by_path[path] = watch
                watch.conn, watch.path = conn, path
            await read_properties(watch, watch.props_iface, self._call)
            if watch.props.get("LoadState") != "loaded" and not watch.pinned:
                # Only a unit systemd does not have is unloaded at once and reloaded
                # (UnitNew) by every read. Loaded units need no pin: their object path
                # stays the same and our one match rule covers the whole namespace. Each
                # Ref costs systemd a match rule of its own, so pinning all would not scale.
                await self._ref(watch)
            self._watches.flush(watch, notify=notify)

    def _detach(self, watch: Watch, *, unref: bool) -> None:
        conn, unit_iface = watch.conn, watch.unit_iface
        # Only on a live bus: dbus-fast sends RemoveMatch, and a send on a closed socket
        # leaves a future with an OSError nobody retrieves.
        live = conn is not None and conn.bus.connected
        by_path = self._watches.by_path
        if watch.path is not None and by_path.get(watch.path) is watch:
            del by_path[watch.path]
        if unref and live and unit_iface is not None and watch.pinned:
            self._background(self._unref(watch.name, unit_iface))
        watch.pinned = False  # a pin also ends with our connection
        watch.conn = watch.props_iface = watch.unit_iface = watch.handler = None
        watch.path = None

    async def _ref(self, watch: Watch) -> None:
        """Pin the unit so that systemd does not unload it (and forget its state)."""
        try:
            await self._call(watch.unit_iface.call_ref(), f"Ref({watch.name})")
            watch.pinned = True
        except BusError as exc:
            if not definitive(exc):
                raise
            log.debug(
                "cannot pin unit; re-checks are rate limited", unit=watch.name, error=str(exc)
            )

    async def _unref(self, name: str, unit_iface: Any) -> None:
        with contextlib.suppress(BusError):
            await self._call(unit_iface.call_unref(), f"Unref({name})")

    async def _recheck(self, watch: Watch) -> None:
        conn = self._conn
        if conn is None or not self._watches.current(watch):
            return
        try:
            await self._attach(watch, conn, notify=True)
        except BusError as exc:
            log.warning("cannot re-read unit", unit=watch.name, error=str(exc))

    def _emit(self, snap: UnitSnapshot) -> None:
        try:
            self._on_change(snap)
        except Exception:
            log.exception("on_change failed", unit=snap.name)

    # -- jobs -------------------------------------------------------------------------

    async def start(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        """Start ``unit`` and return the job's result (done, canceled, timeout, failed,
        dependency, skipped); JobFailed when it does not finish within ``timeout``."""
        return await self._job("start", unit, timeout)

    async def stop(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("stop", unit, timeout)

    async def restart(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("restart", unit, timeout)

    async def reload(self, unit: str, timeout: float = 90.0) -> str:  # noqa: ASYNC109
        return await self._job("reload", unit, timeout)

    async def reset_failed(self, unit: str) -> None:
        """Clear the failed state and the start-rate counter of ``unit``."""
        conn = self._require_conn(unit)
        await self._call(conn.manager.call_reset_failed_unit(unit), f"ResetFailedUnit({unit})")

    async def daemon_reload(self) -> None:
        """Make systemd read unit files and drop-ins again (`systemctl daemon-reload`)."""
        conn = self._require_conn("the manager")
        await self._call(conn.manager.call_reload(), "Reload")

    # The job timeout is part of the interface (ASYNC109): it bounds the wait for
    # JobRemoved, not the call, and its expiry is reported as JobFailed.
    async def _job(self, verb: str, unit: str, timeout: float) -> str:  # noqa: ASYNC109
        conn = self._require_conn(unit)
        method = getattr(conn.manager, f"call_{verb}_unit")
        job: str = await self._call(method(unit, JOB_MODE), f"{verb} {unit}")
        return await self._jobs.wait(job, timeout, f"{verb} of {unit}")

    def _on_job_removed(self, job_id: int, job: str, unit: str, result: str) -> None:
        self._jobs.removed(job, result)

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
