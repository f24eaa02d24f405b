"""The shipped OpenAPI document against the servers: every route either server registers
is in it and nothing else is; its enumerations are the code's; and what the daemon
answers (through the real CLI: `status --json`, `history --json`, `metrics`; the error
bodies; the listener's /status.json) validates against its schemas."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from supervisor.api import openapi_document, openapi_text
from supervisor.commands.client import call
from supervisor.config.http import HttpConfig
from supervisor.core import failover
from supervisor.core.cluster_model import Role as ClusterRole
from supervisor.core.guard_state import BreakerPhase
from supervisor.core.health import Condition, HardState
from supervisor.core.recovery import Phase
from supervisor.daemon import Daemon, control_connections
from supervisor.daemon.control import ControlServer, Peer
from supervisor.daemon.listener import HttpServer
from supervisor.testing.etcd_server import free_port
from tests.scenarios.host_replay import World
from tests.unit.test_http_listener import SPEC, get

DOC = openapi_document()
URI = "urn:host-supervisor:openapi"
REGISTRY: Registry[Any] = Registry().with_resource(
    URI, Resource.from_contents(DOC, default_specification=DRAFT202012)
)
METHODS = {"get", "post", "put", "patch", "delete"}


def validator(schema: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{URI}#/components/schemas/{schema}"}, registry=REGISTRY)


def assert_valid(schema: str, instance: Any) -> None:
    errors = sorted(validator(schema).iter_errors(instance), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def documented(tag: str) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOC["paths"].items()
        for method, operation in item.items()
        if method in METHODS and tag in operation["tags"]
    }


def registered(app: Any) -> set[tuple[str, str]]:
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"  # aiohttp adds HEAD to every GET
    }


def test_the_document_is_openapi_3_1_with_valid_schemas() -> None:
    assert DOC["openapi"] == "3.1.0"
    assert openapi_text().startswith("openapi: 3.1.0")
    for name, schema in DOC["components"]["schemas"].items():
        Draft202012Validator.check_schema(schema)
        assert name[0].isupper()
    for path, item in DOC["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            assert operation["responses"], f"{method} {path} documents no response"
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    continue
                Draft202012Validator.check_schema(parameter["schema"])


def test_every_control_route_is_documented_and_nothing_else() -> None:
    server = ControlServer(object(), Path("/nonexistent"))  # type: ignore[arg-type]
    assert registered(server.app()) == documented("control")


def test_every_listener_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    daemon = World(SPEC, tmp_path).daemon()
    assert registered(HttpServer(daemon, HttpConfig()).app()) == documented("listener")


def test_every_route_documents_the_errors_it_can_answer() -> None:
    for method, path in sorted(documented("control")):
        codes = set(DOC["paths"][path][method.lower()]["responses"])
        assert {"200", "403", "500"} <= codes, (method, path)
        if "{unit}" in path:
            assert "404" in codes, (method, path)
        if method == "POST" and path not in ("/v1/reload", "/v1/metrics/reset"):
            assert "503" in codes, f"{method} {path} waits for the store: 503 when unsaved"


@pytest.mark.parametrize(
    ("schema", "values"),
    [
        ("Unit/properties/condition", [c.value for c in Condition]),
        ("Unit/properties/phase", [p.value for p in Phase]),
        ("Check/properties/state", [h.value for h in HardState]),
        ("Guard/properties/breaker", [b.value for b in BreakerPhase]),
        ("Failover/properties/phase", [p.value for p in failover.Phase]),
        ("Failover/properties/step", [s.value for s in failover.Step]),
        ("Cluster/properties/role", [r.value for r in ClusterRole]),
    ],
)
def test_enumerations_are_the_codes(schema: str, values: list[str]) -> None:
    node: Any = DOC["components"]["schemas"]
    for part in schema.split("/"):
        node = node[part]
    assert node["enum"] == values


# -- what the daemon says validates ------------------------------------------------------


@dataclass
class Served:
    daemon: Daemon
    socket: Path
    url: str


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    # The CLI runs as whoever runs the tests: make the server see root at the other end.
    monkeypatch.setattr(control_connections, "peer_credentials", lambda _s: Peer(1, 0, 0))
    world = World(SPEC, tmp_path / "etc")
    daemon = world.daemon()
    socket = tmp_path / "control.sock"
    listen = f"127.0.0.1:{free_port()}"
    daemon.ports.control = lambda d: ControlServer(d, socket)
    daemon.ports.http = lambda d: HttpServer(d, HttpConfig(listen=listen))
    task = asyncio.create_task(daemon.run())
    for _ in range(300):
        if socket.exists() and daemon.metrics.checks and daemon.state.started:
            break
        await asyncio.sleep(0.01)
    daemon.pause("web.service", "uid 0 (root)")  # something of the operator's in the history
    try:
        yield Served(daemon, socket, f"http://{listen}")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


async def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "supervisor", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_status_and_history_json_validate(served: Served) -> None:
    sock = str(served.socket)
    status = await cli("status", "--json", "--socket", sock)
    body = json.loads(status.stdout)
    # postgresql.service is failed: status exits 2 (unhealthy), with --json too.
    assert status.returncode == 2, status.stderr
    assert {u["unit"] for u in body["units"]} == {"web.service", "postgresql.service"}
    assert any(u["failover"] for u in body["units"])
    assert_valid("Status", body)
    one = await cli("status", "web.service", "--json", "--socket", sock)
    assert_valid("Status", json.loads(one.stdout))

    history = await cli("history", "--json", "--socket", sock)
    assert history.returncode == 0, history.stderr
    entries = json.loads(history.stdout)
    assert {e["kind"] for e in entries["entries"]} >= {"operator"}
    assert_valid("History", entries)

    metrics = await cli("metrics", "--socket", sock)
    assert_valid("MetricsSnapshot", json.loads(metrics.stdout))
    reloaded = await cli("reload", "--json", "--socket", sock)
    assert_valid("Reloaded", json.loads(reloaded.stdout))
    resumed = await cli("resume", "web.service", "--json", "--socket", sock)
    assert_valid("Ok", json.loads(resumed.stdout))


async def test_error_bodies_validate_with_their_documented_codes(served: Served) -> None:
    asks = [
        ("GET", "/v1/status?unit=nope.service", 404),
        ("GET", "/v1/history?limit=-1", 400),
        ("POST", "/v1/units/nope.service/pause", 404),
        ("POST", "/v1/units/web.service/failover?to=", 400),
        ("POST", "/v1/units/postgresql.service/failback", 409),
        ("GET", "/v1/nothing", 404),
    ]
    for method, url, code in asks:
        got, body = await asyncio.to_thread(call, served.socket, method, url, 10.0)
        assert got == code, (method, url, body)
        assert_valid("Error", body)
        path = url.split("?")[0]
        if path in DOC["paths"]:
            assert str(code) in DOC["paths"][path][method.lower()]["responses"]
    assert body == {"error": "no such request: GET /v1/nothing"}


async def test_the_listeners_status_json_validates(served: Served) -> None:
    status, _, text = await get(served.url + "/status.json")
    assert status == 200
    body = json.loads(text)
    assert_valid("PageStatus", body)
    paused = next(u for u in body["units"] if u["unit"] == "web.service")
    assert paused["paused"] and paused["recent"][0]["kind"] == "operator"
    status, _, text = await get(served.url + "/status.json?unit=nope.service")
    assert status == 404
    assert_valid("Error", json.loads(text))
    status, _, text = await get(served.url + "/openapi.yaml")
    assert status == 200 and text == openapi_text()
