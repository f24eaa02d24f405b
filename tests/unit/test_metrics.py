from __future__ import annotations

from supervisor.daemon.metrics import BUCKET, LatenessHistogram, Metrics


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
