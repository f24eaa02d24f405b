"""Failover and failback of real units: a primary and its backups serve the same port
(cold standby: only one can bind). The primary's restart is broken so its ladder
exhausts; the backup takes over; once the primary can start again, it fails back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

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


def gated_unit(port: int, gate: Path) -> str:
    """A web service that can start only while the file `gate` exists."""
    return web_unit(port, extra=f"ExecStartPre=/usr/bin/test -e {gate}")


def policy(unit: str, backups: list[str], delay: str = "4s") -> str:
    return f"""\
unit: {unit}
recovery: {{ladder: [restart], max_attempts: 1, cooldown: 1s, settle: 1s}}
failover:
  backup: [{", ".join(backups)}]
  settle: 3s
  failback: {{delay: {delay}, successes: 2}}
"""


def hs(lab: Lab, *args: str) -> str:
    return cli(lab, *args, "--socket", SOCKET)


def status(lab: Lab, unit: str) -> dict[str, object]:
    row: dict[str, object] = json.loads(hs(lab, "status", unit, "--json"))["units"][0]
    return row


def phase(lab: Lab, unit: str) -> str:
    fo = status(lab, unit)["failover"]
    assert isinstance(fo, dict)
    return str(fo["phase"])


def steps(lab: Lab, unit: str) -> list[str]:
    out = json.loads(hs(lab, "history", unit, "--json"))["entries"]
    return [e["message"] for e in out if e["kind"] in ("failover", "result")]


def active(lab: Lab, unit: str) -> bool:
    return lab.show(unit, "ActiveState")["ActiveState"] == "active"


@pytest.fixture(scope="module")
def root(lab: Lab) -> Iterator[Path]:
    root = Path(lab.shared_dir)
    for gate in ("app.ok", "app2.ok", "app3.ok"):
        (root / gate).write_text("")
    lab.install_unit("app.service", gated_unit(8501, root / "app.ok"))
    lab.install_unit("app-backup.service", web_unit(8501))
    lab.install_unit("app2.service", gated_unit(8502, root / "app2.ok"))
    lab.install_unit("bad-backup.service", web_unit(8502, extra="ExecStartPre=/bin/false"))
    lab.install_unit("good-backup.service", web_unit(8502))
    lab.install_unit("app3.service", gated_unit(8503, root / "app3.ok"))
    for name in ("dead-1.service", "dead-2.service"):
        lab.install_unit(name, web_unit(8503, extra="ExecStartPre=/bin/false"))
    write_config(
        root / "etc",
        {
            "app.yaml": policy("app.service", ["app-backup.service"]),
            "app2.yaml": policy(
                "app2.service", ["bad-backup.service", "good-backup.service"], "1h"
            ),
            "app3.yaml": policy("app3.service", ["dead-1.service", "dead-2.service"], "1h"),
        },
    )
    for unit in ("app.service", "app2.service", "app3.service"):
        lab.run("systemctl", "start", unit)
    install_daemon(lab, root / "etc", root / "state")
    yield root


def test_exhausted_primary_fails_over_to_its_backup_and_back(lab: Lab, root: Path) -> None:
    (root / "app.ok").unlink()  # from now on the primary cannot start
    lab.run("systemctl", "kill", "-s", "KILL", "app.service")
    lab.wait_for(lambda: phase(lab, "app.service") == "backup", timeout=30, what="failed over")
    assert active(lab, "app-backup.service") and not active(lab, "app.service")
    lab.wait_for(  # served by the backup (Type=simple is active before it binds)
        lambda: lab.run(
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:8501/",
            check=False,
        ).stdout == "200",
        timeout=10,
        what="the backup answering on the service's port",
    )  # fmt: skip

    (root / "app.ok").write_text("")  # the primary is repaired
    lab.wait_for(lambda: phase(lab, "app.service") == "primary", timeout=30, what="failed back")
    assert active(lab, "app.service") and not active(lab, "app-backup.service")
    said = steps(lab, "app.service")
    wanted = [
        "restart failed",  # the ladder's one attempt (max_attempts: 1)
        "stop app.service: job done",
        "start app-backup.service: job done",
        "stop app-backup.service: job done",
        "start app.service: job done",
    ]
    positions = [next(i for i, m in enumerate(said) if m.startswith(w)) for w in wanted]
    assert positions == sorted(positions), said


def test_a_backup_that_fails_gives_way_to_the_next(lab: Lab, root: Path) -> None:
    (root / "app2.ok").unlink()
    lab.run("systemctl", "kill", "-s", "KILL", "app2.service")
    lab.wait_for(lambda: phase(lab, "app2.service") == "backup", timeout=40, what="failed over")
    assert active(lab, "good-backup.service")
    assert not active(lab, "bad-backup.service") and not active(lab, "app2.service")
    fo = status(lab, "app2.service")["failover"]
    assert isinstance(fo, dict) and fo["serving"] == "good-backup.service"
    said = steps(lab, "app2.service")
    assert any("bad-backup.service" in m for m in said)


def test_failover_state_survives_a_daemon_kill(lab: Lab, root: Path) -> None:
    assert phase(lab, "app2.service") == "backup"  # failback waits 1h here
    (root / "app2.ok").write_text("")  # the primary could start: it must not be
    pid = lab.show(DAEMON_UNIT, "MainPID")["MainPID"]
    lab.run("systemctl", "kill", "-s", "KILL", DAEMON_UNIT)
    lab.wait_for(
        lambda: (
            lab.show(DAEMON_UNIT, "MainPID")["MainPID"] not in (pid, "0")
            and active(lab, DAEMON_UNIT)
        ),
        timeout=20,
        what="the daemon restarted by systemd",
    )
    time.sleep(3.0)
    assert phase(lab, "app2.service") == "backup"
    assert active(lab, "good-backup.service") and not active(lab, "app2.service")


def test_manual_failover_is_guarded_and_recorded(lab: Lab, root: Path) -> None:
    hs(lab, "pause", "app.service")
    refused = lab.run(*daemon_cli(), "failover", "app.service", "--socket", SOCKET, check=False)
    assert refused.returncode == 1 and "paused" in refused.stderr
    assert phase(lab, "app.service") == "primary"
    hs(lab, "resume", "app.service")
    hs(lab, "failover", "app.service")
    lab.wait_for(lambda: phase(lab, "app.service") == "backup", timeout=20, what="failed over")
    assert active(lab, "app-backup.service") and not active(lab, "app.service")
    hs(lab, "failback", "app.service")
    lab.wait_for(lambda: phase(lab, "app.service") == "primary", timeout=20, what="failed back")
    assert active(lab, "app.service") and not active(lab, "app-backup.service")
    said = json.loads(hs(lab, "history", "app.service", "--json"))["entries"]
    operator = [e["message"] for e in said if e["kind"] == "operator"]
    assert any(m.startswith("failover (to the first backup) refused") for m in operator)
    # Each names who asked, as the control socket saw it.
    assert "failover (to the first backup) requested (by uid 0 (root))" in operator
    assert "failback requested (by uid 0 (root))" in operator


def test_when_no_backup_works_a_critical_alert_lists_what_was_tried(lab: Lab, root: Path) -> None:
    (root / "app3.ok").unlink()
    lab.run("systemctl", "kill", "-s", "KILL", "app3.service")
    lab.wait_for(lambda: phase(lab, "app3.service") == "failed", timeout=40, what="failover failed")
    assert not active(lab, "dead-1.service") and not active(lab, "dead-2.service")
    said = json.loads(hs(lab, "history", "app3.service", "--json"))["entries"]
    failed = [e for e in said if e["kind"] == "failover" and "failover-failed" in str(e["data"])]
    assert len(failed) == 1
    assert "dead-1.service" in failed[0]["message"] and "dead-2.service" in failed[0]["message"]
    # Both backups were tried, in order, each stopped again before the next.
    jobs = [e["message"] for e in said if e["kind"] == "result"]
    order = [m.split(":")[0] for m in jobs if "dead-" in m]
    assert order[:4] == [
        "start dead-1.service",
        "stop dead-1.service",
        "start dead-2.service",
        "stop dead-2.service",
    ], order


def test_validate_names_a_backup_unit_that_does_not_exist(lab: Lab, root: Path) -> None:
    config = root / "etc-missing"
    write_config(
        config, {"web.yaml": policy("app.service", ["app-backup.service", "nope.service"])}
    )
    result = lab.run(*daemon_cli(), "validate", "--config", str(config), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    where = config / "policies.d" / "web.yaml"
    assert result.stdout.splitlines()[0] == (
        f"{where}:4:32: failover.backup[1]: backup unit nope.service does not exist"
    )
