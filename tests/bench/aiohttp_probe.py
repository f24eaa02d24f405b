"""The HTTP probe as it was before the lean one (supervisor/checks/http.py): one aiohttp
session for every HTTP check, connections kept alive. Kept only as the benchmark's
reference (tests/bench/bench_http.py), so the two are measured in the same run.

The session is created lazily inside the running loop, so a `HttpProber` can be built
anywhere. Every request carries its own `ClientTimeout`: the session's default (300 s)
never applies. Connections go back to the pool after each run (the body is read, up to
`BODY_MAX`), so the next run of the same check reuses its connection.
"""

from __future__ import annotations

import math
import re
import time

import aiohttp
from yarl import URL

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

__all__ = ["BODY_MAX", "CONNECT_TIMEOUT", "LIMIT_PER_HOST", "USER_AGENT", "HttpProber"]

BODY_MAX = 64 * 1024
"""At most this many bytes of a response body are read and searched."""
CONNECT_TIMEOUT = 5.0
"""Longest wait for a connection (pool slot, TCP connect, TLS handshake), capped by the timeout."""
LIMIT_PER_HOST = 0
"""Connections open at once to one host:port: no limit, and no total limit either. Each
check has at most one request in flight, so the checks bound it. Any cap would let hung
endpoints, which hold their connections until the timeout, make the other checks of the
same server wait for a free connection: with a cap of 8, 100 hung among 1,000 checks of
one server at 1 s intervals failed 60 healthy runs and pushed p50 from 0.8 ms to 1.9 s."""
KEEPALIVE = 60.0
"""Seconds an idle connection stays pooled: checks run every 60 s or faster reuse theirs."""
USER_AGENT = "host-supervisor"


def _expected(spec: HttpProbe) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in spec.expect_status)


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < BODY_MAX:
        chunk = await response.content.read(BODY_MAX - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _closing(headers: dict[str, str]) -> dict[str, str]:
    """The request's headers asking the server to close the connection after it (aiohttp
    then closes it too, instead of pooling it)."""
    return {**headers, "Connection": "close"}


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


class HttpProber:
    """Runs HTTP probes over one shared `aiohttp.ClientSession`; `close()` when done."""

    def __init__(self, limit_per_host: int = LIMIT_PER_HOST) -> None:
        self._limit_per_host = limit_per_host
        self._session: aiohttp.ClientSession | None = None
        # Parsed once, not on every run (a check runs every second or so).
        self._urls: dict[str, URL] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _url(self, url: str) -> URL:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = URL(url)
        return parsed

    def _timeout(self, timeout: float) -> aiohttp.ClientTimeout:
        client_timeout = self._timeouts.get(timeout)
        if client_timeout is None:
            client_timeout = self._timeouts[timeout] = aiohttp.ClientTimeout(
                total=timeout,
                connect=min(timeout, CONNECT_TIMEOUT),
                ceil_threshold=math.inf,  # keep timeouts exact; aiohttp rounds long ones up
            )
        return client_timeout

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self._limit_per_host,
                keepalive_timeout=KEEPALIVE,
                force_close=False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # A backstop only: every request passes its own timeout.
                timeout=aiohttp.ClientTimeout(total=30.0),
                cookie_jar=aiohttp.DummyCookieJar(),  # runs of a check share no cookies
                headers={"User-Agent": USER_AGENT},
                trust_env=False,  # no proxies from the environment
            )
        return self._session

    async def close(self) -> None:
        """Close the session and every pooled connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run(
        self,
        spec: HttpProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - the probe spends it itself
    ) -> CheckResult:
        """Request `spec.url` once and judge status and body."""
        del context  # an HTTP probe needs nothing from systemd
        started = time.monotonic()
        url = spec.url
        client_timeout = self._timeout(timeout)
        try:
            async with self._get_session().request(
                spec.method,
                self._url(url),
                headers=spec.headers if spec.keep_alive else _closing(spec.headers),
                allow_redirects=spec.follow_redirects,
                ssl=spec.tls_verify,  # False: no certificate check
                timeout=client_timeout,
            ) as response:
                body = await _read_bounded(response)
                code = response.status
                charset = response.charset
        except aiohttp.ConnectionTimeoutError:
            limit = min(timeout, CONNECT_TIMEOUT)
            return finish(
                Status.CRITICAL, f"no connection to {url} within {format_duration(limit)}", started
            )
        except aiohttp.ClientConnectorDNSError as exc:
            # The name does not resolve: the probe cannot run, the service may be fine.
            reason = exc.os_error.strerror or str(exc.os_error)
            return finish(Status.UNKNOWN, f"cannot resolve {exc.host}: {reason}", started)
        except aiohttp.ClientConnectorCertificateError as exc:
            return finish(
                Status.CRITICAL,
                f"TLS certificate of {url} refused: {exc.certificate_error}",
                started,
            )
        except aiohttp.ClientConnectorError as exc:
            reason = os_reason(exc.os_error)
            return finish(Status.CRITICAL, f"cannot connect to {url}: {reason}", started)
        except aiohttp.TooManyRedirects:
            return finish(Status.CRITICAL, f"too many redirects from {url}", started)
        except aiohttp.ClientError as exc:
            text = str(exc) or type(exc).__name__
            return finish(Status.CRITICAL, f"request to {url} failed: {text}", started)
        except TimeoutError:
            return finish(
                Status.CRITICAL, f"no answer from {url} within {format_duration(timeout)}", started
            )
        elapsed_ms = (time.monotonic() - started) * 1000
        measured = (Measure("ms", round(elapsed_ms, 1), "ms", low=0.0),)
        answer = f"HTTP {code} from {url}"
        if not spec.status_ok(code):
            return finish(
                Status.CRITICAL, f"{answer}, expected {_expected(spec)}", started, measured
            )
        if spec.body is not None or spec.body_regex is not None:
            text = _decode(body, charset)
            if spec.body is not None and spec.body not in text:
                return finish(
                    Status.CRITICAL, f"{answer}: body lacks {spec.body!r}", started, measured
                )
            if spec.body_regex is not None and not re.search(spec.body_regex, text):
                return finish(
                    Status.CRITICAL,
                    f"{answer}: body does not match {spec.body_regex!r}",
                    started,
                    measured,
                )
        return finish(Status.OK, f"{answer} in {elapsed_ms:.1f} ms", started, measured)
