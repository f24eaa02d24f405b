"""Command probe: a program run without a shell, judged by its exit code.

Exit codes follow the monitoring-plugin convention: 0 ok, 1 warning, 2 critical, 3 and
anything else unknown. The message is the first line of stdout (without Nagios
performance data after '|'), else of stderr.

The program gets its own session and process group, /dev/null as stdin and an
environment of `MINIMAL_PATH` plus the policy's `env`. On timeout, or when the probe is
cancelled, the whole group gets SIGKILL, so a program that ignores SIGTERM, and
whatever it started, dies. Once the program exits, what it left running in its group
is killed too. Output is read to the end, so a chatty program never blocks on a full
pipe, but only the first `OUTPUT_MAX` bytes are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

from supervisor.checks.result import CheckResult, ProbeContext, Status, finish, os_reason
from supervisor.config.probes import CommandProbe
from supervisor.config.values import format_duration

__all__ = ["DRAIN_GRACE", "KILL_WAIT", "MINIMAL_PATH", "OUTPUT_MAX", "exit_status", "run"]

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OUTPUT_MAX = 8 * 1024
"""Bytes kept of stdout and of stderr each; the rest is read and thrown away."""
DRAIN_GRACE = 0.5
"""After the program exits and its group is killed, how long its pipes may take to reach
end of file (at most till the timeout, plus 0.1 s); it takes that long only when a process
escaped the group (setsid) with a pipe open: its output is then cut off."""
KILL_WAIT = 0.2
"""After SIGKILL on timeout, how long to wait for the program to exit before reporting
anyway (less than the Prober's backstop grace, so this probe's message wins)."""
_EXIT_STATUS = {0: Status.OK, 1: Status.WARNING, 2: Status.CRITICAL}


def exit_status(code: int) -> Status:
    """The monitoring-plugin meaning of an exit code: 0 ok, 1 warning, 2 critical, else unknown."""
    return _EXIT_STATUS.get(code, Status.UNKNOWN)


class _Collector(asyncio.SubprocessProtocol):
    """Keeps the first OUTPUT_MAX bytes of stdout and stderr, throws the rest away as it
    arrives (so the pipes never fill), and tells when the program exits and the pipes close.

    Not `asyncio.create_subprocess_exec`: in Python 3.11 its `wait()` returns only once
    every pipe is closed, so a background process holding stdout would hide the exit.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.output = {1: bytearray(), 2: bytearray()}
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._open = {1, 2}

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        kept = self.output[fd]
        if len(kept) < OUTPUT_MAX:
            kept += data[: OUTPUT_MAX - len(kept)]

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self._open.discard(fd)
        if not self._open and not self.closed.done():
            self.closed.set_result(None)

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _first_line(output: bytes) -> str:
    line = output.decode(errors="replace").partition("\n")[0]
    return line.partition("|")[0].strip()


async def _run(
    spec: CommandProbe,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    started = time.monotonic()
    program = spec.argv[0]
    loop = asyncio.get_running_loop()
    try:
        transport, collector = await loop.subprocess_exec(
            lambda: _Collector(loop),
            *spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": MINIMAL_PATH, **spec.env},
            start_new_session=True,  # its own process group, killed as a whole
        )
    except OSError as exc:
        return finish(Status.UNKNOWN, f"cannot run {program}: {os_reason(exc)}", started)
    pgid = transport.get_pid()
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(collector.exited)
        except TimeoutError:
            timed_out = True
            _kill_group(pgid)
            # SIGKILL cannot be ignored; only a process stuck in the kernel outlives it.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT):
                    await asyncio.shield(collector.exited)
        else:
            # Whatever the program left running in its group goes too; then read what
            # is still in the pipes, within the timeout (plus a little).
            _kill_group(pgid)
            left = started + timeout - time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(DRAIN_GRACE, max(0.0, left) + 0.1)):
                    await asyncio.shield(collector.closed)
    except BaseException:
        # Cancelled (the caller's backstop, a shutdown): kill now, let the loop reap it.
        _kill_group(pgid)
        raise
    finally:
        transport.close()  # closes pipes a process that escaped the group still holds
    if timed_out:
        outcome = "killed" if collector.exited.done() else "killed, but it has not exited yet"
        return finish(
            Status.CRITICAL,
            f"{program} timed out after {format_duration(timeout)}; {outcome}",
            started,
        )
    code = transport.get_returncode()
    assert code is not None  # it has exited
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:  # a real-time signal has no name
            name = f"signal {-code}"
        return finish(Status.UNKNOWN, f"{program} was killed by {name}", started)
    message = _first_line(bytes(collector.output[1])) or _first_line(bytes(collector.output[2]))
    if not message:
        message = f"{program} exited with {code}"
    elif code not in (0, 1, 2, 3):
        message = f"{message} (exit {code})"
    return finish(exit_status(code), message, started)


async def run(
    spec: CommandProbe,
    context: ProbeContext,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
    limit: asyncio.Semaphore | None = None,
) -> CheckResult:
    """Run the command once; with `limit`, wait for a free slot first (not timed)."""
    del context  # a command probe gets nothing from systemd; the policy's env is its input
    if limit is None:
        return await _run(spec, timeout)
    async with limit:
        return await _run(spec, timeout)


class CommandRunner:
    """Runs a policy's program (such as `can_recover`) like a command check, once."""

    async def run(self, argv: tuple[str, ...], unit: str, timeout: float) -> CheckResult:  # noqa: ASYNC109
        return await run(CommandProbe(argv=argv), ProbeContext(unit=unit), timeout)
