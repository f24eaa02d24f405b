"""TCP probe against real asyncio servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from supervisor.checks import Prober, tcp
from supervisor.checks.result import CheckResult, Pending, ProbeContext, Status
from supervisor.config.check import Check
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


# -- the callback probe (Prober.start): no task, no timer --------------------------------------


class Seen(list[CheckResult]):
    """The results a callback probe reported; `wait()` for the first."""

    def __init__(self) -> None:
        super().__init__()
        self.event = asyncio.Event()

    def __call__(self, result: CheckResult) -> None:
        self.append(result)
        self.event.set()

    async def wait(self) -> None:
        async with asyncio.timeout(2.0):
            await self.event.wait()


def _started(probe: dict[str, object], within: str = "2s") -> tuple[Seen, Pending | None]:
    """Start a port check by callbacks (inside a running loop)."""
    results = Seen()
    check = Check.model_validate({"name": "port", "tcp": probe, "timeout": within})
    return results, Prober().start(check, CONTEXT, results)


async def test_callback_connect_to_an_open_port(port: int) -> None:
    results, pending = _started({"port": port})
    assert pending is not None
    await results.wait()
    pending.expire()  # after the end: nothing more
    assert len(results) == 1 and results[0].status is Status.OK
    assert results[0].message.startswith(f"connected to 127.0.0.1:{port} in ")


async def test_callback_connect_refused() -> None:
    closed = closed_port()
    results, _ = _started({"port": closed})
    await results.wait()
    assert [(r.status, r.message) for r in results] == [
        (Status.CRITICAL, f"cannot connect to 127.0.0.1:{closed}: Connection refused")
    ]


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: a further connect hangs (SYNs dropped)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    address = server.getsockname()
    fillers = []
    for _ in range(4):
        client = socket.socket()
        client.setblocking(False)
        client.connect_ex(address)
        fillers.append(client)
    yield address[1]
    for client in fillers:
        client.close()
    server.close()


async def test_callback_connect_that_hangs_is_expired_by_its_scheduler(full_backlog: int) -> None:
    results, pending = _started({"port": full_backlog}, within="500ms")
    assert pending is not None
    await asyncio.sleep(0.05)
    if results:
        pytest.skip("this kernel accepted the connection: no hung connect to test")
    pending.expire()
    pending.expire()
    assert [(r.status, r.message) for r in results] == [
        (Status.CRITICAL, f"no connection to 127.0.0.1:{full_backlog} within 500ms")
    ]


async def test_a_cancelled_callback_connect_reports_nothing(full_backlog: int) -> None:
    results, pending = _started({"port": full_backlog})
    assert pending is not None
    pending.cancel()
    await asyncio.sleep(0.05)
    assert results == [] or results[0].status is Status.OK


async def test_what_the_callback_probe_does_not_serve_runs_as_a_coroutine() -> None:
    for probe in (
        {"host": "localhost", "port": 1},
        {"port": 1, "send": "x"},
        {"port": 1, "expect": "x"},
    ):
        results, pending = _started(probe)
        assert pending is None and results == []
    check = Check.model_validate({"name": "m", "memory": {"host_max_used": "100%"}})
    assert Prober().start(check, CONTEXT, lambda result: None) is None


def test_numeric_addresses_need_no_resolver() -> None:
    assert tcp._numeric_family("127.0.0.1") is socket.AF_INET
    assert tcp._numeric_family("::1") is socket.AF_INET6
    assert tcp._numeric_family("localhost") is None
    assert tcp._numeric_family("1.2.3") is None
