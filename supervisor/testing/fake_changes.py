"""A fake watcher of restore paths: the scenario says when they changed."""

from __future__ import annotations

from collections.abc import Callable

from supervisor.testing.fakes import Timeline


class FakeChanges:
    """Watches nothing; `change(unit)` reports a change of the unit's watched paths."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.watched: dict[str, tuple[str, ...]] = {}
        self._on_change: Callable[[str, tuple[str, ...]], None] = lambda unit, paths: None

    def listen(self, on_change: Callable[[str, tuple[str, ...]], None]) -> None:
        self._on_change = on_change

    async def watch(self, unit: str, paths: tuple[str, ...]) -> None:
        self.watched[unit] = paths

    def unwatch(self, unit: str) -> None:
        self.watched.pop(unit, None)

    async def quiet(self, unit: str) -> None:
        return None

    async def close(self) -> None:
        self.watched.clear()

    def change(self, unit: str) -> None:
        paths = self.watched.get(unit)
        if paths is None:
            self.timeline.add(f"world: {unit}'s files changed (not watched)")
            return
        self.timeline.add(f"world: {unit}'s files changed: {', '.join(paths)}")
        self._on_change(unit, paths)
