"""The HTTP probe's wire: one HTTP/1.1 exchange at a time over an asyncio transport, the
answer parsed by httptools (llhttp, the parser of Node.js), and the idle connections
kept between runs.

A `Connection` is the transport's `asyncio.Protocol`: no stream reader, no task; the
answer is collected by the parser's callbacks and handed over through one future. It
reads at most `body_max` bytes of a body and ends the exchange there (the connection is
then not reused). It knows the request's method only to end a HEAD answer at its
headers, which llhttp cannot be told through httptools.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NamedTuple, cast

import httptools

__all__ = ["Answer", "Closed", "Connection", "Invalid", "Pool", "WireError"]

_NO_BODY = frozenset({204, 304})


class Answer(NamedTuple):
    """What a health check needs of an HTTP answer."""

    status: int
    body: bytes
    charset: str | None
    location: str | None
    reusable: bool
    """The connection may carry the next request (both sides keep it, the body was read
    to its end)."""


class WireError(Exception):
    """The exchange failed; `str()` is a reason for people."""


class Closed(WireError):
    """The peer closed or reset the connection before the whole answer."""

    def __init__(self, reason: str, answered: bool) -> None:
        super().__init__(reason)
        self.answered = answered
        """Whether any byte of the answer came: if not, a kept connection may just have
        been closed by the server while idle, and a fresh one is worth one more try."""


class Invalid(WireError):
    """The answer is not HTTP/1.x as llhttp reads it."""


class Connection(asyncio.Protocol):
    """One connection to one origin; one request in flight at a time."""

    def __init__(self, key: object) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Answer] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._head = False
        self._keep = False
        self._want_body = False
        self._body_max = 0
        self._seen = False
        self._ended = False
        self._informational = False
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._charset: str | None = None
        self._location: str | None = None
        self._server_closes = False
        self._framed = False

    # Driving an exchange.

    def exchange(
        self, request: bytes, *, head: bool, keep: bool, want_body: bool, body_max: int
    ) -> asyncio.Future[Answer]:
        """Send `request`; the future gets the answer or a `WireError`."""
        assert self.transport is not None and self._waiter is None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._head, self._keep = head, keep
        self._want_body, self._body_max = want_body, body_max
        self._seen = self._ended = self._informational = False
        self._status = self._size = 0
        self._chunks = []
        self._charset = self._location = None
        self._server_closes = self._framed = False
        self.transport.write(request)
        return waiter

    def abort(self) -> None:
        """Drop the connection at once (a timeout, a run cancelled, a pool closing)."""
        self.closed = True
        self._waiter = None
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Close the connection (its answer ended; it is not kept)."""
        self.closed = True
        self._waiter = None
        if self.transport is not None:
            self.transport.close()

    def _end(self, reusable: bool) -> None:
        self._ended = True
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        body = b"".join(self._chunks) if self._want_body else b""
        reusable = reusable and self._keep and not self._server_closes and not self.closed
        waiter.set_result(Answer(self._status, body, self._charset, self._location, reusable))

    def _fail(self, error: WireError) -> None:
        self._ended = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's is no subclass of asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if self._waiter is None or parser is None:
            self.abort()  # bytes nobody asked for: the connection is not in a known state
            return
        self._seen = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(Invalid("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(Invalid(f"not an HTTP answer ({_parser_reason(exc)})"))
        if self._ended:
            self._parser = None  # the caller keeps or drops the connection, per `reusable`

    def eof_received(self) -> bool:
        self._server_closes = True
        self._closed_by_peer(None)
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._closed_by_peer(exc)

    def _closed_by_peer(self, exc: Exception | None) -> None:
        if self._waiter is None:
            return
        if self._status and not self._informational and not self._framed:
            self._end(False)  # a body without a length ends where the connection does
            return
        if exc is None:
            reason = "the server closed the connection"
        else:
            reason = f"the connection broke ({_error_reason(exc)})"
        if self._status:
            reason += " in the middle of its answer"
        elif not self._seen:
            reason += " before answering"
        self._fail(Closed(reason, self._seen))

    # httptools' callbacks (by name)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._ended:
            return
        name = name.lower()
        if name == b"content-type":
            self._charset = _charset(value)
        elif name == b"location":
            self._location = value.decode("latin-1")
        elif name == b"content-length":
            self._framed = True
        elif name == b"transfer-encoding":
            self._framed = b"chunked" in value.lower()
        elif name == b"connection" and b"close" in value.lower():
            self._server_closes = True

    def on_headers_complete(self) -> None:
        if self._ended:
            return
        assert self._parser is not None
        status = self._status = self._parser.get_status_code()
        self._informational = 100 <= status < 200
        if self._informational:
            return
        if self._head:
            # llhttp would wait for the body its headers announce: the answer ends here.
            if self._parser.get_http_version() != "1.1":
                self._server_closes = True
            self._framed = True
            self._end(True)
            return
        if not self._parser.should_keep_alive():
            self._server_closes = True
        if status in _NO_BODY:
            self._framed = True
            self._end(True)  # no body follows, whatever its headers say

    def on_body(self, body: bytes) -> None:
        if self._ended or self._informational:
            return
        room = self._body_max - self._size
        self._size += len(body)
        if self._want_body:
            self._chunks.append(body if len(body) <= room else body[:room])
        if self._size > self._body_max:
            self._framed = False  # the rest is never read
            self._end(False)

    def on_message_complete(self) -> None:
        if self._ended:
            return
        if self._informational:  # 100 Continue, 103 Early Hints: the answer is still to come
            self._informational = False
            self._status = 0
            self._charset = self._location = None
            self._framed = self._server_closes = False
            return
        self._framed = True
        self._end(True)


def _charset(content_type: bytes) -> str | None:
    for part in content_type.split(b";")[1:]:
        name, _, value = part.partition(b"=")
        if name.strip().lower() == b"charset":
            return value.strip().strip(b'"').decode("latin-1") or None
    return None


def _parser_reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text.removeprefix("Expected ") if text else type(exc).__name__


def _error_reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@dataclass
class Pool:
    """Idle connections by origin (scheme, host, port and TLS settings), the newest
    reused first; one that idled longer than `keepalive` seconds is closed instead."""

    keepalive: float
    _idle: dict[object, list[Connection]]
    _swept: float = 0.0

    @classmethod
    def empty(cls, keepalive: float) -> Pool:
        return cls(keepalive, {})

    def take(self, key: object, now: float) -> Connection | None:
        idle = self._idle.get(key)
        while idle:
            connection = idle.pop()
            transport = connection.transport
            if connection.closed or transport is None or transport.is_closing():
                continue
            if now - connection.idle_since > self.keepalive:
                connection.abort()
                continue
            return connection
        return None

    def put(self, connection: Connection, now: float) -> None:
        connection.idle_since = now
        self._idle.setdefault(connection.key, []).append(connection)
        if now - self._swept > self.keepalive:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close what idled too long, for origins no check asks for any more."""
        self._swept = now
        for key, idle in list(self._idle.items()):
            kept = []
            for connection in idle:
                if connection.closed or now - connection.idle_since > self.keepalive:
                    connection.abort()
                else:
                    kept.append(connection)
            if kept:
                self._idle[key] = kept
            else:
                del self._idle[key]

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()
