"""TCP probe: connect, optionally send, optionally read until the expected text."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import socket
import time
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

__all__ = ["CLOSE_TIMEOUT", "READ_MAX", "run"]

READ_MAX = 64 * 1024
"""At most this many bytes of the answer are read while looking for `expect`."""
CLOSE_TIMEOUT = 0.1
"""Longest wait for a clean close before the connection is aborted."""


@functools.cache
def _numeric_family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an address literal, None for a name to resolve."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return None
    return socket.AF_INET if version == 4 else socket.AF_INET6


async def _connect_only(host: str, port: int) -> None:
    """Connect and close at once, with a bare non-blocking socket: no stream objects,
    which is most of the cost of a plain port check run every second."""
    loop = asyncio.get_running_loop()
    family = _numeric_family(host)
    address: tuple[Any, ...] = (host, port)
    if family is None:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
    finally:
        sock.close()


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
