"""Disk probe against the file system of the test's own tmp_path."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import threading
from pathlib import Path

import pytest

from supervisor.checks import disk
from supervisor.checks.disk import DiskProber, usage
from supervisor.checks.result import ProbeContext, Status
from supervisor.config.probes import DiskProbe

CONTEXT = ProbeContext(unit="db.service")


async def test_used_percent_over_and_under(tmp_path: Path) -> None:
    over = await DiskProber().run(DiskProbe(path=str(tmp_path), max_used=0.0001), CONTEXT, 2.0)
    under = await DiskProber().run(DiskProbe(path=str(tmp_path), max_used=100), CONTEXT, 2.0)
    assert over.status is Status.CRITICAL
    assert over.message.startswith(f"{tmp_path}: ")
    assert over.message.endswith("% used > 0.0001%")
    assert under.status is Status.OK
    assert "% used, " in under.message and " free" in under.message


async def test_min_free(tmp_path: Path) -> None:
    huge = DiskProbe(path=str(tmp_path), max_used=100, min_free="1024TiB")
    tiny = DiskProbe(path=str(tmp_path), max_used=100, min_free="1KiB")
    short = await DiskProber().run(huge, CONTEXT, 2.0)
    assert short.status is Status.CRITICAL
    assert short.message.endswith("free < 1024.0 TiB")
    assert (await DiskProber().run(tiny, CONTEXT, 2.0)).status is Status.OK


async def test_inodes(tmp_path: Path) -> None:
    if usage(str(tmp_path)).inodes_percent is None:
        pytest.skip("this file system reports no inode count")
    over = DiskProbe(path=str(tmp_path), max_used=100, max_inodes_used=0.0001)
    under = DiskProbe(path=str(tmp_path), max_used=100, max_inodes_used=100)
    result = await DiskProber().run(over, CONTEXT, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message.endswith("% inodes used > 0.0001%")
    result = await DiskProber().run(under, CONTEXT, 2.0)
    assert result.status is Status.OK
    assert result.message.endswith("% inodes used")


def test_figures_match_df(tmp_path: Path) -> None:
    # df rounds Use% up; the disk is shared, so allow it to move by a point meanwhile.
    before = usage(str(tmp_path))
    out = subprocess.run(
        ["df", "--output=pcent,ipcent,avail", "-B1", str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[1]
    pcent, ipcent, avail = out.split()
    after = usage(str(tmp_path))
    assert (
        math.ceil(before.used_percent) - 1
        <= int(pcent.rstrip("%"))
        <= math.ceil(after.used_percent) + 1
    )
    if before.inodes_percent is not None:
        assert abs(math.ceil(before.inodes_percent) - int(ipcent.rstrip("%"))) <= 1
    assert abs(int(avail) - before.avail) < 1024**3


async def test_a_path_gone_at_run_time_is_unknown(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    spec = DiskProbe(path=str(gone))
    gone.rmdir()
    result = await DiskProber().run(spec, CONTEXT, 2.0)
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot statvfs {gone}: No such file or directory"


async def test_a_hung_statvfs_holds_one_thread_and_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This host has no dead NFS mount to offer, so the hang is simulated: statvfs of
    # the path blocks until released, as it would on a file system that never answers.
    release = threading.Event()
    calls: list[str] = []
    real = os.statvfs

    def hanging(path: str) -> os.statvfs_result:
        calls.append(path)
        release.wait(10)
        return real(path)

    monkeypatch.setattr(disk.os, "statvfs", hanging)
    prober = DiskProber()
    spec = DiskProbe(path=str(tmp_path), max_used=100)
    try:
        first = await prober.run(spec, CONTEXT, 0.2)
        second = await prober.run(spec, CONTEXT, 0.2)
    finally:
        release.set()
    assert first.status is Status.CRITICAL
    assert first.message.startswith(f"statvfs of {tmp_path} has not returned for ")
    assert second.status is Status.CRITICAL
    assert calls == [str(tmp_path)], "the second run must wait on the same call"
    await asyncio.sleep(0.05)  # the released call completes; the next run starts a new one
    third = await prober.run(spec, CONTEXT, 2.0)
    assert third.status is Status.OK
    assert len(calls) == 2
