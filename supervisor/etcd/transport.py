"""Requests to etcd's v3 JSON gateway with endpoint failover, on one aiohttp session.

A request goes to the endpoint in use; when that one does not answer (refused, reset, TLS
failure, no answer within the timeout) or answers with a transient error (a 5xx, gRPC
Unavailable or DeadlineExceeded: no leader, leader changed, request timed out), the next
endpoints are tried in order, each with the same per-request timeout, and the first that
answers becomes the one in use. When none does, :class:`EtcdUnavailable` names every
endpoint and why. The worst case is thus ``len(endpoints) * timeout``: never a hang.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import aiohttp

from supervisor.etcd.errors import EtcdConfigError, EtcdError, EtcdProtocolError, EtcdUnavailable
from supervisor.etcd.tls import EtcdTLS
from supervisor.etcd.wire import GatewayError, Json, gateway_error

#: The gateway's path prefix: /v3 from etcd 3.4 on (3.3 had /v3beta, 3.2 /v3alpha).
API = "/v3"


def check_endpoints(endpoints: Sequence[str], tls: EtcdTLS | None) -> tuple[str, ...]:
    """The endpoints as ``scheme://host:port``; EtcdConfigError for one that is not usable."""
    if isinstance(endpoints, str) or not endpoints:
        raise EtcdConfigError("give a list of one or more endpoints (http[s]://host:port)")
    checked: list[str] = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint)
        where = f"{parts.scheme}://{parts.hostname}:{parts.port}" if parts.hostname else "endpoint"
        if parts.username is not None or parts.password is not None:
            # Said without echoing the URL: it holds a password.
            raise EtcdConfigError(f"{where}: credentials do not belong in an endpoint URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EtcdConfigError(f"{endpoint!r} is not an http:// or https:// URL with a host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise EtcdConfigError(f"{endpoint}: an endpoint is scheme://host:port, nothing more")
        if tls is not None and parts.scheme == "http":
            raise EtcdConfigError(f"{endpoint}: TLS settings are given but this endpoint is http")
        checked.append(endpoint.rstrip("/"))
    return tuple(checked)


def describe(error: BaseException) -> str:
    """A short reason for a failed attempt, for the EtcdUnavailable message."""
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        cause = error.certificate_error
        reason = getattr(cause, "verify_message", None) or cause
        return f"server certificate not trusted: {reason}"
    tls_error = error if isinstance(error, ssl.SSLError) else error.__cause__
    if isinstance(tls_error, ssl.SSLError):
        reason = str(tls_error.reason or tls_error).lower().replace("_", " ")
        return f"TLS handshake failed: {reason}"
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect: {error.os_error.strerror or error.os_error}"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "connection closed without an answer"
    return str(error) or type(error).__name__


class Transport:
    """The endpoints, the one in use, and the session that reaches them."""

    def __init__(self, endpoints: Sequence[str], tls: EtcdTLS | None, timeout: float) -> None:
        if not timeout > 0:
            raise EtcdConfigError(f"timeout must be positive, not {timeout!r}")
        self.endpoints = check_endpoints(endpoints, tls)
        self.timeout = timeout
        secure = any(endpoint.startswith("https:") for endpoint in self.endpoints)
        self._ssl: ssl.SSLContext | None = (tls or EtcdTLS()).ssl_context() if secure else None
        self._current = 0
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._current]

    def session(self) -> aiohttp.ClientSession:
        """The one session, made on first use (inside the running loop)."""
        if self._closed:
            raise EtcdError("the client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            # Each request is bounded by asyncio.timeout; these only replace the 300 s default.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def order(self) -> list[int]:
        """Endpoint indexes to try: the one in use, then the others in order."""
        count = len(self.endpoints)
        return [(self._current + step) % count for step in range(count)]

    def use(self, index: int) -> None:
        self._current = index

    async def post(self, path: str, body: Mapping[str, object]) -> tuple[str, Json]:
        """POST ``body`` to ``/v3{path}``; the answering endpoint and the first JSON object.

        Raises EtcdError (with the gRPC code) for a definite error from etcd, and
        EtcdUnavailable when no endpoint answered.
        """
        session = self.session()
        failures: list[tuple[str, str]] = []
        for index in self.order():
            endpoint = self.endpoints[index]
            try:
                async with asyncio.timeout(self.timeout):
                    async with session.post(endpoint + API + path, json=body) as response:
                        status, raw = response.status, await response.read()
            except TimeoutError:
                failures.append((endpoint, f"no answer within {self.timeout:g} s"))
                continue
            except (aiohttp.ClientError, ssl.SSLError, OSError) as e:
                failures.append((endpoint, describe(e)))
                continue
            answer = first_json(raw, status, endpoint)
            error = gateway_error(answer) if isinstance(answer, Mapping) else None
            if error is None and status >= 400:
                error = GatewayError(code=2, message=f"HTTP {status}: {raw[:200]!r}")
            if error is not None and error.retryable(status):
                failures.append((endpoint, f"{error.message} (code {error.code})"))
                continue
            self.use(index)
            if error is not None:
                raise EtcdError(f"{path}: {error.message}", endpoint=endpoint, code=error.code)
            if not isinstance(answer, Mapping):
                raise EtcdProtocolError(
                    f"{path}: not a JSON object: {raw[:200]!r}", endpoint=endpoint
                )
            return endpoint, answer
        raise EtcdUnavailable(failures)


def first_json(raw: bytes, status: int, endpoint: str) -> object:
    """The first JSON document of a body (a streamed answer has one per line), or None for
    an error body that is not JSON ("404 page not found")."""
    try:
        document, _ = json.JSONDecoder().raw_decode(raw.decode("utf-8").lstrip())
    except (UnicodeDecodeError, ValueError):
        if status >= 400:
            return None
        raise EtcdProtocolError(f"not JSON: {raw[:200]!r}", endpoint=endpoint) from None
    if status >= 400 and not isinstance(document, Mapping):
        return None  # "404 page not found" starts with a JSON number
    return document
