"""Running a program of the policy: a command check, a `can_recover` program, a restore's
validator. One implementation for all of them.

The program runs without a shell in its own session and process group, with /dev/null
as stdin and the environment it is given. On timeout, or when the caller is cancelled,
the whole group gets SIGKILL, so a program that ignores SIGTERM, and whatever it
started, dies. Once the program exits, what it left running in its group is killed too.
Output is read to the end, so a chatty program never blocks on a full pipe, but only
`keep` bytes of each stream are kept (its head, or with `tail=True` its end).

It runs on an event loop; code in a thread (the restore) calls it with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["DRAIN_GRACE", "MINIMAL_PATH", "ProgramResult", "run_program", "signal_name"]

MINIMAL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""The PATH a program gets (plus what the policy adds to its environment)."""
DRAIN_GRACE = 0.5
"""After the program exits and its group is killed, how long its pipes may take to reach
end of file (at most till the timeout, plus 0.1 s); it takes that long only when a process
escaped the group (setsid) with a pipe open: its output is then cut off."""


@dataclass(frozen=True)
class ProgramResult:
    returncode: int | None
    """The exit code, negative for a signal; None only after a timeout, when the program
    had not exited yet within `kill_wait` of the SIGKILL."""
    timed_out: bool
    stdout: bytes
    """What was kept of stdout (with `merge_stderr`, of both)."""
    stderr: bytes
    """What was kept of stderr (empty with `merge_stderr`)."""
    stdout_size: int
    """How many bytes the program wrote to stdout in all, kept or not."""
    stderr_size: int


def signal_name(returncode: int) -> str:
    """The name of the signal that killed a program, from its negative return code."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:  # a real-time signal has no name
        return f"signal {-returncode}"


class _Collector(asyncio.SubprocessProtocol):
    """Keeps `keep` bytes of stdout and of stderr (the first, or the last with `tail`),
    throws the rest away as it arrives (so the pipes never fill), and tells when the
    program exits and the pipes close.

    Not `asyncio.create_subprocess_exec`: in Python 3.11 its `wait()` returns only once
    every pipe is closed, so a background process holding stdout would hide the exit.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, fds: Sequence[int], keep: int, tail: bool
    ) -> None:
        self.output = {fd: bytearray() for fd in fds}
        self.size = dict.fromkeys(fds, 0)
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._open = set(fds)
        self._keep = keep
        self._tail = tail

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.size[fd] += len(data)
        kept = self.output[fd]
        if self._tail:
            kept += data[-self._keep :]
            del kept[: -self._keep]
        elif len(kept) < self._keep:
            kept += data[: self._keep - len(kept)]

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


async def run_program(
    argv: Sequence[str],
    timeout: float,  # noqa: ASYNC109 - the program spends it itself
    *,
    env: Mapping[str, str],
    keep: int,
    kill_wait: float,
    cwd: str | None = None,
    merge_stderr: bool = False,
    tail: bool = False,
) -> ProgramResult:
    """Run `argv` to its end or for `timeout` seconds, as the module says; after a SIGKILL
    on timeout, wait at most `kill_wait` seconds for it to exit. Raises OSError when the
    program cannot start (FileNotFoundError, PermissionError, ...)."""
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    fds = (1,) if merge_stderr else (1, 2)
    transport, collector = await loop.subprocess_exec(
        lambda: _Collector(loop, fds, keep, tail),
        *argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,  # its own process group, killed as a whole
    )
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
                async with asyncio.timeout(kill_wait):
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
    return ProgramResult(
        returncode=transport.get_returncode() if collector.exited.done() else None,
        timed_out=timed_out,
        stdout=bytes(collector.output[1]),
        stderr=bytes(collector.output.get(2, b"")),
        stdout_size=collector.size[1],
        stderr_size=collector.size.get(2, 0),
    )
