"""The .deb, installed and run for real in a booted Debian bookworm (issue 6, item 6).

The tests run in file order on one booted root: install, supervise a web unit through a
crash, refuse a broken policy, purge.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.package.conftest import TIMINGS, ChrootLab

pytestmark = pytest.mark.lab

DAEMON = "host-supervisor.service"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}

WEB_UNIT = """\
[Unit]
Description=test web service on port 8080

[Service]
ExecStart=/usr/bin/python3 -m http.server 8080 --bind 127.0.0.1 --directory /
Restart=no
"""

WEB_POLICY = """\
# A small web unit, supervised: a crash is repaired by a restart.
unit: web.service
checks:
  - name: port
    tcp: {host: 127.0.0.1, port: 8080}
    interval: 1s
recovery:
  ladder: [restart]
  cooldown: 1s
  settle: 1s
"""

BROKEN_POLICY = "unit: web-z.service\nchecks:\n  - name: x\n    intervall: 5s\n    tcp: {port: 1}\n"


def status_text(debian: ChrootLab) -> str:
    return debian.show(DAEMON, "StatusText")["StatusText"]


def journal(debian: ChrootLab, *matches: str) -> list[dict[str, str]]:
    out = debian.run("journalctl", "--no-pager", "-o", "json", *matches).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_apt_installs_the_deb_and_starts_the_daemon(debian: ChrootLab, deb: Path) -> None:
    started = time.monotonic()
    shutil.copy(deb, debian.root / "root" / deb.name)
    # The lab's network namespace has only loopback: apt-get uses the host's network.
    debian.run("apt-get", "update", "-q", net=False, timeout=300, env=APT_ENV)
    install = debian.run(
        "apt-get", "install", "-y", "-q", f"/root/{deb.name}", net=False, timeout=600, env=APT_ENV
    )
    TIMINGS["apt-get update + install"] = time.monotonic() - started
    assert "Setting up host-supervisor" in install.stdout, install.stdout

    debian.wait_for(
        lambda: debian.systemctl("is-active", DAEMON, check=False).stdout.strip() == "active",
        timeout=30,
        what="host-supervisor active after install",
    )
    assert debian.systemctl("is-enabled", DAEMON).stdout.strip() == "enabled"
    debian.wait_for(lambda: "0 units" in status_text(debian), timeout=10, what="STATUS=")
    status = debian.systemctl("status", "--no-pager", DAEMON, check=False).stdout
    assert 'Status: "0 units' in status, status
    # The layout the package promises.
    root = debian.root
    target = debian.run("readlink", "-f", "/usr/bin/host-supervisor").stdout.strip()
    assert target == "/usr/lib/host-supervisor/bin/host-supervisor", target
    assert (root / "lib/systemd/system/host-supervisor.service").is_file()
    for page in ("man8/host-supervisor.8.gz", "man5/host-supervisor.yaml.5.gz"):
        assert (root / "usr/share/man" / page).is_file(), page
    conffiles = (root / "var/lib/dpkg/info/host-supervisor.conffiles").read_text().split()
    assert "/etc/host-supervisor/host-supervisor.yaml" in conffiles
    assert any(c.endswith(".example") for c in conffiles), conffiles
    version = debian.run("host-supervisor", "--version").stdout
    assert version.startswith("host-supervisor "), version


def test_a_crashed_web_unit_comes_back(debian: ChrootLab) -> None:
    (debian.root / "etc/systemd/system/web.service").write_text(WEB_UNIT)
    debian.daemon_reload()
    debian.systemctl("start", "web.service")
    (debian.root / "etc/host-supervisor/policies.d/web.yaml").write_text(WEB_POLICY)
    debian.systemctl("reload", DAEMON)
    debian.wait_for(
        lambda: status_text(debian).startswith("1 unit:"), timeout=15, what="web.service supervised"
    )

    old_pid = debian.show("web.service", "MainPID")["MainPID"]
    assert old_pid != "0"
    debian.run("kill", "-KILL", old_pid)

    def restarted() -> bool:
        props = debian.show("web.service", "ActiveState", "MainPID")
        return props["ActiveState"] == "active" and props["MainPID"] not in ("0", old_pid)

    debian.wait_for(restarted, timeout=30, what="web.service restarted with a new MainPID")

    def entries() -> list[str]:
        found = journal(debian, "-u", "host-supervisor", "UNIT=web.service")
        return [e.get("MESSAGE", "") for e in found]

    messages = debian.wait_for(
        lambda: (m := entries()) and any(x.startswith("restart finished") for x in m) and m,
        timeout=15,
        what="journal entries about web.service from host-supervisor",
    )
    assert any(m.startswith("unit failed") for m in messages), messages
    assert debian.systemctl("is-active", DAEMON).stdout.strip() == "active"


def test_a_broken_policy_is_refused_and_named(debian: ChrootLab) -> None:
    broken = "/etc/host-supervisor/policies.d/zz-broken.yaml"
    (debian.root / broken.lstrip("/")).write_text(BROKEN_POLICY)
    try:
        debian.systemctl("reload", DAEMON)
        debian.wait_for(
            lambda: "reload refused" in status_text(debian),
            timeout=15,
            what="StatusText saying the reload was refused",
        )
        assert f"{broken}:4:5" in status_text(debian)
        status = debian.systemctl("status", "--no-pager", DAEMON, check=False).stdout
        assert "reload refused" in status, status
        assert debian.systemctl("is-active", DAEMON).stdout.strip() == "active"

        validate = debian.run("host-supervisor", "validate", check=False)
        assert validate.returncode == 1, validate
        assert f"{broken}:4" in validate.stdout + validate.stderr, validate
    finally:
        (debian.root / broken.lstrip("/")).unlink()
    debian.systemctl("reload", DAEMON)
    debian.wait_for(
        lambda: "reload refused" not in status_text(debian),
        timeout=15,
        what="a clean reload clearing the refusal",
    )


def test_purge_leaves_nothing(debian: ChrootLab) -> None:
    state_dir = debian.root / "var/lib/host-supervisor"
    assert state_dir.is_dir()  # made by the running daemon: purge must take it
    daemon_pid = debian.show(DAEMON, "MainPID")["MainPID"]
    purge = debian.run(
        "apt-get", "purge", "-y", "-q", "host-supervisor", net=False, timeout=300, env=APT_ENV
    )
    assert "Purging configuration files for host-supervisor" in purge.stdout, purge.stdout
    assert "not empty so not removed" not in purge.stdout + purge.stderr, purge

    active = debian.systemctl("is-active", DAEMON, check=False).stdout.strip()
    assert active != "active", active
    assert daemon_pid == "0" or not (debian.root / f"proc/{daemon_pid}").exists()
    leftover = [
        cmdline
        for pid_dir in (debian.root / "proc").iterdir()
        if pid_dir.name.isdigit()
        for cmdline in [_cmdline(pid_dir)]
        if "host-supervisor" in cmdline
    ]
    assert not leftover, leftover

    dpkg = debian.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "host-supervisor", check=False)
    assert dpkg.returncode != 0 or dpkg.stdout.strip() in ("", "pn"), dpkg
    for path in (
        "usr/lib/host-supervisor",
        "var/lib/host-supervisor",
        "etc/host-supervisor",
        "run/host-supervisor",
        "usr/bin/host-supervisor",
        "lib/systemd/system/host-supervisor.service",
        "etc/systemd/system/multi-user.target.wants/host-supervisor.service",
    ):
        assert not (debian.root / path).exists(), f"/{path} is left after purge"


def _cmdline(pid_dir: Path) -> str:
    try:
        return (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
