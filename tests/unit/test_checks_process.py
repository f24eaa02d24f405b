"""Process probe against the test's own child processes."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.checks.process import ProcessProber
from supervisor.checks.result import ProbeContext, Status
from supervisor.config.probes import ProcessProbe
from tests.helpers import spawn, stop

SLEEP = shutil.which("sleep") or "/bin/sleep"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = spawn([SLEEP, "30"])
    yield child
    stop(child)


async def test_main_pid_running(sleeper: subprocess.Popen[bytes]) -> None:
    context = ProbeContext(unit="s.service", main_pid=sleeper.pid)
    result = await ProcessProber().run(ProcessProbe(), context, 2.0)
    assert result.status is Status.OK
    assert result.message == f"main process {sleeper.pid} running, 1 threads"


async def test_no_main_pid_is_critical() -> None:
    for main_pid in (None, 0):
        context = ProbeContext(unit="s.service", main_pid=main_pid)
        result = await ProcessProber().run(ProcessProbe(), context, 2.0)
        assert result.status is Status.CRITICAL
        assert result.message == "s.service has no main process"


async def test_dead_pid_is_critical() -> None:
    child = spawn(["/bin/true"])
    child.wait()
    context = ProbeContext(unit="s.service", main_pid=child.pid)
    result = await ProcessProber().run(ProcessProbe(), context, 2.0)
    assert result.status is Status.CRITICAL
    assert result.message == f"main process {child.pid} of s.service is gone"


async def test_zombie_main_process_is_critical() -> None:
    child = spawn(["/bin/true"])
    try:
        for _ in range(100):  # until it has exited (a zombie: we have not reaped it)
            if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
                break
            await asyncio.sleep(0.01)
        context = ProbeContext(unit="s.service", main_pid=child.pid)
        result = await ProcessProber().run(ProcessProbe(), context, 2.0)
    finally:
        child.wait()
    assert result.status is Status.CRITICAL
    assert result.message == f"process {child.pid} is a zombie (it has exited)"


async def test_by_exact_name(tmp_path: Path) -> None:
    name = f"hsprobe{random.randrange(10**6):06d}"  # comm names are cut at 15 characters
    program = tmp_path / name
    shutil.copy(SLEEP, program)
    child = spawn([str(program), "30"])
    try:
        found = await ProcessProber().run(ProcessProbe(name=name), ProbeContext("x.service"), 2.0)
        missing = await ProcessProber().run(
            ProcessProbe(name=name[:-1]), ProbeContext("x.service"), 2.0
        )
    finally:
        stop(child)
    assert found.status is Status.OK
    assert found.message == f"process named {name!r} (pid {child.pid}) running, 1 threads"
    assert missing.status is Status.CRITICAL  # a prefix is not the name
    assert missing.message == f"no process named {name[:-1]!r}"


async def test_by_cmdline_regex() -> None:
    marker = f"30.{random.randrange(10**6):06d}"
    children = [spawn([SLEEP, marker]) for _ in range(2)]
    try:
        spec = ProcessProbe(cmdline=f"sleep {re.escape(marker)}$")
        found = await ProcessProber().run(spec, ProbeContext("x.service"), 2.0)
    finally:
        for child in children:
            stop(child)
    gone = await ProcessProber().run(spec, ProbeContext("x.service"), 2.0)
    assert found.status is Status.OK
    pids = sorted(child.pid for child in children)
    assert found.message.startswith("2 processes running (process whose cmdline matches ")
    assert found.message.endswith(": " + ", ".join(map(str, pids)))
    assert gone.status is Status.CRITICAL
    assert gone.message.startswith("no process whose cmdline matches")


async def test_max_threads() -> None:
    code = (
        "import threading, time\n"
        "for _ in range(5): threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
        "print('ready', flush=True); time.sleep(30)"
    )
    child = spawn([sys.executable, "-c", code], ready=True)
    try:
        context = ProbeContext(unit="t.service", main_pid=child.pid)
        over = await ProcessProber().run(ProcessProbe(max_threads=3), context, 2.0)
        under = await ProcessProber().run(ProcessProbe(max_threads=50), context, 2.0)
    finally:
        stop(child)
    assert over.status is Status.CRITICAL
    assert re.fullmatch(rf"{child.pid} \(python[\d.]*\) has 6 threads > 3", over.message)
    assert under.status is Status.OK
    assert "6 threads" in under.message


async def test_max_fds(sleeper: subprocess.Popen[bytes]) -> None:
    context = ProbeContext(unit="s.service", main_pid=sleeper.pid)
    over = await ProcessProber().run(ProcessProbe(max_fds=1), context, 2.0)
    under = await ProcessProber().run(ProcessProbe(max_fds=1000), context, 2.0)
    assert over.status is Status.CRITICAL
    # The count itself may move by one while the child finishes its exec (CI saw 4
    # then 3), so the message's shape and a sane count are what is asserted.
    found = re.fullmatch(rf"{sleeper.pid} \(sleep\) has (\d+) open fds > 1", over.message)
    assert found is not None, over.message
    assert 3 <= int(found.group(1)) <= 8  # stdin, stdout, stderr (+ inherited ones)
    assert under.status is Status.OK
    assert re.search(r"\b\d+ fds\b", under.message), under.message


async def test_max_cpu_of_a_busy_and_an_idle_process(sleeper: subprocess.Popen[bytes]) -> None:
    busy = spawn([sys.executable, "-c", "print('ready', flush=True)\nwhile True: pass"], True)
    cores = psutil.cpu_count() or 1
    # A busy loop uses one core: 100/cores % of the host. Fail well below that.
    limit = 100 / cores / 4
    prober = ProcessProber()
    try:
        hot = await prober.run(
            ProcessProbe(max_cpu=limit), ProbeContext("b.service", main_pid=busy.pid), 2.0
        )
        # The second run measures since the first: the busy process is still busy.
        again = await prober.run(
            ProcessProbe(max_cpu=limit), ProbeContext("b.service", main_pid=busy.pid), 2.0
        )
        idle = await prober.run(
            ProcessProbe(max_cpu=limit), ProbeContext("s.service", main_pid=sleeper.pid), 2.0
        )
    finally:
        stop(busy)
    assert hot.status is Status.CRITICAL, hot
    assert f"% CPU > {limit:g}%" in hot.message
    assert again.status is Status.CRITICAL, again
    assert idle.status is Status.OK, idle
    assert idle.message.endswith(", 0.0% CPU")
