"""`host-supervisor discover` against a real systemd: observe-only policies for every
enabled service of the lab, which shares the host's unit files (the Debian services
tests/setup-env installs: nginx, apache2, etcd...), plus units enabled for this boot
only, one of them behind a socket. Then validate, the daemon, and every enabled
service watched; the time from discover to all watched is printed, not asserted.

The Debian services are watched but not started: the lab shares the host's /var, and
they would write their logs and data there.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from supervisor.testing.lab import Lab
from tests.lab_units import DAEMON_UNIT, SOCKET, cli, daemon_cli, install_daemon, web_unit

pytestmark = pytest.mark.lab

ECHO_SOCKET = """\
[Unit]
Description=discover test socket

[Socket]
ListenStream=0.0.0.0:8411
ListenStream=/run/disco-echo.sock

[Install]
WantedBy=sockets.target
"""

# Static (no [Install]): enabled only through its socket. It accepts and closes.
ECHO_SERVICE = """\
[Unit]
Description=discover test service behind a socket

[Service]
ExecStart=/usr/bin/python3 -c "import socket; s = socket.socket(fileno=3); \
[s.accept()[0].close() for _ in iter(int, 1)]"
"""

INSTALL = "\n[Install]\nWantedBy=multi-user.target\n"


def enabled_services(lab: Lab) -> set[str]:
    """What systemctl lists as enabled, the way an operator would look."""
    out = lab.run(
        "systemctl", "list-unit-files", "--no-legend", "--state=enabled,enabled-runtime",
        "*.service",
    ).stdout  # fmt: skip
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if "@" not in n and n != DAEMON_UNIT}


def test_discover_writes_policies_the_daemon_watches(lab: Lab) -> None:
    root = Path(lab.shared_dir)
    config = root / "etc"
    (config / "policies.d").mkdir(parents=True)
    (config / "host-supervisor.yaml").write_text("log_level: info\n")
    mine = "unit: disco-mine.service\n# the operator's own\n"
    (config / "policies.d" / "disco-mine.yaml").write_text(mine)
    lab.install_unit("disco-web.service", web_unit(8412, restart="on-failure",
                     extra="ExecReload=/bin/true") + INSTALL)  # fmt: skip
    lab.install_unit("disco-mine.service", web_unit(8413) + INSTALL)
    lab.install_unit("disco-plain.service", web_unit(8414) + INSTALL)
    lab.install_unit("disco-echo.socket", ECHO_SOCKET)
    lab.install_unit("disco-echo.service", ECHO_SERVICE)
    for unit in ("disco-web", "disco-mine", "disco-plain", "disco-echo.socket"):
        lab.run("systemctl", "enable", "--runtime", "--now", unit)
    expected = enabled_services(lab) | {"disco-echo.service"}
    assert {"disco-web.service", "disco-mine.service", "nginx.service", "etcd.service"} <= expected

    dry = lab.run(*daemon_cli(), "discover", "--config", str(config), "--dry-run")
    assert "# would write" in dry.stdout and not (config / "policies.d" / "disco-web.yaml").exists()

    started = time.monotonic()
    found = lab.run(*daemon_cli(), "discover", "--config", str(config), timeout=60)
    valid = lab.run(*daemon_cli(), "validate", "--config", str(config))
    install_daemon(lab, config, root / "state")

    def watched() -> set[str]:
        out = cli(lab, "status", "--socket", SOCKET, "--json")
        return {str(row["unit"]) for row in json.loads(out)["units"]}

    lab.wait_for(lambda: expected <= watched(), timeout=60, what=f"{sorted(expected)} watched")
    took = time.monotonic() - started
    print(f"\ndiscover to {len(expected)} enabled services watched: {took:.2f}s")
    print(f"watched: {', '.join(sorted(expected))}")
    print(found.stdout + found.stderr)

    assert valid.stdout.startswith("OK:"), valid.stdout
    assert "skipped disco-mine.service: has a policy in" in found.stdout
    assert (config / "policies.d" / "disco-mine.yaml").read_text() == mine  # untouched
    written = {p.name: yaml.safe_load(p.read_text()) for p in (config / "policies.d").iterdir()}
    assert {doc["unit"] for doc in written.values()} == expected
    assert all(doc.get("mode") == "observe" for n, doc in written.items() if n != "disco-mine.yaml")
    web = (config / "policies.d" / "disco-web.yaml").read_text()
    assert yaml.safe_load(web)["recovery"]["ladder"] == ["restart", "reload"]
    assert "# Restart=on-failure: systemd restarts it itself" in web
    echo = (config / "policies.d" / "disco-echo.yaml").read_text()
    assert yaml.safe_load(echo)["checks"] == [
        {"name": "tcp-8411", "tcp": {"host": "127.0.0.1", "port": 8411}}
    ]
    assert "disco-echo.socket Stream /run/disco-echo.sock" in echo
    etcd = (config / "policies.d" / "etcd.yaml").read_text()  # etcd-server: tests/setup-env
    assert "# Protected (guard.protected matches 'etcd*')" in etcd

    # A second run writes nothing: every unit has its policy now.
    again = lab.run(*daemon_cli(), "discover", "--config", str(config))
    assert again.stdout.rstrip().endswith("0 observe-only policies written"), again.stdout
    assert "disco-web.yaml exists" not in again.stdout  # known by its unit first

    # Observe only: a crash of an observed unit is held, never repaired.
    lab.run("systemctl", "kill", "-s", "KILL", "disco-plain.service")
    lab.wait_for(
        lambda: "observe only" in status_row(lab, "disco-plain.service")["held"],
        timeout=45,  # the daemon may still be observing after its start (30 s at most)
        what="disco-plain.service held by observe only",
    )
    time.sleep(1)
    assert lab.show("disco-plain.service", "ActiveState")["ActiveState"] == "failed"

    # Promoted by editing one key: the held unit is repaired at once.
    plain = config / "policies.d" / "disco-plain.yaml"
    plain.write_text(plain.read_text().replace("\nmode: observe\n", "\nmode: act\n"))
    lab.run("systemctl", "reload", DAEMON_UNIT)
    lab.wait_for(
        lambda: lab.show("disco-plain.service", "ActiveState")["ActiveState"] == "active",
        timeout=30,
        what="disco-plain.service restarted after mode: act",
    )


def status_row(lab: Lab, unit: str) -> dict[str, str]:
    out = cli(lab, "status", unit, "--socket", SOCKET, "--json")
    return {k: str(v) for k, v in json.loads(out)["units"][0].items()}
