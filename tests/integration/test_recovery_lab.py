"""The recovery ladder against a real systemd: restore of a known-good configuration,
a validator that refuses it, a protected unit, a daemon killed during a cooldown,
and cooperation with a unit's own Restart=."""

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
    cli,
    daemon_cli,
    install_daemon,
    messages,
    wait_for_message,
    web_unit,
    write_config,
)

pytestmark = pytest.mark.lab

GOOD = "mode = good\n"
BROKEN = "mode = broken\n"


def conf_unit(port: int, conf: Path) -> str:
    """A web service that refuses to start (and to reload) with a broken config file."""
    check = f"/usr/bin/grep -q good {conf}"
    return web_unit(port, extra=f"ExecStartPre={check}\nExecReload={check}")


def restore_policy(unit: str, conf: Path, validate: str) -> str:
    return f"""\
unit: {unit}
recovery:
  ladder: [restart, reload, restore]
  cooldown: 1s
  settle: 1s
  max_attempts: 3
  restore:
    paths: [{conf}]
    from: last-known-good
    snapshot_after: 1s
    validate: {validate}
"""


@dataclass
class Setup:
    root: Path
    state: Path


def history(lab: Lab, unit: str) -> list[dict[str, object]]:
    out = lab.run(*daemon_cli(), "history", unit, "--socket", SOCKET, "--json").stdout
    entries: list[dict[str, object]] = json.loads(out)["entries"]
    return entries


def kinds_and_messages(lab: Lab, unit: str, kinds: tuple[str, ...]) -> list[str]:
    return [f"{e['kind']}: {e['message']}" for e in history(lab, unit) if e["kind"] in kinds]


def break_after_snapshot(lab: Lab, unit: str, conf: Path) -> None:
    """Once a known-good snapshot exists, break the config and crash the unit."""
    lab.wait_for(
        lambda: any("snapshot taken" in m for m in kinds_and_messages(lab, unit, ("restore",))),
        timeout=15,
        what=f"a known-good snapshot of {conf}",
    )
    conf.write_text(BROKEN)
    lab.run("systemctl", "kill", "-s", "KILL", unit)


@pytest.fixture(scope="module")
def setup(lab: Lab) -> Iterator[Setup]:
    root = Path(lab.shared_dir)
    for name in ("good", "strict"):
        (root / name).mkdir()
        (root / name / "app.conf").write_text(GOOD)
    policies = {
        "conf-good.yaml": restore_policy(
            "conf-good.service", root / "good" / "app.conf",
            f"[/usr/bin/grep, -q, good, {root / 'good' / 'app.conf'}]",
        ),
        "conf-strict.yaml": restore_policy(
            "conf-strict.service", root / "strict" / "app.conf",
            "[/bin/sh, -c, 'echo config rejected by the validator >&2; exit 1']",
        ),
        "redis-lab.yaml": "unit: redis-lab.service\nrecovery: {cooldown: 1s, settle: 1s}\n",
        "coop.yaml": "unit: coop.service\nrecovery: {cooldown: 1s, settle: 1s}\n",
        "slow.yaml": (
            "unit: slow.service\n"
            "recovery: {ladder: [restart, reload], cooldown: 12s, settle: 1s}\n"
        ),
    }  # fmt: skip
    config = root / "etc"
    write_config(config, policies)
    lab.install_unit("conf-good.service", conf_unit(8301, root / "good" / "app.conf"))
    lab.install_unit("conf-strict.service", conf_unit(8302, root / "strict" / "app.conf"))
    lab.install_unit("redis-lab.service", web_unit(8303))
    lab.install_unit("coop.service", web_unit(8304, restart="on-failure", extra="RestartSec=1s"))
    (root / "slow.ok").write_text("")
    lab.install_unit(
        "slow.service", web_unit(8305, extra=f"ExecStartPre=/usr/bin/test -e {root / 'slow.ok'}")
    )
    for unit in ("conf-good", "conf-strict", "redis-lab", "coop", "slow"):
        lab.run("systemctl", "start", f"{unit}.service")
    install_daemon(lab, config, root / "state")
    yield Setup(root, root / "state")


def test_a_broken_config_is_restored_from_the_last_known_good(lab: Lab, setup: Setup) -> None:
    unit, conf = "conf-good.service", setup.root / "good" / "app.conf"
    break_after_snapshot(lab, unit, conf)
    wait_for_message(lab, unit, "restore finished", timeout=30)
    lab.wait_for(
        lambda: lab.show(unit, "ActiveState")["ActiveState"] == "active",
        timeout=10,
        what=f"{unit} active again",
    )
    assert conf.read_text() == GOOD
    steps = kinds_and_messages(lab, unit, ("action", "result"))
    assert [s.split(":")[1].split()[0] for s in steps] == [
        "restart", "restart",  # action, then its result: failed (ExecStartPre refuses)
        "reload", "reload",  # the unit is failed: a reload cannot apply, skipped
        "restore", "restore",  # restore done, then restarted
    ]  # fmt: skip
    assert "restart failed" in steps[1]
    assert "reload skipped" in steps[3]
    assert "restore done" in steps[5]
    backup = steps[5].split("previous files in ")[1].split(";")[0]
    assert (Path(backup) / str(conf).lstrip("/")).read_text() == BROKEN


def test_a_validator_that_rejects_the_restored_file_rolls_it_back(lab: Lab, setup: Setup) -> None:
    unit, conf = "conf-strict.service", setup.root / "strict" / "app.conf"
    break_after_snapshot(lab, unit, conf)
    lab.wait_for(
        lambda: any("restore failed" in m for m in kinds_and_messages(lab, unit, ("result",))),
        timeout=30,
        what="the restore's rollback",
    )
    result = next(m for m in kinds_and_messages(lab, unit, ("result",)) if "restore failed" in m)
    assert "rolled back" in result and "config rejected by the validator" in result
    assert conf.read_text() == BROKEN  # the validator refused: what was there is back
    assert lab.show(unit, "ActiveState")["ActiveState"] == "failed"


def test_a_protected_unit_is_not_repaired_only_alerted(lab: Lab, setup: Setup) -> None:
    unit = "redis-lab.service"
    lab.run("systemctl", "kill", "-s", "KILL", unit)
    lab.wait_for(
        lambda: any(
            m.startswith("alert: protected") for m in kinds_and_messages(lab, unit, ("alert",))
        ),
        timeout=10,
        what="the protected-unit alert",
    )
    time.sleep(2.5)  # past the policy's cooldown and settle: nothing may follow
    assert kinds_and_messages(lab, unit, ("action",)) == []
    assert lab.show(unit, "ActiveState")["ActiveState"] == "failed"
    status = json.loads(cli(lab, "status", unit, "--json"))["units"][0]
    assert status["phase"] == "held" and "protected" in status["held"]


def test_a_unit_with_its_own_restart_is_restarted_once_per_crash(lab: Lab, setup: Setup) -> None:
    unit = "coop.service"
    for crash in (1, 2):
        pid = lab.show(unit, "MainPID")["MainPID"]
        lab.run("systemctl", "kill", "-s", "KILL", unit)
        lab.wait_for(
            lambda pid=pid: (
                lab.show(unit, "ActiveState", "MainPID")["MainPID"] not in (pid, "0")
                and lab.show(unit, "ActiveState")["ActiveState"] == "active"
            ),
            timeout=10,
            what=f"{unit} restarted by systemd after crash {crash}",
        )
        time.sleep(2.0)  # past the daemon's settle and cooldown
        assert lab.show(unit, "NRestarts")["NRestarts"] == str(crash)  # systemd's only
    assert kinds_and_messages(lab, unit, ("action",)) == []
    assert not any(m.startswith("restarting") for m in messages(lab, unit))


def test_a_daemon_killed_during_a_cooldown_honours_it_after_restart(lab: Lab, setup: Setup) -> None:
    unit = "slow.service"
    (setup.root / "slow.ok").unlink()  # from now on the unit cannot start
    lab.run("systemctl", "kill", "-s", "KILL", unit)
    lab.wait_for(
        lambda: any("restart failed" in m for m in kinds_and_messages(lab, unit, ("result",))),
        timeout=10,
        what="the first restart failing",
    )
    lab.wait_for(
        lambda: _status(lab, unit)["phase"] == "cooldown",
        timeout=10,
        what=f"{unit} in cooldown",
    )
    before = _status(lab, unit)
    daemon_pid = lab.show(DAEMON_UNIT, "MainPID")["MainPID"]
    lab.run("systemctl", "kill", "-s", "KILL", DAEMON_UNIT)
    lab.wait_for(
        lambda: (
            lab.show(DAEMON_UNIT, "ActiveState", "MainPID")["MainPID"] not in (daemon_pid, "0")
            and lab.show(DAEMON_UNIT, "ActiveState")["ActiveState"] == "active"
        ),
        timeout=20,
        what="the daemon restarted by systemd",
    )
    after = _status(lab, unit)
    assert (
        (after["phase"], after["attempts"])
        == ("cooldown", before["attempts"])
        == (
            "cooldown",
            1,
        )
    )
    # The cooldown is not restarted either: it ends when it would have ended.
    assert after["next_action_in_s"] <= before["next_action_in_s"]
    actions = kinds_and_messages(lab, unit, ("action",))
    assert actions == ["action: restart (attempt 1/3)"]  # nothing repeated
    lab.wait_for(
        lambda: len(kinds_and_messages(lab, unit, ("action",))) == 2,
        timeout=20,
        what="the second attempt after the cooldown",
    )
    assert kinds_and_messages(lab, unit, ("action",))[1] == "action: reload (attempt 2/3)"


def _status(lab: Lab, unit: str) -> dict[str, object]:
    out = cli(lab, "status", unit, "--socket", SOCKET, "--json")
    row: dict[str, object] = json.loads(out)["units"][0]
    return row
