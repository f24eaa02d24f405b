"""Counters and a bounded sample of check lateness, served on the control socket."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

LATENESS_SAMPLES = 20_000


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Metrics:
    check_runs: int = 0
    check_results: dict[str, int] = field(default_factory=dict)
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=LATENESS_SAMPLES))
    repairs: int = 0

    def ran(self, status: str, late_by: float) -> None:
        self.check_runs += 1
        self.check_results[status] = self.check_results.get(status, 0) + 1
        self.lateness.append(late_by)

    def snapshot(self) -> dict[str, object]:
        ordered = sorted(self.lateness)
        return {
            "check_runs": self.check_runs,
            "check_results": dict(self.check_results),
            "repairs": self.repairs,
            "lateness_ms": {
                "samples": len(ordered),
                "p50": round(percentile(ordered, 0.50) * 1000, 3),
                "p99": round(percentile(ordered, 0.99) * 1000, 3),
                "max": round((ordered[-1] if ordered else 0.0) * 1000, 3),
            },
        }

    def reset_lateness(self) -> None:
        self.lateness.clear()
