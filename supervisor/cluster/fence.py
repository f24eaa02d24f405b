"""What a clustered unit is fenced by on this host, as files systemd and the unit read.

- ``/run/host-supervisor/fence/UNIT.env``: ``HOST_SUPERVISOR_FENCE_TOKEN=N``, read by the
  unit through an ``EnvironmentFile=`` drop-in when it starts;
- ``UNIT.token``: the token alone, for a unit that reads it at run time;
- ``UNIT.deadline``: the CLOCK_MONOTONIC second until which the lease keeper may let
  the unit run (``keeper.py``);
- ``/run/systemd/system/UNIT.d/50-host-supervisor-cluster.conf``: binds the unit to
  ``host-supervisor-lease@UNIT.service`` (``BindsTo=``, ``After=``) and reads the env file;
- ``/run/systemd/system/host-supervisor-lease@.service``: the keeper's template.

Everything is under /run: it goes with a reboot, as a lease does. Every write is a
temporary file renamed over the old one (`fsutil.atomic_write`), never through a link.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from supervisor.fsutil import atomic_write

__all__ = [
    "FENCE_DIR",
    "LEASE_TEMPLATE",
    "FenceFiles",
    "dropin_text",
    "lease_unit",
    "template_text",
]

FENCE_DIR = Path("/run/host-supervisor/fence")
UNIT_DIR = Path("/run/systemd/system")
LEASE_TEMPLATE = "host-supervisor-lease@.service"
DROPIN = "50-host-supervisor-cluster.conf"
KEEPER_WATCHDOG = 1.0
"""The keeper's WatchdogSec=: it pings every 0.1 s while the lease is fresh."""

_PLAIN = re.compile(r"[A-Za-z0-9:_.]")


def escape(name: str) -> str:
    """A unit name as a template instance, as systemd-escape writes it: "-" is "\\x2d",
    since %I reads a plain "-" as "/"."""
    return "".join(
        c if _PLAIN.fullmatch(c) else "".join(f"\\x{b:02x}" for b in c.encode()) for c in name
    )


def lease_unit(unit: str) -> str:
    return f"host-supervisor-lease@{escape(unit)}.service"


def dropin_text(unit: str, fence_dir: Path = FENCE_DIR) -> str:
    lease = lease_unit(unit)
    return (
        "# Written by host-supervisor for a clustered unit: it runs only while this host\n"
        "# holds its lease, and gets its fencing token from the env file.\n"
        f"[Unit]\nBindsTo={lease}\nAfter={lease}\n\n"
        f"[Service]\nEnvironmentFile=-{fence_dir}/{unit}.env\n"
    )


def template_text(fence_dir: Path = FENCE_DIR) -> str:
    python = sys.executable
    path = os.environ.get("PYTHONPATH")
    env = f"Environment=PYTHONPATH={path}\n" if path else ""
    return (
        "# Written by host-supervisor: lets a clustered unit run only while the daemon\n"
        "# renews this host's lease (see supervisor/cluster/keeper.py).\n"
        "[Unit]\nDescription=host-supervisor lease for %I\nStopWhenUnneeded=yes\n\n"
        "[Service]\nType=notify\nNotifyAccess=main\n"
        f"ExecStart={python} -m supervisor.cluster.keeper %I {fence_dir}\n"
        f"{env}WatchdogSec={KEEPER_WATCHDOG:g}s\nTimeoutStartSec=5s\nRestart=no\n"
    )


class FenceFiles:
    """Writes a clustered unit's fence files and its systemd glue (blocking: call in a
    thread)."""

    def __init__(self, fence_dir: Path = FENCE_DIR, unit_dir: Path = UNIT_DIR) -> None:
        self.fence_dir = fence_dir
        self.unit_dir = unit_dir

    def install(self, units: list[str]) -> bool:
        """The template and a drop-in per unit, and no stale drop-in of ours; True when
        anything changed (systemd must then reload)."""
        self.fence_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        changed = _replace(self.unit_dir / LEASE_TEMPLATE, template_text(self.fence_dir))
        for unit in units:
            changed |= _replace(
                self.unit_dir / f"{unit}.d" / DROPIN, dropin_text(unit, self.fence_dir)
            )
        wanted = {f"{unit}.d" for unit in units}
        for stale in self.unit_dir.glob(f"*.d/{DROPIN}"):
            if stale.parent.name not in wanted:
                stale.unlink(missing_ok=True)
                changed = True
        return changed

    def token(self, unit: str, token: int) -> None:
        self.fence_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(
            self.fence_dir / f"{unit}.env", f"HOST_SUPERVISOR_FENCE_TOKEN={token}\n".encode(), 0o644
        )
        atomic_write(self.fence_dir / f"{unit}.token", f"{token}\n".encode(), 0o644)

    def deadline(self, unit: str, deadline: float) -> None:
        """Until when (CLOCK_MONOTONIC) the keeper lets the unit run; 0: not at all."""
        self.fence_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(self.fence_dir / f"{unit}.deadline", f"{deadline:.3f}\n".encode(), 0o644)


def _replace(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text and not path.is_symlink():
            return False
    except OSError:
        pass
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic_write(path, text.encode(), 0o644)
    return True
