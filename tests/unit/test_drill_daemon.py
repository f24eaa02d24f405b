"""A fail-check drill end to end against the daemon with fake ports: the command forces a
check to fail over the control socket, the daemon repairs the unit as for a real
failure, the drill reads the figures from the history and records its result (history
and metrics). The system bus is a fake: a fail-check drill sends it nothing."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
from prometheus_client.exposition import generate_latest

from supervisor.commands import drill as drill_command_module
from supervisor.commands.client import call
from supervisor.commands.drill import DrillOptions, drill_command
from supervisor.core.drill import Fault
from supervisor.daemon import Daemon, control_connections
from supervisor.daemon.control import ControlServer, Peer
from supervisor.daemon.exposition import registry_of
from tests.scenarios.host_replay import World

SPEC: dict[str, Any] = {
    "policies": {
        "web": {
            "unit": "web.service",
            "checks": [
                {"name": "port", "tcp": {"port": 8080}, "interval": "50ms", "failures": 2},
            ],
            "recovery": {"ladder": ["restart"], "cooldown": "0s", "settle": "100ms"},
            "expect": {"recover_within": "30s"},
        },
        "db": {"unit": "postgresql.service"},  # protected
    },
    "units": {"web.service": {"state": "active"}, "postgresql.service": {"state": "active"}},
}


class WallClockWorld(World):
    """The scenario world on the wall clock: the drill compares its own time.time()."""

    def clock(self) -> float:
        return time.time()


class FakeBus:
    calls: ClassVar[list[tuple[str, str]]] = []

    def __init__(self, runner: object) -> None:
        pass

    def connect(self) -> None:
        FakeBus.calls.append(("connect", ""))

    def close(self) -> None:
        pass

    def __getattr__(self, verb: str) -> Any:
        return lambda unit: FakeBus.calls.append((verb, unit))


@dataclass
class Served:
    daemon: Daemon
    socket: Path
    config: Path


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    monkeypatch.setattr(control_connections, "peer_credentials", lambda _s: Peer(1, 0, 0))
    monkeypatch.setattr(drill_command_module, "SystemdBus", FakeBus)
    FakeBus.calls = []
    world = WallClockWorld(SPEC, tmp_path / "etc")
    daemon = world.daemon()
    socket = tmp_path / "control.sock"
    daemon.ports.control = lambda d: ControlServer(d, socket)
    task = asyncio.create_task(daemon.run())
    for _ in range(500):
        rows = daemon.unit_status()
        if socket.exists() and rows and all(r["condition"] == "healthy" for r in rows):
            break
        await asyncio.sleep(0.01)
    try:
        yield Served(daemon, socket, tmp_path / "etc")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


def options(served: Served, **extra: Any) -> DrillOptions:
    base: dict[str, Any] = {
        "units": ("web.service",),
        "fault": Fault.FAIL_CHECK,
        "config": served.config,
        "socket": served.socket,
        "backup_dir": served.config / "backups",
        "timeout": 10.0,
        "yes": True,
        "json": True,
    }
    return DrillOptions(**{**base, **extra})


async def run(opts: DrillOptions) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(drill_command, opts, out, err)
    return code, out.getvalue(), err.getvalue()


async def test_a_fail_check_drill_is_repaired_measured_and_recorded(served: Served) -> None:
    code, out, err = await run(options(served))
    assert code == 0, err
    report = json.loads(out)
    assert report["result"] == "met" and report["fault"] == "fail-check"
    assert report["rungs"] == ["restart"]
    assert report["extra"] == {"check": "port"}
    # Two failures 50 ms apart make the check hard-failed: detection takes at least that.
    assert 0.04 <= report["detection_s"] <= report["recovery_s"] <= 10
    assert report["cleanup"] == ""  # the daemon ended the override itself by repairing

    _, body = await asyncio.to_thread(
        call, served.socket, "GET", "/v1/history?unit=web.service&limit=100"
    )
    drills = [e for e in body["entries"] if e["kind"] == "drill"]
    assert drills[0]["message"].startswith("drill: check port forced to fail for up to 10s")
    assert drills[-1]["message"].startswith("drill fail-check: met: detected in ")
    assert drills[-1]["data"]["caller"] == "uid 0 (root)"
    assert drills[-1]["data"]["rungs"] == ["restart"]

    text = generate_latest(registry_of(served.daemon)).decode()
    assert 'host_supervisor_drill_last_met{fault="fail-check",unit="web.service"} 1.0' in text
    assert (
        'host_supervisor_drill_runs_total{fault="fail-check",result="met",unit="web.service"} 1.0'
        in text
    )
    assert "host_supervisor_drill_last_recovery_seconds{" in text
    assert FakeBus.calls == [("connect", "")]  # nothing to start again: it is active


async def test_refused_drills_exit_2_and_touch_nothing(served: Served) -> None:
    code, _, err = await run(options(served, units=("postgresql.service",), fault=Fault.KILL))
    assert code == 2
    assert "protected (guard.protected 'postgresql*'): --force drills it anyway" in err
    served.daemon.pause("web.service", "uid 0 (root)")
    code, _, err = await run(options(served))
    assert code == 2 and "web.service is paused" in err
    assert FakeBus.calls == []


async def test_all_dry_run_lists_each_unit_and_does_nothing(served: Served) -> None:
    code, out, _ = await run(options(served, units=(), every=True, dry_run=True, fault=Fault.KILL))
    assert code == 0
    assert out.splitlines() == [
        "postgresql.service: refused: postgresql.service is protected (guard.protected "
        "'postgresql*'): --force drills it anyway",
        "web.service: would SIGKILL the main process of web.service (systemd KillUnit); "
        "watch up to 10s; expect healthy within 30s",
    ]
    assert FakeBus.calls == []


async def test_no_daemon_is_exit_3(tmp_path: Path, served: Served) -> None:
    code, _, err = await run(options(served, socket=tmp_path / "nothing.sock"))
    assert code == 3 and "no daemon answers" in err


async def test_a_bad_report_is_refused_with_400(served: Served) -> None:
    status, body = await asyncio.to_thread(
        call, served.socket, "POST", "/v1/units/web.service/drill", 10.0, {"fault": "x"}
    )
    assert status == 400
    assert body["error"].startswith("not a drill report: fault must be one of kill")


async def test_all_drills_each_unit_it_may_and_skips_the_refused(served: Served) -> None:
    code, out, err = await run(options(served, units=(), every=True))
    assert code == 0, err
    assert [json.loads(line)["result"] for line in out.splitlines()] == ["met"]
    assert "postgresql.service: refused: " in err  # skipped, and the run still passes


async def test_without_yes_a_person_must_confirm(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = await run(options(served, yes=False))
    assert code == 2 and "not confirmed (no terminal): pass --yes" in err
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    out, err_io = io.StringIO(), io.StringIO()
    asked: list[str] = []
    code = await asyncio.to_thread(
        drill_command, options(served, yes=False), out, err_io, lambda q: asked.append(q) or "n"
    )
    assert code == 2 and err_io.getvalue() == "web.service: not drilled\n"
    assert asked == [
        "web.service: would force check 'port' of web.service to fail; watch up to 10s; "
        "expect healthy within 30s. Go on? [y/N] "
    ]
    assert FakeBus.calls == []


async def test_the_last_drill_survives_a_restart_of_the_daemon(tmp_path: Path) -> None:
    world = WallClockWorld(SPEC, tmp_path / "etc")
    first = world.daemon()
    report = {"fault": "kill", "result": "missed", "detection_s": 0.01, "recovery_s": None}
    assert first.drills.force_check("web.service", None, 5.0, "uid 0 (root)") is None
    assert first.drills.record("web.service", report, "uid 0 (root)") is None
    again = world.daemon()
    await again.drills.load()
    last = again.metrics.last_drill["web.service"]
    assert (last.fault, last.result, last.detection_s, last.recovery_s) == (
        "kill",
        "missed",
        0.01,
        None,
    )
    assert again.metrics.drills == {}  # counters start again from zero


async def test_a_fault_the_daemon_never_sees_is_missed_with_exit_1(served: Served) -> None:
    # The fake bus's kill does nothing: the daemon never records the unit unhealthy.
    code, out, _ = await run(options(served, fault=Fault.KILL, timeout=0.5))
    assert code == 1
    report = json.loads(out)
    assert report["result"] == "missed" and report["detection_s"] is None
    assert report["reasons"] == ["the daemon never recorded the unit unhealthy"]
    assert ("kill_main", "web.service") in FakeBus.calls
    assert ("start", "web.service") not in FakeBus.calls  # it runs: nothing to start
