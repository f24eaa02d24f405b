"""What an HTTP probe's run means: the result of an answer (status, body) or of the
error that ended the run, in the words the aiohttp probe used before it."""

from __future__ import annotations

import re
import socket
import ssl
from urllib.parse import urlsplit

from supervisor.checks.http_wire import Answer, WireError
from supervisor.checks.result import CheckResult, Measure, Status, finish, os_reason
from supervisor.config.probes import HttpProbe
from supervisor.config.values import format_duration

__all__ = ["ConnectTimeout", "TooManyRedirects", "failed", "judged"]


class ConnectTimeout(Exception):
    """The connect bound (shorter than the check's timeout) passed."""

    def __init__(self, limit: float) -> None:
        super().__init__(limit)
        self.limit = limit


class TooManyRedirects(Exception):
    pass


def judged(spec: HttpProbe, answer: Answer, started: float, now: float) -> CheckResult:
    """The result of `answer`, received at `now` (time.monotonic())."""
    url, code = spec.url, answer.status
    elapsed_ms = (now - started) * 1000
    measured = (Measure("ms", round(elapsed_ms, 1), "ms", low=0.0),)
    said = f"HTTP {code} from {url}"
    if not spec.status_ok(code):
        return finish(Status.CRITICAL, f"{said}, expected {_expected(spec)}", started, measured)
    if spec.body is not None or spec.body_regex is not None:
        text = _decode(answer.body, answer.charset)
        if spec.body is not None and spec.body not in text:
            return finish(Status.CRITICAL, f"{said}: body lacks {spec.body!r}", started, measured)
        if spec.body_regex is not None and not re.search(spec.body_regex, text):
            return finish(
                Status.CRITICAL,
                f"{said}: body does not match {spec.body_regex!r}",
                started,
                measured,
            )
    return finish(Status.OK, f"{said} in {elapsed_ms:.1f} ms", started, measured)


def failed(
    error: BaseException, url: str, timeout: float, connecting: bool, started: float
) -> CheckResult | None:
    """The result of a run that `error` ended, `connecting` or not; None for an error
    that says nothing of the endpoint (a bug: the caller lets it be UNKNOWN)."""
    if isinstance(error, ConnectTimeout):
        within = format_duration(error.limit)
        return finish(Status.CRITICAL, f"no connection to {url} within {within}", started)
    if isinstance(error, TimeoutError):
        within = format_duration(timeout)
        if connecting:
            return finish(Status.CRITICAL, f"no connection to {url} within {within}", started)
        return finish(Status.CRITICAL, f"no answer from {url} within {within}", started)
    if isinstance(error, socket.gaierror):
        # The name does not resolve: the probe cannot run, the service may be fine.
        host = urlsplit(url).hostname
        return finish(Status.UNKNOWN, f"cannot resolve {host}: {error.strerror}", started)
    if isinstance(error, ssl.SSLCertVerificationError):
        return finish(Status.CRITICAL, f"TLS certificate of {url} refused: {error}", started)
    if isinstance(error, ssl.SSLError):
        reason = str(error.reason or error.strerror or error).lower().replace("_", " ")
        return finish(Status.CRITICAL, f"TLS handshake with {url} failed: {reason}", started)
    if isinstance(error, TooManyRedirects):
        return finish(Status.CRITICAL, f"too many redirects from {url}", started)
    if isinstance(error, WireError):
        return finish(Status.CRITICAL, f"request to {url} failed: {error}", started)
    if isinstance(error, OSError):
        return finish(Status.CRITICAL, f"cannot connect to {url}: {os_reason(error)}", started)
    return None


def _expected(spec: HttpProbe) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in spec.expect_status)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")
