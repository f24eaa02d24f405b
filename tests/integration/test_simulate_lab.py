"""`simulate` on a history recorded by the daemon against a real systemd: a unit is
crashed three times and restarted each time; replayed through a changed ladder
(reload first, two attempts), the simulated decisions must match a golden file."""

from __future__ import annotations

import io
import re
import shutil
import time
from functools import partial
from pathlib import Path

import pytest

from supervisor.commands.simulate import simulate_command
from supervisor.testing.lab import Lab
from tests.lab_units import daemon_cli, kill_and_wait_restarted, web_unit

pytestmark = pytest.mark.lab

GOLDEN = Path(__file__).parent / "golden" / "simulate-changed-ladder.txt"
UNIT = "web-sim.service"
# Flap detection off the stage (samples leave a 1 s window at once): the three crashes
# are meant to climb the ladder, in the run and in the replay alike.
MAIN = "guard:\n  flapping: {window: 1s}\n"
RECORDED = f"""\
unit: {UNIT}
recovery:
  ladder: [restart]
  max_attempts: 3
  cooldown: 1s
  settle: 1s
  reset_after: 1h
"""
CHANGED = RECORDED.replace("[restart]", "[reload, restart]").replace(
    "max_attempts: 3", "max_attempts: 2"
)


def write(config: Path, policy: str) -> None:
    (config / "policies.d").mkdir(parents=True)
    (config / "host-supervisor.yaml").write_text(MAIN)
    (config / "policies.d" / "web-sim.yaml").write_text(policy)


def recovered(log_file: Path, times: int) -> bool:
    return log_file.read_text().count("event=recovered ") >= times


def normalised(table: str) -> str:
    """The table without its heading line, times and column padding: what is compared."""
    rows = []
    for line in table.splitlines()[1:]:
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0].startswith("+"):
            cells[0] = "T"
        rows.append(" | ".join(cells))
    return "\n".join(rows) + "\n"


def test_a_recorded_session_replayed_through_a_changed_ladder(lab: Lab, tmp_path: Path) -> None:
    root = Path(lab.shared_dir) / "simulate"
    state = root / "state"
    write(root / "etc", RECORDED)
    lab.install_unit(UNIT, web_unit(8086))
    lab.run("systemctl", "start", UNIT)
    log_file = root / "daemon.log"
    lab.run(
        "systemd-run",
        "--unit=hs-sim",
        f"--property=StandardError=append:{log_file}",
        *daemon_cli(),
        "run",
        "--config",
        str(root / "etc"),
        "--state-dir",
        str(state),
        "--socket",
        str(root / "control.sock"),
    )
    try:
        lab.wait_for(lambda: "supervising" in log_file.read_text(), timeout=20, what="daemon up")
        time.sleep(1.0)  # the first round of checks: repairs are allowed from here on
        for n in range(1, 4):
            kill_and_wait_restarted(lab, UNIT)
            lab.wait_for(
                partial(recovered, log_file, n),
                timeout=10,
                what=f"recovery {n} judged after settle",
            )
            time.sleep(1.2)  # past the cooldown: the next crash gets the next rung
    finally:
        lab.run("systemctl", "stop", "hs-sim", check=False)  # flushes the history
    copy = tmp_path / "state"
    copy.mkdir()
    shutil.copy(state / "state.db", copy / "state.db")

    changed = tmp_path / "changed"
    write(changed, CHANGED)
    out, err = io.StringIO(), io.StringIO()
    assert simulate_command(changed, copy, 3600.0, out, err) == 0, err.getvalue()
    table = out.getvalue()
    assert normalised(table) == GOLDEN.read_text(), table
