"""The shell's reading of the dependency graph: one read per unit, fed as one event; a
read asked for while one runs is done once more after it; a unit that cannot be read
keeps what was known of it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from supervisor.core.actions import DependenciesKnown, Event
from supervisor.daemon.dependencies import DependencyReader
from supervisor.errors import BusError
from supervisor.testing.fakes import FakeSystemd, FakeUnit, Timeline


class CountingSystemd(FakeSystemd):
    def __init__(self, units: dict[str, FakeUnit]) -> None:
        super().__init__(Timeline(lambda: 0.0, 0.0), units)
        self.reads: list[str] = []
        self.broken: set[str] = set()

    async def dependencies(self, unit: str) -> tuple[str, ...]:
        self.reads.append(unit)
        if unit in self.broken:
            raise BusError(f"{unit}: GetAll(Unit): timed out (fake)")
        return await super().dependencies(unit)


async def test_reads_coalesce_and_a_failed_read_keeps_what_was_known() -> None:
    units = {
        "db.service": FakeUnit("db.service"),
        "app.service": FakeUnit("app.service", depends_on=("db.service", "network.target")),
    }
    systemd = CountingSystemd(units)
    systemd.watched.update(units)
    fed: list[Event] = []
    known: dict[str, frozenset[str]] = {}
    tasks: list[asyncio.Task[Any]] = []

    def spawn(coro: Coroutine[Any, Any, Any]) -> None:
        tasks.append(asyncio.ensure_future(coro))

    def feed(event: Event) -> None:
        fed.append(event)
        if isinstance(event, DependenciesKnown):
            known.clear()
            known.update(event.graph)

    reader = DependencyReader(systemd, lambda: list(units), lambda: dict(known), feed, spawn)
    reader.request()
    reader.request()  # before the read began: covered by it
    for _ in range(10):  # until the read is under way
        if systemd.reads:
            break
        await asyncio.sleep(0)
    assert systemd.reads and not fed
    reader.request()  # while it runs: one more read after it, not two
    reader.request()
    while tasks:
        await tasks.pop(0)
    assert len(fed) == 2
    assert sorted(systemd.reads) == ["app.service"] * 2 + ["db.service"] * 2
    assert known == {
        "app.service": frozenset({"db.service", "network.target"}),
        "db.service": frozenset(),
    }

    systemd.broken.add("app.service")
    units["db.service"].depends_on = ("app.service",)
    reader.request()
    while tasks:
        await tasks.pop(0)
    assert known["app.service"] == {"db.service", "network.target"}, "kept from before"
    assert known["db.service"] == {"app.service"}
