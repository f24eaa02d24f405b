"""Probes: one module per kind, each reporting a `CheckResult`; no decisions here.

`Prober.run(check, context)` is the one entry point the daemon and `host-supervisor
check` use. It dispatches on the check's kind, keeps what must persist between runs
(HTTP connections, CPU readings, pending statvfs calls), limits command probes to
`max_concurrent_commands` at once, enforces `check.timeout` with a backstop, measures
the duration, and never raises: a probe that raises is UNKNOWN with the reason. Every
message is masked (`supervisor.secrets.mask`): a check's URL may hold a password.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from supervisor.checks import command, memory, tcp, unit
from supervisor.checks.disk import DiskProber
from supervisor.checks.process import ProcessProber
from supervisor.checks.result import MESSAGE_MAX, CheckResult, Pending, ProbeContext, Status
from supervisor.config.check import Check
from supervisor.config.probes import (
    CommandProbe,
    DiskProbe,
    HttpProbe,
    MemoryProbe,
    ProcessProbe,
    TcpProbe,
    UnitProbe,
)
from supervisor.config.values import format_duration
from supervisor.secrets import mask
from supervisor.text import one_line

if TYPE_CHECKING:
    from supervisor.checks.http import HttpProber

__all__ = ["BACKSTOP_GRACE", "CheckResult", "Pending", "ProbeContext", "Prober", "Status"]

BACKSTOP_GRACE = 0.25
"""Seconds past `check.timeout` before the backstop cancels a probe. Each probe honours
the timeout itself with a precise message ("no answer within 2s"); the backstop only
catches one that does not, and reports it as "timed out after 2s"."""


SELF_TIMED = frozenset({"http", "tcp"})
"""Probes whose one timer already bounds the whole run (the HTTP probe's total timeout, the
TCP probe's own): a second backstop timer would double the timer work of the common checks."""


class Prober:
    """Runs any check once; owns the state probes keep between runs. `close()` when done."""

    def __init__(self, max_concurrent_commands: int = 4) -> None:
        if max_concurrent_commands < 1:
            raise ValueError("max_concurrent_commands must be at least 1")
        self._http: HttpProber | None = None  # httptools: imported at the first HTTP check
        self._process = ProcessProber()
        self._disk = DiskProber()
        self._commands = asyncio.Semaphore(max_concurrent_commands)

    async def close(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.close()

    async def _probe(self, check: Check, context: ProbeContext) -> CheckResult:
        probe, timeout = check.probe, check.timeout
        if isinstance(probe, HttpProbe):
            if self._http is None:
                from supervisor.checks.http import HttpProber  # httptools: only when used

                self._http = HttpProber()
            return await self._http.run(probe, context, timeout)
        if isinstance(probe, TcpProbe):
            return await tcp.run(probe, context, timeout)
        if isinstance(probe, ProcessProbe):
            return await self._process.run(probe, context, timeout)
        if isinstance(probe, DiskProbe):
            return await self._disk.run(probe, context, timeout)
        if isinstance(probe, MemoryProbe):
            return await memory.run(probe, context, timeout)
        if isinstance(probe, CommandProbe):
            return await command.run(probe, context, timeout)
        if isinstance(probe, UnitProbe):
            return await unit.run(probe, context, timeout)
        raise TypeError(f"no probe for {check.kind!r} checks")

    async def run(self, check: Check, context: ProbeContext) -> CheckResult:
        """Run `check` once against the unit described by `context`; never raises.

        A command check first waits for one of the `max_concurrent_commands` slots; the
        wait is neither timed nor part of the duration, so a queue of commands never
        makes a healthy one fail.
        """
        if check.kind == "command":
            async with self._commands:
                return await self._run(check, context)
        return await self._run(check, context)

    def start(
        self, check: Check, context: ProbeContext, done: Callable[[CheckResult], None]
    ) -> Pending | None:
        """Start `check` without a task or a timer if its kind allows (a port check to an
        address literal, an HTTP check over a connection kept from its last run); None if
        it does not: `run` it. `done` gets the result, masked and timed as `run` returns
        it, exactly once unless the probe is cancelled; the caller calls `expire()` once
        `check.timeout` has passed. Never raises."""
        probe = check.probe
        if isinstance(probe, HttpProbe):
            if self._http is None:  # no run yet, so no connection kept
                return None
        elif not isinstance(probe, TcpProbe):
            return None
        started = time.monotonic()

        def finished(result: CheckResult) -> None:
            done(
                replace(
                    result,
                    message=one_line(mask(result.message), MESSAGE_MAX),
                    duration=time.monotonic() - started,
                )
            )

        try:
            if isinstance(probe, HttpProbe):
                assert self._http is not None
                return self._http.start(probe, check.timeout, finished)
            return tcp.Connect.start(probe, check.timeout, finished)
        except Exception as exc:
            finished(_unknown(exc))
            return _ENDED

    async def _run(self, check: Check, context: ProbeContext) -> CheckResult:
        started = time.monotonic()
        try:
            if check.kind in SELF_TIMED:
                result = await self._probe(check, context)
            else:
                async with asyncio.timeout(check.timeout + BACKSTOP_GRACE) as backstop:
                    result = await self._probe(check, context)
        except TimeoutError as exc:
            if check.kind not in SELF_TIMED and backstop.expired():
                text = f"timed out after {format_duration(check.timeout)}"
                result = CheckResult(Status.CRITICAL, text, 0.0)
            else:
                result = _unknown(exc)
        except Exception as exc:
            result = _unknown(exc)
        return replace(
            result,
            # Masked before it is cut, so no half of a password survives the cut.
            message=one_line(mask(result.message), MESSAGE_MAX),
            duration=time.monotonic() - started,
        )


class _Ended:
    """A callback probe that ended as it started (it raised): nothing to expire."""

    def expire(self) -> None:
        return None

    def cancel(self) -> None:
        return None


_ENDED = _Ended()


def _unknown(exc: BaseException) -> CheckResult:
    text = str(exc)
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return CheckResult(Status.UNKNOWN, f"probe failed: {reason}", 0.0)
