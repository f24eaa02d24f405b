"""Probing tasks: each scheduled check of each unit on its own fixed-rate schedule.

A probe's result goes to the reducer as `ProbeDone`; nothing one check does delays
another. `unit:` checks are not probed here: they are judged on every signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import zlib
from collections.abc import Callable

from supervisor.checks.result import ProbeContext
from supervisor.config import Check, MemoryProbe
from supervisor.core.actions import Event, ProbeDone
from supervisor.core.host import scheduled_checks
from supervisor.core.state import HostState
from supervisor.daemon.metrics import Metrics
from supervisor.daemon.ports import Probes, UnitManager
from supervisor.errors import BusError

JITTER_MAX = 1.0  # each check's first run is spread over up to this many seconds


def jitter(unit: str, check: Check) -> float:
    """Where in its first interval a check first runs: spread, and the same every run."""
    spread = zlib.crc32(f"{unit}/{check.name}".encode()) / 2**32
    return spread * min(check.interval, JITTER_MAX)


class Probing:
    def __init__(
        self,
        state: Callable[[], HostState],
        feed: Callable[[Event], object],
        probes: Probes,
        manager: UnitManager,
        metrics: Metrics,
    ) -> None:
        self._state = state
        self._feed = feed
        self._probes = probes
        self._manager = manager
        self._metrics = metrics
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}

    def start(self, unit: str) -> None:
        state = self._state().units[unit]
        self._tasks[unit] = [
            asyncio.create_task(self._loop(unit, index, state.policy.checks[index]))
            for index in scheduled_checks(state)
        ]

    def stop(self, unit: str) -> None:
        for task in self._tasks.pop(unit, []):
            task.cancel()

    def stop_all(self) -> None:
        for unit in list(self._tasks):
            self.stop(unit)

    async def _loop(self, unit: str, index: int, check: Check) -> None:
        """Run one check on its own fixed-rate schedule; nothing it does delays another."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(jitter(unit, check))
        due = loop.time()
        while True:
            state = self._state().units.get(unit)
            if state is not None and state.running:
                late_by = loop.time() - due
                result = await self._probes.run(check, await self._context(state.context, check))
                self._metrics.ran(result.status.value, late_by, unit, check.name, result.duration)
                self._feed(ProbeDone(unit, index, result))
            due += check.interval
            now = loop.time()
            if due < now:  # the probe outlasted its interval: run again now, not in a burst
                due = now
            await asyncio.sleep(due - now)

    async def _context(self, context: ProbeContext, check: Check) -> ProbeContext:
        if isinstance(check.probe, MemoryProbe) and check.probe.max_rss is not None:
            # MemoryCurrent is not signalled: read it for each run of a memory check.
            with contextlib.suppress(BusError):
                memory = await self._manager.memory_current(context.unit)
                context = dataclasses.replace(context, memory_current=memory)
        return context
