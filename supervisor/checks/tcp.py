"""TCP probe: connect, optionally send, optionally read until the expected text."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from supervisor.checks.result import (
    CheckResult,
    Measure,
    ProbeContext,
    Status,
    finish,
    os_reason,
)
from supervisor.config.probes import TcpProbe
from supervisor.config.values import format_duration

__all__ = ["CLOSE_TIMEOUT", "READ_MAX", "Connect", "run"]

READ_MAX = 64 * 1024
"""At most this many bytes of the answer are read while looking for `expect`."""
CLOSE_TIMEOUT = 0.1
"""Longest wait for a clean close before the connection is aborted."""


@functools.cache
def _numeric_family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an address literal, None for a name to resolve."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


async def _connect_only(host: str, port: int) -> None:
    """Connect and close at once, with a bare non-blocking socket: no stream objects,
    which is most of the cost of a plain port check run every second.

    Not `loop.sock_connect`: uvloop's asks getaddrinfo again for every address, even
    127.0.0.1, without a socket type, which sends each run through libuv's thread pool
    (152 against 26 us a run). The connect's completion is awaited as a future the
    socket's writability resolves."""
    loop = asyncio.get_running_loop()
    family = _numeric_family(host)
    address: tuple[Any, ...] = (host, port)
    if family is None:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code == errno.EINPROGRESS:
            writable: asyncio.Future[None] = loop.create_future()
            fd = sock.fileno()
            loop.add_writer(fd, _resolve, writable)
            try:
                await writable
            finally:
                loop.remove_writer(fd)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
    finally:
        sock.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Connect:
    """A port check (connect, no send, no expect) to an address literal, run by callbacks
    alone: no task, no future, no timer. The scheduler that starts it calls `expire()`
    at its deadline (a timeout is then reported), or `cancel()` to drop it unreported.
    `done` is called exactly once unless cancelled, possibly before `__init__` returns.

    `Connect.start` returns None for a probe it cannot run this way (a name to resolve,
    `send`, `expect`): run it with `run`.
    """

    __slots__ = ("_address", "_done", "_fd", "_loop", "_sock", "_started", "_within")

    @classmethod
    def start(
        cls,
        spec: TcpProbe,
        timeout: float,
        done: Callable[[CheckResult], None],
    ) -> Connect | None:
        if spec.send is not None or spec.expect is not None:
            return None
        family = _numeric_family(spec.host)
        if family is None:
            return None
        return cls(family, spec, timeout, done)

    def __init__(
        self,
        family: socket.AddressFamily,
        spec: TcpProbe,
        timeout: float,
        done: Callable[[CheckResult], None],
    ) -> None:
        self._started = time.monotonic()
        self._done: Callable[[CheckResult], None] | None = done
        self._address = _address(spec)
        self._within = timeout
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._sock: socket.socket | None = None
        try:
            sock = self._sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            code = sock.connect_ex((spec.host, spec.port))
        except OSError as exc:  # no socket to be had (EMFILE), or connect refused at once
            code = exc.errno or errno.EIO
        if code == errno.EINPROGRESS:
            self._fd = sock.fileno()
            self._loop.add_writer(self._fd, self._writable)
        else:
            self._end(code)

    def _writable(self) -> None:
        sock = self._sock
        self._end(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if sock else errno.EIO)

    def _close(self) -> None:
        if self._fd >= 0:
            self._loop.remove_writer(self._fd)
            self._fd = -1
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _end(self, code: int) -> None:
        self._close()
        if self._done is None:
            return
        done, self._done = self._done, None
        address, started = self._address, self._started
        if code:
            reason = os.strerror(code)
            done(finish(Status.CRITICAL, f"cannot connect to {address}: {reason}", started))
        else:
            ms = (time.monotonic() - started) * 1000
            done(
                finish(
                    Status.OK,
                    f"connected to {address} in {ms:.1f} ms",
                    started,
                    (Measure("ms", round(ms, 1), "ms", low=0.0),),  # as `run` reports it
                )
            )

    def expire(self) -> None:
        """The deadline passed: report the timeout (nothing if it already ended)."""
        self._close()
        if self._done is not None:
            done, self._done = self._done, None
            within = format_duration(self._within)
            done(
                finish(
                    Status.CRITICAL,
                    f"no connection to {self._address} within {within}",
                    self._started,
                )
            )

    def cancel(self) -> None:
        """Drop the probe: close the socket, report nothing."""
        self._done = None
        self._close()


def _address(spec: TcpProbe) -> str:
    return f"[{spec.host}]:{spec.port}" if ":" in spec.host else f"{spec.host}:{spec.port}"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


async def _read_until(reader: asyncio.StreamReader, expect: bytes) -> tuple[bool, bytes]:
    """Read until `expect` is seen (True), or the peer closes or READ_MAX is read (False)."""
    seen = b""
    while len(seen) < READ_MAX:
        chunk = await reader.read(READ_MAX - len(seen))
        if not chunk:
            break
        seen += chunk
        if expect in seen:
            return True, seen
    return False, seen


async def run(
    spec: TcpProbe,
    context: ProbeContext,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    """Connect to `spec.host:spec.port` within `timeout`, then send and expect if asked."""
    del context  # a TCP probe needs nothing from systemd
    started = time.monotonic()
    address = _address(spec)
    within = format_duration(timeout)
    connect_only = spec.send is None and spec.expect is None
    try:
        async with asyncio.timeout(timeout):
            if connect_only:
                await _connect_only(spec.host, spec.port)
            else:
                reader, writer = await asyncio.open_connection(spec.host, spec.port)
    except TimeoutError:
        return finish(Status.CRITICAL, f"no connection to {address} within {within}", started)
    except socket.gaierror as exc:
        # The name does not resolve: the probe cannot run, the service may be fine.
        return finish(Status.UNKNOWN, f"cannot resolve {spec.host}: {exc.strerror}", started)
    except OSError as exc:
        return finish(Status.CRITICAL, f"cannot connect to {address}: {os_reason(exc)}", started)
    connected_ms = (time.monotonic() - started) * 1000
    if connect_only:
        return finish(
            Status.OK,
            f"connected to {address} in {connected_ms:.1f} ms",
            started,
            (Measure("ms", round(connected_ms, 1), "ms", low=0.0),),
        )
    try:
        remaining = max(0.0, timeout - (time.monotonic() - started))
        try:
            async with asyncio.timeout(remaining):
                if spec.send is not None:
                    writer.write(spec.send.encode())
                    await writer.drain()
                if spec.expect is None:
                    return finish(Status.OK, f"sent to {address}", started)
                found, seen = await _read_until(reader, spec.expect.encode())
        except TimeoutError:
            return finish(
                Status.CRITICAL, f"no {spec.expect!r} from {address} within {within}", started
            )
        except OSError as exc:
            return finish(
                Status.CRITICAL, f"connection to {address} failed: {os_reason(exc)}", started
            )
        if found:
            return finish(Status.OK, f"{address} answered {spec.expect!r}", started)
        answer = seen[:60].decode(errors="replace")
        how = "closed" if len(seen) < READ_MAX else "sent too much"
        return finish(
            Status.CRITICAL,
            f"{address} {how} without {spec.expect!r}; it said {answer!r}",
            started,
        )
    finally:
        with contextlib.suppress(Exception):
            await _close(writer)
