"""The daemon's side of a recovery drill (`host-supervisor drill`): a check forced to
fail while a fail-check drill runs, and the drill's record in the history and metrics.

A forced check is an override in the shell, not a decision: the probe still runs, its
result is replaced by CRITICAL before the reducer sees it, so the unit goes through the
same thresholds, ladder and guard as for a real failure. The override ends at its
deadline, or as soon as the daemon has run a repair on the unit (the repaired unit's
checks must then pass on their own), or when the drill ends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from supervisor.core import drill
from supervisor.core.actions import Event
from supervisor.core.drill import MAX_FORCE, Forced
from supervisor.core.drill_record import DrillRecord, parse_record, summary
from supervisor.core.state import HostState
from supervisor.daemon.metrics import LastDrill, Metrics
from supervisor.daemon.ports import StateStore
from supervisor.errors import SupervisorError
from supervisor.secrets import mask, mask_data

log = structlog.get_logger("host-supervisor")

PREFIX = "host_supervisor_"  # as supervisor.daemon.exposition's
LOAD_LIMIT = 10_000  # at a start, the last drills are read from this many drill entries


class Drills:
    def __init__(
        self,
        state: Callable[[], HostState],
        store: StateStore,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self._state = state
        self._store = store
        self._metrics = metrics
        self._clock = clock
        self._forced: dict[tuple[str, int], Forced] = {}

    # -- a check forced to fail ---------------------------------------------------------------

    def force_check(self, unit: str, check: str | None, seconds: float, caller: str) -> str | None:
        """Force a check of `unit` to fail for `seconds`; None when done, else why not."""
        sup = self._state().units.get(unit)
        if sup is None:
            return f"no policy for unit {unit}"
        if not 0 < seconds <= MAX_FORCE:
            return f"for_s must be more than 0 and at most {MAX_FORCE:g} seconds"
        picked = drill.drill_check(sup.policy, check)
        if isinstance(picked, str):
            return picked
        index = sup.policy.checks.index(picked)
        now = self._clock()
        self._forced[(unit, index)] = Forced(
            unit, index, picked.name, now + seconds, sup.recovery.attempts, caller
        )
        self._history(
            unit,
            f"drill: check {picked.name} forced to fail for up to {seconds:g}s (by {caller})",
            {"check": picked.name, "for_s": seconds, "caller": caller},
        )
        return None

    def end_forced(self, unit: str) -> bool:
        """End every override of `unit`'s checks; False if there was none."""
        ended = [key for key in self._forced if key[0] == unit]
        for key in ended:
            del self._forced[key]
        return bool(ended)

    def forced(self, event: Event) -> Event:
        """The probe event the reducer sees: forced checks' results replaced by failures."""
        if not self._forced:
            return event
        state, now = self._state(), self._clock()
        for key, forced in list(self._forced.items()):
            sup = state.units.get(forced.unit)
            attempts = sup.recovery.attempts if sup is not None else None
            if not drill.still_forced(forced, attempts, now):
                del self._forced[key]
                log.info("drill: check no longer forced", unit=forced.unit, check=forced.check)
        return drill.apply_forced(event, self._forced)

    # -- the record -----------------------------------------------------------------------------

    async def load(self) -> None:
        """The last drill of each unit, from the history: the gauges a weekly drill feeds
        survive a restart of the daemon (the run counters start again from zero)."""
        try:
            entries = await self._store.history(limit=LOAD_LIMIT, kinds=("drill",))
        except SupervisorError as exc:
            log.error("cannot read the last drills from the history", error=str(exc))
            return
        for entry in entries:
            body = {k: v for k, v in entry.data.items() if k != "caller"}
            try:
                report = parse_record(body)
            except ValueError:
                continue  # a forced check's entry, not a drill's result
            if entry.unit is not None:
                self._metrics.last_drill[entry.unit] = LastDrill(
                    report.fault.value,
                    report.result.value,
                    report.detection_s,
                    report.recovery_s,
                    entry.time,
                )

    def record(self, unit: str, body: object, caller: str) -> str | None:
        """Record a drill's report: a `drill` history entry and the metrics; None when
        recorded, else what is wrong with the report."""
        try:
            report = parse_record(body)
        except ValueError as exc:
            return str(exc)
        self._metrics.drilled(
            unit,
            report.fault.value,
            report.result.value,
            report.detection_s,
            report.recovery_s,
            self._clock(),
        )
        self._history(unit, f"{summary(report)} (by {caller})", _data(report, caller))
        return None

    def _history(self, unit: str, message: str, data: dict[str, Any]) -> None:
        try:
            self._store.append(unit, "drill", mask(message), mask_data(data), time=self._clock())
        except (SupervisorError, TypeError) as exc:
            log.error("cannot record history", error=str(exc), unit=unit, kind="drill")


def _data(report: DrillRecord, caller: str) -> dict[str, Any]:
    return {**report.to_dict(), "caller": caller}


def drill_metrics(metrics: Metrics, units: set[str]) -> Iterator[Metric]:
    """Recovery drills (`host-supervisor drill`): runs by result, and the last one's
    figures, so an alert rule can say "no drill met in 8 days" or "recovery got slow"."""
    runs = CounterMetricFamily(
        PREFIX + "drill_runs",
        "Recovery drills reported, by unit, fault and result (met, missed).",
        labels=["unit", "fault", "result"],
    )
    for (unit, fault, result), n in sorted(metrics.drills.items()):
        if unit in units:
            runs.add_metric([unit, fault, result], float(n))
    detection = GaugeMetricFamily(
        PREFIX + "drill_last_detection_seconds",
        "The last drill's fault-to-detection time; absent when the daemon never detected it.",
        labels=["unit", "fault"],
    )
    recovery = GaugeMetricFamily(
        PREFIX + "drill_last_recovery_seconds",
        "The last drill's fault-to-healthy-again time; absent when it did not recover.",
        labels=["unit", "fault"],
    )
    met = GaugeMetricFamily(
        PREFIX + "drill_last_met",
        "1 when the last drill on the unit met the policy's expectations, 0 when it missed.",
        labels=["unit", "fault"],
    )
    when = GaugeMetricFamily(
        PREFIX + "drill_last_timestamp_seconds",
        "When the last drill on the unit was reported (Unix time).",
        labels=["unit"],
    )
    for unit, last in sorted(metrics.last_drill.items()):
        if unit not in units:
            continue
        keys = [unit, last.fault]
        if last.detection_s is not None:
            detection.add_metric(keys, last.detection_s)
        if last.recovery_s is not None:
            recovery.add_metric(keys, last.recovery_s)
        met.add_metric(keys, 1.0 if last.result == "met" else 0.0)
        when.add_metric([unit], last.at)
    yield from (runs, detection, recovery, met, when)
