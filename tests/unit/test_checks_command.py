"""Command probe with real programs: small sh scripts written to tmp_path."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from pathlib import Path

import psutil
import pytest

from supervisor.checks import Prober, command
from supervisor.checks.command import DRAIN_GRACE, MINIMAL_PATH, OUTPUT_MAX
from supervisor.checks.result import MESSAGE_MAX, ProbeContext, Status
from supervisor.config.check import Check
from supervisor.config.probes import CommandProbe

CONTEXT = ProbeContext(unit="app.service")


def _script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


async def _gone(pid: int, within: float = 3.0) -> bool:
    """True once `pid` no longer runs. A zombie counts as gone: it has exited and only
    waits for its parent (PID 1 for an orphan) to collect its status."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, Status.OK),
        (1, Status.WARNING),
        (2, Status.CRITICAL),
        (3, Status.UNKNOWN),
        (7, Status.UNKNOWN),
    ],
)
async def test_exit_codes(tmp_path: Path, code: int, status: Status) -> None:
    program = _script(
        tmp_path, "plugin", f"echo 'DISK OK - 42% used | used=42%'\necho more\nexit {code}\n"
    )
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 5.0)
    assert result.status is status
    suffix = "" if code <= 3 else f" (exit {code})"
    assert result.message == f"DISK OK - 42% used{suffix}"  # perfdata after '|' dropped


async def test_arguments_and_environment(tmp_path: Path) -> None:
    program = _script(tmp_path, "env", 'echo "$1 $2 PATH=$PATH FOO=$FOO HOME=${HOME:-unset}"\n')
    spec = CommandProbe(argv=[program, "a b", "c"], env={"FOO": "bar"})
    result = await command.run(spec, CONTEXT, 5.0)
    assert result.status is Status.OK
    assert result.message == f"a b c PATH={MINIMAL_PATH} FOO=bar HOME=unset"


async def test_stdin_is_dev_null(tmp_path: Path) -> None:
    program = _script(tmp_path, "stdin", "cat; echo done\n")  # would hang on a terminal
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 5.0)
    assert result.status is Status.OK
    assert result.message == "done"


async def test_message_falls_back_to_stderr_then_the_code(tmp_path: Path) -> None:
    noisy = _script(tmp_path, "noisy", "echo 'cannot reach db' >&2\nexit 2\n")
    silent = _script(tmp_path, "silent", "exit 1\n")
    result = await command.run(CommandProbe(argv=[noisy]), CONTEXT, 5.0)
    assert (result.status, result.message) == (Status.CRITICAL, "cannot reach db")
    result = await command.run(CommandProbe(argv=[silent]), CONTEXT, 5.0)
    assert (result.status, result.message) == (Status.WARNING, f"{silent} exited with 1")


async def test_killed_by_a_signal_is_unknown(tmp_path: Path) -> None:
    program = _script(tmp_path, "crash", "kill -SEGV $$\n")
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 5.0)
    assert result.status is Status.UNKNOWN
    assert result.message == f"{program} was killed by SIGSEGV"


async def test_a_program_ignoring_sigterm_is_killed_with_its_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    program = _script(
        tmp_path,
        "stubborn",
        f"trap '' TERM\nsleep 60 &\necho $$ $! > {pids}\nwait\n",
    )
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 0.5)
    assert result.status is Status.CRITICAL
    assert result.message == f"{program} timed out after 500ms; killed"
    assert result.duration < 0.5 + 0.5
    shell, child = map(int, pids.read_text().split())
    assert await _gone(shell), "the program survived"
    assert await _gone(child), "its child survived"
    assert _live_members(shell) == [], "something is left in its process group"


def _live_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that have not exited (zombies excepted)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


async def test_leftovers_of_a_finished_program_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # The background sleep keeps stdout open: without the group kill the probe would
    # wait for it until the timeout.
    program = _script(tmp_path, "leaky", f"sleep 60 &\necho $! > {pid_file}\necho fine\n")
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 10.0)
    assert (result.status, result.message) == (Status.OK, "fine")
    assert result.duration < 5.0
    assert await _gone(int(pid_file.read_text()))


async def test_a_flood_of_output_does_not_hang(tmp_path: Path) -> None:
    program = _script(tmp_path, "flood", "yes flooding | head -c 100000000\nexit 1\n")
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 20.0)
    assert (result.status, result.message) == (Status.WARNING, "flooding")


async def test_one_endless_line_is_bounded(tmp_path: Path) -> None:
    program = _script(tmp_path, "line", "head -c 100000000 /dev/zero | tr '\\0' x\n")
    result = await command.run(CommandProbe(argv=[program]), CONTEXT, 20.0)
    assert result.status is Status.OK
    assert len(result.message) == MESSAGE_MAX
    assert result.message.startswith("x" * 100) and result.message.endswith("...")
    assert MESSAGE_MAX < OUTPUT_MAX


async def test_a_program_gone_at_run_time_is_unknown(tmp_path: Path) -> None:
    program = _script(tmp_path, "vanishing", "exit 0\n")
    spec = CommandProbe(argv=[program])
    os.unlink(program)
    result = await command.run(spec, CONTEXT, 5.0)
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot run {program}: No such file or directory"


async def test_a_program_others_can_write_since_load_is_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    program = _script(tmp_path, "tampered", f"touch {marker}\n")
    spec = CommandProbe(argv=[program])
    os.chmod(program, 0o777)
    result = await command.run(spec, CONTEXT, 5.0)
    assert result.status is Status.UNKNOWN
    assert result.message.startswith(f"refused to run {program}: it is writable by group and ")
    assert not marker.exists()


async def test_the_runner_of_can_recover_never_raises(tmp_path: Path) -> None:
    program = _script(tmp_path, "gone", "exit 0\n")
    os.unlink(program)
    result = await command.CommandRunner().run((program,), "app.service", 5.0)
    assert result.status is Status.UNKNOWN


def _max_overlap(log: Path) -> int:
    running = most = 0
    for line in log.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        most = max(most, running)
    return most


async def test_a_semaphore_limits_concurrency(tmp_path: Path) -> None:
    log = tmp_path / "log"
    program = _script(
        tmp_path, "slow", 'echo "start $1" >> "$2"\nsleep 0.3\necho "end $1" >> "$2"\n'
    )
    limit = asyncio.Semaphore(2)
    specs = [CommandProbe(argv=[program, str(n), str(log)]) for n in range(4)]
    results = await asyncio.gather(*(command.run(s, CONTEXT, 5.0, limit) for s in specs))
    assert all(r.status is Status.OK for r in results)
    assert len(log.read_text().splitlines()) == 8
    assert _max_overlap(log) == 2


async def test_the_prober_limits_command_checks(tmp_path: Path) -> None:
    log = tmp_path / "log"
    program = _script(
        tmp_path, "slow", 'echo "start $1" >> "$2"\nsleep 0.3\necho "end $1" >> "$2"\n'
    )
    checks = [
        Check(name=f"c{n}", command={"argv": [program, str(n), str(log)]}, timeout="1s")
        for n in range(5)
    ]
    prober = Prober(max_concurrent_commands=2)
    try:
        results = await asyncio.gather(*(prober.run(check, CONTEXT) for check in checks))
    finally:
        await prober.close()
    # Queued checks do not time out: the wait for a slot is not part of their timeout.
    assert [r.status for r in results] == [Status.OK] * 5
    assert _max_overlap(log) == 2


async def test_a_process_escaping_the_group_does_not_hold_the_probe(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    # setsid leaves the group, so the group kill misses it, and it keeps stdout open.
    program = _script(tmp_path, "escape", f"setsid sleep 60 &\necho $! > {pid_file}\necho ok\n")
    try:
        result = await command.run(CommandProbe(argv=[program]), CONTEXT, 10.0)
    finally:
        await asyncio.sleep(0.05)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert (result.status, result.message) == (Status.OK, "ok")
    assert result.duration < DRAIN_GRACE + 1.0
