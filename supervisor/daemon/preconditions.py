"""Preconditions of every automatic repair: enough disk, enough memory, the units it
needs. When one fails the repair is held (not counted as an attempt) and retried
later, with one warning saying which and why: repairing a service on a full disk or
while its database is down makes things worse."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import psutil

from supervisor.config import Preconditions
from supervisor.errors import BusError

if TYPE_CHECKING:
    from supervisor.daemon.ports import HostFacts, UnitManager


class LocalHost:
    """This host's disk and memory use, as preconditions read them."""

    def disk_used_percent(self, path: str) -> float:
        stats = os.statvfs(path)
        used = (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        available = stats.f_bavail * stats.f_frsize
        total = used + available
        return 100.0 * used / total if total else 0.0

    def memory_used_percent(self) -> float:
        return float(psutil.virtual_memory().percent)


async def failing_precondition(
    pre: Preconditions, manager: UnitManager, host: HostFacts
) -> str | None:
    """Why a repair may not run now, or None when every precondition holds."""
    if pre.disk_below is not None:
        for path in pre.disk_paths:
            try:
                used = host.disk_used_percent(path)
            except OSError as exc:
                return f"cannot read disk use of {path}: {exc.strerror}"
            if used >= pre.disk_below:
                return f"disk {path} is {used:.1f}% used (repairs need below {pre.disk_below:g}%)"
    if pre.memory_below is not None:
        used = host.memory_used_percent()
        if used >= pre.memory_below:
            return f"host memory is {used:.1f}% used (repairs need below {pre.memory_below:g}%)"
    for unit in pre.units_active:
        try:
            state = (await manager.snapshot(unit)).active_state
        except BusError as exc:
            return f"cannot read the state of {unit}: {exc}"
        if state != "active":
            return f"{unit} is {state or 'unknown'} (repairs need it active)"
    return None
