from __future__ import annotations

from supervisor.daemon.metrics import BUCKET, Buckets, LatenessHistogram, Metrics


def test_percentiles_from_the_histogram() -> None:
    hist = LatenessHistogram()
    for ms in range(1, 101):  # 1 .. 100 ms
        hist.add(ms / 1000)
    # Nearest rank: the 50th of 100 samples is 50 ms, the 99th is 99 ms; the
    # histogram answers with the upper edge of that sample's 0.1 ms bucket.
    assert 0.050 <= hist.percentile(0.50) <= 0.050 + BUCKET * 1.01
    assert 0.099 <= hist.percentile(0.99) <= 0.099 + BUCKET * 1.01
    assert hist.worst == 0.1 and hist.total == 100


def test_late_runs_beyond_the_range_land_in_the_last_bucket() -> None:
    hist = LatenessHistogram()
    hist.add(-0.001)  # early (timer jitter) counts as on time
    hist.add(5.0)
    assert hist.counts[0] == 1 and hist.counts[-1] == 1
    assert hist.worst == 5.0


def test_snapshot_and_reset() -> None:
    metrics = Metrics()
    metrics.ran("ok", 0.002)
    metrics.ran("critical", 0.004)
    snap = metrics.snapshot()
    assert snap["check_runs"] == 2
    assert snap["check_results"] == {"ok": 1, "critical": 1}
    metrics.reset_lateness()
    assert metrics.snapshot()["lateness_ms"] == {"samples": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    assert metrics.check_runs == 2


def test_buckets_are_cumulative_with_an_infinite_last_edge() -> None:
    buckets = Buckets((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 7.0):
        buckets.add(value)
    assert buckets.cumulative() == [(0.1, 2), (1.0, 3), (float("inf"), 4)]
    assert buckets.count == 4 and buckets.total == 7.65


def test_runs_by_check_and_repairs_survive_a_lateness_reset() -> None:
    metrics = Metrics()
    metrics.ran("ok", 0.001, "web.service", "http", 0.004)
    metrics.ran("critical", 0.002, "web.service", "http", 2.0)
    metrics.repaired("web.service", "restart", "done")
    metrics.reset_lateness()
    stats = metrics.checks[("web.service", "http")]
    assert stats.results == {"ok": 1, "critical": 1}
    assert stats.durations.count == 2
    assert metrics.late.count == 2  # /metrics counts only up
    assert metrics.repairs == {("web.service", "restart", "done"): 1}
