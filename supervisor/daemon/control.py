"""The control socket: HTTP/JSON over a unix socket, for the CLI.

Who may do what is decided per request from the peer's credentials (SO_PEERCRED),
never from the socket file's mode alone:

- uid 0 may do everything;
- members of `control.read_group` may read: status, history, metrics;
- members of `control.act_group` may also act: reload, reset, pause, resume,
  failover, failback, reset the metrics, and run recovery drills (force a check to
  fail, record a drill's result);
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

Those connections, the peers' credentials and their roles are
:mod:`supervisor.daemon.control_connections`; the requests and their answers are here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web

from supervisor.config.main import ControlConfig
from supervisor.core.drill import MAX_FORCE
from supervisor.daemon.control_connections import (
    MAX_CONNECTIONS,
    REQUEST_TIMEOUT,
    Connections,
    Groups,
    Peer,
    Role,
    Roles,
    role_for,
)
from supervisor.daemon.drills import Drills

log = structlog.get_logger("host-supervisor")

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_HISTORY",
    "REQUEST_TIMEOUT",
    "Control",
    "ControlServer",
    "Groups",
    "Peer",
    "Role",
    "role_for",
]

FORCE_CHECK = "/v1/units/{unit}/drill/fail-check"

MAX_HISTORY = 100_000
"""The most history entries one request may ask for."""
MAX_PAUSE_S = 365 * 86400.0
"""The longest pause with an end: a year (`pause --for`)."""
MAX_REASON = 200
"""The longest reason a pause may carry: one line of status."""


class Control(Protocol):
    """What the control socket asks of the daemon.

    The acting methods get `caller`: who asked, as "uid 0 (root)", for the history.
    """

    @property
    def dry_run(self) -> bool: ...
    def status_line(self) -> str: ...
    def unit_status(self) -> list[dict[str, object]]: ...
    def guard_status(self) -> dict[str, object]: ...
    async def reload(self, caller: str = "") -> bool: ...
    def reset(self, unit: str, caller: str = "") -> bool: ...
    def pause(
        self, unit: str, caller: str = "", duration: float | None = None, reason: str = ""
    ) -> bool: ...
    def resume(self, unit: str | None, caller: str = "") -> bool: ...
    def manual_failover(self, unit: str, to: str | None, caller: str = "") -> str | None: ...
    def manual_failback(self, unit: str, caller: str = "") -> str | None: ...
    def handover(self, unit: str, to_host: str, caller: str = "") -> str | None: ...
    async def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]: ...
    async def persisted(self) -> str | None:
        """None once what was decided so far is stored, else why it is not."""

    def metrics_snapshot(self) -> dict[str, object]: ...
    def reset_lateness(self) -> None: ...
    @property
    def drills(self) -> Drills: ...


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
        self._roles = Roles(self.groups)
        self._connections = Connections(request_timeout, max_connections)
        self._runner: web.AppRunner | None = None

    @property
    def dropped(self) -> int:
        """Connections closed for taking too long or to make room; for tests and metrics."""
        return self._connections.dropped

    # -- lifecycle ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The requests and who may make them (the API document lists the same)."""
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
                self._route("POST", "/v1/units/{unit}/drill", act, "record a drill", self._drill),
                self._route("POST", FORCE_CHECK, act, "force a check to fail", self._force_check),
                self._route("DELETE", FORCE_CHECK, act, "end a forced check", self._end_forced),
            ]
        )
        return app

    async def start(self) -> None:
        self._roles.resolve()
        self._runner = web.AppRunner(self.app(), access_log=None, keepalive_timeout=1.0)
        await self._runner.setup()
        assert self._runner.server is not None
        self._connections.start(self.path, self.groups.socket, self._runner.server)

    async def stop(self) -> None:
        await self._connections.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.path.is_socket():
            self.path.unlink()

    # -- requests -----------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, role: Role, verb: str, handler: Handler
    ) -> web.RouteDef:
        async def guarded(request: web.Request) -> web.Response:
            peer = self._connections.peer(request)
            unit = request.match_info.get("unit")
            what = f"{verb} {unit}" if unit else verb
            if self._roles.of(peer) < role:
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
        self._connections.served(request)
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
                "guard": self.daemon.guard_status(),
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
        duration: float | None = None
        if "for_s" in request.query:
            text = request.query["for_s"]
            try:
                duration = float(text)
            except ValueError:
                duration = math.nan
            if not (math.isfinite(duration) and 0 < duration <= MAX_PAUSE_S):
                return _error(
                    400, f"for_s must be a number of seconds above 0, at most a year, got {text!r}"
                )
        reason = _one_line(request.query.get("reason", ""))
        if len(reason) > MAX_REASON:
            return _error(400, f"reason must be at most {MAX_REASON} characters")
        if not self.daemon.pause(unit, caller=peer.caller, duration=duration, reason=reason):
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
        to_host = request.query.get("to_host")
        if to is not None and not to:
            return _error(400, "to must name a backup unit")
        if to_host is not None and (not to_host or to is not None):
            return _error(400, "to_host must name a host, and goes without to")
        if not self._known(unit):
            return _no_policy(unit)
        if to_host is not None:
            refused = self.daemon.handover(unit, to_host, caller=peer.caller)
        else:
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

    async def _drill(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self._known(unit):
            return _no_policy(unit)
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "the body must be a drill report in JSON")
        wrong = self.daemon.drills.record(unit, body, peer.caller)
        if wrong is not None:
            return _error(400, f"not a drill report: {wrong}")
        return await self._stored()

    async def _force_check(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self._known(unit):
            return _no_policy(unit)
        text = request.query.get("for_s", "")
        try:
            seconds = float(text)
        except ValueError:
            seconds = math.nan
        if not (math.isfinite(seconds) and 0 < seconds <= MAX_FORCE):
            return _error(
                400, f"for_s must be seconds, more than 0 and at most {MAX_FORCE:g}, got {text!r}"
            )
        check = request.query.get("check") or None
        refused = self.daemon.drills.force_check(unit, check, seconds, peer.caller)
        if refused is not None:
            return _error(409, refused)
        return await self._stored()

    async def _end_forced(self, request: web.Request, peer: Peer) -> web.Response:
        unit = request.match_info["unit"]
        if not self._known(unit):
            return _no_policy(unit)
        return web.json_response({"ok": True, "ended": self.daemon.drills.end_forced(unit)})


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": _one_line(message)}, status=status)


def _no_policy(unit: str) -> web.Response:
    return _error(404, f"no policy for unit {unit}")
