"""HTTP probe against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from shutil import which

import pytest
from aiohttp import web

from supervisor.checks import Prober
from supervisor.checks.http import HttpProber
from supervisor.checks.result import ProbeContext, Status
from supervisor.config.check import Check
from supervisor.config.probes import HttpProbe
from tests.helpers import closed_port

CONTEXT = ProbeContext(unit="web.service")


@dataclass
class Server:
    base: str
    mode: list[str] = field(default_factory=lambda: ["ok"])  # what /flip does next
    peers: list[int] = field(default_factory=list)  # client port of each request


def _app(server: Server) -> web.Application:
    async def flip(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        server.peers.append(request.transport.get_extra_info("peername")[1])
        match server.mode[0]:
            case "ok":
                return web.Response(text='{"status": "up", "name": "flip"}')
            case "error":
                return web.Response(status=500, text="broken")
            case _:  # never answer
                await asyncio.Event().wait()
                raise AssertionError("unreachable")

    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/flip")

    async def big(request: web.Request) -> web.StreamResponse:
        # 1 MiB of filler, then the word the probe looks for: beyond what it reads.
        return web.Response(text="x" * (1024 * 1024) + "needle")

    app = web.Application()
    app.router.add_route("*", "/flip", flip)
    app.router.add_get("/hang", hang)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    return app


async def _serve(
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[Server, web.AppRunner]:
    server = Server(base="")
    runner = web.AppRunner(_app(server), shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    host, port = runner.addresses[0][:2]
    scheme = "https" if ssl_context else "http"
    server.base = f"{scheme}://{host}:{port}"
    return server, runner


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    served, runner = await _serve()
    yield served
    await runner.cleanup()


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    http = HttpProber()
    yield http
    await http.close()


async def test_ok_then_500_then_no_answer(server: Server, prober: HttpProber) -> None:
    spec = HttpProbe(url=f"{server.base}/flip")

    ok = await prober.run(spec, CONTEXT, 2.0)
    assert ok.status is Status.OK, ok
    assert ok.message.startswith(f"HTTP 200 from {server.base}/flip in ")

    server.mode[0] = "error"
    bad = await prober.run(spec, CONTEXT, 2.0)
    assert bad.status is Status.CRITICAL
    assert bad.message == f"HTTP 500 from {server.base}/flip, expected 200-399"

    server.mode[0] = "hang"
    hung = await prober.run(spec, CONTEXT, 0.5)
    assert hung.status is Status.CRITICAL
    assert hung.message == f"no answer from {server.base}/flip within 500ms"
    assert 0.5 <= hung.duration < 1.0


async def test_two_runs_reuse_one_connection(server: Server, prober: HttpProber) -> None:
    spec = HttpProbe(url=f"{server.base}/flip")
    for _ in range(3):
        assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    assert len(server.peers) == 3
    assert len(set(server.peers)) == 1, f"one connection expected, saw ports {server.peers}"


async def test_without_keep_alive_each_run_has_a_fresh_connection(
    server: Server, prober: HttpProber
) -> None:
    spec = HttpProbe(url=f"{server.base}/flip", keep_alive=False)
    for _ in range(3):
        assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    assert len(set(server.peers)) == 3, f"three connections expected, saw ports {server.peers}"


async def test_a_timed_out_connection_is_not_reused(server: Server, prober: HttpProber) -> None:
    spec = HttpProbe(url=f"{server.base}/flip")
    server.mode[0] = "hang"
    assert (await prober.run(spec, CONTEXT, 0.3)).status is Status.CRITICAL
    server.mode[0] = "ok"
    assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    assert len(set(server.peers)) == 2


async def test_hung_requests_do_not_hold_up_others_to_the_same_server(
    server: Server, prober: HttpProber
) -> None:
    hung = [
        asyncio.create_task(prober.run(HttpProbe(url=f"{server.base}/hang?n={n}"), CONTEXT, 3.0))
        for n in range(20)
    ]
    await asyncio.sleep(0.1)  # every hung request holds its connection now
    healthy = await prober.run(HttpProbe(url=f"{server.base}/flip"), CONTEXT, 3.0)
    assert healthy.status is Status.OK
    assert not any(task.done() for task in hung), "the healthy check waited for the hung ones"
    for task in hung:
        task.cancel()
    await asyncio.gather(*hung, return_exceptions=True)


async def test_expected_status_ranges(server: Server, prober: HttpProber) -> None:
    server.mode[0] = "error"
    url = f"{server.base}/flip"
    accepted = await prober.run(HttpProbe(url=url, expect_status=[200, "500-503"]), CONTEXT, 2.0)
    assert accepted.status is Status.OK
    refused = await prober.run(HttpProbe(url=url, expect_status=[200, 204]), CONTEXT, 2.0)
    assert refused.message.endswith("expected 200, 204")


async def test_body_substring_and_regex(server: Server, prober: HttpProber) -> None:
    url = f"{server.base}/flip"
    cases = [
        ({"body": '"up"'}, Status.OK),
        ({"body": "down"}, Status.CRITICAL),
        ({"body_regex": r'"status":\s*"up"'}, Status.OK),
        ({"body_regex": r'"status":\s*"down"'}, Status.CRITICAL),
        ({"body": "flip", "body_regex": "^nothing"}, Status.CRITICAL),
    ]
    for extra, expected in cases:
        result = await prober.run(HttpProbe(url=url, **extra), CONTEXT, 2.0)
        assert result.status is expected, (extra, result)
    lacking = await prober.run(HttpProbe(url=url, body="down"), CONTEXT, 2.0)
    assert lacking.message == f"HTTP 200 from {url}: body lacks 'down'"


async def test_body_is_read_bounded(server: Server, prober: HttpProber) -> None:
    result = await prober.run(HttpProbe(url=f"{server.base}/big", body="needle"), CONTEXT, 2.0)
    assert result.status is Status.CRITICAL  # the needle is past the first 64 KiB
    assert "body lacks 'needle'" in result.message


async def test_redirects_followed_or_not(server: Server, prober: HttpProber) -> None:
    url = f"{server.base}/redirect"
    kept = await prober.run(HttpProbe(url=url, expect_status=200), CONTEXT, 2.0)
    assert kept.status is Status.CRITICAL
    assert kept.message == f"HTTP 302 from {url}, expected 200"
    followed = await prober.run(
        HttpProbe(url=url, expect_status=200, follow_redirects=True, body="up"), CONTEXT, 2.0
    )
    assert followed.status is Status.OK, followed


async def test_method_and_headers_are_sent(server: Server, prober: HttpProber) -> None:
    seen: list[tuple[str, str | None]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        seen.append((request.method, request.headers.get("X-Probe")))
        return web.Response(text="ok")

    runner = web.AppRunner(web.Application(), shutdown_timeout=0.1)
    runner.app.router.add_route("*", "/", echo)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        spec = HttpProbe(url=f"http://127.0.0.1:{port}/", method="post", headers={"X-Probe": "1"})
        assert (await prober.run(spec, CONTEXT, 2.0)).status is Status.OK
    finally:
        await runner.cleanup()
    assert seen == [("POST", "1")]


async def test_connection_refused_is_critical(prober: HttpProber) -> None:
    port = closed_port()
    result = await prober.run(HttpProbe(url=f"http://127.0.0.1:{port}/"), CONTEXT, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message == f"cannot connect to http://127.0.0.1:{port}/: Connection refused"


async def test_unresolvable_host_is_unknown(prober: HttpProber) -> None:
    result = await prober.run(HttpProbe(url="http://no-such-host.invalid/"), CONTEXT, 2.0)
    assert result.status is Status.UNKNOWN
    assert result.message.startswith("cannot resolve no-such-host.invalid")


async def test_prober_reports_the_probe_timeout_not_the_backstop(server: Server) -> None:
    server.mode[0] = "hang"
    check = Check(name="web", http={"url": f"{server.base}/flip"}, timeout="400ms")
    prober = Prober()
    try:
        result = await prober.run(check, CONTEXT)
    finally:
        await prober.close()
    assert result.status is Status.CRITICAL
    assert result.message == f"no answer from {server.base}/flip within 400ms"
    assert result.duration < 0.4 + 0.5


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def test_tls_verify_on_and_off(certificate: tuple[Path, Path], prober: HttpProber) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    served, runner = await _serve(context)
    try:
        url = f"{served.base}/flip"
        verified = await prober.run(HttpProbe(url=url), CONTEXT, 2.0)
        assert verified.status is Status.CRITICAL
        assert verified.message.startswith(f"TLS certificate of {url} refused")
        unverified = await prober.run(HttpProbe(url=url, tls_verify=False), CONTEXT, 2.0)
        assert unverified.status is Status.OK, unverified
    finally:
        await runner.cleanup()
