"""The witness: a tiny HTTP server standing for the shared resource a fenced service writes.

Every supervised unit of the cluster tests writes to it every 50 ms with its fencing token.
It answers like a store that honours fencing tokens, and it keeps the evidence a test
checks afterwards:

- a write whose token is below the highest seen is refused (409) and counted as a rejected
  stale write; a stale write is never accepted;
- a write with the highest token from another host than the one that first used it is
  refused (409) and recorded as a violation: two hosts holding the same token;
- two different hosts that both wrote within ``window`` seconds (150 ms: three periods)
  were active together: each such episode is recorded as an overlap (start, end, hosts
  and their tokens), refused writes included (a unit that writes is active).

HTTP (stdlib only, so it runs with Debian's python3 in a lab)::

    POST /write   JSON {"host": str, "token": int, "t": float} (or the same as a query
                  string) -> 200 {"ok": true, ...} | 409 {"ok": false, "reason": ...}
                  | 400 on a malformed write
    GET  /report  -> JSON, see Witness.report
    POST /reset   -> 200, forgets everything

Run: ``python3 witness.py --listen ADDRESS [--port 8780] [--window 0.15]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 8780
DEFAULT_WINDOW = 0.15


@dataclass
class Overlap:
    """An episode during which two or more hosts were writing."""

    start: float
    end: float
    hosts: set[str]
    tokens: dict[str, set[int]]
    writes: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "duration": round(self.end - self.start, 6),
            "hosts": sorted(self.hosts),
            "tokens": {h: sorted(t) for h, t in sorted(self.tokens.items())},
            "writes": self.writes,
        }


@dataclass
class SameToken:
    """Writes of ``token`` by ``host`` while it belonged to ``holder``."""

    token: int
    holder: str
    host: str
    first: float
    last: float
    count: int = 0


@dataclass
class Witness:
    """The witness's book, without I/O: ``write`` and ``report`` take the time."""

    window: float = DEFAULT_WINDOW
    highest: int | None = None
    holder: str | None = None
    writes: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    stale: dict[str, int] = field(default_factory=dict)
    last_write: dict[str, float] = field(default_factory=dict)
    last_token: dict[str, int] = field(default_factory=dict)
    same_token: dict[tuple[int, str], SameToken] = field(default_factory=dict)
    overlaps: list[Overlap] = field(default_factory=list)

    def write(self, host: str, token: int, now: float) -> tuple[int, dict[str, Any]]:
        """Record a write; returns the HTTP status and body to answer it with."""
        self.writes[host] = self.writes.get(host, 0) + 1
        self.last_write[host] = now
        self.last_token[host] = token
        self._note_overlap(now)
        if self.highest is None or token > self.highest:
            self.highest, self.holder = token, host
        elif token < self.highest:
            self.stale[host] = self.stale.get(host, 0) + 1
            return 409, self._answer(False, f"stale token {token} < {self.highest}")
        elif host != self.holder:
            assert self.holder is not None
            seen = self.same_token.setdefault(
                (token, host), SameToken(token, self.holder, host, now, now)
            )
            seen.last, seen.count = now, seen.count + 1
            return 409, self._answer(False, f"token {token} belongs to {self.holder}")
        self.accepted[host] = self.accepted.get(host, 0) + 1
        return 200, self._answer(True, "")

    def report(self, now: float) -> dict[str, Any]:
        return {
            "now": now,
            "window": self.window,
            "highest_token": self.highest,
            "highest_token_host": self.holder,
            "writes_by_host": dict(sorted(self.writes.items())),
            "accepted_by_host": dict(sorted(self.accepted.items())),
            "rejected_stale": sum(self.stale.values()),
            "rejected_stale_by_host": dict(sorted(self.stale.items())),
            "same_token_two_hosts": [
                {
                    "token": s.token,
                    "hosts": [s.holder, s.host],
                    "count": s.count,
                    "first": s.first,
                    "last": s.last,
                }
                for s in self.same_token.values()
            ],
            "overlaps": [o.as_json() for o in self.overlaps],
            "last_write_by_host": dict(sorted(self.last_write.items())),
            "last_token_by_host": dict(sorted(self.last_token.items())),
        }

    def _note_overlap(self, now: float) -> None:
        active = {h for h, t in self.last_write.items() if now - t <= self.window}
        if len(active) < 2:
            return
        current = self.overlaps[-1] if self.overlaps else None
        if current is None or now - current.end > self.window:
            current = Overlap(start=now, end=now, hosts=set(), tokens={})
            self.overlaps.append(current)
        current.end = now
        current.writes += 1
        current.hosts |= active
        for h in active:
            current.tokens.setdefault(h, set()).add(self.last_token[h])

    def _answer(self, ok: bool, reason: str) -> dict[str, Any]:
        return {"ok": ok, "reason": reason, "highest_token": self.highest}


class WitnessServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], window: float) -> None:
        super().__init__(address, Handler)
        self.book = Witness(window=window)
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: WitnessServer

    def do_GET(self) -> None:
        if urlsplit(self.path).path != "/report":
            self._send(404, {"error": f"no such page: {self.path}"})
            return
        with self.server.lock:
            report = self.server.book.report(time.time())
        self._send(200, report)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if url.path == "/reset":
            with self.server.lock:
                self.server.book = Witness(window=self.server.book.window)
            self._send(200, {"ok": True})
            return
        if url.path != "/write":
            self._send(404, {"error": f"no such page: {self.path}"})
            return
        try:
            host, token = parse_write(body, url.query)
        except ValueError as exc:
            self._send(400, {"error": str(exc)})
            return
        with self.server.lock:
            status, answer = self.server.book.write(host, token, time.time())
        self._send(status, answer)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # twenty writes a second per host: the journal does not need them


def parse_write(body: bytes, query: str) -> tuple[str, int]:
    """``host`` and ``token`` of a write, from the query string and a JSON body (which
    wins where both give a field)."""
    fields: dict[str, Any] = {k: v[-1] for k, v in parse_qs(query).items()}
    if body.strip():
        try:
            sent = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"the body is not JSON: {exc}") from None
        if not isinstance(sent, dict):
            raise ValueError("the body is not a JSON object")
        fields.update(sent)
    host, token = fields.get("host"), fields.get("token")
    if not isinstance(host, str) or not host:
        raise ValueError("a write needs a host")
    if isinstance(token, str) and token.lstrip("-").isdigit():
        token = int(token)
    if not isinstance(token, int) or isinstance(token, bool):
        raise ValueError("a write needs an integer token")
    return host, token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--listen", required=True, help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW)
    args = parser.parse_args(argv)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # every thread inherits it
    server = WitnessServer((args.listen, args.port), args.window)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    print(f"witness listening on {args.listen}:{args.port}", file=sys.stderr, flush=True)
    signal.sigwait(stop_signals)
    server.shutdown()
    serving.join()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
