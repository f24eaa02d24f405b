"""HTTP probe: HTTP/1.1 over the loop's own transports, answers parsed by httptools.

A run sends one request (and follows redirects only when the check asks), reads at most
`BODY_MAX` bytes of the body and judges status and body. Connections are kept per
origin between runs when the check's `keep_alive` says so (the default); a kept one the
server closed while it idled gets one retry on a fresh connection. The whole run,
connect and TLS handshake included, is bounded by the check's timeout; the connect alone
by `CONNECT_TIMEOUT` when the timeout is longer.

`run` is a coroutine; `start` runs a check over a kept connection by callbacks alone
(no task, no timer: its scheduler expires it), which is most runs of a kept check.

It replaced a probe on aiohttp's client at a fifth to a half of its CPU per run
(docs/performance.md, `tests/bench/run http`); the messages are the ones it gave.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from supervisor.checks.http_request import USER_AGENT, ClientTls, Target, client_context, target
from supervisor.checks.http_verdict import ConnectTimeout, TooManyRedirects, failed, judged
from supervisor.checks.http_wire import Answer, Closed, Connection, Pool, WireError
from supervisor.checks.result import CheckResult, ProbeContext, Status, finish
from supervisor.config.probes import HttpProbe

__all__ = [
    "BODY_MAX",
    "CONNECT_TIMEOUT",
    "KEEPALIVE",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "ClientTls",
    "HttpProber",
    "KeptRun",
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
            tls=tls
            or ClientTls(
                verify=spec.tls_verify, ca=spec.tls_ca, cert=spec.tls_cert, key=spec.tls_key
            ),
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
        except Exception as exc:
            result = failed(exc, spec.url, timeout, run.connecting, started)
            if result is None:
                raise
            return result
        return judged(spec, answer, started, time.monotonic())

    def start(
        self, spec: HttpProbe, timeout: float, done: Callable[[CheckResult], None]
    ) -> KeptRun | None:
        """Start a run over a kept connection by callbacks alone: the caller calls
        `expire()` once `timeout` has passed. None when no connection to the check's
        origin is kept, or the check follows redirects: `run` it."""
        if spec.follow_redirects:
            return None
        request = self._target(spec, None)
        connection = self._pool.take(request.origin, time.monotonic())
        if connection is None:
            return None
        return KeptRun(self, spec, request, connection, timeout, done)

    async def _fetch(self, spec: HttpProbe, request: Target, want_body: bool, run: _Run) -> Answer:
        """The answer at the end of the redirects (MAX_REDIRECTS at most)."""
        url = spec.url
        for _ in range(MAX_REDIRECTS + 1):
            answer = await self._exchange(request, want_body, run)
            if not (answer.status in _REDIRECTS and answer.location):
                return answer
            url, request = self._redirected(spec, url, request, answer)
        raise TooManyRedirects

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
                raise ConnectTimeout(CONNECT_TIMEOUT) from None
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
        self._settle(connection, answer)
        return answer

    def _settle(self, connection: Connection, answer: Answer) -> None:
        """Keep the connection for the next run, or close it."""
        if answer.reusable:
            self._pool.put(connection, time.monotonic())
        else:
            connection.close()


class KeptRun:
    """A run over a kept connection by callbacks alone (`HttpProber.start`): no task, no
    timer, no coroutine. `done` gets the result once, unless `cancel()` comes first; the
    caller calls `expire()` at the deadline. Should the server have closed the kept
    connection while it idled, the one retry on a fresh connection runs as a task."""

    __slots__ = (
        "_connection",
        "_done",
        "_prober",
        "_request",
        "_retry",
        "_retry_run",
        "_spec",
        "_started",
        "_timeout",
        "_want_body",
    )

    def __init__(
        self,
        prober: HttpProber,
        spec: HttpProbe,
        request: Target,
        connection: Connection,
        timeout: float,
        done: Callable[[CheckResult], None],
    ) -> None:
        self._started = time.monotonic()
        self._prober, self._spec, self._request = prober, spec, request
        self._connection = connection
        self._timeout = timeout
        self._done: Callable[[CheckResult], None] | None = done
        self._retry: asyncio.Task[None] | None = None
        self._retry_run: _Run | None = None
        self._want_body = spec.body is not None or spec.body_regex is not None
        waiter = connection.exchange(
            request.request,
            head=request.head,
            keep=request.keep,
            want_body=self._want_body,
            body_max=BODY_MAX,
        )
        waiter.add_done_callback(self._answered)

    def _answered(self, waiter: asyncio.Future[Answer]) -> None:
        if self._done is None:
            return  # expired or cancelled: the connection went then
        error = waiter.exception()
        if error is None:
            answer = waiter.result()
            self._prober._settle(self._connection, answer)
            self._report(judged(self._spec, answer, self._started, time.monotonic()))
            return
        self._connection.abort()
        if isinstance(error, Closed) and not error.answered:
            # The server closed the kept connection while it idled: one fresh try.
            self._retry = asyncio.get_running_loop().create_task(self._afresh())
            return
        self._report(self._failed(error))

    async def _afresh(self) -> None:
        left = self._timeout - (time.monotonic() - self._started)
        run = self._retry_run = _Run(asyncio.get_running_loop(), max(0.0, left))
        try:
            run.connecting = True
            connection = await self._prober._connect(self._request, run)
            run.connecting = False
            answer = await self._prober._over(connection, self._request, self._want_body, run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._report(self._failed(exc))
            return
        self._report(judged(self._spec, answer, self._started, time.monotonic()))

    def _failed(self, error: BaseException) -> CheckResult:
        connecting = self._retry_run is not None and self._retry_run.connecting
        result = failed(error, self._spec.url, self._timeout, connecting, self._started)
        if result is None:
            text = str(error)
            reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
            result = finish(Status.UNKNOWN, f"probe failed: {reason}", self._started)
        return result

    def _report(self, result: CheckResult) -> None:
        done, self._done = self._done, None
        if done is not None:
            done(result)

    def expire(self) -> None:
        """The deadline passed: report the timeout (nothing if the run already ended)."""
        if self._done is not None:
            result = self._failed(TimeoutError())
            self._drop()
            self._report(result)

    def cancel(self) -> None:
        """Drop the run: its connection goes, nothing is reported."""
        self._done = None
        self._drop()

    def _drop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._connection.abort()
