"""Counters and histograms the daemon keeps as it runs: check runs and results (in all
and by unit and check), check durations, repairs by unit, rung and result, and how late
check runs started. The control socket serves a summary (`snapshot`); /metrics and the
node_exporter textfile serve all of it (`supervisor.daemon.exposition`).

Only what cannot be read from the host state at any moment is counted here: unit
health, phases, attempts, roles and the guard are read from the state when asked.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

BUCKET = 0.0001  # 0.1 ms
BUCKETS = 20_000  # up to 2 s; later runs go to the last bucket


@dataclass
class LatenessHistogram:
    """How late check runs started against their schedule; constant memory."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    total: int = 0
    worst: float = 0.0

    def add(self, late_by: float) -> None:
        index = min(BUCKETS - 1, max(0, int(late_by / BUCKET)))
        self.counts[index] += 1
        self.total += 1
        self.worst = max(self.worst, late_by)

    def percentile(self, q: float) -> float:
        """The upper edge of the bucket holding the q-quantile, in seconds."""
        if self.total == 0:
            return 0.0
        rank = q * (self.total - 1)
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen > rank:
                return (index + 1) * BUCKET
        return self.worst  # pragma: no cover - counts always add up to total


DURATION_EDGES = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper edges (seconds) of the check duration histogram's buckets: 1 ms to a timeout."""
LATENESS_EDGES = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper edges (seconds) of the exported lateness histogram's buckets."""


@dataclass
class Buckets:
    """A histogram with fixed upper edges, as Prometheus exports one; never reset."""

    edges: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    """counts[i]: observations <= edges[i] and > edges[i-1]; the last: above every edge."""
    total: float = 0.0
    """The sum of every observation."""

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.edges) + 1)

    def add(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper edge, observations at or below it), the last edge being infinity."""
        out: list[tuple[float, int]] = []
        seen = 0
        for edge, n in zip((*self.edges, float("inf")), self.counts, strict=True):
            seen += n
            out.append((edge, seen))
        return out


@dataclass
class CheckStats:
    """One check's runs by result, and how long they took."""

    results: dict[str, int] = field(default_factory=dict)
    durations: Buckets = field(default_factory=lambda: Buckets(DURATION_EDGES))


@dataclass(frozen=True)
class LastDrill:
    """The last recovery drill on a unit, as its report said."""

    fault: str
    result: str
    detection_s: float | None
    recovery_s: float | None
    at: float


@dataclass
class Metrics:
    check_runs: int = 0
    check_results: dict[str, int] = field(default_factory=dict)
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)
    """Reset by `metrics --reset`, for its percentiles."""
    late: Buckets = field(default_factory=lambda: Buckets(LATENESS_EDGES))
    """The same observations for /metrics, never reset (Prometheus counts only up)."""
    checks: dict[tuple[str, str], CheckStats] = field(default_factory=dict)
    """By (unit, check name)."""
    repairs: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Repairs performed by (unit, rung, result)."""
    drills: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """Recovery drills reported by (unit, fault, result)."""
    last_drill: dict[str, LastDrill] = field(default_factory=dict)
    """The last drill of each unit."""

    def ran(
        self,
        status: str,
        late_by: float,
        unit: str | None = None,
        check: str | None = None,
        duration: float = 0.0,
    ) -> None:
        self.check_runs += 1
        self.check_results[status] = self.check_results.get(status, 0) + 1
        self.lateness.add(late_by)
        self.late.add(max(0.0, late_by))
        if unit is not None and check is not None:
            stats = self.checks.get((unit, check))
            if stats is None:
                stats = self.checks[(unit, check)] = CheckStats()
            stats.results[status] = stats.results.get(status, 0) + 1
            stats.durations.add(duration)

    def repaired(self, unit: str, rung: str, result: str) -> None:
        key = (unit, rung, result)
        self.repairs[key] = self.repairs.get(key, 0) + 1

    def drilled(
        self,
        unit: str,
        fault: str,
        result: str,
        detection_s: float | None,
        recovery_s: float | None,
        at: float,
    ) -> None:
        key = (unit, fault, result)
        self.drills[key] = self.drills.get(key, 0) + 1
        self.last_drill[unit] = LastDrill(fault, result, detection_s, recovery_s, at)

    def reset_lateness(self) -> None:
        self.lateness = LatenessHistogram()

    def snapshot(self) -> dict[str, object]:
        late = self.lateness
        return {
            "check_runs": self.check_runs,
            "check_results": dict(self.check_results),
            "lateness_ms": {
                "samples": late.total,
                "p50": round(late.percentile(0.50) * 1000, 1),
                "p99": round(late.percentile(0.99) * 1000, 1),
                "max": round(late.worst * 1000, 1),
            },
        }
