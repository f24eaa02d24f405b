"""The one deadline facility of the shell: timers keyed by (machine, unit).

The reducer says when each of its deadlines falls (`SetTimer`); this arms one
event-loop timer per key, replacing any earlier one, and feeds `TimerFired` back
when it goes off. Deadlines are wall-clock times: they are stored, and survive a
restart of the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from supervisor.core.actions import TimerKey


class Timers:
    def __init__(self, clock: Callable[[], float], fire: Callable[[TimerKey], object]) -> None:
        self._clock = clock
        self._fire = fire
        self._handles: dict[TimerKey, asyncio.TimerHandle] = {}

    def set(self, key: TimerKey, at: float | None) -> None:
        """Arm `key` to fire at `at` (now, if that is past); None only cancels it."""
        if (old := self._handles.pop(key, None)) is not None:
            old.cancel()
        if at is None:
            return
        delay = max(0.0, at - self._clock())
        self._handles[key] = asyncio.get_running_loop().call_later(delay, self._fired, key)

    def _fired(self, key: TimerKey) -> None:
        self._handles.pop(key, None)
        self._fire(key)

    def cancel_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()
