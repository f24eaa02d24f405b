"""The control socket: HTTP/JSON over a unix socket, for the CLI.

Who may do what is decided per request from the peer's credentials (SO_PEERCRED),
never from the socket file's mode alone:

- uid 0 may do everything;
- members of `control.read_group` may read: status, history, metrics;
- members of `control.act_group` may also act: reload, reset, pause, resume,
  failover, failback, and reset the metrics;
- anyone else who can connect is answered 403, naming their uid and the role needed.

The socket file is mode 0600 (root only) unless a group is configured; then it is
0660 with group `control.socket_group`, which defaults to the read group, else the
act group. Membership is the peer uid's groups in the user database (primary and
supplementary, `os.getgrouplist`) plus the peer's own gid.

Every acting request passes its caller ("uid 1000 (alice)") to the daemon.

Slow or stuck clients cannot use up the daemon: a connection must deliver its whole
request head within `REQUEST_TIMEOUT`, or it is closed; one request per connection
(no keep-alive); at most `MAX_CONNECTIONS` at once. When the cap is reached, the
oldest connection still sending its request is dropped for the new one, so a flood of
half-open connections never locks an operator out; a connection whose request is
being served is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import math
import os
import pwd
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from supervisor.config.main import ControlConfig

log = structlog.get_logger("host-supervisor")

REQUEST_TIMEOUT = 5.0
"""Seconds from accept until the request head must be complete."""
MAX_CONNECTIONS = 64
"""Open connections at once."""
MAX_HISTORY = 100_000
"""The most history entries one request may ask for."""
GROUPS_TTL = 10.0
"""How long a uid's group membership is cached, in seconds."""


class Control(Protocol):
    """What the control socket asks of the daemon.

    The acting methods get `caller`: who asked, as "uid 0 (root)", for the history.
    """

    @property
    def dry_run(self) -> bool: ...
    def status_line(self) -> str: ...
    def unit_status(self) -> list[dict[str, object]]: ...
    async def reload(self, caller: str = "") -> bool: ...
    def reset(self, unit: str, caller: str = "") -> bool: ...
    def pause(self, unit: str, caller: str = "") -> bool: ...
    def resume(self, unit: str | None, caller: str = "") -> bool: ...
    def manual_failover(self, unit: str, to: str | None, caller: str = "") -> str | None: ...
    def manual_failback(self, unit: str, caller: str = "") -> str | None: ...
    async def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]: ...
    async def persisted(self) -> str | None:
        """None once what was decided so far is stored, else why it is not."""

    def metrics_snapshot(self) -> dict[str, object]: ...
    def reset_lateness(self) -> None: ...


class Role(enum.IntEnum):
    """What a peer may do; each role includes the ones below it."""

    NONE = 0
    READ = 1
    ACT = 2


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a connection."""

    pid: int
    uid: int
    gid: int

    @property
    def caller(self) -> str:
        """Who asked, for logs and history: uid 1000 (alice), or uid 1234 if unnamed."""
        try:
            return f"uid {self.uid} ({pwd.getpwuid(self.uid).pw_name})"
        except KeyError:
            return f"uid {self.uid}"


def peer_credentials(sock: Any) -> Peer:
    """SO_PEERCRED of a connected unix socket."""
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack(
        "3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, size)
    )
    return Peer(pid, uid, gid)


def groups_of(uid: int, gid: int) -> frozenset[int]:
    """The gids a uid belongs to by the user database, and `gid` (the peer's own)."""
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return frozenset({gid})
    return frozenset({gid, *os.getgrouplist(entry.pw_name, entry.pw_gid)})


def role_for(uid: int, groups: frozenset[int], read_gid: int | None, act_gid: int | None) -> Role:
    """The role of a peer: the pure rule, apart from any lookup."""
    if uid == 0:
        return Role.ACT
    if act_gid is not None and act_gid in groups:
        return Role.ACT
    if read_gid is not None and read_gid in groups:
        return Role.READ
    return Role.NONE


@dataclass(frozen=True)
class Groups:
    """The groups of ControlConfig with their defaults applied, by name."""

    socket: str | None
    read: str | None
    act: str | None

    @classmethod
    def of(cls, config: ControlConfig) -> Groups:
        read = config.read_group or config.socket_group
        return cls(
            socket=config.socket_group or read or config.act_group, read=read, act=config.act_group
        )


def _gid(name: str | None) -> int | None:
    if name is None:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        log.warning("control group does not exist; ignored", group=name)
        return None


@dataclass
class _Connection:
    transport: asyncio.Transport
    peer: Peer
    deadline: asyncio.TimerHandle
    pending: bool = True  # still sending its request head


Handler = Callable[[web.Request, Peer], Awaitable[web.Response]]


class ControlServer:
    def __init__(
        self,
        daemon: Control,
        path: Path,
        config: ControlConfig | None = None,
        *,
        request_timeout: float = REQUEST_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.daemon = daemon
        self.path = path
        self.groups = Groups.of(config or ControlConfig())
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.dropped = 0
        """Connections closed for taking too long or to make room; for tests and metrics."""
        self._read_gid: int | None = None
        self._act_gid: int | None = None
        self._membership: dict[int, tuple[float, frozenset[int]]] = {}
        self._connections: dict[object, _Connection] = {}
        self._runner: web.AppRunner | None = None
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        read, act = Role.READ, Role.ACT
        app.add_routes(
            [
                self._route("GET", "/v1/status", read, "read status", self._status),
                self._route("GET", "/v1/history", read, "read history", self._history),
                self._route("GET", "/v1/metrics", read, "read metrics", self._metrics),
                self._route("POST", "/v1/reload", act, "reload", self._reload),
                self._route("POST", "/v1/units/{unit}/reset", act, "reset", self._reset),
                self._route("POST", "/v1/units/{unit}/pause", act, "pause", self._pause),
                self._route("POST", "/v1/units/{unit}/resume", act, "resume", self._resume),
                self._route("POST", "/v1/resume", act, "resume every unit", self._resume_all),
                self._route("POST", "/v1/units/{unit}/failover", act, "fail over", self._failover),
                self._route("POST", "/v1/units/{unit}/failback", act, "fail back", self._failback),
                self._route("POST", "/v1/metrics/reset", act, "reset metrics", self._metrics_reset),
            ]
        )
        self._read_gid, self._act_gid = _gid(self.groups.read), _gid(self.groups.act)
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=1.0)
        await self._runner.setup()
        self._listener = self._listen()
        self._accepting = asyncio.create_task(self._accept_loop(self._listener))

    def _listen(self) -> socket.socket:
        """Bind the socket with its final owner and mode before anyone can connect."""
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # stale: the state-dir lock proves no other daemon runs
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        gid = _gid(self.groups.socket)
        if gid is not None:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)
        else:
            os.chmod(self.path, 0o600)  # root only rather than fail: the daemon must run
        listener.listen(128)
        listener.setblocking(False)
        return listener

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        for connection in self._connections.values():
            connection.deadline.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.path.is_socket():
            self.path.unlink()

    # -- connections --------------------------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        assert self._runner is not None and self._runner.server is not None
        factory = self._runner.server
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and the like: wait, never spin
                log.error("control socket cannot accept", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            try:
                peer = peer_credentials(conn)
                if not self._make_room():
                    conn.close()  # every slot is serving a request
                    continue
                transport, _ = await loop.connect_accepted_socket(factory, conn)
            except OSError as exc:
                log.warning("control connection dropped", error=str(exc))
                conn.close()
                continue
            deadline = loop.call_later(self.request_timeout, self._expire, transport)
            self._connections[transport] = _Connection(transport, peer, deadline)

    def _make_room(self) -> bool:
        """Forget closed connections; when full, drop the oldest one still sending."""
        for closed in [c for c in self._connections.values() if c.transport.is_closing()]:
            self._connections.pop(closed.transport).deadline.cancel()
        if len(self._connections) < self.max_connections:
            return True
        oldest = next((c for c in self._connections.values() if c.pending), None)
        if oldest is None:
            return False
        self._drop(oldest)
        return True

    def _expire(self, transport: asyncio.Transport) -> None:
        connection = self._connections.get(transport)
        if connection is not None and connection.pending:
            self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        connection.deadline.cancel()
        connection.transport.abort()
        self._connections.pop(connection.transport, None)
        self.dropped += 1

    # -- requests -----------------------------------------------------------------------------

    def _peer(self, request: web.Request) -> Peer:
        connection = self._connections.get(request.transport)
        if connection is not None:
            return connection.peer
        assert request.transport is not None
        return peer_credentials(request.transport.get_extra_info("socket"))

    def _role(self, peer: Peer) -> Role:
        if peer.uid == 0:
            return Role.ACT
        now = time.monotonic()
        cached = self._membership.get(peer.uid)
        if cached is None or cached[0] < now:
            if len(self._membership) > 1024:
                self._membership.clear()
            cached = (now + GROUPS_TTL, groups_of(peer.uid, peer.gid))
            self._membership[peer.uid] = cached
        return role_for(peer.uid, cached[1] | {peer.gid}, self._read_gid, self._act_gid)

    def _route(
        self, method: str, path: str, role: Role, verb: str, handler: Handler
    ) -> web.RouteDef:
        async def guarded(request: web.Request) -> web.Response:
            peer = self._peer(request)
            unit = request.match_info.get("unit")
            what = f"{verb} {unit}" if unit else verb
            if self._role(peer) < role:
                group = self.groups.read if role is Role.READ else self.groups.act
                where = f"control.{'read' if role is Role.READ else 'act'}_group"
                hint = f" (group {group})" if group else f" ({where} is not set)"
                log.warning("control request refused", caller=peer.caller, request=what, unit=unit)
                return _error(
                    403, f"{peer.caller} may not {what}: needs the {role.name.lower()} role{hint}"
                )
            response = await handler(request, peer)
            if role is Role.ACT:
                log.info(
                    "control request",
                    caller=peer.caller,
                    request=what,
                    unit=unit,
                    status=response.status,
                )
            return response

        return web.route(method, path, guarded)

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        connection = self._connections.get(request.transport)
        if connection is not None:  # the head is in: from now on it is served, not dropped
            connection.pending = False
            connection.deadline.cancel()
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route, wrong method
            if exc.status == 404:
                message = f"no such request: {request.method} {request.path}"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            else:
                message = exc.reason
            response = _error(exc.status, message)
        except Exception as exc:
            log.exception("control request failed", request=f"{request.method} {request.path}")
            response = _error(500, f"internal error: {type(exc).__name__}: {_one_line(str(exc))}")
        response.force_close()  # one request per connection: nothing idles
        return response

    # -- handlers -----------------------------------------------------------------------------

    def _known(self, unit: str) -> bool:
        return any(row["unit"] == unit for row in self.daemon.unit_status())

    async def _status(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.query.get("unit")
        rows = self.daemon.unit_status()
        if unit is not None:
            rows = [row for row in rows if row["unit"] == unit]
            if not rows:
                return _no_policy(unit)
        return web.json_response(
            {
                "status": self.daemon.status_line(),
                "dry_run": self.daemon.dry_run,
                "units": rows,
            }
        )

    async def _history(self, request: web.Request, peer: Peer) -> web.Response:
        query = request.query
        unit = query.get("unit")
        if unit is not None and not unit:
            return _error(400, "unit must not be empty")
        limit_text = query.get("limit", "1000")
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_HISTORY:
            return _error(
                400, f"limit must be a whole number from 1 to {MAX_HISTORY}, got {limit_text!r}"
            )
        since: float | None = None
        if "since_s" in query:
            try:
                since_s = float(query["since_s"])
            except ValueError:
                since_s = math.nan
            if not (math.isfinite(since_s) and since_s >= 0):
                return _error(
                    400, f"since_s must be a number of seconds, 0 or more, got {query['since_s']!r}"
                )
            since = time.time() - since_s
        entries = await self.daemon.history(unit, since, limit)
        if unit is not None and not entries and not self._known(unit):
            return _no_policy(unit)  # a unit whose policy went still shows its history
        return web.json_response({"entries": entries})

    async def _stored(self) -> web.Response:
        """An operator's request is acknowledged only once it is stored: a pause that
        a restart would forget is not a pause."""
        reason = await self.daemon.persisted()
        if reason is not None:
            return _error(503, f"accepted but not saved: {reason}")
        return web.json_response({"ok": True})

    async def _metrics(self, request: web.Request, peer: Peer) -> web.Response:
        return web.json_response(self.daemon.metrics_snapshot())

    async def _metrics_reset(self, request: web.Request, peer: Peer) -> web.Response:
        self.daemon.reset_lateness()
        return web.json_response({"ok": True})

    async def _reload(self, request: web.Request, peer: Peer) -> web.Response:
        ok = await self.daemon.reload(caller=peer.caller)
        return web.json_response({"ok": ok, "status": self.daemon.status_line()})

    async def _reset(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.reset(unit, caller=peer.caller):
            return _no_policy(unit)
        return await self._stored()

    async def _pause(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.pause(unit, caller=peer.caller):
            return _no_policy(unit)
        return await self._stored()

    async def _resume(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.resume(unit, caller=peer.caller):
            return _no_policy(unit)
        return await self._stored()

    async def _resume_all(self, request: web.Request, peer: Peer) -> web.Response:
        self.daemon.resume(None, caller=peer.caller)
        return await self._stored()

    async def _failover(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        to = request.query.get("to")
        if to is not None and not to:
            return _error(400, "to must name a backup unit")
        if not self._known(unit):
            return _no_policy(unit)
        refused = self.daemon.manual_failover(unit, to, caller=peer.caller)
        if refused is not None:
            return _error(409, refused)
        return await self._stored()

    async def _failback(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self._known(unit):
            return _no_policy(unit)
        refused = self.daemon.manual_failback(unit, caller=peer.caller)
        if refused is not None:
            return _error(409, refused)
        return await self._stored()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": _one_line(message)}, status=status)


def _no_policy(unit: str) -> web.Response:
    return _error(404, f"no policy for unit {unit}")
