"""Memory probe against a real child process that holds about 50 MB."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from supervisor.checks import memory
from supervisor.checks.result import ProbeContext, Status
from supervisor.config.probes import MemoryProbe
from tests.helpers import spawn, stop

MiB = 1024**2
HOLD = "b = bytearray(50_000_000); print('ready', flush=True); import time; time.sleep(30)"


@pytest.fixture
def holder() -> Iterator[subprocess.Popen[bytes]]:
    child = spawn([sys.executable, "-c", HOLD], ready=True)
    yield child
    stop(child)


async def test_rss_of_the_main_process(holder: subprocess.Popen[bytes]) -> None:
    context = ProbeContext(unit="m.service", main_pid=holder.pid)
    over = await memory.run(MemoryProbe(max_rss="10MiB"), context, 2.0)
    under = await memory.run(MemoryProbe(max_rss="200MiB"), context, 2.0)
    assert over.status is Status.CRITICAL
    assert over.message.endswith(" MiB (RSS of 1 process) > 10.0 MiB")
    figure = float(over.message.split()[0])
    assert 45 < figure < 120, over.message
    assert under.status is Status.OK
    assert under.message.endswith(" MiB (RSS of 1 process)")


async def test_rss_of_the_whole_process_tree() -> None:
    # The main process is a shell; the memory is held by its child.
    shell = spawn(["/bin/sh", "-c", f'{sys.executable} -c "{HOLD}"; :'], ready=True)
    try:
        context = ProbeContext(unit="m.service", main_pid=shell.pid)
        result = await memory.run(MemoryProbe(max_rss="10MiB"), context, 2.0)
    finally:
        stop(shell)
    assert result.status is Status.CRITICAL
    assert "(RSS of 2 processes) > 10.0 MiB" in result.message


async def test_memory_current_wins_over_psutil(holder: subprocess.Popen[bytes]) -> None:
    big = ProbeContext(unit="m.service", main_pid=holder.pid, memory_current=300 * MiB)
    small = ProbeContext(unit="m.service", main_pid=holder.pid, memory_current=1 * MiB)
    over = await memory.run(MemoryProbe(max_rss="200MiB"), big, 2.0)
    under = await memory.run(MemoryProbe(max_rss="10MiB"), small, 2.0)
    assert over.status is Status.CRITICAL
    assert over.message == "300.0 MiB (cgroup) > 200.0 MiB"
    assert under.status is Status.OK  # 1 MiB from systemd, though the process holds 50
    assert under.message == "1.0 MiB (cgroup)"


async def test_accounting_off_falls_back_to_psutil(holder: subprocess.Popen[bytes]) -> None:
    context = ProbeContext(unit="m.service", main_pid=holder.pid, memory_current=2**64 - 1)
    assert context.memory_current is None
    result = await memory.run(MemoryProbe(max_rss="10MiB"), context, 2.0)
    assert result.status is Status.CRITICAL
    assert "(RSS of 1 process)" in result.message


async def test_nothing_to_measure_is_unknown() -> None:
    result = await memory.run(MemoryProbe(max_rss="10MiB"), ProbeContext("m.service"), 2.0)
    assert result.status is Status.UNKNOWN
    assert result.message == "m.service has no memory accounting and no main process to measure"


async def test_host_memory() -> None:
    context = ProbeContext(unit="m.service")
    over = await memory.run(MemoryProbe(host_max_used=0.0001), context, 2.0)
    under = await memory.run(MemoryProbe(host_max_used=100), context, 2.0)
    assert over.status is Status.CRITICAL
    assert over.message.startswith("host memory ") and over.message.endswith("% used > 0.0001%")
    assert under.status is Status.OK
    assert under.message.startswith("host memory ")


async def test_both_limits(holder: subprocess.Popen[bytes]) -> None:
    context = ProbeContext(unit="m.service", main_pid=holder.pid)
    both = await memory.run(MemoryProbe(max_rss="10MiB", host_max_used=0.0001), context, 2.0)
    assert both.status is Status.CRITICAL  # each limit that is over is named
    assert " MiB (RSS of 1 process) > 10.0 MiB; host memory " in both.message
    assert both.message.endswith("% used > 0.0001%")
    one = await memory.run(MemoryProbe(max_rss="10MiB", host_max_used=100), context, 2.0)
    assert one.status is Status.CRITICAL  # only what is over is named
    assert one.message.endswith(" MiB (RSS of 1 process) > 10.0 MiB")
    fine = await memory.run(MemoryProbe(max_rss="1GiB", host_max_used=100), context, 2.0)
    assert fine.status is Status.OK  # every figure is shown
    assert " MiB (RSS of 1 process); host memory " in fine.message
