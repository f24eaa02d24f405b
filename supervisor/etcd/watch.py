"""Watches over the gateway: one streaming ``POST /v3/watch`` per watch.

The stream is opened like any request (endpoint failover, each attempt bounded by the
timeout, until etcd says the watch is ``created``); from then on it stays on that endpoint
and any break is an EtcdError for the caller, who re-reads and watches again. The gateway
writes one JSON message per line. Messages without events (progress notifications, which
``progress_notify`` asks for at the server's interval, 10 minutes by default) are skipped;
``idle_timeout`` bounds the silence, for a member that went away without closing the
connection.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncGenerator, Mapping

import aiohttp

import supervisor.etcd.wire as wire
from supervisor.etcd.errors import EtcdError, EtcdProtocolError, EtcdUnavailable, WatchCompacted
from supervisor.etcd.transport import API, Transport, describe, first_json
from supervisor.etcd.wire import GatewayError, Json, WatchEvent, WatchResponse

_BROKEN = (aiohttp.ClientError, ssl.SSLError, OSError)


class _Stream:
    """The open response of one watch, read as JSON lines."""

    def __init__(self, endpoint: str, response: aiohttp.ClientResponse) -> None:
        self.endpoint = endpoint
        self._response = response
        self._buffer = b""
        self._lines: list[bytes] = []

    def close(self) -> None:
        self._response.close()

    async def next(self) -> WatchResponse:
        """The next message; EtcdError for the end of the stream or an error message."""
        while not self._lines:
            chunk = await self._response.content.readany()
            if not chunk:
                raise EtcdError("watch stream ended", endpoint=self.endpoint)
            *complete, self._buffer = (self._buffer + chunk).split(b"\n")
            self._lines = [line for line in complete if line.strip()]
        line = self._lines.pop(0)
        try:
            message = json.loads(line)
        except ValueError:
            raise EtcdProtocolError(
                f"watch: not JSON: {line[:200]!r}", endpoint=self.endpoint
            ) from None
        if not isinstance(message, Mapping):
            raise EtcdProtocolError(f"watch: not an object: {line[:200]!r}", endpoint=self.endpoint)
        error = wire.gateway_error(message)
        if error is not None:
            raise _error(error, self.endpoint)
        try:
            response = wire.watch_response(message)
        except EtcdProtocolError as e:
            raise EtcdProtocolError(f"watch: {e.detail}", endpoint=self.endpoint) from None
        if response.canceled:
            if response.compact_revision:
                raise WatchCompacted(response.compact_revision, endpoint=self.endpoint)
            reason = response.cancel_reason or "no reason given"
            raise EtcdError(f"watch canceled by etcd: {reason}", endpoint=self.endpoint)
        return response


def _error(error: GatewayError, endpoint: str) -> EtcdError:
    return EtcdError(f"watch: {error.message}", endpoint=endpoint, code=error.code)


async def _open(transport: Transport, request: Json) -> _Stream:
    """The stream of the first endpoint that creates the watch (in failover order)."""
    session = transport.session()
    failures: list[tuple[str, str]] = []
    for index in transport.order():
        endpoint = transport.endpoints[index]
        response: aiohttp.ClientResponse | None = None
        try:
            async with asyncio.timeout(transport.timeout):
                response = await session.post(endpoint + API + "/watch", json=request)
                if response.status != 200:
                    raw = await response.read()
                    answer = first_json(raw, response.status, endpoint)
                    error = wire.gateway_error(answer) or GatewayError(2, f"HTTP {response.status}")
                    if not error.retryable(response.status):
                        transport.use(index)
                        raise _error(error, endpoint)
                    failures.append((endpoint, f"{error.message} (code {error.code})"))
                    response.close()
                    continue
                stream = _Stream(endpoint, response)
                first = await stream.next()
        except EtcdError as e:
            if response is not None:
                response.close()
            if e.code is None or not GatewayError(e.code, e.detail).retryable(0):
                raise
            failures.append((endpoint, e.detail))
            continue
        except (TimeoutError, *_BROKEN) as e:
            if response is not None:
                response.close()
            timed_out = isinstance(e, TimeoutError)
            reason = f"no answer within {transport.timeout:g} s" if timed_out else describe(e)
            failures.append((endpoint, reason))
            continue
        if not first.created:
            stream.close()
            raise EtcdProtocolError(
                f"watch: expected 'created' first, got {first!r}", endpoint=endpoint
            )
        transport.use(index)
        return stream
    raise EtcdUnavailable(failures)


async def watch_prefix(
    transport: Transport, create_request: Json, idle_timeout: float | None
) -> AsyncGenerator[WatchEvent, None]:
    """The events of one watch, in revision order (see EtcdClient.watch)."""
    stream = await _open(transport, {"create_request": create_request})
    try:
        while True:
            try:
                async with asyncio.timeout(idle_timeout):
                    response = await stream.next()
            except TimeoutError:
                raise EtcdError(
                    f"watch stream silent for {idle_timeout:g} s", endpoint=stream.endpoint
                ) from None
            except _BROKEN as e:
                raise EtcdError(
                    f"watch stream broke: {describe(e)}", endpoint=stream.endpoint
                ) from e
            for event in response.events:
                yield event
    finally:
        stream.close()
