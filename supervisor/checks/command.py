"""Command probe: a program run without a shell, judged by its exit code.

Exit codes follow the monitoring-plugin convention: 0 ok, 1 warning, 2 critical, 3 and
anything else unknown. The message is the first line of stdout (without Nagios
performance data after '|'), else of stderr.

The program runs as `supervisor.procs.run_program` runs every program of the policy:
its own session and process group, /dev/null as stdin, and here an environment of
`MINIMAL_PATH` plus the policy's `env`. On timeout, or when the probe is cancelled, the
whole group gets SIGKILL; once the program exits, what it left running in its group is
killed too. Output is read to the end, but only the first `OUTPUT_MAX` bytes of stdout
and of stderr are kept.

Before each run the program is checked again as at load (`supervisor.config.trust`): if
it, or a directory on the way to it, has since become writable by someone other than
root, it is not run and the result is unknown, with the reason.
"""

from __future__ import annotations

import asyncio
import os
import time

from supervisor.checks.result import CheckResult, ProbeContext, Status, finish, os_reason
from supervisor.config.probes import CommandProbe
from supervisor.config.trust import path_refusal
from supervisor.config.values import format_duration
from supervisor.procs import DRAIN_GRACE, MINIMAL_PATH, run_program, signal_name

__all__ = ["DRAIN_GRACE", "KILL_WAIT", "MINIMAL_PATH", "OUTPUT_MAX", "exit_status", "run"]

OUTPUT_MAX = 8 * 1024
"""Bytes kept of stdout and of stderr each; the rest is read and thrown away."""
KILL_WAIT = 0.2
"""After SIGKILL on timeout, how long to wait for the program to exit before reporting
anyway (less than the Prober's backstop grace, so this probe's message wins)."""
_EXIT_STATUS = {0: Status.OK, 1: Status.WARNING, 2: Status.CRITICAL}


def exit_status(code: int) -> Status:
    """The monitoring-plugin meaning of an exit code: 0 ok, 1 warning, 2 critical, else unknown."""
    return _EXIT_STATUS.get(code, Status.UNKNOWN)


def _first_line(output: bytes) -> str:
    line = output.decode(errors="replace").partition("\n")[0]
    return line.partition("|")[0].strip()


def _refusal(program: str) -> str | None:
    """Why root may not run `program` now; None for a missing one (told when it fails)."""
    refusal = path_refusal(program, name="it")
    return refusal if refusal and os.path.exists(program) else None


async def _run(
    spec: CommandProbe,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    started = time.monotonic()
    program = spec.argv[0]
    refusal = await asyncio.to_thread(_refusal, program)
    if refusal:
        return finish(Status.UNKNOWN, f"refused to run {program}: {refusal}", started)
    try:
        done = await run_program(
            spec.argv,
            timeout,
            env={"PATH": MINIMAL_PATH, **spec.env},
            keep=OUTPUT_MAX,
            kill_wait=KILL_WAIT,
        )
    except OSError as exc:
        return finish(Status.UNKNOWN, f"cannot run {program}: {os_reason(exc)}", started)
    if done.timed_out:
        outcome = "killed" if done.returncode is not None else "killed, but it has not exited yet"
        return finish(
            Status.CRITICAL,
            f"{program} timed out after {format_duration(timeout)}; {outcome}",
            started,
        )
    code = done.returncode
    assert code is not None  # it has exited
    if code < 0:
        return finish(Status.UNKNOWN, f"{program} was killed by {signal_name(code)}", started)
    message = _first_line(done.stdout) or _first_line(done.stderr)
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
        # Validated at load; not again here, where a ValidationError would escape.
        spec = CommandProbe.model_construct(argv=argv, env={})
        return await run(spec, ProbeContext(unit=unit), timeout)
