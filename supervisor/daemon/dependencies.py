"""Reading what the supervised units depend on, for incident grouping.

One property read per unit (its Unit interface, from the bus client), all of them
concurrently, off the reducer: the result is fed as one `DependenciesKnown` event.
Read after the start, after a reload of the policies and after each daemon-reload
of systemd's; a read asked for while one runs is done once more after it. A unit
that cannot be read keeps what was known of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Coroutine
from typing import Any

import structlog

from supervisor.core import actions as act
from supervisor.daemon.ports import UnitManager
from supervisor.errors import BusError

log = structlog.get_logger("supervisor.daemon")

READ_CONCURRENCY = 16  # reads in flight at once: a host of 1,000 units stays cheap on the bus


class DependencyReader:
    def __init__(
        self,
        manager: UnitManager,
        units: Callable[[], Collection[str]],
        known: Callable[[], dict[str, frozenset[str]]],
        feed: Callable[[act.Event], object],
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._manager = manager
        self._units = units
        self._known = known
        self._feed = feed
        self._spawn = spawn
        self._running = False
        self._again = False

    def request(self) -> None:
        """Read the graph again soon; never waits."""
        if self._running:
            self._again = True
            return
        self._running = True
        self._spawn(self._run())

    async def _run(self) -> None:
        try:
            while True:
                self._again = False
                await self._read_once()
                if not self._again:
                    return
        finally:
            self._running = False

    async def _read_once(self) -> None:
        units = sorted(self._units())
        limit = asyncio.Semaphore(READ_CONCURRENCY)

        async def one(unit: str) -> tuple[str, ...] | None:
            async with limit:
                try:
                    return await self._manager.dependencies(unit)
                except BusError as exc:
                    log.warning("cannot read the unit's dependencies", unit=unit, error=str(exc))
                    return None

        read = await asyncio.gather(*(one(unit) for unit in units))
        known = self._known()
        graph = {
            unit: frozenset(deps) if deps is not None else known.get(unit, frozenset())
            for unit, deps in zip(units, read, strict=True)
        }
        self._feed(act.DependenciesKnown(graph))
