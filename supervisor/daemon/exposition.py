"""The daemon's metrics in the Prometheus text format (and OpenMetrics), through
prometheus_client.

One custom `Collector` reads the daemon at scrape time: unit health, systemd state,
ladder phase, attempts, pauses, failover and cluster roles and the guard come from the
same rows `status` shows (nothing is kept twice); counters that no state holds (check
runs and durations, repairs, lateness, alert deliveries) come from
`supervisor.daemon.metrics.Metrics` and the alerter. Every metric is named
`host_supervisor_*`. An enumerated state is one series per possible value, 1 for the
current one and 0 for the others, so `host_supervisor_unit_health{health="unhealthy"}
== 1` selects the unhealthy units.

Scrapes and textfile writes render on the event loop (a few milliseconds for hundreds
of units); the textfile's disk write runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import structlog
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from supervisor import __version__
from supervisor.config.http import NodeExporterConfig
from supervisor.core.cluster_model import Role as ClusterRole
from supervisor.core.failover import Phase as FailoverPhase
from supervisor.core.guard_state import BreakerPhase
from supervisor.core.health import Condition, HardState
from supervisor.core.recovery import Phase
from supervisor.daemon.drills import drill_metrics
from supervisor.daemon.metrics import Buckets, Metrics
from supervisor.fsutil import atomic_write

log = structlog.get_logger("host-supervisor")

__all__ = [
    "PREFIX",
    "DaemonCollector",
    "Observed",
    "Textfile",
    "encode",
    "registry_of",
]

PREFIX = "host_supervisor_"

ACTIVE_STATES = ("active", "reloading", "inactive", "failed", "activating", "deactivating")
"""systemd's ActiveState values, each a series of host_supervisor_unit_active_state."""


class Observed(Protocol):
    """What the metrics read of the daemon."""

    @property
    def metrics(self) -> Metrics: ...
    def unit_status(self) -> list[dict[str, object]]: ...
    def guard_status(self) -> dict[str, object]: ...
    def alert_counts(self) -> dict[str, dict[str, int]]: ...
    def state_saved(self) -> bool: ...


def _bound(edge: float) -> str:
    return "+Inf" if math.isinf(edge) else repr(float(edge))


def _histogram(buckets: Buckets) -> list[tuple[str, float]]:
    return [(_bound(edge), float(n)) for edge, n in buckets.cumulative()]


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _enum(name: str, doc: str, label: str, extra: tuple[str, ...] = ("unit",)) -> GaugeMetricFamily:
    """A gauge with one series per value of `label` (added by `_states`)."""
    return GaugeMetricFamily(PREFIX + name, doc, labels=[*extra, label])


def _states(family: GaugeMetricFamily, keys: list[str], values: Iterable[str], now: str) -> None:
    for value in values:
        family.add_metric([*keys, value], 1.0 if value == now else 0.0)


class DaemonCollector(Collector):
    """Reads the daemon at each collect(): the scrape sees the state of that moment."""

    def __init__(self, daemon: Observed) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Metric]:
        rows = self.daemon.unit_status()
        yield from self._units(rows)
        yield from self._checks(rows)
        yield from self._counters({str(row["unit"]) for row in rows})
        yield from self._guard(self.daemon.guard_status())
        yield from self._alerts(self.daemon.alert_counts())
        info = InfoMetricFamily(PREFIX + "build", "The running host-supervisor's version.")
        info.add_metric([], {"version": __version__})
        yield info
        saved = GaugeMetricFamily(
            PREFIX + "state_saved",
            "1 when every decision so far is written to the state database, 0 when writing "
            "it fails (a restart would forget since then).",
        )
        saved.add_metric([], 1.0 if self.daemon.state_saved() else 0.0)
        yield saved

    def _units(self, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        conditions = [c.value for c in Condition]
        phases = [p.value for p in Phase]
        health = _enum(
            "unit_health",
            "The unit's health (healthy, degraded, unhealthy, stopped, transient, missing, "
            "unknown): 1 for the current one.",
            "health",
        )
        active = _enum(
            "unit_active_state",
            "systemd's ActiveState of the unit: 1 for the current one.",
            "state",
        )
        phase = _enum("unit_phase", "The repair ladder's phase: 1 for the current one.", "phase")
        attempts = GaugeMetricFamily(
            PREFIX + "unit_attempts", "Repair attempts in the current episode.", labels=["unit"]
        )
        max_attempts = GaugeMetricFamily(
            PREFIX + "unit_max_attempts",
            "Repair attempts allowed per episode (recovery.max_attempts).",
            labels=["unit"],
        )
        paused = GaugeMetricFamily(
            PREFIX + "unit_paused", "1 when an operator paused the unit's repair.", labels=["unit"]
        )
        flapping = GaugeMetricFamily(
            PREFIX + "unit_flapping", "1 while the unit is flapping.", labels=["unit"]
        )
        next_action = GaugeMetricFamily(
            PREFIX + "unit_next_action_seconds",
            "Seconds until the unit's next scheduled decision (a repair after its cooldown, "
            "a settle judgement, forgetting its attempts); absent when none is due.",
            labels=["unit"],
        )
        failover = _enum(
            "failover_phase",
            "The failover machine's phase (primary, failing-over, backup, failing-back, "
            "failed): 1 for the current one; only units with failover.",
            "phase",
        )
        serving = GaugeMetricFamily(
            PREFIX + "failover_serving",
            "1 for the unit that serves a failed-over service now (the primary or a backup).",
            labels=["unit", "serving"],
        )
        cluster = _enum(
            "cluster_role",
            "This host's role for a clustered unit (waiting, standby, acquiring, reclaiming, "
            "holder, releasing, ...): 1 for the current one.",
            "role",
        )
        token = GaugeMetricFamily(
            PREFIX + "cluster_token",
            "The fencing token of a clustered unit this host holds; absent otherwise.",
            labels=["unit"],
        )
        lease = GaugeMetricFamily(
            PREFIX + "cluster_lease_seconds_left",
            "Seconds before this host's lease on a clustered unit it holds runs out.",
            labels=["unit"],
        )
        for row in rows:
            unit = str(row["unit"])
            _states(health, [unit], conditions, str(row["condition"]))
            systemd = row.get("systemd")
            now = str(systemd.get("active_state", "")) if isinstance(systemd, dict) else ""
            _states(active, [unit], ACTIVE_STATES, now)
            _states(phase, [unit], phases, str(row["phase"]))
            attempts.add_metric([unit], float(row["attempts"]))
            max_attempts.add_metric([unit], float(row["max_attempts"]))
            paused.add_metric([unit], 1.0 if row["paused"] else 0.0)
            flapping.add_metric([unit], 1.0 if row["flapping"] else 0.0)
            if (seconds := _number(row.get("next_action_in_s"))) is not None:
                next_action.add_metric([unit], seconds)
            section = row.get("failover")
            if isinstance(section, dict):
                _states(failover, [unit], [p.value for p in FailoverPhase], str(section["phase"]))
                if section.get("serving"):
                    serving.add_metric([unit, str(section["serving"])], 1.0)
            section = row.get("cluster")
            if isinstance(section, dict):
                _states(cluster, [unit], [r.value for r in ClusterRole], str(section["role"]))
                if (value := _number(section.get("token"))) is not None:
                    token.add_metric([unit], value)
                if (value := _number(section.get("lease_left_s"))) is not None:
                    lease.add_metric([unit], value)
        yield from (health, active, phase, attempts, max_attempts, paused, flapping)
        yield from (next_action, failover, serving, cluster, token, lease)

    def _checks(self, rows: list[dict[str, Any]]) -> Iterator[Metric]:
        hard = [h.value for h in HardState]
        state = _enum(
            "check_state",
            "A check's state after its thresholds (pending, ok, warning, critical, unknown): "
            "1 for the current one.",
            "state",
            extra=("unit", "check"),
        )
        critical = GaugeMetricFamily(
            PREFIX + "check_critical",
            "1 when the check is critical (its failure triggers repair), 0 when it only degrades.",
            labels=["unit", "check"],
        )
        for row in rows:
            for check in row["checks"]:
                keys = [str(row["unit"]), str(check["name"])]
                _states(state, keys, hard, str(check["state"]))
                critical.add_metric(keys, 1.0 if check["critical"] else 0.0)
        yield from (state, critical)

    def _counters(self, units: set[str]) -> Iterator[Metric]:
        metrics = self.daemon.metrics
        runs = CounterMetricFamily(
            PREFIX + "check_runs",
            "Check runs by unit, check and result (ok, warning, critical, unknown).",
            labels=["unit", "check", "result"],
        )
        durations = HistogramMetricFamily(
            PREFIX + "check_duration_seconds",
            "How long check runs took.",
            labels=["unit", "check"],
        )
        for (unit, check), stats in sorted(metrics.checks.items()):
            if unit not in units:
                continue  # its policy is gone: its series end with it
            for result, n in sorted(stats.results.items()):
                runs.add_metric([unit, check, result], float(n))
            durations.add_metric(
                [unit, check], _histogram(stats.durations), sum_value=stats.durations.total
            )
        repairs = CounterMetricFamily(
            PREFIX + "repairs",
            "Repair actions performed, by unit, rung (restart, reload, restore) and result "
            "(done, failed, skipped).",
            labels=["unit", "rung", "result"],
        )
        for (unit, rung, result), n in sorted(metrics.repairs.items()):
            repairs.add_metric([unit, rung, result], float(n))
        yield from drill_metrics(metrics, units)
        lateness = HistogramMetricFamily(
            PREFIX + "check_lateness_seconds",
            "How late check runs started against their schedule (event loop lag).",
        )
        lateness.add_metric([], _histogram(metrics.late), sum_value=metrics.late.total)
        yield from (runs, durations, repairs, lateness)

    def _guard(self, guard: Mapping[str, object]) -> Iterator[Metric]:
        def gauge(name: str, doc: str, value: object) -> GaugeMetricFamily:
            family = GaugeMetricFamily(PREFIX + name, doc)
            family.add_metric([], _number(value) or 0.0)
            return family

        yield gauge(
            "guard_budget_left",
            "Automatic repairs the host-wide budget allows before automation freezes.",
            guard.get("budget_left"),
        )
        yield gauge(
            "guard_budget_max", "Automatic repairs allowed per budget window.", guard["budget_max"]
        )
        yield gauge(
            "guard_budget_window_seconds", "The budget's sliding window.", guard["budget_window_s"]
        )
        yield gauge(
            "guard_frozen", "1 while automation is frozen (repair budget spent).", guard["frozen"]
        )
        yield gauge(
            "guard_paused_all", "1 while every unit is paused by an operator.", guard["paused_all"]
        )
        yield gauge(
            "guard_failures_in_a_row",
            "Repair actions that failed in a row (the breaker opens at guard.breaker.failures).",
            guard["failures_in_a_row"],
        )
        breaker = GaugeMetricFamily(
            PREFIX + "guard_breaker_state",
            "The circuit breaker (closed, open, half-open, trial): 1 for the current one.",
            labels=["state"],
        )
        phases = [p.value for p in BreakerPhase]
        _states(breaker, [], phases, str(guard["breaker"]))
        yield breaker

    def _alerts(self, counts: Mapping[str, Mapping[str, int]]) -> Iterator[Metric]:
        family = CounterMetricFamily(
            PREFIX + "alert_messages",
            "Alert messages by channel and outcome: sent (delivered), failed (a delivery "
            "attempt failed), spooled (kept to send later), dropped (lost: the spool was "
            "full, or at stop). A message may carry several grouped alerts.",
            labels=["channel", "outcome"],
        )
        for channel, by_outcome in sorted(counts.items()):
            for outcome, n in sorted(by_outcome.items()):
                family.add_metric([channel, outcome], float(n))
        yield family


def registry_of(daemon: Observed) -> CollectorRegistry:
    """A registry of the daemon's metrics alone (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    return registry


def encode(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The metrics and their content type: OpenMetrics when `accept` asks for it, else the
    Prometheus text format 0.0.4."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class Textfile:
    """Writes the metrics for node_exporter's textfile collector every `interval`.

    Each write replaces the file atomically (node_exporter never reads half a file), mode
    0644 so node_exporter's own user can read it. A write that fails is logged once,
    naming the file, until one succeeds again; supervision is never affected.
    """

    def __init__(self, registry: CollectorRegistry, config: NodeExporterConfig) -> None:
        self.registry = registry
        self.path = Path(config.textfile)
        self.interval = config.interval
        self._task: asyncio.Task[None] | None = None
        self._failing: str | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="node-exporter-textfile")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def write(self) -> bool:
        """Write the file once now; False (and logged) when it cannot be written."""
        data = generate_latest(self.registry)  # on the loop: it reads the daemon's state
        try:
            await asyncio.to_thread(atomic_write, self.path, data, 0o644)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            if self._failing != reason:
                log.error(
                    "cannot write the node_exporter textfile", path=str(self.path), error=reason
                )
            self._failing = reason
            return False
        if self._failing is not None:
            log.info("node_exporter textfile written again", path=str(self.path))
            self._failing = None
        return True

    async def _loop(self) -> None:
        while True:
            await self.write()
            await asyncio.sleep(self.interval)
