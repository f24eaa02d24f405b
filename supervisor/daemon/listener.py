"""The opt-in HTTP listener (`http.listen` in the main config): /metrics for Prometheus,
the status page at /, /status.json behind it, and the API document. Read-only: no
request on it changes anything; acting stays on the control socket, where the caller's
credentials are checked.

A listener that cannot bind (the port taken, the address gone) is one error naming the
address, and the daemon supervises on without it. Beyond loopback the config demands
TLS and an allow-list of client networks; a client outside it is answered 403.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog
from aiohttp import web

from supervisor.api import openapi_text
from supervisor.config.http import HttpConfig, NodeExporterConfig, split_listen
from supervisor.daemon.exposition import Observed, Textfile, encode, registry_of
from supervisor.daemon.page import CSP, PAGE

log = structlog.get_logger("host-supervisor")

__all__ = ["RECENT_PER_UNIT", "HttpServer", "Viewed"]

RECENT_PER_UNIT = 5
"""Last events per unit on the status page."""
RECENT_SCAN = 500
"""History entries read to find them (one query, newest first)."""
RECENT_TTL = 1.0
"""Seconds the last events are reused between page refreshes (and viewers)."""

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class Viewed(Observed, Protocol):
    """What the listener reads of the daemon: the metrics' view and the status."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def hostname(self) -> str: ...
    def status_line(self) -> str: ...
    async def history(
        self, unit: str | None, since: float | None, limit: int
    ) -> list[dict[str, Any]]: ...


class HttpServer:
    """The listener and the node_exporter textfile; `start` never raises for a bind."""

    def __init__(
        self, daemon: Viewed, config: HttpConfig, textfile: NodeExporterConfig | None = None
    ) -> None:
        self.daemon = daemon
        self.config = config
        self.registry = registry_of(daemon)
        self.textfile = Textfile(self.registry, textfile) if textfile is not None else None
        self.address: tuple[str, int] | None = None
        """Where it listens once started (the port the kernel gave for port 0), else None."""
        self._allow = (
            [ipaddress.ip_network(cidr) for cidr in config.allow] if config.allow else None
        )
        self._runner: web.AppRunner | None = None
        self._recent: tuple[float, dict[str, list[dict[str, Any]]]] | None = None
        self._recent_lock = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.add_routes(
            [
                web.get("/", self._page),
                web.get("/status.json", self._status),
                web.get("/metrics", self._metrics),
                web.get("/openapi.yaml", self._openapi),
            ]
        )
        return app

    async def start(self) -> None:
        if self.textfile is not None:
            self.textfile.start()
        if self.config.listen is None:
            return
        host, port = split_listen(self.config.listen)
        scheme = "https" if self.config.tls else "http"
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        try:
            context = self._tls()
            site = web.TCPSite(runner, host, port, ssl_context=context, reuse_address=True)
            await site.start()
        except (OSError, ssl.SSLError) as exc:
            await runner.cleanup()
            log.error(
                f"cannot listen on {self.config.listen}: {exc.strerror or exc}; metrics and "
                "the status page are off, supervision goes on",
                address=self.config.listen,
            )
            return
        self._runner = runner
        bound = runner.addresses  # the addresses really bound (port 0: the kernel's pick)
        self.address = (str(bound[0][0]), int(bound[0][1])) if bound else (host, port)
        log.info(
            "serving metrics and the status page",
            url=f"{scheme}://{self.config.listen}/",
            allow=list(self.config.allow or ()),
        )

    async def stop(self) -> None:
        if self.textfile is not None:
            await self.textfile.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _tls(self) -> ssl.SSLContext | None:
        tls = self.config.tls
        if tls is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(tls.cert, tls.key)
        return context

    # -- requests ---------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self._allow is not None and not self._allowed(request.remote):
            log.warning("HTTP request refused: address not in http.allow", peer=request.remote)
            return _error(403, f"{request.remote} is not in http.allow")
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # aiohttp's own: no route, wrong method
            if exc.status == 404:
                message = f"no such page: {request.path}"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}: it is read-only"
            else:
                message = exc.reason
            response = _error(exc.status, message)
        except Exception as exc:
            log.exception("HTTP request failed", request=f"{request.method} {request.path}")
            response = _error(500, f"internal error: {type(exc).__name__}")
        response.headers.update(_HEADERS)
        return response

    def _allowed(self, remote: str | None) -> bool:
        if remote is None or self._allow is None:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            text=PAGE,
            content_type="text/html",
            charset="utf-8",
            headers={"Content-Security-Policy": CSP},
        )

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=openapi_text(), content_type="application/yaml", charset="utf-8")

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = encode(self.registry, request.headers.get("Accept"))
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def _status(self, request: web.Request) -> web.Response:
        unit = request.query.get("unit")
        rows = self.daemon.unit_status()
        if unit is not None:
            rows = [row for row in rows if row["unit"] == unit]
            if not rows:
                return _error(404, f"no policy for unit {unit}")
        recent = await self._recent_events()
        units = [{**row, "recent": recent.get(str(row["unit"]), [])} for row in rows]
        return web.json_response(
            {
                "host": self.daemon.hostname,
                "time": time.time(),
                "status": self.daemon.status_line(),
                "dry_run": self.daemon.dry_run,
                "guard": self.daemon.guard_status(),
                "units": units,
            }
        )

    async def _recent_events(self) -> dict[str, list[dict[str, Any]]]:
        """The last RECENT_PER_UNIT history entries of each unit, newest first."""
        async with self._recent_lock:
            now = time.monotonic()
            if self._recent is not None and now - self._recent[0] < RECENT_TTL:
                return self._recent[1]
            entries = await self.daemon.history(None, None, RECENT_SCAN)
            by_unit: dict[str, list[dict[str, Any]]] = {}
            for entry in reversed(entries):  # the store gives the last ones, oldest first
                unit = entry.get("unit")
                if not unit:
                    continue
                kept = by_unit.setdefault(str(unit), [])
                if len(kept) < RECENT_PER_UNIT:
                    kept.append(
                        {"time": entry["time"], "kind": entry["kind"], "message": entry["message"]}
                    )
            self._recent = (now, by_unit)
            return by_unit


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": " ".join(message.split())}, status=status)
