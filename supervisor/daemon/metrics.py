"""Counters and a histogram of check lateness, served on the control socket."""

from __future__ import annotations

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


@dataclass
class Metrics:
    check_runs: int = 0
    check_results: dict[str, int] = field(default_factory=dict)
    lateness: LatenessHistogram = field(default_factory=LatenessHistogram)

    def ran(self, status: str, late_by: float) -> None:
        self.check_runs += 1
        self.check_results[status] = self.check_results.get(status, 0) + 1
        self.lateness.add(late_by)

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
