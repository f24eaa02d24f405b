"""HTTP probe: HTTP/1.1 over the loop's own transports, answers parsed by httptools.

A run sends one request (and follows redirects only when the check asks), reads at most
`BODY_MAX` bytes of the body and judges status and body. Connections are kept per
origin between runs when the check's `keep_alive` says so (the default); a kept one the
server closed while it idled gets one retry on a fresh connection. The whole run,
connect and TLS handshake included, is bounded by the check's timeout; the connect alone
by `CONNECT_TIMEOUT` when the timeout is longer.

It replaced a probe on aiohttp's client at about a quarter of the CPU per keep-alive
request (docs/performance.md); the messages are the ones that probe gave.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from urllib.parse import urljoin, urlsplit

from supervisor.checks.http_request import USER_AGENT, ClientTls, Target, client_context, target
from supervisor.checks.http_wire import Answer, Closed, Connection, Pool, WireError
from supervisor.checks.result import (
    CheckResult,
    Measure,
    ProbeContext,
    Status,
    finish,
    os_reason,
)
from supervisor.config.probes import HttpProbe
from supervisor.config.values import format_duration

__all__ = [
    "BODY_MAX",
    "CONNECT_TIMEOUT",
    "KEEPALIVE",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "ClientTls",
    "HttpProber",
]

BODY_MAX = 64 * 1024
"""At most this many bytes of a response body are read and searched; a longer body ends
the run there, and its connection is not reused."""
CONNECT_TIMEOUT = 5.0
"""Longest wait for a connection (TCP connect and TLS handshake), capped by the timeout."""
KEEPALIVE = 60.0
"""Seconds an idle connection stays kept: checks run every 60 s or faster reuse theirs."""
MAX_REDIRECTS = 10
"""Redirects followed at most, when a check follows them (as aiohttp did)."""
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TARGETS_MAX = 4096
"""Requests kept built; past this (policies reloaded many times) the cache starts over."""


class _Run:
    """One run's deadline, on the loop's clock, and where the run is (for the message of
    a timeout)."""

    __slots__ = ("connecting", "deadline", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        # uvloop's clock counts whole milliseconds from the start of the loop's turn: a
        # millisecond more, so that a run never gives up before its timeout.
        self.deadline = loop.time() + timeout + 0.001
        self.connecting = False


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _ConnectTimeout(Exception):
    pass


class _TooManyRedirects(Exception):
    pass


def _expected(spec: HttpProbe) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in spec.expect_status)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _tls_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc).lower().replace("_", " ")


class HttpProber:
    """Runs HTTP probes, keeping connections between runs; `close()` when done."""

    def __init__(self) -> None:
        self._pool = Pool.empty(KEEPALIVE)
        # Built once per check, not on every run (a check runs every second or so).
        self._targets: dict[int, tuple[HttpProbe, ClientTls | None, Target]] = {}
        self._contexts: dict[ClientTls, ssl.SSLContext] = {}

    async def close(self) -> None:
        """Close every kept connection."""
        self._pool.close()

    def _target(self, spec: HttpProbe, tls: ClientTls | None) -> Target:
        entry = self._targets.get(id(spec))
        if entry is not None and entry[0] is spec and entry[1] == tls:
            return entry[2]
        built = target(
            spec.url,
            spec.method,
            spec.headers,
            keep_alive=spec.keep_alive,
            tls=tls or ClientTls(verify=spec.tls_verify),
        )
        if len(self._targets) >= _TARGETS_MAX:
            self._targets.clear()
        self._targets[id(spec)] = (spec, tls, built)  # holding spec keeps its id unique
        return built

    def _context(self, tls: ClientTls) -> ssl.SSLContext:
        context = self._contexts.get(tls)
        if context is None:
            context = self._contexts[tls] = client_context(tls)
        return context

    async def run(
        self,
        spec: HttpProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - the probe spends it itself
        *,
        tls: ClientTls | None = None,
    ) -> CheckResult:
        """Request `spec.url` once and judge status and body. `tls` replaces what the
        check says of TLS (`tls_verify`) with a CA file and a client certificate."""
        del context  # an HTTP probe needs nothing from systemd
        started = time.monotonic()
        url = spec.url
        # One deadline for the whole run: a timer on the answer's future over a kept
        # connection (cheaper than asyncio.timeout's), asyncio.timeout_at over a connect.
        run = _Run(asyncio.get_running_loop(), timeout)
        try:
            request = self._target(spec, tls)
            want_body = spec.body is not None or spec.body_regex is not None
            if spec.follow_redirects:
                answer = await self._fetch(spec, request, want_body, run)
            else:  # the common case, one coroutine less
                answer = await self._exchange(request, want_body, run)
        except _ConnectTimeout:
            limit = min(timeout, CONNECT_TIMEOUT)
            return finish(
                Status.CRITICAL, f"no connection to {url} within {format_duration(limit)}", started
            )
        except TimeoutError:
            if run.connecting:
                within = format_duration(timeout)
                return finish(Status.CRITICAL, f"no connection to {url} within {within}", started)
            return finish(
                Status.CRITICAL, f"no answer from {url} within {format_duration(timeout)}", started
            )
        except socket.gaierror as exc:
            # The name does not resolve: the probe cannot run, the service may be fine.
            host = urlsplit(url).hostname
            return finish(Status.UNKNOWN, f"cannot resolve {host}: {exc.strerror}", started)
        except ssl.SSLCertVerificationError as exc:
            return finish(Status.CRITICAL, f"TLS certificate of {url} refused: {exc}", started)
        except ssl.SSLError as exc:
            reason = _tls_reason(exc)
            return finish(Status.CRITICAL, f"TLS handshake with {url} failed: {reason}", started)
        except _TooManyRedirects:
            return finish(Status.CRITICAL, f"too many redirects from {url}", started)
        except WireError as exc:
            return finish(Status.CRITICAL, f"request to {url} failed: {exc}", started)
        except OSError as exc:
            return finish(Status.CRITICAL, f"cannot connect to {url}: {os_reason(exc)}", started)
        return self._judge(spec, answer, started)

    def _judge(self, spec: HttpProbe, answer: Answer, started: float) -> CheckResult:
        url, code = spec.url, answer.status
        elapsed_ms = (time.monotonic() - started) * 1000
        measured = (Measure("ms", round(elapsed_ms, 1), "ms", low=0.0),)
        said = f"HTTP {code} from {url}"
        if not spec.status_ok(code):
            return finish(Status.CRITICAL, f"{said}, expected {_expected(spec)}", started, measured)
        if spec.body is not None or spec.body_regex is not None:
            text = _decode(answer.body, answer.charset)
            if spec.body is not None and spec.body not in text:
                return finish(
                    Status.CRITICAL, f"{said}: body lacks {spec.body!r}", started, measured
                )
            if spec.body_regex is not None and not re.search(spec.body_regex, text):
                return finish(
                    Status.CRITICAL,
                    f"{said}: body does not match {spec.body_regex!r}",
                    started,
                    measured,
                )
        return finish(Status.OK, f"{said} in {elapsed_ms:.1f} ms", started, measured)

    async def _fetch(self, spec: HttpProbe, request: Target, want_body: bool, run: _Run) -> Answer:
        """The answer at the end of the redirects (MAX_REDIRECTS at most)."""
        url = spec.url
        for _ in range(MAX_REDIRECTS + 1):
            answer = await self._exchange(request, want_body, run)
            if not (answer.status in _REDIRECTS and answer.location):
                return answer
            url, request = self._redirected(spec, url, request, answer)
        raise _TooManyRedirects

    def _redirected(
        self, spec: HttpProbe, url: str, request: Target, answer: Answer
    ) -> tuple[str, Target]:
        assert answer.location is not None
        method = request.method
        if (answer.status == 303 and method != "HEAD") or (
            answer.status in (301, 302) and method == "POST"
        ):
            method = "GET"
        new_url = urljoin(url, answer.location)
        headers = spec.headers
        if urlsplit(new_url)[:2] != urlsplit(url)[:2]:
            # Credentials the check gave for one server go to no other.
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        try:
            redirected = target(
                new_url, method, headers, keep_alive=spec.keep_alive, tls=request.tls
            )
        except ValueError:
            raise WireError(f"redirected to {answer.location!r}, not an http(s) URL") from None
        return new_url, redirected

    async def _exchange(self, request: Target, want_body: bool, run: _Run) -> Answer:
        kept = self._pool.take(request.origin, time.monotonic())
        if kept is not None:
            try:
                return await self._over(kept, request, want_body, run)
            except Closed as exc:
                if exc.answered:
                    raise
                # The server closed the kept connection while it idled: one fresh try.
        run.connecting = True
        connection = await self._connect(request, run)
        run.connecting = False
        return await self._over(connection, request, want_body, run)

    async def _connect(self, request: Target, run: _Run) -> Connection:
        context = self._context(request.tls) if request.secure else None
        origin = request.origin
        connecting = run.loop.create_connection(
            lambda: Connection(origin),
            request.host,
            request.port,
            ssl=context,
            server_hostname=request.host if context is not None else None,
        )
        connect_by = min(run.deadline, run.loop.time() + CONNECT_TIMEOUT)
        try:
            async with asyncio.timeout_at(connect_by):
                _, connection = await connecting
        except TimeoutError:
            if connect_by < run.deadline:
                raise _ConnectTimeout from None
            raise
        return connection

    async def _over(
        self, connection: Connection, request: Target, want_body: bool, run: _Run
    ) -> Answer:
        waiter = connection.exchange(
            request.request,
            head=request.head,
            keep=request.keep,
            want_body=want_body,
            body_max=BODY_MAX,
        )
        timer = run.loop.call_at(run.deadline, _expire, waiter)
        try:
            answer = await waiter
        except BaseException:  # a timeout or a cancel mid-answer: the connection is spent
            connection.abort()
            raise
        finally:
            timer.cancel()
        if answer.reusable:
            self._pool.put(connection, time.monotonic())
        else:
            connection.close()
        return answer
