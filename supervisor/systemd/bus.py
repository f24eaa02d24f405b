"""The D-Bus side of the systemd manager client: the system bus address, one connection
to it (match rule, signal handlers, Subscribe) and calls under a timeout.

Private to :mod:`supervisor.systemd.manager`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dbus_fast import BusType, DBusError, Message
from dbus_fast.aio import MessageBus
from dbus_fast.introspection import Node

from supervisor.errors import BusError, UnitNotFound
from supervisor.systemd.introspection import (
    BUS_NAME,
    MANAGER_INTERFACE,
    MANAGER_PATH,
    MANAGER_XML,
    PROPERTIES_INTERFACE,
    UNIT_XML,
)

T = TypeVar("T")

DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
# dbus-daemon allows 128 pending replies and 512 match rules per connection on the
# system bus by default: keep well under the first, and use one rule for all units.
MAX_PENDING_CALLS = 64
UNIT_PATH_NAMESPACE = "/org/freedesktop/systemd1/unit"
PROPERTIES_CHANGED_RULE = (
    f"type='signal',sender='{BUS_NAME}',interface='{PROPERTIES_INTERFACE}',"
    f"member='PropertiesChanged',path_namespace='{UNIT_PATH_NAMESPACE}'"
)

NO_SUCH_UNIT = "org.freedesktop.systemd1.NoSuchUnit"

MANAGER_NODE = Node.parse(MANAGER_XML)
UNIT_NODE = Node.parse(UNIT_XML)


def system_bus_address() -> str:
    """The system bus address: ``DBUS_SYSTEM_BUS_ADDRESS`` or the standard socket."""
    return os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS


@dataclass(eq=False)
class Connection:
    bus: MessageBus
    manager: Any  # dbus-fast ProxyInterface for the Manager (its call_* are made at run time)
    address: str


@dataclass(frozen=True)
class Signals:
    """Where one connection delivers systemd's signals."""

    on_message: Callable[[Message], None]  # every message (units' PropertiesChanged)
    on_job_removed: Callable[[int, str, str, str], None]
    on_unit_new: Callable[[str, str], None]
    on_reloading: Callable[[bool], None]


def describe(exc: BaseException) -> str:
    if isinstance(exc, DBusError):
        return f"{exc.type}: {exc.text}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def wait_for_disconnect(bus: MessageBus) -> None:
    """Return when ``bus`` is disconnected (dbus-fast may raise instead, e.g. EOFError)."""
    await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]  # untyped in dbus-fast 5


def definitive(exc: BaseException) -> bool:
    """True when systemd or the bus answered with an error (not a lost connection)."""
    return isinstance(exc.__cause__, DBusError)


class Caller:
    """Makes D-Bus calls under a timeout, at most MAX_PENDING_CALLS at a time."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pending_calls = asyncio.Semaphore(MAX_PENDING_CALLS)

    async def __call__(self, call: Awaitable[T], what: str) -> T:
        """Await one D-Bus call under the call timeout; every failure becomes a BusError
        (UnitNotFound for systemd's NoSuchUnit) whose message says what was called."""
        try:
            async with self._pending_calls, asyncio.timeout(self.timeout):
                return await call
        except DBusError as exc:
            error = UnitNotFound if exc.type == NO_SUCH_UNIT else BusError
            raise error(f"{what}: {exc.text} ({exc.type})") from exc
        except TimeoutError as exc:
            raise BusError(f"{what}: no answer within {self.timeout:g}s") from exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a lost connection shows as EOFError, OSError, ...
            raise BusError(f"{what}: the bus connection failed ({describe(exc)})") from exc
        finally:
            if isinstance(call, Coroutine):
                # Cancelled while waiting for a slot, it never ran: close it quietly.
                call.close()


async def open_connection(address: str, call: Caller, signals: Signals) -> Connection:
    """Connect to the bus at ``address``, add the match rule, hook up ``signals`` and
    Subscribe(); BusError naming the address when the bus or systemd cannot be reached."""
    try:
        bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM)
    except Exception as exc:
        raise BusError(f"bad system bus address {address!r}: {describe(exc)}") from exc
    try:
        async with asyncio.timeout(call.timeout):
            await bus.connect()
    except Exception as exc:
        bus.disconnect()
        if isinstance(exc, TimeoutError):
            why = f"no answer within {call.timeout:g}s"
        else:
            why = describe(exc)
        raise BusError(f"cannot connect to the system bus at {address}: {why}") from exc
    # Any: dbus-fast makes a proxy's call_*/on_* members at run time.
    manager: Any = bus.get_proxy_object(BUS_NAME, MANAGER_PATH, MANAGER_NODE).get_interface(
        MANAGER_INTERFACE
    )
    conn = Connection(bus=bus, manager=manager, address=address)
    # Match rules first (dbus-fast sends AddMatch before our next call), then Subscribe.
    # Units' PropertiesChanged come through one rule for the whole unit namespace,
    # dispatched by object path: a rule per unit would hit the bus's limit of 512.
    bus.add_message_handler(signals.on_message)
    add_match = Message(
        destination="org.freedesktop.DBus",
        path="/org/freedesktop/DBus",
        interface="org.freedesktop.DBus",
        member="AddMatch",
        signature="s",
        body=[PROPERTIES_CHANGED_RULE],
    )
    try:
        await call(bus.call(add_match), f"AddMatch on {address}")
    except BusError:
        bus.disconnect()
        raise
    manager.on_job_removed(signals.on_job_removed)
    manager.on_unit_new(signals.on_unit_new)
    manager.on_reloading(signals.on_reloading)
    try:
        await call(manager.call_subscribe(), f"Subscribe() on {address}")
    except BusError as exc:
        bus.disconnect()
        raise BusError(f"systemd is not answering on the system bus at {address}: {exc}") from exc
    return conn
