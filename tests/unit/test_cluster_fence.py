"""The fence files and systemd glue of a clustered unit (no systemd needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.cluster import keeper
from supervisor.cluster.fence import FenceFiles, dropin_text, escape, lease_unit


@pytest.mark.parametrize("unit", ["work.service", "witness-client.service", "a@b c.service"])
def test_instance_names_are_escaped_as_systemd_escape_does(unit: str) -> None:
    tool = shutil.which("systemd-escape")
    assert tool is not None, "systemd-escape comes with systemd (tests/setup-env installs it)"
    expected = subprocess.run([tool, unit], capture_output=True, text=True, check=True).stdout
    assert escape(unit) == expected.strip()
    assert lease_unit(unit) == f"host-supervisor-lease@{expected.strip()}.service"


def test_install_writes_the_template_and_dropins_and_removes_stale_ones(tmp_path: Path) -> None:
    files = FenceFiles(tmp_path / "fence", tmp_path / "units")
    assert files.install(["a.service", "b-c.service"])
    dropin = tmp_path / "units" / "b-c.service.d" / "50-host-supervisor-cluster.conf"
    assert dropin.read_text() == dropin_text("b-c.service", tmp_path / "fence")
    assert "BindsTo=host-supervisor-lease@b\\x2dc.service.service" in dropin.read_text()
    assert not files.install(["a.service", "b-c.service"])  # unchanged: no reload needed
    assert files.install(["a.service"])
    assert not dropin.exists()


def test_token_and_deadline_files(tmp_path: Path) -> None:
    files = FenceFiles(tmp_path / "fence", tmp_path / "units")
    files.token("db.service", 42)
    files.deadline("db.service", 123.5)
    fence = tmp_path / "fence"
    assert (fence / "db.service.env").read_text() == "HOST_SUPERVISOR_FENCE_TOKEN=42\n"
    assert (fence / "db.service.token").read_text() == "42\n"
    assert keeper.read_deadline(fence / "db.service.deadline") == 123.5


def test_the_keeper_exits_when_the_deadline_passes_or_is_missing(tmp_path: Path) -> None:
    os.environ.pop("NOTIFY_SOCKET", None)
    assert keeper.main(["keeper", "gone.service", str(tmp_path)]) == 1  # no deadline at all
    files = FenceFiles(tmp_path, tmp_path / "units")
    files.deadline("db.service", time.monotonic() + 0.3)
    started = time.monotonic()
    assert keeper.main(["keeper", "db.service", str(tmp_path)]) == 1
    assert time.monotonic() - started >= 0.25  # ran until the deadline, then fenced
