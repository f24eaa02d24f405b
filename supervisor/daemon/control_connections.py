"""Who is at the other end of the control socket, and for how long.

The socket is bound with its final owner and mode before anyone can connect. A peer is
known by its credentials (SO_PEERCRED) and its role by its groups in the user database,
cached `GROUPS_TTL` seconds. A connection must deliver its whole request head within
`REQUEST_TIMEOUT`, or it is closed; at most `MAX_CONNECTIONS` are open at once, and when
the cap is reached the oldest one still sending its request is dropped for the new one;
one whose request is being served never is. What each role may ask is
:mod:`supervisor.daemon.control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import os
import pwd
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from supervisor.config.main import ControlConfig

log = structlog.get_logger("host-supervisor")

REQUEST_TIMEOUT = 5.0
"""Seconds from accept until the request head must be complete."""
MAX_CONNECTIONS = 64
"""Open connections at once."""
GROUPS_TTL = 10.0
"""How long a uid's group membership is cached, in seconds."""


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


def gid_named(name: str | None) -> int | None:
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


class Roles:
    """The role of each peer, by `role_for`, with group memberships cached."""

    def __init__(self, groups: Groups) -> None:
        self.groups = groups
        self._read_gid: int | None = None
        self._act_gid: int | None = None
        self._membership: dict[int, tuple[float, frozenset[int]]] = {}

    def resolve(self) -> None:
        """Look the read and act groups up (a missing one is logged and ignored)."""
        self._read_gid, self._act_gid = gid_named(self.groups.read), gid_named(self.groups.act)

    def of(self, peer: Peer) -> Role:
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


class Connections:
    """The listening socket and the connections accepted from it."""

    def __init__(self, request_timeout: float, max_connections: int) -> None:
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.dropped = 0
        """Connections closed for taking too long or to make room; for tests and metrics."""
        self._connections: dict[object, _Connection] = {}
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None

    def start(self, path: Path, socket_group: str | None, factory: Any) -> None:
        """Bind `path` and accept connections into aiohttp's server `factory`."""
        self._listener = self._listen(path, socket_group)
        self._accepting = asyncio.create_task(self._accept_loop(self._listener, factory))

    def _listen(self, path: Path, socket_group: str | None) -> socket.socket:
        """Bind the socket with its final owner and mode before anyone can connect."""
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()  # stale: the state-dir lock proves no other daemon runs
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        gid = gid_named(socket_group)
        if gid is not None:
            os.chown(path, -1, gid)
            os.chmod(path, 0o660)
        else:
            os.chmod(path, 0o600)  # root only rather than fail: the daemon must run
        listener.listen(128)
        listener.setblocking(False)
        return listener

    async def stop(self) -> None:
        """Stop accepting, close the listening socket, cancel every deadline."""
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
        if self._listener is not None:
            self._listener.close()
        for connection in self._connections.values():
            connection.deadline.cancel()

    async def _accept_loop(self, listener: socket.socket, factory: Any) -> None:
        loop = asyncio.get_running_loop()
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

    def peer(self, request: web.Request) -> Peer:
        """The peer of the connection `request` came on."""
        connection = self._connections.get(request.transport)
        if connection is not None:
            return connection.peer
        assert request.transport is not None
        return peer_credentials(request.transport.get_extra_info("socket"))

    def served(self, request: web.Request) -> None:
        """The request head is in: from now on the connection is served, not dropped."""
        connection = self._connections.get(request.transport)
        if connection is not None:
            connection.pending = False
            connection.deadline.cancel()
