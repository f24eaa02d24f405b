"""The watched units of the systemd manager client: each unit's merged properties, the
``PropertiesChanged`` signals merged into them, and re-checks (a unit appearing, the end
of a daemon-reload).

Private to :mod:`supervisor.systemd.manager`, whose docstring tells why it works this way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import Message, MessageType

from supervisor.core.values import UnitSnapshot
from supervisor.systemd.bus import Caller, Connection
from supervisor.systemd.introspection import PROPERTIES_INTERFACE, SERVICE_INTERFACE, UNIT_INTERFACE

#: At most one UnitNew/PropertiesChanged-driven re-check of a unit per this many seconds.
RECHECK_INTERVAL = 1.0
#: How long a Service-interface change waits for the Unit-interface one that follows it.
PAIR_WAIT = 0.05

UNIT_PROPS = ("LoadState", "ActiveState", "SubState", "CanReload")
SERVICE_PROPS = ("MainPID", "Result", "NRestarts", "Restart")


@dataclass(eq=False)
class Watch:
    """One watched unit: its merged properties and its subscription."""

    name: str
    path: str | None = None
    conn: Connection | None = None
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


async def read_properties(watch: Watch, props_iface: Any, call: Caller) -> None:
    """Read the snapshot's properties; a value from a signal meanwhile wins."""
    wanted = [(UNIT_INTERFACE, p) for p in UNIT_PROPS]
    if watch.is_service:
        wanted += [(SERVICE_INTERFACE, p) for p in SERVICE_PROPS]
    start = watch.seq

    async def get(iface: str, prop: str) -> Any:
        # The proxy call is made inside the task: a task cancelled before it runs
        # then leaves no un-awaited coroutine behind.
        return await call(
            props_iface.call_get(iface, prop, unpack_variants=True), f"{watch.name}: Get({prop})"
        )

    values = await asyncio.gather(*(get(iface, prop) for iface, prop in wanted))
    for (_iface, prop), value in zip(wanted, values, strict=True):
        if watch.touched.get(prop, -1) <= start:
            watch.props[prop] = value


class Watches:
    """The watched units by name and by object path.

    Merges their ``PropertiesChanged`` signals, reports a changed snapshot through
    ``emit`` and has a unit re-read (``recheck``, run by ``background``) when a signal
    alone cannot tell its state.
    """

    def __init__(
        self,
        emit: Callable[[UnitSnapshot], None],
        recheck: Callable[[Watch], Awaitable[None]],
        background: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.by_name: dict[str, Watch] = {}
        self.by_path: dict[str, Watch] = {}
        self.reloading = False
        self._emit = emit
        self._recheck = recheck
        self._background = background

    def current(self, watch: Watch) -> bool:
        """True while ``watch`` is the watch of its unit (not unwatched meanwhile)."""
        return self.by_name.get(watch.name) is watch

    def on_message(self, message: Message) -> None:
        if (
            message.message_type is not MessageType.SIGNAL
            or message.member != "PropertiesChanged"
            or message.interface != PROPERTIES_INTERFACE
        ):
            return
        watch = self.by_path.get(message.path or "")
        if watch is None or watch.handler is None:
            return
        interface, changed, invalidated = message.body
        watch.handler(interface, {k: v.value for k, v in changed.items()}, invalidated)

    def make_handler(self, watch: Watch) -> Callable[[str, dict[str, Any], list[str]], None]:
        wanted = {UNIT_INTERFACE: UNIT_PROPS, SERVICE_INTERFACE: SERVICE_PROPS}

        def on_properties_changed(
            interface: str, changed: dict[str, Any], invalidated: list[str]
        ) -> None:
            names = wanted.get(interface)
            if names is None or not self.current(watch):
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
                self.schedule_recheck(watch, now=True)
                return
            loop = asyncio.get_running_loop()
            if interface == SERVICE_INTERFACE:
                # The Unit interface's signal follows at once: report both together, so
                # that no snapshot mixes the new Result with the old ActiveState.
                if watch.pairing is None:
                    watch.pairing = loop.call_later(PAIR_WAIT, self.flush, watch, True)
                return
            if watch.pairing is not None:
                watch.pairing.cancel()
                watch.pairing = None
            if not watch.flush_pending:
                watch.flush_pending = True
                loop.call_soon(self.flush, watch, True)

        return on_properties_changed

    def flush(self, watch: Watch, notify: bool) -> None:
        watch.flush_pending = False
        if watch.pairing is not None:
            watch.pairing.cancel()
            watch.pairing = None
        if not self.current(watch):
            return
        snap = watch.snapshot()
        if snap == watch.last:
            return
        watch.last = snap
        if notify:
            self._emit(snap)

    # -- re-checks (a unit appearing, a daemon-reload) -----------------------------------

    def schedule_recheck(self, watch: Watch, *, now: bool = False) -> None:
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

    def _start_recheck(self, watch: Watch) -> None:
        watch.recheck = None
        self._background(self._recheck(watch))

    def on_reloading(self, active: bool) -> None:
        self.reloading = active
        if not active:
            for watch in self.by_name.values():
                self.schedule_recheck(watch, now=True)

    def on_unit_new(self, unit_id: str, path: str) -> None:
        if self.reloading:
            return  # a daemon-reload re-announces every unit; Reloading(false) re-reads ours
        for watch in self.by_name.values():
            if (watch.name == unit_id or watch.path == path) and watch.props.get(
                "LoadState"
            ) != "loaded":
                self.schedule_recheck(watch)
