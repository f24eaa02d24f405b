"""A clustered unit on one lab host, with a real etcd inside the lab: the daemon takes
the key and starts the unit with its fencing token; PID 1 stops the unit when the
daemon is SIGSTOPped (the lease keeper); the daemon fences itself when etcd goes and
takes the unit again with a newer token when it is back. The three-host lab tests the
rest (tests/integration/test_cluster_lab.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import DAEMON_UNIT, SOCKET, cli, install_daemon, write_config

pytestmark = pytest.mark.lab

ETCD_PORT = 23790
UNIT = "work.service"
TOKEN_SEEN = "/run/work.token"


def etcd_unit(data: Path) -> str:
    return (
        "[Service]\n"
        f"ExecStart=/usr/bin/etcd --name solo --data-dir {data} "
        f"--listen-client-urls http://127.0.0.1:{ETCD_PORT} "
        f"--advertise-client-urls http://127.0.0.1:{ETCD_PORT} "
        "--listen-peer-urls http://127.0.0.1:23800 "
        "--initial-advertise-peer-urls http://127.0.0.1:23800 "
        "--initial-cluster solo=http://127.0.0.1:23800 "
        "--heartbeat-interval 100 --election-timeout 1000\n"
        "Restart=no\n"
    )


WORK = (
    "[Service]\n"
    "ExecStart=/bin/sh -c "
    f"'echo $HOST_SUPERVISOR_FENCE_TOKEN > {TOKEN_SEEN}; exec sleep infinity'\n"
)

MAIN = f"""\
cluster:
  endpoints: [http://127.0.0.1:{ETCD_PORT}]
  host: host-a
  timeout: 1s
"""
POLICY = f"""\
unit: {UNIT}
cluster:
  hosts: [host-a, host-b]
  ttl: 2s
"""


def hs(lab: Lab, *args: str) -> str:
    return cli(lab, *args, "--socket", SOCKET)


def cluster_row(lab: Lab) -> dict[str, object]:
    row = json.loads(hs(lab, "status", UNIT, "--json"))["units"][0]
    section = row["cluster"]
    assert isinstance(section, dict)
    return section


def active(lab: Lab, unit: str) -> bool:
    return lab.show(unit, "ActiveState")["ActiveState"] == "active"


def token_seen(lab: Lab) -> int:
    return int(lab.run("cat", TOKEN_SEEN).stdout.strip() or 0)


def history(lab: Lab) -> list[str]:
    out = json.loads(hs(lab, "history", UNIT, "--json"))["entries"]
    return [str(e["message"]) for e in out]


@pytest.fixture(scope="module")
def held(lab: Lab) -> Iterator[int]:
    root = Path(lab.shared_dir)
    lab.install_unit("etcd-solo.service", etcd_unit(root / "etcd"))
    lab.install_unit(UNIT, WORK)
    lab.run("systemctl", "start", "etcd-solo.service")
    write_config(root / "etc", {"work.yaml": POLICY}, main=MAIN)
    install_daemon(lab, root / "etc", root / "state")
    lab.wait_for(lambda: active(lab, UNIT), timeout=30, what=f"{UNIT} started by the holder")
    yield token_seen(lab)


def test_the_holder_starts_the_unit_with_its_fencing_token(lab: Lab, held: int) -> None:
    assert held > 0
    assert lab.run("cat", f"/run/host-supervisor/fence/{UNIT}.token").stdout.strip() == str(held)
    section = cluster_row(lab)
    assert section["role"] == "holder" and section["holder"] == "host-a"
    assert section["token"] == held
    assert section["unregistered"] == ["host-b"]  # listed, never seen: a warning in status
    assert any(m.startswith(f"acquired {UNIT} (fencing token {held})") for m in history(lab))
    deps = lab.show(UNIT, "BindsTo")["BindsTo"]
    assert f"host-supervisor-lease@{UNIT}" in deps


def test_a_manual_start_without_the_lease_fails(lab: Lab, held: int) -> None:
    """The keeper refuses a deadline that passed: PID 1 will not run the unit."""
    lab.install_unit("other.service", WORK.replace(TOKEN_SEEN, "/run/other.token"))
    (Path(lab.shared_dir) / "dropin").mkdir(exist_ok=True)
    lab.run("mkdir", "-p", "/run/systemd/system/other.service.d")
    lab.run(
        "sh",
        "-c",
        "printf '[Unit]\\nBindsTo=host-supervisor-lease@other.service.service\\n"
        "After=host-supervisor-lease@other.service.service\\n' "
        "> /run/systemd/system/other.service.d/50-host-supervisor-cluster.conf",
    )
    lab.daemon_reload()
    done = lab.run("systemctl", "start", "other.service", check=False)
    assert done.returncode != 0
    assert not active(lab, "other.service")


def test_a_stopped_daemon_is_fenced_by_pid1_then_takes_the_unit_again(lab: Lab, held: int) -> None:
    pid = lab.show(DAEMON_UNIT, "MainPID")["MainPID"]
    lab.run("kill", "-STOP", pid)
    try:
        lab.wait_for(lambda: not active(lab, UNIT), timeout=4, what="unit stopped by PID 1")
    finally:
        lab.run("kill", "-CONT", pid)
    lab.wait_for(lambda: active(lab, UNIT), timeout=20, what="unit held again")
    lab.wait_for(lambda: token_seen(lab) > held, timeout=5, what="a newer token")
    messages = history(lab)
    assert any(m.startswith("fenced:") for m in messages)


def test_etcd_gone_fences_the_holder(lab: Lab, held: int) -> None:
    lab.wait_for(lambda: active(lab, UNIT), timeout=20, what="unit held")
    lab.run("systemctl", "stop", "etcd-solo.service")
    try:
        lab.wait_for(lambda: not active(lab, UNIT), timeout=6, what="unit fenced without etcd")
        assert any("renewal failed" in m for m in history(lab))
    finally:
        lab.run("systemctl", "start", "etcd-solo.service")
    lab.wait_for(lambda: active(lab, UNIT), timeout=40, what="unit held again once etcd is back")
