"""Units the demo, the integration tests and the benchmarks install in the lab."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from supervisor.testing.lab import Lab
from supervisor.testing.lab_boot import LabCommandError

DAEMON_UNIT = "host-supervisor.service"
SOCKET = "/run/host-supervisor/control.sock"
SHIPPED_UNIT = Path(__file__).parents[1] / "units" / "host-supervisor.service"


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


STATUS_EXITS = (0, 1, 2, 3)
"""`status` exits by the units' health (as systemctl is-* do), not by an error."""


def cli(lab: Lab, *args: str) -> str:
    """The stdout of `host-supervisor ARGS` in the lab; any exit but 0 is an error, save
    `status`'s health codes."""
    proc = lab.run(*daemon_cli(), *args, check=False)
    allowed = STATUS_EXITS if args[:1] == ("status",) else (0,)
    if proc.returncode not in allowed:
        raise LabCommandError(proc.returncode, [*daemon_cli(), *args], proc.stdout, proc.stderr)
    return proc.stdout


def daemon_cli() -> list[str]:
    """The host-supervisor command of this virtual environment (visible inside the lab).

    With PYTHONPATH set (a worktree shadowing the venv's editable install), the command
    carries it, as the daemon's unit does: commands that work alone (`check`) then run
    that tree's code too."""
    exe = str(Path(sys.prefix) / "bin" / "host-supervisor")
    pythonpath = os.environ.get("PYTHONPATH")
    return ["/usr/bin/env", f"PYTHONPATH={pythonpath}", exe] if pythonpath else [exe]


def daemon_unit(config: Path, state: Path, *, dry_run: bool = False, watchdog: str = "10s") -> str:
    """The shipped units/host-supervisor.service, pointed at this venv and test paths.

    StateDirectory= and ConfigurationDirectory= are dropped: the lab shares the
    host's /var and /etc, and the test passes its own directories instead; and
    PrivateTmp=, because those directories live under /var/tmp. Every other line,
    the sandboxing included, is tested as shipped.
    """
    exe = str(Path(sys.prefix) / "bin" / "host-supervisor")
    flags = " --dry-run" if dry_run else ""
    lines = []
    # A test run with PYTHONPATH (a worktree shadowing the venv's editable install)
    # tests that tree's daemon too, not the one the venv points at.
    pythonpath = os.environ.get("PYTHONPATH")
    extra = [f"Environment=PYTHONPATH={pythonpath}"] if pythonpath else []
    for line in SHIPPED_UNIT.read_text().splitlines():
        key = line.split("=", 1)[0]
        if key == "ExecStart":
            paths = f"--config {config} --state-dir {state} --socket {SOCKET}"
            line = f"ExecStart={exe} run {paths}{flags}"
        elif key == "ExecReload":
            line = f"ExecReload={exe} reload --socket {SOCKET}"
        elif key == "WatchdogSec":
            line = f"WatchdogSec={watchdog}"
        elif key.startswith(("StateDirectory", "ConfigurationDirectory", "PrivateTmp")):
            continue
        lines.append(line)
        if line.strip() == "[Service]":
            lines += extra
    return "\n".join(lines) + "\n"


def install_daemon(lab: Lab, config: Path, state: Path, **kwargs: object) -> None:
    """Install host-supervisor as a Type=notify unit in the lab and start it."""
    lab.install_unit(DAEMON_UNIT, daemon_unit(config, state, **kwargs))  # type: ignore[arg-type]
    lab.run("systemctl", "start", DAEMON_UNIT, timeout=60)


def active_with_new_pid(lab: Lab, unit: str, old_pid: str) -> bool:
    state = lab.show(unit, "ActiveState", "MainPID")
    return state["ActiveState"] == "active" and state["MainPID"] not in (old_pid, "0")


def kill_and_wait_restarted(lab: Lab, unit: str, timeout: float = 10.0) -> None:
    """SIGKILL the unit's processes and wait until it is active with a new main PID."""
    pid = lab.show(unit, "MainPID")["MainPID"]
    lab.run("systemctl", "kill", "-s", "KILL", unit)
    lab.wait_for(
        lambda: active_with_new_pid(lab, unit, pid),
        timeout=timeout,
        what=f"{unit} active again with a new main PID after SIGKILL",
    )


def daemon_log(lab: Lab, unit: str | None = None) -> list[dict[str, str]]:
    argv = ["journalctl", "-q", "--no-pager", "-o", "json", f"_SYSTEMD_UNIT={DAEMON_UNIT}"]
    if unit:
        argv.append(f"UNIT={unit}")
    out = lab.run(*argv, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def messages(lab: Lab, unit: str) -> list[str]:
    return [str(entry.get("MESSAGE", "")) for entry in daemon_log(lab, unit)]


def wait_for_message(lab: Lab, unit: str, prefix: str, timeout: float = 10.0) -> None:
    lab.wait_for(
        lambda: any(m.startswith(prefix) for m in messages(lab, unit)),
        timeout=timeout,
        what=f"daemon log line {prefix!r} for {unit}",
    )


# Test modules repair many units within minutes, and some repairs fail on purpose:
# the default budget (5 per 15m) and breaker (5 failures in a row) would stop
# automation across tests. Tests of the guard itself write their own.
ROOMY_GUARD = (
    "guard:\n  repair_budget: {max: 1000, window: 15m}\n  breaker: {failures: 1000, open_for: 1m}\n"
)


def write_config(config: Path, policies: dict[str, str], main: str = ROOMY_GUARD) -> None:
    """A config dir with `main` as host-supervisor.yaml and the named policies."""
    (config / "policies.d").mkdir(parents=True, exist_ok=True)
    (config / "host-supervisor.yaml").write_text(main)
    for name, text in policies.items():
        (config / "policies.d" / name).write_text(text)
