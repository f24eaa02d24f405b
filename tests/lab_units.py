"""Units the demo, the integration tests and the benchmarks install in the lab."""

from __future__ import annotations

import sys
from pathlib import Path

from supervisor.testing.lab import Lab

DAEMON_UNIT = "host-supervisor.service"
SOCKET = "/run/host-supervisor/control.sock"


def web_unit(port: int, *, restart: str = "no", extra: str = "", unit_extra: str = "") -> str:
    """A small web service from Debian's python3, on loopback."""
    return f"""\
[Unit]
Description=test web service on port {port}
{unit_extra}

[Service]
ExecStart=/usr/bin/python3 -m http.server {port} --bind 127.0.0.1 --directory /
Restart={restart}
{extra}
"""


def daemon_unit(config: Path, state: Path, *, dry_run: bool = False, watchdog: str = "10s") -> str:
    exe = Path(sys.prefix) / "bin" / "host-supervisor"
    flags = " --dry-run" if dry_run else ""
    return f"""\
[Unit]
Description=host-supervisor (lab)
After=dbus.socket
Requires=dbus.socket

[Service]
Type=notify
NotifyAccess=main
WatchdogSec={watchdog}
ExecStart={exe} run --config {config} --state-dir {state} --socket {SOCKET}{flags}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
"""


def install_daemon(lab: Lab, config: Path, state: Path, **kwargs: object) -> None:
    """Install host-supervisor as a Type=notify unit in the lab and start it."""
    lab.install_unit(DAEMON_UNIT, daemon_unit(config, state, **kwargs))  # type: ignore[arg-type]
    lab.run("systemctl", "start", DAEMON_UNIT, timeout=60)


def active_with_new_pid(lab: Lab, unit: str, old_pid: str) -> bool:
    state = lab.show(unit, "ActiveState", "MainPID")
    return state["ActiveState"] == "active" and state["MainPID"] not in (old_pid, "0")
