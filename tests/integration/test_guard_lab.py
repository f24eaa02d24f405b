"""The global guard against a real systemd, with its default repair budget (5 automatic
actions per 15 minutes): the sixth failing unit is not touched and the freeze is
recorded; resume --all thaws it; a paused unit is watched but not repaired."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import SOCKET, cli, install_daemon, web_unit, write_config

pytestmark = pytest.mark.lab

UNITS = [f"budget-{n}.service" for n in range(1, 7)]
POLICY = "unit: {unit}\nrecovery: {{ladder: [restart], cooldown: 1s, settle: 1s}}\n"
MAIN = "control:\n  socket_group: adm\n"  # the default guard, and a socket group


def hs(lab: Lab, *args: str) -> str:
    return cli(lab, *args, "--socket", SOCKET)


def history(lab: Lab, *args: str) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(hs(lab, "history", *args, "--json"))["entries"]
    return entries


@pytest.fixture(scope="module")
def config(lab: Lab) -> Iterator[Path]:
    root = Path(lab.shared_dir)
    policies = {f"{u}.yaml": POLICY.format(unit=u) for u in [*UNITS, "maint.service"]}
    write_config(root / "etc", policies, main=MAIN)
    for port, unit in enumerate([*UNITS, "maint.service"], start=8401):
        lab.install_unit(unit, web_unit(port))
        lab.run("systemctl", "start", unit)
    install_daemon(lab, root / "etc", root / "state")
    yield root / "etc"


def test_the_socket_belongs_to_the_configured_group(lab: Lab, config: Path) -> None:
    assert lab.run("stat", "-c", "%a %U %G", SOCKET).stdout.split() == ["660", "root", "adm"]


def test_the_sixth_failure_in_the_window_is_not_touched_and_the_freeze_recorded(
    lab: Lab, config: Path
) -> None:
    for unit in UNITS:
        lab.run("systemctl", "kill", "-s", "KILL", unit)
        time.sleep(0.3)
    lab.wait_for(
        lambda: any(e["kind"] == "guard" for e in history(lab)),
        timeout=15,
        what="the guard's freeze in the history",
    )
    time.sleep(2.0)
    states = {u: lab.show(u, "ActiveState")["ActiveState"] for u in UNITS}
    assert list(states.values()).count("active") == 5, states
    frozen = [u for u, s in states.items() if s == "failed"]
    assert len(frozen) == 1
    freeze = [e for e in history(lab) if e["kind"] == "guard"]
    assert len(freeze) == 1 and "frozen" in str(freeze[0]["message"])
    for unit in frozen:
        assert [e for e in history(lab, unit) if e["kind"] == "action"] == []
    status = lab.show("host-supervisor.service", "StatusText")["StatusText"]
    assert "AUTOMATION FROZEN" in status

    hs(lab, "resume", "--all")
    lab.wait_for(
        lambda: all(lab.show(u, "ActiveState")["ActiveState"] == "active" for u in frozen),
        timeout=15,
        what="the held units repaired after resume --all",
    )


def test_a_paused_unit_is_watched_but_not_repaired(lab: Lab, config: Path) -> None:
    hs(lab, "pause", "maint.service")
    lab.run("systemctl", "kill", "-s", "KILL", "maint.service")
    lab.wait_for(
        lambda: "paused" in str(_status(lab, "maint.service")["held"]),
        timeout=10,
        what="maint.service held as paused",
    )
    time.sleep(2.0)
    assert lab.show("maint.service", "ActiveState")["ActiveState"] == "failed"
    hs(lab, "resume", "maint.service")
    lab.wait_for(
        lambda: lab.show("maint.service", "ActiveState")["ActiveState"] == "active",
        timeout=10,
        what="maint.service repaired once resumed",
    )
    kinds = [e["kind"] for e in history(lab, "maint.service")]
    assert kinds.count("operator") == 2 and kinds.count("action") == 1


def _status(lab: Lab, unit: str) -> dict[str, object]:
    row: dict[str, object] = json.loads(hs(lab, "status", unit, "--json"))["units"][0]
    return row
