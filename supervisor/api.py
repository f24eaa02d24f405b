"""The control socket: HTTP/JSON over a unix socket, for the CLI.

Only root may connect: the socket is created mode 0600 (owner root when the daemon
runs as root), because its commands change what the daemon does to units.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from supervisor.daemon import Daemon


class ControlServer:
    def __init__(self, daemon: Daemon, path: Path) -> None:
        self.daemon = daemon
        self.path = path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(
            [
                web.get("/v1/status", self._status),
                web.post("/v1/reload", self._reload),
                web.post("/v1/units/{unit}/reset", self._reset),
                web.get("/v1/metrics", self._metrics),
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
                "dry_run": self.daemon.options.dry_run,
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
        return web.json_response(self.daemon.metrics.snapshot())

    async def _metrics_reset(self, request: web.Request) -> web.Response:
        self.daemon.metrics.reset_lateness()
        return web.json_response({"ok": True})
