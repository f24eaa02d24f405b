"""sd_notify for a ``Type=notify`` unit: readiness, status, reload, stop, watchdog.

A no-op when ``NOTIFY_SOCKET`` is unset (run by hand, in tests). The protocol is one
datagram of ``VAR=value`` lines, in UTF-8, to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (``@name`` is an abstract one): a few lines of the standard library,
so no package is needed for it. The watchdog interval and loop are here too.

systemd 252 has no ``Type=notify-reload``: on SIGHUP the daemon sends ``reloading()``
(``RELOADING=1`` with ``MONOTONIC_USEC=``), then ``ready()`` when the reload is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping

from supervisor.secrets import mask
from supervisor.text import one_line


def _connect(address: str) -> socket.socket | None:
    """A datagram socket connected to ``address`` (``@name``: abstract), or None when
    there is nothing there to talk to."""
    target = "\0" + address[1:] if address.startswith("@") else address
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        return None
    return sock


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Talks to systemd over ``$NOTIFY_SOCKET``; every method is a no-op without it.

    ``environ`` defaults to ``os.environ``, read once here. With ``unset_environment``
    the notify and watchdog variables are removed from ``os.environ`` afterwards, so that
    commands the daemon runs (probes) cannot talk to systemd in its name.
    """

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, unset_environment: bool = False
    ) -> None:
        env = os.environ if environ is None else environ
        self.socket_path = env.get("NOTIFY_SOCKET") or None
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")
        self._socket: socket.socket | None = None
        if self.socket_path is not None:
            self._socket = _connect(self.socket_path)
        if unset_environment:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to send to."""
        return self._socket is not None

    def send(self, *assignments: str) -> None:
        """Send ``VAR=value`` lines in one datagram (nothing without a notify socket)."""
        if self._socket is None:
            return
        # As sd_notify's callers do, a failed send is dropped: the next one counts.
        with contextlib.suppress(OSError):
            self._socket.send("\n".join(assignments).encode("utf-8"))

    def ready(self, status: str) -> None:
        """``READY=1`` with a one-line ``STATUS=``: start-up (or a reload) is complete."""
        self.send("READY=1", f"STATUS={one_line(mask(status))}")

    def status(self, text: str) -> None:
        """A one-line ``STATUS=``, secrets masked: any user can read it (systemctl status)."""
        self.send(f"STATUS={one_line(mask(text))}")

    def reloading(self) -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` (when the reload began); ``ready()``
        ends it."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={_monotonic_usec()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between ``WATCHDOG=1`` pings: half of ``WATCHDOG_USEC``, when it is set
        and meant for this process (``WATCHDOG_PID`` unset or our PID); else None."""
        if not self.enabled or not self._watchdog_usec:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000

    async def watchdog_loop(self) -> None:
        """Ping the watchdog from the event loop until cancelled (returns at once when
        there is no watchdog). A stalled loop stops the pings, and systemd acts."""
        interval = self.watchdog_interval()
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)
