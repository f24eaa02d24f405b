"""The daemon against a real systemd: crash detection over D-Bus and restart,
respect for an operator's stop, late units, sd_notify, and reload with a bad policy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import (
    DAEMON_UNIT,
    SOCKET,
    daemon_cli,
    daemon_log,
    install_daemon,
    kill_and_wait_restarted,
    messages,
    wait_for_message,
    web_unit,
    write_config,
)

pytestmark = pytest.mark.lab

POLICY = """\
unit: {unit}
recovery:
  ladder: [restart]
  cooldown: 1s
  settle: 1s
"""


TIGHT_START_LIMIT = "StartLimitBurst=2\nStartLimitIntervalSec=1h"


@dataclass
class Supervised:
    config: Path
    state: Path


@pytest.fixture(scope="module")
def supervised(lab: Lab) -> Iterator[Supervised]:
    root = Path(lab.shared_dir) / "daemon"
    config, state = root / "etc", root / "state"
    (config / "policies.d").mkdir(parents=True)
    for unit, port in (("web-a.service", 8081), ("web-stop.service", 8082)):
        lab.install_unit(unit, web_unit(port))
        lab.run("systemctl", "start", unit)
    lab.install_unit("web-limit.service", web_unit(8084, unit_extra=TIGHT_START_LIMIT))
    lab.run("systemctl", "start", "web-limit.service")
    units = ("web-a.service", "web-stop.service", "late.service", "web-limit.service")
    write_config(config, {f"{unit}.yaml": POLICY.format(unit=unit) for unit in units})
    install_daemon(lab, config, state, watchdog="2s")
    yield Supervised(config, state)
    lab.run("systemctl", "stop", DAEMON_UNIT, check=False)


def test_killed_unit_is_active_again_with_a_new_main_pid(lab: Lab, supervised: Supervised) -> None:
    kill_and_wait_restarted(lab, "web-a.service")
    wait_for_message(lab, "web-a.service", "restart finished")
    log = daemon_log(lab, "web-a.service")
    failed = [e for e in log if e["MESSAGE"].startswith("unit failed")]
    assert failed and failed[-1]["ACTION"] == "detect"
    assert failed[-1]["PRIORITY"] == "4"  # warning
    restarts = [e for e in log if e["MESSAGE"].startswith("restarting unit")]
    assert restarts and restarts[-1]["ACTION"] == "restart"


def test_an_operator_stop_is_not_undone(lab: Lab, supervised: Supervised) -> None:
    lab.run("systemctl", "stop", "web-stop.service")
    wait_for_message(lab, "web-stop.service", "unit stopped cleanly; respecting the stop")
    time.sleep(1.5)  # longer than the policy's cooldown and settle: nothing may follow
    assert lab.show("web-stop.service", "ActiveState")["ActiveState"] == "inactive"
    assert not any(m.startswith("restarting") for m in messages(lab, "web-stop.service"))


def test_a_unit_that_appears_later_is_picked_up(lab: Lab, supervised: Supervised) -> None:
    wait_for_message(lab, "late.service", "unit not found; watching for it to appear")
    lab.install_unit("late.service", web_unit(8083))
    lab.run("systemctl", "start", "late.service")
    kill_and_wait_restarted(lab, "late.service")
    wait_for_message(lab, "late.service", "restart finished")


def test_the_daemon_is_a_notify_unit_with_a_watchdog_and_a_status(
    lab: Lab, supervised: Supervised
) -> None:
    before = lab.show(DAEMON_UNIT, "ActiveState", "MainPID", "StatusText", "WatchdogUSec")
    assert before["ActiveState"] == "active"
    assert before["WatchdogUSec"] == "2s"
    assert "4 units:" in before["StatusText"]
    # Two watchdog periods later the same process still runs: the pings arrive.
    time.sleep(4.5)
    after = lab.show(DAEMON_UNIT, "ActiveState", "MainPID", "NRestarts", "Result")
    assert after == {
        "ActiveState": "active",
        "MainPID": before["MainPID"],
        "NRestarts": "0",
        "Result": "success",
    }


def test_reload_with_a_broken_policy_fails_and_keeps_the_old_policies(
    lab: Lab, supervised: Supervised
) -> None:
    pid = lab.show(DAEMON_UNIT, "MainPID")["MainPID"]
    broken = supervised.config / "policies.d" / "zz-broken.yaml"
    broken.write_text(
        "unit: web-z.service\nchecks:\n  - name: x\n    intervall: 5s\n    tcp: {port: 1}\n"
    )
    try:
        # ExecReload= waits for the daemon's verdict: a refused policy fails the reload.
        refused = lab.run("systemctl", "reload", DAEMON_UNIT, check=False, timeout=60)
        assert refused.returncode != 0, refused.stdout + refused.stderr
        status = lab.show(DAEMON_UNIT, "StatusText", "ActiveState", "MainPID")
        assert "reload refused" in status["StatusText"]
        assert f"{broken}:4:5" in status["StatusText"]
        assert "intervall" in status["StatusText"]
        assert (status["ActiveState"], status["MainPID"]) == ("active", pid)
        said = lab.run("journalctl", "-q", "--no-pager", "-u", DAEMON_UNIT, "-o", "cat").stdout
        assert "host-supervisor: reload refused, the previous policies stay in force" in said
        assert "Traceback" not in said
        # The old policies still work.
        kill_and_wait_restarted(lab, "web-a.service")
    finally:
        broken.unlink()
    done = lab.run("systemctl", "reload", DAEMON_UNIT, check=False, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    status = lab.show(DAEMON_UNIT, "StatusText", "MainPID")
    assert "reload refused" not in status["StatusText"]
    assert status["MainPID"] == pid


def test_systemds_start_limit_does_not_block_a_guarded_restart(
    lab: Lab, supervised: Supervised
) -> None:
    # StartLimitBurst=2 (systemd 252 allows burst+1 starts): the fixture's start and
    # two restarts use it up; the third restart is refused by systemd unless the
    # daemon resets the failed state first.
    for _ in range(3):
        kill_and_wait_restarted(lab, "web-limit.service")
        time.sleep(1.2)  # past the policy's settle and cooldown
    assert lab.show("web-limit.service", "NRestarts", "Result")["Result"] == "success"


def test_status_and_reset_over_the_control_socket(lab: Lab, supervised: Supervised) -> None:
    done = lab.run(*daemon_cli(), "status", "--socket", SOCKET, "--json", check=False)
    assert done.returncode == 2  # web-stop.service is stopped: unhealthy, as is-active says
    body = json.loads(done.stdout)
    rows = {row["unit"]: row for row in body["units"]}
    assert set(rows) == {"web-a.service", "web-stop.service", "late.service", "web-limit.service"}
    assert rows["web-stop.service"]["condition"] == "stopped"
    assert rows["web-a.service"]["attempts"] >= 1  # restarted by the tests above
    assert lab.run("stat", "-c", "%a %U", SOCKET).stdout.split() == ["600", "root"]

    lab.run(*daemon_cli(), "reset", "web-a.service", "--socket", SOCKET)
    one = lab.run(*daemon_cli(), "status", "web-a.service", "--json", check=False)
    after = json.loads(one.stdout)
    assert [row["attempts"] for row in after["units"]] == [0]

    missing = lab.run(*daemon_cli(), "reset", "nope.service", check=False)
    assert missing.returncode == 1
    assert "no policy for unit nope.service" in missing.stderr


def test_a_pause_for_a_while_ends_on_its_own(lab: Lab, supervised: Supervised) -> None:
    cli = daemon_cli()
    said = lab.run(
        *cli, "pause", "web-a.service", "--for", "3sec", "--reason", "lab", "--socket", SOCKET
    ).stdout
    assert said.startswith("web-a.service paused for 3s (until ")
    shown = lab.run(*cli, "status", "web-a.service", "--socket", SOCKET, check=False).stdout
    assert "paused (" in shown and "left: lab)" in shown
    lab.wait_for(
        lambda: (
            "pause ended (lab): its time is up"
            in lab.run(*cli, "history", "web-a.service", "--socket", SOCKET).stdout
        ),
        timeout=15,
        what="the pause of web-a.service ending on its own",
    )
    row = json.loads(
        lab.run(*cli, "status", "web-a.service", "--json", "--socket", SOCKET, check=False).stdout
    )["units"][0]
    assert (row["paused"], row["pause_left_s"], row["pause_reason"]) == (False, None, "")
    kill_and_wait_restarted(lab, "web-a.service")  # repaired again


def test_shadow_mode_records_what_it_would_do_and_takes_no_action(lab: Lab) -> None:
    root = Path(lab.shared_dir) / "shadow"
    (root / "etc" / "policies.d").mkdir(parents=True)
    (root / "etc" / "policies.d" / "shadow.yaml").write_text(
        POLICY.format(unit="web-shadow.service")
    )
    lab.install_unit("web-shadow.service", web_unit(8085))
    lab.run("systemctl", "start", "web-shadow.service")
    log_file, socket = root / "daemon.log", str(root / "control.sock")
    lab.run(
        "systemd-run",
        "--unit=hs-shadow",
        f"--property=StandardError=append:{log_file}",
        *daemon_cli(),
        "run",
        "--shadow",
        "--config",
        str(root / "etc"),
        "--state-dir",
        str(root / "state"),
        "--socket",
        socket,
    )
    try:
        lab.wait_for(
            lambda: "supervising" in log_file.read_text(), timeout=20, what="shadow daemon up"
        )
        lab.run("systemctl", "kill", "-s", "KILL", "web-shadow.service")
        lab.wait_for(
            lambda: "would restart unit (shadow)" in log_file.read_text(),
            timeout=10,
            what="the shadow daemon's 'would restart' line",
        )
        time.sleep(1.5)  # past settle: a real run would have restarted it by now
        assert lab.show("web-shadow.service", "ActiveState")["ActiveState"] == "failed"
        assert "restarting unit" not in log_file.read_text()

        history = json.loads(
            lab.run(
                *daemon_cli(), "history", "web-shadow.service", "--socket", socket, "--json"
            ).stdout
        )["entries"]
        would = [e for e in history if e["kind"] == "action"]
        assert would, history
        assert would[0]["message"] == (
            "would have restarted (attempt 1/3) because failed/failed (signal); "
            "shadow mode: not done"
        )
        assert not [e for e in history if e["kind"] == "result"]  # nothing was run

        shown = lab.run(*daemon_cli(), "status", "--full", "--socket", socket, check=False)
        assert shown.returncode == 2  # a failed unit: unhealthy, as systemctl is-* say
        status = shown.stdout
        assert "SHADOW MODE: nothing is acted on" in status.splitlines()[0]
        row = next(line for line in status.splitlines() if line.startswith("web-shadow"))
        assert "shadow: not acted on" in row
    finally:
        lab.run("systemctl", "stop", "hs-shadow", check=False)
