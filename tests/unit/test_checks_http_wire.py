"""The lean HTTP probe against scripted servers on loopback: framing (chunked, a length,
until the close, HEAD, 1xx), the body cap, the total timeout, kept connections, TLS with a
CA, SNI and a client certificate, redirects, and what goes on the wire."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from supervisor.checks import Prober, http
from supervisor.checks.http import BODY_MAX, ClientTls, HttpProber
from supervisor.checks.http_request import target
from supervisor.checks.result import CheckResult, ProbeContext, Status
from supervisor.config.check import Check
from supervisor.config.probes import HttpProbe
from supervisor.testing.etcd_server import TlsFiles, make_tls

CONTEXT = ProbeContext(unit="web.service")
ROOT = Path(__file__).resolve().parents[2]

CLOSE = b"<close without answering>"
"""A scripted answer: read the request, then close the connection."""


def ok(body: bytes = b"ok", *extra: str) -> bytes:
    head = "".join(f"{line}\r\n" for line in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head.encode(), body)


Answer = bytes | Callable[[asyncio.StreamWriter], "asyncio.Future[None] | None"]


@dataclass
class Scripted:
    """A server that answers each request with the next of `answers` (the last repeats)."""

    answers: list[Answer]
    base: str = ""
    requests: list[bytes] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append(request)
                self.peers.append(writer.get_extra_info("peername")[1])
                index = min(len(self.requests), len(self.answers)) - 1
                answer = self.answers[index]
                if answer == CLOSE:
                    return
                if isinstance(answer, bytes):
                    writer.write(answer)
                    await writer.drain()
                else:
                    pending = answer(writer)
                    if pending is not None:
                        await pending
                        return
        finally:
            writer.close()


Serve = Callable[..., Awaitable[Scripted]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with _servers() as start:
        yield start


@contextlib.asynccontextmanager
async def _servers() -> AsyncIterator[Serve]:
    servers: list[asyncio.Server] = []

    async def start(
        *answers: Answer, host: str = "127.0.0.1", context: ssl.SSLContext | None = None
    ) -> Scripted:
        scripted = Scripted(list(answers))
        server = await asyncio.start_server(scripted.handle, host, 0, ssl=context)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        scripted.base = f"{'https' if context else 'http'}://{shown}:{port}"
        return scripted

    yield start
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    http = HttpProber()
    yield http
    await http.close()


async def test_a_chunked_body_is_searched_and_its_connection_kept(
    serve: Serve, prober: HttpProber
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n7\r\n, world\r\n6\r\n needl\r\n1\r\ne\r\n0\r\n\r\n"
    )
    server = await serve(chunked)
    spec = HttpProbe(url=f"{server.base}/", body="world needle")
    for _ in range(2):
        result = await prober.run(spec, CONTEXT, 2.0)
        assert result.status is Status.OK, result
    assert len(set(server.peers)) == 1


async def test_a_length_delimited_body_in_pieces(serve: Serve, prober: HttpProber) -> None:
    async def in_pieces(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n")
        writer.write(b"Content-Length: 12\r\n\r\nstatus")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(" \xfcber".encode("latin-1") + b"!")
        await writer.drain()

    server = await serve(lambda writer: asyncio.ensure_future(in_pieces(writer)))
    result = await prober.run(HttpProbe(url=f"{server.base}/", body="status über!"), CONTEXT, 2.0)
    assert result.status is Status.OK, result


async def test_a_body_that_ends_with_the_connection(serve: Serve, prober: HttpProber) -> None:
    async def until_close(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall is well")
        await writer.drain()
        writer.close()

    server = await serve(lambda writer: asyncio.ensure_future(until_close(writer)))
    spec = HttpProbe(url=f"{server.base}/", body="is well")
    for _ in range(2):
        result = await prober.run(spec, CONTEXT, 2.0)
        assert result.status is Status.OK, result
    assert len(set(server.peers)) == 2, "a connection the server closed was reused"


async def test_a_body_cut_short_by_the_server_fails(serve: Serve, prober: HttpProber) -> None:
    async def short(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.close()

    server = await serve(lambda writer: asyncio.ensure_future(short(writer)))
    url = f"{server.base}/"
    result = await prober.run(HttpProbe(url=url), CONTEXT, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message == (
        f"request to {url} failed: the server closed the connection in the middle of its answer"
    )


async def test_an_endless_body_stops_at_the_cap_not_the_timeout(
    serve: Serve, prober: HttpProber
) -> None:
    async def endless(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (4096, b"x" * 4096)
        try:
            for _ in range(10_000):  # 40 MiB at most: bounded even if the probe never stops
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            return

    server = await serve(lambda writer: asyncio.ensure_future(endless(writer)), ok(b"fine"))
    url = f"{server.base}/"
    started = time.monotonic()
    capped = await prober.run(HttpProbe(url=url, body="needle"), CONTEXT, 5.0)
    assert time.monotonic() - started < 2.0
    assert capped.message == f"HTTP 200 from {url}: body lacks 'needle'"
    after = await prober.run(HttpProbe(url=url), CONTEXT, 2.0)
    assert after.status is Status.OK, after
    assert len(set(server.peers)) == 2, "the capped connection was reused"


async def test_the_cap_keeps_the_first_bytes_of_a_long_body(
    serve: Serve, prober: HttpProber
) -> None:
    body = b"a" * (BODY_MAX - 4) + b"edge" + b"b" * 1000 + b"past"
    server = await serve(ok(body))
    url = f"{server.base}/"
    assert (await prober.run(HttpProbe(url=url, body="edge"), CONTEXT, 2.0)).status is Status.OK
    past = await prober.run(HttpProbe(url=url, body="past"), CONTEXT, 2.0)
    assert past.status is Status.CRITICAL


async def test_a_slow_body_hits_the_total_timeout(serve: Serve, prober: HttpProber) -> None:
    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        try:
            for _ in range(100):  # a byte every 50 ms: each read is quick, the whole is not
                await asyncio.sleep(0.05)
                writer.write(b"x")
                await writer.drain()
        except ConnectionError:
            return

    server = await serve(lambda writer: asyncio.ensure_future(trickle(writer)))
    url = f"{server.base}/"
    result = await prober.run(HttpProbe(url=url), CONTEXT, 0.5)
    assert result.status is Status.CRITICAL
    assert result.message == f"no answer from {url} within 500ms"
    assert 0.5 <= result.duration < 1.0


async def test_a_head_answer_ends_at_its_headers(serve: Serve, prober: HttpProber) -> None:
    server = await serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n")
    spec = HttpProbe(url=f"{server.base}/", method="HEAD")
    for _ in range(2):
        result = await prober.run(spec, CONTEXT, 1.0)
        assert result.status is Status.OK, result
    assert len(set(server.peers)) == 1
    assert server.requests[0].startswith(b"HEAD / HTTP/1.1\r\n")


async def test_an_interim_answer_is_skipped(serve: Serve, prober: HttpProber) -> None:
    server = await serve(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + ok(b"up"))
    result = await prober.run(HttpProbe(url=f"{server.base}/", body="up"), CONTEXT, 2.0)
    assert result.status is Status.OK, result


async def test_not_http_is_a_failed_request(serve: Serve, prober: HttpProber) -> None:
    server = await serve(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    url = f"{server.base}/"
    result = await prober.run(HttpProbe(url=url), CONTEXT, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message.startswith(f"request to {url} failed: not an HTTP answer")


async def test_a_kept_connection_closed_by_the_server_is_retried_once(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(ok(), CLOSE, ok())
    spec = HttpProbe(url=f"{server.base}/")
    assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    retried = await prober.run(spec, CONTEXT, 2.0)
    assert retried.status is Status.OK, retried
    first, second, third = server.peers
    assert first == second != third, server.peers


async def test_a_fresh_connection_closed_before_answering_is_not_retried(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(CLOSE, ok())
    url = f"{server.base}/"
    result = await prober.run(HttpProbe(url=url), CONTEXT, 2.0)
    assert result.message == (
        f"request to {url} failed: the server closed the connection before answering"
    )
    assert len(server.requests) == 1


async def test_a_server_that_says_close_gets_a_new_connection_next_time(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(ok(b"ok", "Connection: close"))
    spec = HttpProbe(url=f"{server.base}/")
    for _ in range(2):
        assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    assert len(set(server.peers)) == 2


async def test_redirects_off_by_default_followed_when_asked_and_bounded(
    serve: Serve, prober: HttpProber
) -> None:
    moved = b"HTTP/1.1 301 Moved\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n"
    server = await serve(moved, moved, ok(b"arrived"))
    url = f"{server.base}/old"
    kept = await prober.run(HttpProbe(url=url, expect_status=200), CONTEXT, 2.0)
    assert kept.message == f"HTTP 301 from {url}, expected 200"
    followed = await prober.run(
        HttpProbe(url=url, expect_status=200, follow_redirects=True, body="arrived"),
        CONTEXT,
        2.0,
    )
    assert followed.status is Status.OK, followed
    assert server.requests[-1].startswith(b"GET /new HTTP/1.1\r\n")

    loop = await serve(moved)
    looped = await prober.run(HttpProbe(url=f"{loop.base}/", follow_redirects=True), CONTEXT, 2.0)
    assert looped.message == f"too many redirects from {loop.base}/"
    assert len(loop.requests) == 11


async def test_what_goes_on_the_wire(serve: Serve, prober: HttpProber) -> None:
    server = await serve(ok())
    port = server.base.rsplit(":", 1)[1]
    url = f"http://probe:s%40cret@127.0.0.1:{port}/a b?q=1&r=x y#frag"
    spec = HttpProbe(url=url, method="post", headers={"X-Probe": "1"}, keep_alive=False)
    result = await prober.run(spec, CONTEXT, 2.0)
    assert result.status is Status.OK, result
    lines = server.requests[0].decode().split("\r\n")
    assert lines[0] == "POST /a%20b?q=1&r=x%20y HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:] if line)
    assert headers["Host"] == f"127.0.0.1:{port}"
    assert headers["User-Agent"] == "host-supervisor"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"probe:s@cret").decode()
    assert headers["Connection"] == "close"
    assert headers["Content-Length"] == "0"
    assert headers["X-Probe"] == "1"


def test_the_host_header_omits_a_default_port_and_yields_to_the_checks_own() -> None:
    plain = target("https://Example.COM:443/x", "GET", {}, keep_alive=True, tls=ClientTls())
    assert plain.request.startswith(b"GET /x HTTP/1.1\r\nHost: example.com\r\n")
    assert plain.port == 443 and plain.secure
    own = target("http://10.0.0.1/", "GET", {"host": "web.test"}, keep_alive=True, tls=ClientTls())
    assert b"\r\nhost: web.test\r\n" in own.request and b"Host: 10.0.0.1" not in own.request
    with pytest.raises(ValueError, match="line break"):
        target("http://a/", "GET", {"X": "1\r\nEvil: 1"}, keep_alive=True, tls=ClientTls())


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_an_ipv6_literal_host(serve: Serve, prober: HttpProber) -> None:
    assert _ipv6_loopback(), "this test needs ::1 on the loopback interface"
    server = await serve(ok(), host="::1")
    result = await prober.run(HttpProbe(url=f"{server.base}/"), CONTEXT, 2.0)
    assert result.status is Status.OK, result
    port = server.base.rsplit(":", 1)[1]
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in server.requests[0]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("http-tls"))


def _server_context(tls: TlsFiles, names: list[str | None]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tls.ca))
    context.load_cert_chain(tls.server_cert, tls.server_key)
    context.verify_mode = ssl.CERT_REQUIRED  # a client certificate signed by the CA

    def record(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        names.append(name)

    context.sni_callback = record
    return context


async def test_tls_with_a_ca_file_sni_and_a_client_certificate(
    serve: Serve, prober: HttpProber, tls_files: TlsFiles
) -> None:
    names: list[str | None] = []
    server = await serve(ok(b"secure"), context=_server_context(tls_files, names))
    port = server.base.rsplit(":", 1)[1]
    url = f"https://localhost:{port}/"
    mutual = ClientTls(
        ca=str(tls_files.ca), cert=str(tls_files.client_cert), key=str(tls_files.client_key)
    )
    spec = HttpProbe(url=url, body="secure")
    for _ in range(2):
        result = await prober.run(spec, CONTEXT, 3.0, tls=mutual)
        assert result.status is Status.OK, result
    assert names == ["localhost"], "SNI names the host, once: the second run kept the connection"

    refused = await prober.run(spec, CONTEXT, 3.0)  # the system's CAs know no test CA
    assert refused.message.startswith(f"TLS certificate of {url} refused: ")
    assert "certificate verify failed" in refused.message

    anonymous = await prober.run(spec, CONTEXT, 3.0, tls=ClientTls(ca=str(tls_files.ca)))
    assert anonymous.status is Status.CRITICAL
    # TLS 1.3 refuses a missing client certificate after the client's handshake is done:
    # the client sees the connection end before any answer.
    assert anonymous.message.startswith(f"request to {url} failed: ") or (
        anonymous.message.startswith(f"TLS handshake with {url} failed: ")
    ), anonymous.message


async def test_tls_without_verification_still_speaks_tls(
    serve: Serve, prober: HttpProber, tls_files: TlsFiles
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    server = await serve(ok(), context=context)
    result = await prober.run(HttpProbe(url=f"{server.base}/", tls_verify=False), CONTEXT, 2.0)
    assert result.status is Status.OK, result


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


async def test_a_hung_connect_is_told_apart_from_a_hung_answer(
    full_backlog: int, prober: HttpProber, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{full_backlog}/"
    within_timeout = await prober.run(HttpProbe(url=url), CONTEXT, 0.4)
    assert within_timeout.message == f"no connection to {url} within 400ms"
    monkeypatch.setattr(http, "CONNECT_TIMEOUT", 0.3)  # shorter than the check's timeout
    started = time.monotonic()
    within_connect = await prober.run(HttpProbe(url=url), CONTEXT, 5.0)
    assert within_connect.message == f"no connection to {url} within 300ms"
    assert time.monotonic() - started < 2.0


async def test_the_password_in_a_url_is_masked_in_every_message(
    serve: Serve, full_backlog: int
) -> None:
    server = await serve(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    prober = Prober()
    try:
        for base in (server.base, f"http://127.0.0.1:{full_backlog}"):
            url = base.replace("://", "://probe:hunter2@") + "/"
            check = Check(name="web", http={"url": url}, timeout="300ms")
            result = await prober.run(check, CONTEXT)
            assert result.status is Status.CRITICAL
            assert "hunter2" not in result.message and "****" in result.message, result
    finally:
        await prober.close()
    assert b"Authorization: Basic " in server.requests[0]


class Delivered:
    """What a started run hands to its `done`, and a way to wait for it."""

    def __init__(self) -> None:
        self.results: list[CheckResult] = []
        self.arrived = asyncio.Event()

    def __call__(self, result: CheckResult) -> None:
        self.results.append(result)
        self.arrived.set()

    async def one(self) -> CheckResult:
        await asyncio.wait_for(self.arrived.wait(), 5.0)
        await asyncio.sleep(0.05)  # a second delivery would show now
        assert len(self.results) == 1, self.results
        return self.results[0]


async def test_a_kept_connection_is_used_by_callbacks_alone(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(ok(b"up"))
    spec = HttpProbe(url=f"{server.base}/", body="up")
    assert prober.start(spec, 2.0, Delivered()) is None, "no connection kept yet"
    assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    for _ in range(2):
        seen = Delivered()
        assert prober.start(spec, 2.0, seen) is not None
        result = await seen.one()
        assert result.status is Status.OK and result.message.startswith("HTTP 200 from ")
    assert len(server.peers) == 3 and len(set(server.peers)) == 1
    redirecting = HttpProbe(url=f"{server.base}/", follow_redirects=True)
    assert prober.start(redirecting, 2.0, Delivered()) is None


async def test_a_started_run_expires_once_and_drops_its_connection(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(ok(), lambda writer: asyncio.ensure_future(asyncio.sleep(30)), ok())
    url = f"{server.base}/"
    spec = HttpProbe(url=url)
    assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    seen = Delivered()
    started = prober.start(spec, 0.5, seen)
    assert started is not None
    await asyncio.sleep(0.1)
    assert seen.results == []
    started.expire()
    started.expire()
    result = await seen.one()
    assert (result.status, result.message) == (
        Status.CRITICAL,
        f"no answer from {url} within 500ms",
    )
    assert prober.start(spec, 2.0, Delivered()) is None, "the hung connection was kept"


async def test_a_started_run_retries_a_connection_closed_while_idle(
    serve: Serve, prober: HttpProber
) -> None:
    server = await serve(ok(), CLOSE, ok(b"again"))
    spec = HttpProbe(url=f"{server.base}/", body="again")
    await prober.run(HttpProbe(url=f"{server.base}/"), CONTEXT, 2.0)
    seen = Delivered()
    assert prober.start(spec, 2.0, seen) is not None
    result = await seen.one()
    assert result.status is Status.OK, result
    first, second, third = server.peers
    assert first == second != third


async def test_a_cancelled_started_run_reports_nothing(serve: Serve, prober: HttpProber) -> None:
    server = await serve(ok(), lambda writer: asyncio.ensure_future(asyncio.sleep(30)))
    spec = HttpProbe(url=f"{server.base}/")
    await prober.run(spec, CONTEXT, 2.0)
    seen = Delivered()
    started = prober.start(spec, 2.0, seen)
    assert started is not None
    started.cancel()
    await asyncio.sleep(0.2)
    assert seen.results == []
    assert prober.start(spec, 2.0, Delivered()) is None


async def test_prober_start_masks_and_times_what_the_http_probe_reports(serve: Serve) -> None:
    server = await serve(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
    url = server.base.replace("://", "://probe:hunter2@") + "/"
    check = Check(name="web", http={"url": url}, timeout="1s")
    prober = Prober()
    try:
        assert prober.start(check, CONTEXT, Delivered()) is None  # no HTTP run yet
        await prober.run(check, CONTEXT)
        seen = Delivered()
        assert prober.start(check, CONTEXT, seen) is not None
        result = await seen.one()
    finally:
        await prober.close()
    assert result.status is Status.CRITICAL
    assert "hunter2" not in result.message and "****" in result.message
    assert 0 < result.duration < 1.0


def test_the_same_on_uvloop(tls_files: TlsFiles) -> None:
    """The daemon's loop: its transports differ from asyncio's (TLS above all)."""
    import uvloop

    async def main() -> None:
        for test in (
            test_a_chunked_body_is_searched_and_its_connection_kept,
            test_a_body_that_ends_with_the_connection,
            test_an_endless_body_stops_at_the_cap_not_the_timeout,
            test_a_slow_body_hits_the_total_timeout,
            test_a_head_answer_ends_at_its_headers,
            test_a_kept_connection_closed_by_the_server_is_retried_once,
            test_an_ipv6_literal_host,
            test_a_kept_connection_is_used_by_callbacks_alone,
            test_a_started_run_retries_a_connection_closed_while_idle,
        ):
            async with _servers() as start:
                prober = HttpProber()
                try:
                    await test(start, prober)
                finally:
                    await prober.close()
        async with _servers() as start:
            prober = HttpProber()
            try:
                await test_tls_with_a_ca_file_sni_and_a_client_certificate(start, prober, tls_files)
            finally:
                await prober.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())


def test_http_checks_do_not_import_aiohttp(tmp_path: Path) -> None:
    """The probe path imports httptools, not aiohttp (14 MB, 0.3 s of imports)."""
    script = """
import asyncio, sys
from supervisor.checks import Prober
from supervisor.checks.result import ProbeContext
from supervisor.config.check import Check

async def main():
    async def answer(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    prober = Prober()
    check = Check(name="web", http={"url": f"http://127.0.0.1:{port}/"})
    result = await prober.run(check, ProbeContext(unit="web.service"))
    await prober.close()
    server.close()
    print(result.status.name, "aiohttp" in sys.modules, "httptools" in sys.modules)

asyncio.run(main())
"""
    ran = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["OK", "False", "True"]


async def test_a_policys_tls_files_reach_the_probe(
    serve: Serve, prober: HttpProber, tls_files: TlsFiles
) -> None:
    """tls_ca, tls_cert and tls_key of a policy's http check: the same mutual TLS."""
    names: list[str | None] = []
    server = await serve(ok(b"secure"), context=_server_context(tls_files, names))
    port = server.base.rsplit(":", 1)[1]
    spec = HttpProbe(
        url=f"https://localhost:{port}/",
        body="secure",
        tls_ca=str(tls_files.ca),
        tls_cert=str(tls_files.client_cert),
        tls_key=str(tls_files.client_key),
    )
    result = await prober.run(spec, CONTEXT, 3.0)
    assert result.status is Status.OK, result


def test_a_client_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValueError, match="tls_cert and tls_key go together: tls_key is missing"):
        HttpProbe(url="https://localhost/", tls_cert="/etc/x.pem")
