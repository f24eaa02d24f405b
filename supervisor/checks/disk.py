"""Disk probe: space and inodes of the file system holding a path, computed as `df` does.

`statvfs` can hang for minutes on a dead network file system, so it runs in a thread.
A `DiskProber` never starts a second `statvfs` of a path while one is still running:
runs of the check wait on the same call, so a hung mount holds one thread, not one per
run, and the check reports how long it has been hanging.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

from supervisor.checks._threads import in_thread
from supervisor.checks.result import (
    CheckResult,
    Measure,
    ProbeContext,
    Status,
    finish,
    os_reason,
)
from supervisor.config.probes import DiskProbe
from supervisor.config.values import format_duration

__all__ = ["DiskProber", "DiskUsage", "human_size", "usage"]


def human_size(size: float) -> str:
    """Bytes for a message: 1536 -> "1.5 KiB"."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(size) >= factor:
            return f"{size / factor:.1f} {unit}"
    return f"{size:.0f} B"


@dataclass(frozen=True)
class DiskUsage:
    """The figures `df` shows for one file system."""

    avail: int
    """Bytes free for unprivileged users (df's Avail)."""
    used_percent: float
    """Used space as df's Use%: used / (used + avail), leaving root's reserve out."""
    inodes_percent: float | None
    """Used inodes as df -i's IUse%; None when the file system has no inode count."""

    @classmethod
    def of(cls, stat: os.statvfs_result) -> DiskUsage:
        used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
        avail = stat.f_bavail * stat.f_frsize
        inodes_used = stat.f_files - stat.f_ffree
        return cls(
            avail=avail,
            used_percent=100.0 * used / (used + avail) if used + avail else 0.0,
            inodes_percent=(
                100.0 * inodes_used / (inodes_used + stat.f_favail)
                if stat.f_files and inodes_used + stat.f_favail
                else None
            ),
        )


def usage(path: str) -> DiskUsage:
    """The df figures of the file system holding `path` (blocking)."""
    return DiskUsage.of(os.statvfs(path))


class DiskProber:
    """Runs disk probes; at most one `statvfs` per path is ever running."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[asyncio.Future[os.statvfs_result], float]] = {}

    def _statvfs(self, path: str) -> tuple[asyncio.Future[os.statvfs_result], float]:
        pending = self._pending.get(path)
        if pending is not None and not pending[0].done():
            return pending
        future = in_thread(os.statvfs, path)
        entry = (future, time.monotonic())
        self._pending[path] = entry

        def forget(done: asyncio.Future[os.statvfs_result]) -> None:
            if self._pending.get(path) is entry:
                del self._pending[path]
            if not done.cancelled():
                done.exception()  # retrieved: no "exception never retrieved" warning

        future.add_done_callback(forget)
        return entry

    async def run(
        self,
        spec: DiskProbe,
        context: ProbeContext,
        timeout: float,  # noqa: ASYNC109 - the probe spends it itself
    ) -> CheckResult:
        """Compare the file system holding `spec.path` with the limits; over one is CRITICAL."""
        del context  # a disk probe needs nothing from systemd
        started = time.monotonic()
        path = spec.path
        future, since = self._statvfs(path)
        try:
            async with asyncio.timeout(timeout):
                stat = await asyncio.shield(future)
        except TimeoutError:
            hanging = format_duration(round(time.monotonic() - since, 1))
            return finish(
                Status.CRITICAL,
                f"statvfs of {path} has not returned for {hanging} (hung file system?)",
                started,
            )
        except OSError as exc:
            return finish(Status.UNKNOWN, f"cannot statvfs {path}: {os_reason(exc)}", started)
        disk = DiskUsage.of(stat)
        measured = [
            Measure("used", round(disk.used_percent, 1), "%", spec.max_used, low=0.0, high=100.0),
            Measure("free", float(disk.avail), "B", spec.min_free, below=True, low=0.0),
        ]
        if spec.max_inodes_used is not None and disk.inodes_percent is not None:
            measured.append(
                Measure(
                    "inodes_used",
                    round(disk.inodes_percent, 1),
                    "%",
                    spec.max_inodes_used,
                    low=0.0,
                    high=100.0,
                )
            )
        problems: list[str] = []
        if disk.used_percent > spec.max_used:
            problems.append(f"{disk.used_percent:.1f}% used > {spec.max_used:g}%")
        if spec.min_free is not None and disk.avail < spec.min_free:
            problems.append(f"{human_size(disk.avail)} free < {human_size(spec.min_free)}")
        if (
            spec.max_inodes_used is not None
            and disk.inodes_percent is not None
            and disk.inodes_percent > spec.max_inodes_used
        ):
            problems.append(f"{disk.inodes_percent:.1f}% inodes used > {spec.max_inodes_used:g}%")
        if problems:
            return finish(
                Status.CRITICAL, f"{path}: {', '.join(problems)}", started, tuple(measured)
            )
        figures = [f"{disk.used_percent:.1f}% used", f"{human_size(disk.avail)} free"]
        if spec.max_inodes_used is not None:
            figures.append(
                "no inode count"
                if disk.inodes_percent is None
                else f"{disk.inodes_percent:.1f}% inodes used"
            )
        return finish(Status.OK, f"{path}: {', '.join(figures)}", started, tuple(measured))
