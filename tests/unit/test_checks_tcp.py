"""TCP probe against real asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from supervisor.checks import tcp
from supervisor.checks.result import ProbeContext, Status
from supervisor.config.probes import TcpProbe
from tests.helpers import closed_port

CONTEXT = ProbeContext(unit="redis.service")


async def _ping_pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A banner, then +PONG for each PING line, until the client closes."""
    writer.write(b"+HELLO tiny-redis\r\n")
    await writer.drain()
    while line := await reader.readline():
        if line.strip() == b"PING":
            writer.write(b"+PONG\r\n")
            await writer.drain()
    writer.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_ping_pong, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_connect_only(port: int) -> None:
    result = await tcp.run(TcpProbe(port=port), CONTEXT, 2.0)
    assert result.status is Status.OK
    assert result.message.startswith(f"connected to 127.0.0.1:{port} in ")


async def test_banner_expected(port: int) -> None:
    result = await tcp.run(TcpProbe(port=port, expect="tiny-redis"), CONTEXT, 2.0)
    assert result.status is Status.OK
    assert result.message == f"127.0.0.1:{port} answered 'tiny-redis'"


async def test_send_and_expect(port: int) -> None:
    result = await tcp.run(TcpProbe(port=port, send="PING\r\n", expect="+PONG"), CONTEXT, 2.0)
    assert result.status is Status.OK, result


async def test_expect_mismatch_times_out(port: int) -> None:
    # The server keeps the connection open and never says it: the probe gives up in time.
    result = await tcp.run(TcpProbe(port=port, send="PING\r\n", expect="+OK"), CONTEXT, 0.5)
    assert result.status is Status.CRITICAL
    assert result.message == f"no '+OK' from 127.0.0.1:{port} within 500ms"
    assert result.duration < 1.0


async def test_expect_mismatch_when_the_server_closes() -> None:
    async def banner_then_close(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 smtp.example ESMTP\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner_then_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await tcp.run(TcpProbe(port=port, expect="SSH-2.0"), CONTEXT, 2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert result.status is Status.CRITICAL
    assert result.message == (
        f"127.0.0.1:{port} closed without 'SSH-2.0'; it said '220 smtp.example ESMTP\\r\\n'"
    )


async def test_closed_port_is_refused() -> None:
    port = closed_port()
    result = await tcp.run(TcpProbe(port=port), CONTEXT, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message == f"cannot connect to 127.0.0.1:{port}: Connection refused"


async def test_connection_that_never_opens_times_out() -> None:
    # A listening socket with a full backlog: further connections wait in SYN_SENT.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        await asyncio.sleep(0.05)
        result = await tcp.run(TcpProbe(port=port), CONTEXT, 0.5)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
    assert result.status is Status.CRITICAL
    assert result.message == f"no connection to 127.0.0.1:{port} within 500ms"


async def test_connections_are_closed_after_the_probe() -> None:
    closed = asyncio.Event()

    async def note_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the probe closes its end
        closed.set()
        writer.close()

    server = await asyncio.start_server(note_close, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert (await tcp.run(TcpProbe(port=port, send="bye"), CONTEXT, 1.0)).status is Status.OK
        async with asyncio.timeout(1.0):
            await closed.wait()
    finally:
        server.close()
        await server.wait_closed()
