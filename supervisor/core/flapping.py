"""Flap detection: a weighted percent state change, as Nagios computes it. Pure, no clock.

The shell feeds each unit's health (`observe`) at every health change and every
check-in; a unit whose health changes too often is *flapping*, and its repairs pause
until it settles. One `FlapState` per unit holds the samples and the verdict.

The formula. Take the last `MAX_SAMPLES` (21, as Nagios keeps) samples within
`Flapping.window`, oldest first: `n` samples, so `n - 1` places where the health
could change. Place `i` (0 = oldest, `n - 2` = newest) weighs

    w(i) = 0.8 + 0.4 * i / (n - 2)          (1.0 when there is a single place)

so the weights rise linearly from 0.8 to 1.2 and average 1: recent changes count
more than old ones. Then

    percent = 100 * (sum of w(i) over the places where the health changed) / (n - 1)

With 21 samples this is Nagios' `weighted changes / 20 * 100`; with fewer, it divides
by the places there are. Nagios' flapping.c weighs from 0.75 to 1.25; the 0.8 to 1.2
here are LOW_WEIGHT and HIGH_WEIGHT.

Worked example, six samples: healthy, healthy, unhealthy, healthy, unhealthy,
unhealthy. Five places, weighing 0.8, 0.9, 1.0, 1.1, 1.2; the health changes at
places 1, 2 and 3: (0.9 + 1.0 + 1.1) / 5 = 0.6, so 60%.

Hysteresis: a unit starts flapping when the percent reaches `high` and stops when it
falls to `low` or below; in between it keeps its verdict. Few samples say little (two
samples that differ are 100%), so a unit starts flapping only with at least
`MIN_SAMPLES` samples in the window, and stops when it has fewer. Samples older than
the window are dropped at every `observe` and `expire`; time passing alone (`expire`)
can end flapping but never start it: that takes an observation.

Incremental. A result arrives every second or so per check, so `observe` does not
rebuild the samples and re-weigh all 21 places each time: a `FlapState` also carries
the number of places where the health changed and the sum of their place numbers,
from which the weighted sum follows (`LOW_WEIGHT * changes + (HIGH_WEIGHT -
LOW_WEIGHT) * place_sum / (places - 1)`). Appending a sample adds at most one place;
dropping the oldest removes place 0 and renumbers the rest (`place_sum -= changes`).
The result is rounded like `percent_change`, which stays the reference (tests compare
both on random histories).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from supervisor.config.main import Flapping

__all__ = [
    "HIGH_WEIGHT",
    "LOW_WEIGHT",
    "MAX_SAMPLES",
    "MIN_SAMPLES",
    "FlapChange",
    "FlapState",
    "Sample",
    "expire",
    "next_deadline",
    "observe",
    "percent_change",
]

MAX_SAMPLES = 21
"""Samples kept, as Nagios keeps 21 states (20 possible changes)."""

MIN_SAMPLES = 10
"""Samples needed within the window before a unit can be called flapping. A steady unit
that fails once and is repaired at once (healthy x8, unhealthy, healthy) scores 26%,
under the default high of 50%."""

LOW_WEIGHT = 0.8
HIGH_WEIGHT = 1.2

Sample = tuple[float, bool]
"""(time, healthy)."""

FlapChange = Literal["started", "stopped"]


@dataclass(frozen=True)
class FlapState:
    samples: tuple[Sample, ...] = ()  # oldest first, within the window, at most MAX_SAMPLES
    flapping: bool = False
    # Derived from `samples` (module docstring, "Incremental"); -1 = not yet counted.
    changes: int = field(default=-1, compare=False, repr=False)
    place_sum: int = field(default=-1, compare=False, repr=False)

    def counted(self) -> tuple[int, int]:
        """(places where the health changed, sum of their place numbers)."""
        if self.changes >= 0:
            return self.changes, self.place_sum
        return _count(self.samples)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict."""
        return {"samples": [[t, h] for t, h in self.samples], "flapping": self.flapping}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FlapState:
        """The inverse of `to_dict`; ValueError for a malformed value."""
        samples: list[Sample] = []
        raw = d.get("samples", [])
        if not isinstance(raw, list | tuple):
            raise ValueError(f"flap state: samples must be a list, got {raw!r}")
        for item in raw:
            if (
                not isinstance(item, list | tuple)
                or len(item) != 2
                or isinstance(item[0], bool)
                or not isinstance(item[0], int | float)
                or not isinstance(item[1], bool)
            ):
                raise ValueError(f"flap state: a sample must be [time, healthy], got {item!r}")
            samples.append((float(item[0]), item[1]))
        flapping = d.get("flapping", False)
        if not isinstance(flapping, bool):
            raise ValueError(f"flap state: flapping must be true or false, got {flapping!r}")
        return cls(samples=tuple(samples[-MAX_SAMPLES:]), flapping=flapping)


def percent_change(samples: Sequence[Sample]) -> float:
    """The weighted percent state change of the last MAX_SAMPLES samples (module docstring)."""
    states = [healthy for _, healthy in samples[-MAX_SAMPLES:]]
    places = len(states) - 1
    if places < 1:
        return 0.0
    changed = sum(_weight(i, places) for i in range(places) if states[i] != states[i + 1])
    # Rounded so that float noise cannot decide a threshold: all changes are exactly 100%.
    return round(100.0 * changed / places, 9)


def observe(
    cfg: Flapping, state: FlapState, healthy: bool, now: float
) -> tuple[FlapState, FlapChange | None]:
    """Record the unit's health at `now`; say "started" or "stopped" when the verdict turns."""
    samples = state.samples
    if samples and min(samples)[0] <= now - cfg.window:
        # Some samples left the window (rare: a unit sampled less often than the window
        # is long, or a clock step): recount from what is left.
        samples = _within(cfg, samples, now)
        changes, place_sum = _count(samples)
    else:
        changes, place_sum = state.counted()
    if samples and samples[-1][1] != healthy:
        changes += 1
        place_sum += len(samples) - 1  # the new place's number
    samples = (*samples, (now, healthy))
    if len(samples) > MAX_SAMPLES:
        if samples[0][1] != samples[1][1]:
            changes -= 1  # place 0 leaves, numbered 0: the sum keeps
        place_sum -= changes  # the others move down by one
        samples = samples[1:]
    return _judge(cfg, state.flapping, samples, changes, place_sum, may_start=True)


def expire(cfg: Flapping, state: FlapState, now: float) -> tuple[FlapState, FlapChange | None]:
    """Drop samples that left the window; may stop flapping ("stopped"), never start it."""
    samples = _within(cfg, state.samples, now)
    if samples == state.samples:
        return state, None
    return _judge(cfg, state.flapping, samples, *_count(samples), may_start=False)


def next_deadline(cfg: Flapping, state: FlapState) -> float | None:
    """When `expire` may next end flapping: as the oldest sample leaves the window."""
    if not state.flapping or not state.samples:
        return None
    return state.samples[0][0] + cfg.window


def _judge(
    cfg: Flapping,
    flapping: bool,
    samples: tuple[Sample, ...],
    changes: int,
    place_sum: int,
    *,
    may_start: bool,
) -> tuple[FlapState, FlapChange | None]:
    percent = _percent(len(samples) - 1, changes, place_sum)
    enough = len(samples) >= MIN_SAMPLES
    if not flapping:
        if may_start and enough and percent >= cfg.high:
            return FlapState(samples, True, changes, place_sum), "started"
        return FlapState(samples, False, changes, place_sum), None
    if not enough or percent <= cfg.low:
        return FlapState(samples, False, changes, place_sum), "stopped"
    return FlapState(samples, True, changes, place_sum), None


def _count(samples: Sequence[Sample]) -> tuple[int, int]:
    """(places where the health changed, sum of their numbers) of the last MAX_SAMPLES."""
    states = [healthy for _, healthy in samples[-MAX_SAMPLES:]]
    places = [i for i in range(len(states) - 1) if states[i] != states[i + 1]]
    return len(places), sum(places)


def _percent(places: int, changes: int, place_sum: int) -> float:
    """`percent_change` from the counts: the weights are linear in the place number."""
    if places < 1 or not changes:
        return 0.0
    if places == 1:
        changed = changes * (LOW_WEIGHT + HIGH_WEIGHT) / 2
    else:
        changed = LOW_WEIGHT * changes + (HIGH_WEIGHT - LOW_WEIGHT) * place_sum / (places - 1)
    return round(100.0 * changed / places, 9)


def _weight(place: int, places: int) -> float:
    if places == 1:
        return (LOW_WEIGHT + HIGH_WEIGHT) / 2
    return LOW_WEIGHT + (HIGH_WEIGHT - LOW_WEIGHT) * place / (places - 1)


def _within(cfg: Flapping, samples: tuple[Sample, ...], now: float) -> tuple[Sample, ...]:
    # A sample counts for `window` seconds after it was taken, not at `taken + window`.
    start = now - cfg.window
    return tuple(sample for sample in samples if sample[0] > start)
