"""The control socket: HTTP/JSON over a unix socket, for the CLI.

Only root may connect: the socket is created mode 0600 (owner root when the daemon
runs as root), because its commands change what the daemon does to units. With
`control.socket_group` in the main config, that group may connect too (mode 0660).
"""

from __future__ import annotations

import grp
import os
import stat
import time
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web


class Control(Protocol):
    """What the control socket asks of the daemon."""

    @property
    def dry_run(self) -> bool: ...
    def status_line(self) -> str: ...
    def unit_status(self) -> list[dict[str, object]]: ...
    async def reload(self) -> bool: ...
    def reset(self, unit: str) -> bool: ...
    def pause(self, unit: str) -> bool: ...
    def resume(self, unit: str | None) -> bool: ...
    def manual_failover(self, unit: str, to: str | None) -> str | None: ...
    def manual_failback(self, unit: str) -> str | None: ...
    def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]: ...
    def metrics_snapshot(self) -> dict[str, object]: ...
    def reset_lateness(self) -> None: ...


class ControlServer:
    def __init__(self, daemon: Control, path: Path, group: str | None = None) -> None:
        self.daemon = daemon
        self.path = path
        self.group = group
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/status", self._status),
                web.post("/v1/reload", self._reload),
                web.post("/v1/units/{unit}/reset", self._reset),
                web.get("/v1/metrics", self._metrics),
                web.get("/v1/history", self._history),
                web.post("/v1/units/{unit}/pause", self._pause),
                web.post("/v1/units/{unit}/resume", self._resume),
                web.post("/v1/resume", self._resume_all),
                web.post("/v1/units/{unit}/failover", self._failover),
                web.post("/v1/units/{unit}/failback", self._failback),
                web.post("/v1/metrics/reset", self._metrics_reset),
            ]
        )
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.path.is_socket():
            self.path.unlink()  # stale: the state-dir lock proves no other daemon runs
        old_umask = os.umask(0o177)
        try:
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.UnixSite(self._runner, str(self.path)).start()
        finally:
            os.umask(old_umask)
        os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        if self.group is not None:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                # Keep it root-only rather than fail: the daemon must run.
                return
            os.chown(self.path, -1, gid)
            os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.path.is_socket():
            self.path.unlink()

    async def _status(self, request: web.Request) -> web.Response:
        unit = request.query.get("unit")
        rows = self.daemon.unit_status()
        if unit is not None:
            rows = [row for row in rows if row["unit"] == unit]
            if not rows:
                return web.json_response({"error": f"no policy for unit {unit}"}, status=404)
        return web.json_response(
            {
                "status": self.daemon.status_line(),
                "dry_run": self.daemon.dry_run,
                "units": rows,
            }
        )

    async def _reload(self, request: web.Request) -> web.Response:
        ok = await self.daemon.reload()
        return web.json_response({"ok": ok, "status": self.daemon.status_line()})

    async def _reset(self, request: web.Request) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.reset(unit):
            return web.json_response({"error": f"no policy for unit {unit}"}, status=404)
        return web.json_response({"ok": True})

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.json_response(self.daemon.metrics_snapshot())

    async def _metrics_reset(self, request: web.Request) -> web.Response:
        self.daemon.reset_lateness()
        return web.json_response({"ok": True})

    async def _history(self, request: web.Request) -> web.Response:
        unit = request.query.get("unit")
        try:
            since_s = float(request.query["since_s"]) if "since_s" in request.query else None
            limit = int(request.query.get("limit", "1000"))
        except ValueError:
            return web.json_response({"error": "since_s and limit are numbers"}, status=400)
        since = time.time() - since_s if since_s is not None else None
        return web.json_response({"entries": self.daemon.history(unit, since, limit)})

    async def _pause(self, request: web.Request) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.pause(unit):
            return web.json_response({"error": f"no policy for unit {unit}"}, status=404)
        return web.json_response({"ok": True})

    async def _resume(self, request: web.Request) -> web.Response:
        unit = request.match_info["unit"]
        if not self.daemon.resume(unit):
            return web.json_response({"error": f"no policy for unit {unit}"}, status=404)
        return web.json_response({"ok": True})

    async def _resume_all(self, request: web.Request) -> web.Response:
        self.daemon.resume(None)
        return web.json_response({"ok": True})

    async def _failover(self, request: web.Request) -> web.Response:
        refused = self.daemon.manual_failover(request.match_info["unit"], request.query.get("to"))
        if refused is not None:
            return web.json_response({"error": refused}, status=409)
        return web.json_response({"ok": True})

    async def _failback(self, request: web.Request) -> web.Response:
        refused = self.daemon.manual_failback(request.match_info["unit"])
        if refused is not None:
            return web.json_response({"error": refused}, status=409)
        return web.json_response({"ok": True})
