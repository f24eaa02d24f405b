"""The one deadline facility of the shell: timers keyed by (machine, unit).

The reducer says when each of its deadlines falls (`SetTimer`); this arms an
event-loop timer for it, replacing any earlier one for the same key, and feeds
`TimerFired` back when it goes off. Deadlines are wall-clock times: they are stored,
and survive a restart of the daemon.

Keys due at the same time share one loop timer and fire in the order they were armed:
the loop's own order for timers due at the same instant is not promised (asyncio's
heap orders them by its shape, which every other timer changes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from supervisor.core.actions import TimerKey


class _Slot:
    """The keys due at one time, in the order armed, and their one loop timer."""

    __slots__ = ("at", "handle", "keys")

    def __init__(self, at: float) -> None:
        self.at = at
        self.handle: asyncio.TimerHandle | None = None
        self.keys: dict[TimerKey, None] = {}


class Timers:
    def __init__(self, clock: Callable[[], float], fire: Callable[[TimerKey], object]) -> None:
        self._clock = clock
        self._fire = fire
        self._slot_of: dict[TimerKey, _Slot] = {}
        self._due: dict[float, _Slot] = {}  # slots not yet fired, by deadline

    def set(self, key: TimerKey, at: float | None) -> None:
        """Arm `key` to fire at `at` (now, if that is past); None only cancels it."""
        self._cancel(key)
        if at is None:
            return
        slot = self._due.get(at)
        if slot is None:
            slot = self._due[at] = _Slot(at)
            delay = max(0.0, at - self._clock())
            slot.handle = asyncio.get_running_loop().call_later(delay, self._fired, at, slot)
        slot.keys[key] = None
        self._slot_of[key] = slot

    def _cancel(self, key: TimerKey) -> None:
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return
        del slot.keys[key]
        if not slot.keys and slot.handle is not None:  # not firing: drop its loop timer
            slot.handle.cancel()
            del self._due[slot.at]

    def _fired(self, at: float, slot: _Slot) -> None:
        if self._due.get(at) is slot:
            del self._due[at]  # a key armed for this time from now on gets a new timer
        slot.handle = None
        # One at a time: a key moved or cancelled by an earlier one's event is not fired.
        while slot.keys:
            key = next(iter(slot.keys))
            del slot.keys[key]
            del self._slot_of[key]
            self._fire(key)

    def cancel_all(self) -> None:
        for slot in self._due.values():
            if slot.handle is not None:
                slot.handle.cancel()
        self._due.clear()
        self._slot_of.clear()
