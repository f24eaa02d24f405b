"""Recovery drills against a real systemd: `host-supervisor drill` kills a web unit's main
process over D-Bus, breaks a restore path's file, stops a unit as an operator would, and
reports what the daemon did, in its history too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import (
    DAEMON_UNIT,
    SOCKET,
    cli,
    daemon_cli,
    install_daemon,
    web_unit,
    write_config,
)

pytestmark = pytest.mark.lab

GOOD = "mode = good\n"
WEB = "drill-web.service"
CONF = "drill-conf.service"
STOP = "drill-stop.service"

WEB_POLICY = f"""\
unit: {WEB}
checks:
  - name: http
    http: {{url: "http://127.0.0.1:8091/"}}
    interval: 500ms
    timeout: 1s
recovery: {{ladder: [restart], cooldown: 0s, settle: 500ms}}
expect: {{recover_within: 30s}}
"""


def conf_policy(conf: Path) -> str:
    return f"""\
unit: {CONF}
recovery:
  ladder: [restart, reload, restore]
  cooldown: 1s
  settle: 1s
  restore:
    paths: [{conf}]
    from: last-known-good
    snapshot_after: 1s
    validate: [/usr/bin/grep, -q, good, {conf}]
expect: {{recover_within: 60s}}
"""


@dataclass
class Setup:
    root: Path
    config: Path


@pytest.fixture(scope="module")
def setup(lab: Lab) -> Iterator[Setup]:
    root = Path(lab.shared_dir)
    conf = root / "app.conf"
    conf.write_text(GOOD)
    config = root / "etc"
    write_config(
        config,
        {
            "web.yaml": WEB_POLICY,
            "conf.yaml": conf_policy(conf),
            "stop.yaml": f"unit: {STOP}\nrecovery: {{cooldown: 0s, settle: 500ms}}\n",
        },
    )
    check = f"/usr/bin/grep -q good {conf}"
    lab.install_unit(WEB, web_unit(8091))
    lab.install_unit(CONF, web_unit(8092, extra=f"ExecStartPre={check}\nExecReload={check}"))
    lab.install_unit(STOP, web_unit(8093))
    for unit in (WEB, CONF, STOP):
        lab.run("systemctl", "start", unit)
    install_daemon(lab, config, root / "state")
    lab.wait_for(lambda: _healthy(lab, WEB), timeout=20, what=f"{WEB} healthy")
    yield Setup(root, config)
    lab.run("systemctl", "stop", DAEMON_UNIT, check=False)


def _status(lab: Lab, unit: str) -> dict[str, Any]:
    out = cli(lab, "status", unit, "--socket", SOCKET, "--json")
    row: dict[str, Any] = json.loads(out)["units"][0]
    return row


def _healthy(lab: Lab, unit: str) -> bool:
    return _status(lab, unit)["condition"] == "healthy"


def drill(lab: Lab, setup: Setup, unit: str, fault: str) -> tuple[int, dict[str, Any]]:
    done = lab.run(
        *daemon_cli(),
        "drill",
        unit,
        "--fault",
        fault,
        "--yes",
        "--json",
        "--timeout",
        "60s",
        "--config",
        str(setup.config),
        "--socket",
        SOCKET,
        "--backup-dir",
        str(setup.root / "drill-backups"),
        check=False,
        timeout=90,
    )
    assert done.stdout, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def _history(lab: Lab, unit: str) -> list[dict[str, Any]]:
    out = lab.run(*daemon_cli(), "history", unit, "--socket", SOCKET, "--json").stdout
    entries: list[dict[str, Any]] = json.loads(out)["entries"]
    return entries


def drill_entries(lab: Lab, unit: str) -> list[dict[str, Any]]:
    return [e for e in _history(lab, unit) if e["kind"] == "drill"]


def test_a_kill_drill_reports_detection_and_recovery(lab: Lab, setup: Setup) -> None:
    pid = lab.show(WEB, "MainPID")["MainPID"]
    code, report = drill(lab, setup, WEB, "kill")
    assert code == 0, json.dumps(report)
    assert report["result"] == "met" and report["rungs"] == ["restart"]
    # Detection comes from systemd's signal, in milliseconds; healthy again needs the
    # restart and one passing HTTP check (every 500 ms).
    assert 0 <= report["detection_s"] < 1.0
    assert report["detection_s"] <= report["repaired_s"] <= report["recovery_s"] < 10
    assert report["cleanup"] == ""
    assert lab.show(WEB, "MainPID")["MainPID"] not in (pid, "0")
    recorded = drill_entries(lab, WEB)[-1]
    assert recorded["message"].startswith("drill kill: met: detected in ")
    assert recorded["data"]["recovery_s"] == report["recovery_s"]


def test_a_break_config_drill_is_repaired_by_restore(lab: Lab, setup: Setup) -> None:
    conf = setup.root / "app.conf"
    lab.wait_for(
        lambda: any("snapshot taken" in e["message"] for e in _history(lab, CONF)),
        timeout=20,
        what=f"a known-good snapshot of {conf}",
    )
    code, report = drill(lab, setup, CONF, "break-config")
    assert code == 0, json.dumps(report)
    assert report["extra"] == {"path": str(conf)}
    assert report["rungs"][-1] == "restore"
    assert report["cleanup"] == ""  # the daemon's restore put the file back
    assert conf.read_text() == GOOD
    assert lab.show(CONF, "ActiveState")["ActiveState"] == "active"
    assert not list((setup.root / "drill-backups").iterdir())  # its backup is gone once good


def test_a_stop_from_outside_is_respected_and_the_drill_starts_it_again(
    lab: Lab, setup: Setup
) -> None:
    code, report = drill(lab, setup, STOP, "stop-dbus-signal")
    assert code == 0, json.dumps(report)
    assert report["result"] == "met" and report["rungs"] == []
    assert report["detection_s"] is not None and report["recovery_s"] is None
    lab.wait_for(
        lambda: lab.show(STOP, "ActiveState")["ActiveState"] == "active",
        timeout=10,
        what=f"{STOP} started again by the drill",
    )
