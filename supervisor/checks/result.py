"""What a probe reports, and what the shell tells a probe about the unit.

A probe only reports: `OK`, `WARNING` or `CRITICAL` say how the service looked;
`UNKNOWN` says the probe itself could not run (a bad spec at run time, permission
denied, a psutil error) and never that the service is bad. Deciding what a result
means for the unit is `supervisor.health`'s job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

from supervisor.core.values import CheckResult, Measure, Status
from supervisor.text import one_line

__all__ = [
    "MESSAGE_MAX",
    "CheckResult",
    "Measure",
    "Pending",
    "ProbeContext",
    "Status",
    "finish",
    "os_reason",
]

MESSAGE_MAX = 300
"""Longest message a result carries, in characters; longer ones are cut with '...'."""

# systemd's "no value" for a 64-bit unsigned property such as MemoryCurrent.
_SYSTEMD_UINT64_UNSET = 2**64 - 1


@dataclass(frozen=True)
class ProbeContext:
    """What the shell knows about the unit from systemd when it starts a probe."""

    unit: str
    main_pid: int | None = None
    """systemd's MainPID; 0 or None when the unit has no running main process."""
    memory_current: int | None = None
    """systemd's MemoryCurrent in bytes; None when memory accounting is off."""
    active_state: str = ""
    """systemd's ActiveState; empty when not known (yet)."""

    def __post_init__(self) -> None:
        # systemd reports 2**64-1 for MemoryCurrent when accounting is off.
        if self.memory_current is not None and self.memory_current >= _SYSTEMD_UINT64_UNSET:
            object.__setattr__(self, "memory_current", None)
        if self.main_pid is not None and self.main_pid <= 0:
            object.__setattr__(self, "main_pid", None)


class Pending(Protocol):
    """A probe run by callbacks (`Prober.start`): its scheduler owns its deadline."""

    def expire(self) -> None:
        """The deadline passed: report the timeout now (nothing if it already ended)."""

    def cancel(self) -> None:
        """Drop it: release what it holds, report nothing."""


def finish(
    status: Status, message: str, started: float, measures: tuple[Measure, ...] = ()
) -> CheckResult:
    """A result whose duration runs from `started` (a time.monotonic() reading) to now."""
    return CheckResult(status, one_line(message, MESSAGE_MAX), time.monotonic() - started, measures)


def os_reason(exc: OSError) -> str:
    """The reason of an OS error alone, e.g. "Connection refused" (asyncio wraps it in more)."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
