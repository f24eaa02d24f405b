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
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from dbus_fast import BusType, DBusError, Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node

from supervisor.core.values import UnitSnapshot as UnitSnapshot
from supervisor.errors import BusError, JobFailed, UnitNotFound
from supervisor.systemd.introspection import (
    BUS_NAME,
    MANAGER_INTERFACE,
    MANAGER_PATH,
    MANAGER_XML,
    PROPERTIES_INTERFACE,
    SERVICE_INTERFACE,
    UNIT_INTERFACE,
    UNIT_XML,
)

T = TypeVar("T")

log = structlog.get_logger("supervisor.systemd")

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
JOB_MODE = "replace"
RECONNECT_MIN = 0.1
RECONNECT_MAX = 10.0
#: How long results of jobs nobody waits for yet are kept (by count).
RECENT_JOBS = 512
#: At most one UnitNew/PropertiesChanged-driven re-check of a unit per this many seconds.
RECHECK_INTERVAL = 1.0
#: How long a Service-interface change waits for the Unit-interface one that follows it.
PAIR_WAIT = 0.05
# dbus-daemon allows 128 pending replies and 512 match rules per connection on the
# system bus by default: keep well under the first, and use one rule for all units.
MAX_PENDING_CALLS = 64
UNIT_PATH_NAMESPACE = "/org/freedesktop/systemd1/unit"
PROPERTIES_CHANGED_RULE = (
    f"type='signal',sender='{BUS_NAME}',interface='{PROPERTIES_INTERFACE}',"
    f"member='PropertiesChanged',path_namespace='{UNIT_PATH_NAMESPACE}'"
)

_UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "CanReload")
_SERVICE_PROPS = ("MainPID", "Result", "NRestarts", "Restart")
_NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"

_MANAGER_NODE = Node.parse(MANAGER_XML)
_UNIT_NODE = Node.parse(UNIT_XML)


OnChange = Callable[[UnitSnapshot], None]


def system_bus_address() -> str:
    """The system bus address: ``DBUS_SYSTEM_BUS_ADDRESS`` or the standard socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


@dataclass(eq=False)
class _Connection:
    bus: MessageBus
    manager: Any  # dbus-fast ProxyInterface for the Manager (its call_* are made at run time)
    address: str


@dataclass(eq=False)
class _Watch:
    """One watched unit: its merged properties and its subscription."""

    name: str
    path: str | None = None
    conn: _Connection | None = None
    props_iface: Any = None  # the Properties proxy interface of ``path`` on ``conn``
    unit_iface: Any = None
    handler: Callable[[str, dict[str, Any], list[str]], None] | None = None
    props: dict[str, Any] = field(default_factory=dict)
    seq: int = 0  # counts merged signals
    touched: dict[str, int] = field(default_factory=dict)  # property -> seq of its last signal
    last: UnitSnapshot | None = None  # the last snapshot returned or reported
    flush_pending: bool = False
    pairing: asyncio.TimerHandle | None = None  # flush if the Unit signal does not follow
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    recheck: asyncio.TimerHandle | None = None
    last_check: float = -1e9
    is_service: bool = False
    pinned: bool = False

    def __post_init__(self) -> None:
        self.is_service = self.name.endswith(".service")

    def cancel_timers(self) -> None:
        for timer in (self.recheck, self.pairing):
            if timer is not None:
                timer.cancel()
        self.recheck = self.pairing = None

    def snapshot(self) -> UnitSnapshot:
        p = self.props
        return UnitSnapshot(
            name=self.name,
            load_state=str(p.get("LoadState", "")),
            active_state=str(p.get("ActiveState", "")),
            sub_state=str(p.get("SubState", "")),
            result=str(p.get("Result", "")) if self.is_service else "",
            main_pid=int(p.get("MainPID", 0) or 0),
            n_restarts=int(p.get("NRestarts", 0) or 0),
            can_reload=bool(p.get("CanReload", False)),
            restart=str(p.get("Restart", "")) if self.is_service else "",
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DBusError):
        return f"{exc.type}: {exc.text}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _wait_for_disconnect(bus: MessageBus) -> None:
    """Return when ``bus`` is disconnected (dbus-fast may raise instead, e.g. EOFError)."""
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # untyped in dbus-fast 5


def _definitive(exc: BaseException) -> bool:
    """True when systemd or the bus answered with an error (not a lost connection)."""
    return isinstance(exc.__cause__, DBusError)


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
        self._call_timeout = call_timeout
        self._conn: _Connection | None = None
        self._watches: dict[str, _Watch] = {}
        self._job_results: OrderedDict[str, str] = OrderedDict()
        self._job_waiters: dict[str, asyncio.Future[str]] = {}
        self._reloading = False
        self._closed = False
        self._close_event: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._connect_lock: asyncio.Lock | None = None
        self._by_path: dict[str, _Watch] = {}
        self._pending_calls = asyncio.Semaphore(MAX_PENDING_CALLS)

    def listen(self, on_change: OnChange) -> None:
        """Call `on_change` for every change of a watched unit from now on."""
        self._on_change = on_change

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
            conn = await self._open(self.address)
            if self._closed:
                conn.bus.disconnect()
                raise BusError("the systemd manager client was closed while connecting")
            self._conn = conn
            log.info("connected to the system bus", address=conn.address)
            for watch in list(self._watches.values()):
                try:
                    await self._attach(watch, conn, notify=False)
                except BusError as exc:
                    log.error("cannot watch unit", unit=watch.name, error=str(exc))

    async def _open(self, address: str) -> _Connection:
        try:
            bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM)
        except Exception as exc:
            raise BusError(f"bad system bus address {address!r}: {_describe(exc)}") from exc
        try:
            async with asyncio.timeout(self._call_timeout):
                await bus.connect()
        except Exception as exc:
            bus.disconnect()
            if isinstance(exc, TimeoutError):
                why = f"no answer within {self._call_timeout:g}s"
            else:
                why = _describe(exc)
            raise BusError(f"cannot connect to the system bus at {address}: {why}") from exc
        # Any: dbus-fast makes a proxy's call_*/on_* members at run time.
        manager: Any = bus.get_proxy_object(BUS_NAME, MANAGER_PATH, _MANAGER_NODE).get_interface(
            MANAGER_INTERFACE
        )
        conn = _Connection(bus=bus, manager=manager, address=address)
        # Match rules first (dbus-fast sends AddMatch before our next call), then Subscribe.
        # Units' PropertiesChanged come through one rule for the whole unit namespace,
        # dispatched by object path: a rule per unit would hit the bus's limit of 512.
        bus.add_message_handler(self._on_message)
        add_match = Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[PROPERTIES_CHANGED_RULE],
        )
        try:
            await self._call(bus.call(add_match), f"AddMatch on {address}")
        except BusError:
            bus.disconnect()
            raise
        manager.on_job_removed(self._on_job_removed)
        manager.on_unit_new(self._on_unit_new)
        manager.on_reloading(self._on_reloading)
        try:
            await self._call(manager.call_subscribe(), f"Subscribe() on {address}")
        except BusError as exc:
            bus.disconnect()
            raise BusError(
                f"systemd is not answering on the system bus at {address}: {exc}"
            ) from exc
        self._reloading = False
        return conn

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
                    for watch in list(self._watches.values()):
                        if watch.conn is self._conn and watch.last is not None:
                            self._emit(watch.last)
                first = False
                continue
            first = False
            reason = "closed"
            try:
                await _wait_for_disconnect(conn.bus)
            except Exception as exc:  # dbus-fast raises e.g. a bare EOFError here
                reason = _describe(exc)
            if self._closed:
                break
            self._lost(conn, reason)

    def _lost(self, conn: _Connection, reason: str) -> None:
        if self._conn is not conn:
            return
        self._conn = None
        log.warning("lost the system bus; reconnecting", address=conn.address, reason=reason)
        self._fail_waiters(BusError(f"lost the system bus at {conn.address}: {reason}"))
        for watch in self._watches.values():
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
        for watch in self._watches.values():
            watch.cancel_timers()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_waiters(BusError("the systemd manager client was closed"))
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.bus.disconnect()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await _wait_for_disconnect(conn.bus)

    # -- watching ---------------------------------------------------------------------

    def watched(self) -> frozenset[str]:
        return frozenset(self._watches)

    async def watch(self, unit: str) -> UnitSnapshot:
        """Follow ``unit``'s state by signal and return its current snapshot.

        A unit that does not exist is watched too (``load_state`` ``not-found``); when it
        appears, ``on_change`` reports it. Raises BusError when systemd refuses the name
        (the unit is then not watched) or the bus is lost (the unit stays watched and is
        attached again after the reconnect).
        """
        watch = self._watches.get(unit)
        if watch is None:
            watch = self._watches[unit] = _Watch(unit)
        conn = self._require_conn(unit)
        if watch.conn is conn and watch.last is not None:
            return watch.last
        try:
            await self._attach(watch, conn, notify=False)
        except BusError as exc:
            if _definitive(exc) and self._watches.get(unit) is watch:
                self.unwatch(unit)
            raise
        assert watch.last is not None
        return watch.last

    def unwatch(self, unit: str) -> None:
        watch = self._watches.pop(unit, None)
        if watch is not None:
            watch.cancel_timers()
            self._detach(watch, unref=True)

    async def snapshot(self, unit: str) -> UnitSnapshot:
        """A fresh read of ``unit`` (of any unit; a watched one is updated and reported)."""
        conn = self._require_conn(unit)
        watch = self._watches.get(unit)
        if watch is not None:
            await self._attach(watch, conn, notify=True)
            assert watch.last is not None
            return watch.last
        temp = _Watch(unit)
        path = await self._call(conn.manager.call_load_unit(unit), f"LoadUnit({unit})")
        props = conn.bus.get_proxy_object(BUS_NAME, path, _UNIT_NODE).get_interface(
            PROPERTIES_INTERFACE
        )
        await self._read(temp, props)
        return temp.snapshot()

    async def memory_current(self, unit: str) -> int | None:
        """The unit's cgroup memory (MemoryCurrent) in bytes; None when accounting is off.

        Read on demand: systemd does not signal changes of this property.
        """
        watch = self._watches.get(unit)
        if watch is None or watch.props_iface is None or not watch.is_service:
            return None
        value = await self._call(
            watch.props_iface.call_get(SERVICE_INTERFACE, "MemoryCurrent", unpack_variants=True),
            f"{unit}: Get(MemoryCurrent)",
        )
        memory = int(value)
        return None if memory >= 2**64 - 1 else memory

    def _require_conn(self, unit: str) -> _Connection:
        conn = self._conn
        if conn is None or not conn.bus.connected:
            raise BusError(f"{unit}: not connected to the system bus at {self.address}")
        return conn

    async def _attach(self, watch: _Watch, conn: _Connection, *, notify: bool) -> None:
        """LoadUnit, subscribe to the unit's path (again if it moved), read its properties."""
        async with watch.lock:
            watch.last_check = time.monotonic()  # before LoadUnit: its UnitNew comes first
            path = await self._call(
                conn.manager.call_load_unit(watch.name), f"LoadUnit({watch.name})"
            )
            if self._watches.get(watch.name) is not watch:
                return  # unwatched meanwhile
            if watch.conn is not conn or watch.path != path:
                self._detach(watch, unref=watch.conn is conn)
                obj = conn.bus.get_proxy_object(BUS_NAME, path, _UNIT_NODE)
                watch.props_iface = obj.get_interface(PROPERTIES_INTERFACE)
                watch.unit_iface = obj.get_interface(UNIT_INTERFACE)
                watch.handler = self._make_handler(watch)
                self._by_path[path] = watch
                watch.conn, watch.path = conn, path
            await self._read(watch, watch.props_iface)
            if watch.props.get("LoadState") != "loaded" and not watch.pinned:
                # Only a unit systemd does not have is unloaded at once and reloaded
                # (UnitNew) by every read. Loaded units need no pin: their object path
                # stays the same and our one match rule covers the whole namespace. Each
                # Ref costs systemd a match rule of its own, so pinning all would not scale.
                await self._ref(watch)
            self._flush(watch, notify=notify)

    def _detach(self, watch: _Watch, *, unref: bool) -> None:
        conn, unit_iface = watch.conn, watch.unit_iface
        # Only on a live bus: dbus-fast sends RemoveMatch, and a send on a closed socket
        # leaves a future with an OSError nobody retrieves.
        live = conn is not None and conn.bus.connected
        if watch.path is not None and self._by_path.get(watch.path) is watch:
            del self._by_path[watch.path]
        if unref and live and unit_iface is not None and watch.pinned:
            self._background(self._unref(watch.name, unit_iface))
        watch.pinned = False  # a pin also ends with our connection
        watch.conn = watch.props_iface = watch.unit_iface = watch.handler = None
        watch.path = None

    async def _ref(self, watch: _Watch) -> None:
        """Pin the unit so that systemd does not unload it (and forget its state)."""
        try:
            await self._call(watch.unit_iface.call_ref(), f"Ref({watch.name})")
            watch.pinned = True
        except BusError as exc:
            if not _definitive(exc):
                raise
            log.debug(
                "cannot pin unit; re-checks are rate limited", unit=watch.name, error=str(exc)
            )

    async def _unref(self, name: str, unit_iface: Any) -> None:
        with contextlib.suppress(BusError):
            await self._call(unit_iface.call_unref(), f"Unref({name})")

    async def _read(self, watch: _Watch, props_iface: Any) -> None:
        """Read the snapshot's properties; a value from a signal meanwhile wins."""
        wanted = [(UNIT_INTERFACE, p) for p in _UNIT_PROPS]
        if watch.is_service:
            wanted += [(SERVICE_INTERFACE, p) for p in _SERVICE_PROPS]
        start = watch.seq

        async def get(iface: str, prop: str) -> Any:
            # The proxy call is made inside the task: a task cancelled before it runs
            # then leaves no un-awaited coroutine behind.
            call = props_iface.call_get(iface, prop, unpack_variants=True)
            return await self._call(call, f"{watch.name}: Get({prop})")

        values = await asyncio.gather(*(get(iface, prop) for iface, prop in wanted))
        for (_iface, prop), value in zip(wanted, values, strict=True):
            if watch.touched.get(prop, -1) <= start:
                watch.props[prop] = value

    def _on_message(self, message: Message) -> None:
        if (
            message.message_type is not MessageType.SIGNAL
            or message.member != "PropertiesChanged"
            or message.interface != PROPERTIES_INTERFACE
        ):
            return
        watch = self._by_path.get(message.path or "")
        if watch is None or watch.handler is None:
            return
        interface, changed, invalidated = message.body
        watch.handler(interface, {k: v.value for k, v in changed.items()}, invalidated)

    def _make_handler(self, watch: _Watch) -> Callable[[str, dict[str, Any], list[str]], None]:
        wanted = {UNIT_INTERFACE: _UNIT_PROPS, SERVICE_INTERFACE: _SERVICE_PROPS}

        def on_properties_changed(
            interface: str, changed: dict[str, Any], invalidated: list[str]
        ) -> None:
            names = wanted.get(interface)
            if names is None or self._watches.get(watch.name) is not watch:
                return
            watch.seq += 1
            for prop in names:
                if prop in changed:
                    watch.props[prop] = changed[prop]
                    watch.touched[prop] = watch.seq
            if watch.props.get("LoadState") != "loaded" or any(p in names for p in invalidated):
                # A unit we knew as not-found is running (its file appeared and something
                # started it without a daemon-reload), or a value was only invalidated:
                # re-read it all, and report only that consistent result. (Reading a unit
                # never makes systemd send PropertiesChanged, so this cannot loop.)
                self._schedule_recheck(watch, now=True)
                return
            loop = asyncio.get_running_loop()
            if interface == SERVICE_INTERFACE:
                # The Unit interface's signal follows at once: report both together, so
                # that no snapshot mixes the new Result with the old ActiveState.
                if watch.pairing is None:
                    watch.pairing = loop.call_later(PAIR_WAIT, self._flush, watch, True)
                return
            if watch.pairing is not None:
                watch.pairing.cancel()
                watch.pairing = None
            if not watch.flush_pending:
                watch.flush_pending = True
                loop.call_soon(self._flush, watch, True)

        return on_properties_changed

    def _flush(self, watch: _Watch, notify: bool) -> None:
        watch.flush_pending = False
        if watch.pairing is not None:
            watch.pairing.cancel()
            watch.pairing = None
        if self._watches.get(watch.name) is not watch:
            return
        snap = watch.snapshot()
        if snap == watch.last:
            return
        watch.last = snap
        if notify:
            self._emit(snap)

    def _emit(self, snap: UnitSnapshot) -> None:
        try:
            self._on_change(snap)
        except Exception:
            log.exception("on_change failed", unit=snap.name)

    # -- re-checks (a unit appearing, a daemon-reload) -----------------------------------

    def _schedule_recheck(self, watch: _Watch, *, now: bool = False) -> None:
        """Re-read a watched unit from LoadUnit on: at once when ``now``, else (UnitNew,
        which our own LoadUnit of an unpinned missing unit causes) at most once per
        RECHECK_INTERVAL."""
        if watch.recheck is not None:
            if not now:
                return
            watch.recheck.cancel()
        loop = asyncio.get_running_loop()
        delay = 0.0 if now else max(0.0, watch.last_check + RECHECK_INTERVAL - time.monotonic())
        watch.recheck = loop.call_later(delay, self._start_recheck, watch)

    def _start_recheck(self, watch: _Watch) -> None:
        watch.recheck = None
        self._background(self._recheck(watch))

    async def _recheck(self, watch: _Watch) -> None:
        conn = self._conn
        if conn is None or self._watches.get(watch.name) is not watch:
            return
        try:
            await self._attach(watch, conn, notify=True)
        except BusError as exc:
            log.warning("cannot re-read unit", unit=watch.name, error=str(exc))

    def _on_reloading(self, active: bool) -> None:
        self._reloading = active
        if not active:
            for watch in self._watches.values():
                self._schedule_recheck(watch, now=True)

    def _on_unit_new(self, unit_id: str, path: str) -> None:
        if self._reloading:
            return  # a daemon-reload re-announces every unit; Reloading(false) re-reads ours
        for watch in self._watches.values():
            if (watch.name == unit_id or watch.path == path) and watch.props.get(
                "LoadState"
            ) != "loaded":
                self._schedule_recheck(watch)

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

    # The job timeout is part of the interface (ASYNC109): it bounds the wait for
    # JobRemoved, not the call, and its expiry is reported as JobFailed.
    async def _job(self, verb: str, unit: str, timeout: float) -> str:  # noqa: ASYNC109
        conn = self._require_conn(unit)
        method = getattr(conn.manager, f"call_{verb}_unit")
        job: str = await self._call(method(unit, JOB_MODE), f"{verb} {unit}")
        result = self._job_results.pop(job, None)
        if result is not None:
            return result
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._job_waiters[job] = future
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise JobFailed(
                f"{verb} of {unit}: job {job} did not finish within {timeout:g}s"
            ) from None
        finally:
            self._job_waiters.pop(job, None)

    def _on_job_removed(self, job_id: int, job: str, unit: str, result: str) -> None:
        future = self._job_waiters.pop(job, None)
        if future is not None:
            if not future.done():
                future.set_result(result)
            return
        self._job_results[job] = result
        while len(self._job_results) > RECENT_JOBS:
            self._job_results.popitem(last=False)

    def _fail_waiters(self, error: BusError) -> None:
        waiters, self._job_waiters = self._job_waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(error)

    # -- helpers ----------------------------------------------------------------------

    async def _call(self, call: Awaitable[T], what: str) -> T:
        """Await one D-Bus call under the call timeout; every failure becomes a BusError
        (UnitNotFound for systemd's NoSuchUnit) whose message says what was called."""
        try:
            async with self._pending_calls, asyncio.timeout(self._call_timeout):
                return await call
        except DBusError as exc:
            error = UnitNotFound if exc.type == _NO_SUCH_UNIT else BusError
            raise error(f"{what}: {exc.text} ({exc.type})") from exc
        except TimeoutError as exc:
            raise BusError(f"{what}: no answer within {self._call_timeout:g}s") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a lost connection shows as EOFError, OSError, ...
            raise BusError(f"{what}: the bus connection failed ({_describe(exc)})") from exc
        finally:
            if isinstance(call, Coroutine):
                # Cancelled while waiting for a slot, it never ran: close it quietly.
                call.close()

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
