"""Helpers for tests of host-supervisor: a fake clock for the pure logic, the systemd lab."""

from __future__ import annotations

from supervisor.testing.lab import Lab, LabError, LabUnavailable, lab_unavailable_reason

__all__ = ["FakeClock", "Lab", "LabError", "LabUnavailable", "lab_unavailable_reason"]


class FakeClock:
    """A clock that moves only when told to, for decision code that takes ``now``.

    ``now()`` returns seconds as a float (monotonic-style, no epoch meaning unless the
    test gives one as ``start``); ``advance(seconds)`` moves it forward.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (never back) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back (advance({seconds!r}))")
        self._now += seconds
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now!r})"
