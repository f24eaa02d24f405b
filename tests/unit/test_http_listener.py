"""The HTTP listener against a real daemon on fakes: /metrics parsed by prometheus_client's
own parser, /status.json, the page and its CSP, read-only answers, the allow-list, TLS,
a port that cannot be bound, and the node_exporter textfile."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from supervisor.config.http import HttpConfig, HttpTLS, NodeExporterConfig
from supervisor.daemon import Daemon
from supervisor.daemon.exposition import PREFIX, Textfile
from supervisor.daemon.listener import HttpServer
from supervisor.daemon.page import CSP, PAGE, csp_for
from supervisor.testing.etcd_server import free_port, make_tls
from tests.scenarios.host_replay import World

SPEC: dict[str, Any] = {
    "main": {"guard": {"repair_budget": {"max": 4, "window": "10m"}}},
    "policies": {
        "web": {
            "unit": "web.service",
            "checks": [{"name": "http", "tcp": {"port": 8080}, "interval": "50ms"}],
            "failover": {"backup": "web-b.service"},
        },
        "db": {"unit": "postgresql.service"},  # protected: held, never restarted
    },
    "units": {
        "web.service": {"state": "active"},
        "web-b.service": {"state": "inactive"},
        "postgresql.service": {"state": "failed", "result": "exit-code"},
    },
}


@dataclass
class Running:
    daemon: Daemon
    server: HttpServer
    url: str


async def _run(tmp_path: Path, config: HttpConfig, **server: Any) -> AsyncIterator[Running]:
    world = World(SPEC, tmp_path / "etc")
    daemon = world.daemon()
    made: list[HttpServer] = []

    def build(d: Any) -> HttpServer:
        made.append(HttpServer(d, config, **server))
        return made[0]

    daemon.ports.http = build
    task = asyncio.create_task(daemon.run())
    for _ in range(200):
        if (
            made
            and (made[0].address is not None or config.listen is None)
            and daemon.metrics.checks
        ):
            break
        await asyncio.sleep(0.01)
    assert made, "the daemon did not build its listener"
    scheme = "https" if config.tls else "http"
    try:
        yield Running(daemon, made[0], f"{scheme}://{config.listen}")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config = HttpConfig(listen=f"127.0.0.1:{free_port()}")
    async for found in _run(tmp_path, config):
        yield found


async def get(url: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    method = kwargs.pop("method", "GET")
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, **kwargs) as response,
    ):
        return response.status, dict(response.headers), await response.text()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(PREFIX + name, tuple(sorted(labels.items())))]


async def test_metrics_parse_and_say_what_the_daemon_knows(running: Running) -> None:
    status, headers, text = await get(running.url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = list(text_string_to_metric_families(text))
    assert families, text
    assert all(f.name.startswith(PREFIX) for f in families)
    found = samples(text)
    assert value(found, "unit_health", unit="web.service", health="healthy") == 1
    assert value(found, "unit_health", unit="web.service", health="unhealthy") == 0
    assert value(found, "unit_health", unit="postgresql.service", health="unhealthy") == 1
    assert value(found, "unit_active_state", unit="postgresql.service", state="failed") == 1
    assert value(found, "unit_active_state", unit="web.service", state="active") == 1
    assert value(found, "unit_phase", unit="postgresql.service", phase="held") == 1
    assert value(found, "unit_attempts", unit="postgresql.service") == 0
    assert value(found, "unit_max_attempts", unit="web.service") == 3
    assert value(found, "unit_paused", unit="web.service") == 0
    assert value(found, "failover_phase", unit="web.service", phase="primary") == 1
    assert value(found, "check_state", unit="web.service", check="http", state="ok") == 1
    runs = value(found, "check_runs_total", unit="web.service", check="http", result="ok")
    assert runs >= 1
    count = value(found, "check_duration_seconds_count", unit="web.service", check="http")
    assert count == runs
    assert value(found, "check_duration_seconds_bucket", unit="web.service", check="http",
                 le="+Inf") == runs  # fmt: skip
    assert value(found, "check_lateness_seconds_count") >= runs
    assert value(found, "guard_budget_left") == 4
    assert value(found, "guard_budget_max") == 4
    assert value(found, "guard_budget_window_seconds") == 600
    assert value(found, "guard_frozen") == 0
    assert value(found, "guard_breaker_state", state="closed") == 1
    assert value(found, "guard_breaker_state", state="open") == 0
    assert value(found, "state_saved") == 1
    assert any(name == PREFIX + "build_info" for name, _ in found)


async def test_repairs_and_alerts_are_counted_by_their_labels(running: Running) -> None:
    running.daemon.metrics.repaired("web.service", "restart", "done")
    running.daemon.metrics.repaired("web.service", "restart", "done")
    running.daemon.metrics.repaired("web.service", "reload", "failed")
    running.daemon.alert_counts = lambda: {  # type: ignore[method-assign]
        "ops": {"sent": 3, "failed": 1, "spooled": 1, "dropped": 0}
    }
    _, _, text = await get(running.url + "/metrics")
    found = samples(text)
    assert value(found, "repairs_total", unit="web.service", rung="restart", result="done") == 2
    assert value(found, "repairs_total", unit="web.service", rung="reload", result="failed") == 1
    assert value(found, "alert_messages_total", channel="ops", outcome="sent") == 3
    assert value(found, "alert_messages_total", channel="ops", outcome="spooled") == 1


async def test_openmetrics_when_asked_for(running: Running) -> None:
    accept = "application/openmetrics-text; version=1.0.0"
    status, headers, text = await get(running.url + "/metrics", headers={"Accept": accept})
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")


async def test_status_json_and_an_unknown_unit(running: Running) -> None:
    status, _, text = await get(running.url + "/status.json")
    assert status == 200
    import json

    body = json.loads(text)
    assert [u["unit"] for u in body["units"]] == ["postgresql.service", "web.service"]
    assert body["guard"]["budget_left"] == 4
    assert body["host"] == "host1"
    web = body["units"][1]
    assert web["systemd"]["active_state"] == "active"
    assert isinstance(web["recent"], list)
    db = body["units"][0]
    assert db["recent"] and all(set(e) == {"time", "kind", "message"} for e in db["recent"])
    status, _, text = await get(running.url + "/status.json?unit=nope.service")
    assert status == 404
    assert json.loads(text) == {"error": "no policy for unit nope.service"}


async def test_the_page_is_read_only_and_self_contained(running: Running) -> None:
    status, headers, text = await get(running.url + "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"] == CSP
    assert "script-src 'sha256-" in CSP and "unsafe-inline" not in CSP
    assert text == PAGE
    assert not re.search(r"<(form|button|input)\b", text), "the page must not act"
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "no external asset"
    for method in ("POST", "PUT", "DELETE"):
        status, _, body = await get(running.url + "/status.json", method=method)
        assert status == 405 and "read-only" in body
    status, _, body = await get(running.url + "/v1/units/web.service/pause", method="POST")
    assert status == 404
    status, _, _ = await get(running.url + "/openapi.yaml")
    assert status == 200


def test_csp_hashes_change_with_the_script() -> None:
    assert csp_for("<script>a</script>") != csp_for("<script>b</script>")


async def test_clients_outside_allow_are_refused(tmp_path: Path) -> None:
    config = HttpConfig(listen=f"127.0.0.1:{free_port()}", allow=("10.0.0.0/8",))
    async for run in _run(tmp_path, config):
        status, _, text = await get(run.url + "/metrics")
        assert status == 403 and "127.0.0.1 is not in http.allow" in text
    config = HttpConfig(listen=f"127.0.0.1:{free_port()}", allow=("127.0.0.0/8",))
    async for run in _run(tmp_path / "2", config):
        status, _, _ = await get(run.url + "/metrics")
        assert status == 200


async def test_https_with_the_configured_certificate(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl to make a certificate")
    tls = make_tls(tmp_path / "tls")
    config = HttpConfig(
        listen=f"127.0.0.1:{free_port()}",
        tls=HttpTLS(cert=str(tls.server_cert), key=str(tls.server_key)),
    )
    client = ssl.create_default_context(cafile=str(tls.ca))
    async for run in _run(tmp_path, config):
        assert run.url.startswith("https://")
        status, _, text = await get(run.url + "/metrics", ssl=client)
        assert status == 200 and PREFIX + "unit_health" in text


async def test_a_port_that_cannot_be_bound_is_one_error_and_supervision_goes_on(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = HttpConfig(listen=address)
        with capture_logs() as logs:
            async for run in _run(tmp_path, config):
                assert run.server.address is None
                await asyncio.sleep(0.2)
                assert run.daemon.metrics.check_runs > 0  # still probing
        errors = [e for e in logs if e["log_level"] == "error"]
        assert len(errors) == 1, errors
        assert errors[0]["event"].startswith(f"cannot listen on {address}: ")
        assert "supervision goes on" in errors[0]["event"]


async def test_textfile_mode_writes_atomically_without_a_listener(tmp_path: Path) -> None:
    path = tmp_path / "collector" / "host-supervisor.prom"
    path.parent.mkdir()
    textfile = NodeExporterConfig(textfile=str(path), interval="1s")
    async for run in _run(tmp_path, HttpConfig(), textfile=textfile):
        assert run.server.address is None
        healthy = ("unit_health", {"unit": "web.service", "health": "healthy"})
        for _ in range(150):  # the first write comes before the units are watched
            if path.exists() and value(samples(path.read_text()), healthy[0], **healthy[1]):
                break
            await asyncio.sleep(0.02)
        assert value(samples(path.read_text()), healthy[0], **healthy[1]) == 1
        assert oct(path.stat().st_mode & 0o777) == "0o644"
        assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


async def test_textfile_that_cannot_be_written_is_logged_once(tmp_path: Path) -> None:
    world = World(SPEC, tmp_path / "etc")
    daemon = world.daemon()
    server = HttpServer(daemon, HttpConfig())
    textfile = Textfile(
        server.registry, NodeExporterConfig(textfile=str(tmp_path / "no" / "x.prom"))
    )
    with capture_logs() as logs:
        assert not await textfile.write()
        assert not await textfile.write()
    assert [e["event"] for e in logs] == ["cannot write the node_exporter textfile"]
    with contextlib.suppress(FileNotFoundError):
        assert not (tmp_path / "no").exists()


class _Rows:
    """An Observed of hand-written rows: a clustered unit and a failed-over one."""

    def __init__(self) -> None:
        from supervisor.daemon.metrics import Metrics

        self.metrics = Metrics()

    def unit_status(self) -> list[dict[str, object]]:
        base: dict[str, object] = {
            "condition": "healthy",
            "systemd": None,
            "phase": "idle",
            "attempts": 0,
            "max_attempts": 3,
            "paused": False,
            "flapping": False,
            "next_action_in_s": None,
            "failover": None,
            "cluster": None,
            "checks": [],
        }
        return [
            {**base, "unit": "db.service",
             "cluster": {"role": "holder", "holder": "db1", "token": 42, "alive": ["db1"],
                         "lease_left_s": 3.5}},
            {**base, "unit": "web.service",
             "failover": {"phase": "backup", "serving": "web-b.service", "step": "none",
                          "on": None, "failback_in_s": 12.0}},
        ]  # fmt: skip

    def guard_status(self) -> dict[str, object]:
        return {
            "budget_max": 5, "budget_window_s": 900.0, "budget_used": 5, "budget_left": 0,
            "frozen": True, "frozen_for_s": 60.0, "breaker": "open",
            "breaker_open_for_s": 30.0, "failures_in_a_row": 5, "running": [],
            "paused_all": False,
        }  # fmt: skip

    def alert_counts(self) -> dict[str, dict[str, int]]:
        return {}

    def state_saved(self) -> bool:
        return False


def test_cluster_and_failover_roles_and_a_frozen_guard() -> None:
    from prometheus_client.exposition import generate_latest

    from supervisor.daemon.exposition import registry_of

    found = samples(generate_latest(registry_of(_Rows())).decode())
    assert value(found, "cluster_role", unit="db.service", role="holder") == 1
    assert value(found, "cluster_role", unit="db.service", role="standby") == 0
    assert value(found, "cluster_token", unit="db.service") == 42
    assert value(found, "cluster_lease_seconds_left", unit="db.service") == 3.5
    assert value(found, "failover_phase", unit="web.service", phase="backup") == 1
    assert value(found, "failover_serving", unit="web.service", serving="web-b.service") == 1
    assert value(found, "guard_frozen") == 1 and value(found, "guard_budget_left") == 0
    assert value(found, "guard_breaker_state", state="open") == 1
    assert value(found, "state_saved") == 0
    assert ("host_supervisor_cluster_role", (("role", "holder"), ("unit", "web.service"))) not in (
        found
    )
