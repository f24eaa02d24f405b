from __future__ import annotations

import pytest

from supervisor.core.health import Condition, UnitView, describe, unit_condition


@pytest.mark.parametrize(
    ("load", "active", "sub", "result", "expected"),
    [
        ("loaded", "active", "running", "success", Condition.HEALTHY),
        ("loaded", "reloading", "reload", "success", Condition.HEALTHY),
        ("loaded", "failed", "failed", "signal", Condition.UNHEALTHY),
        ("loaded", "failed", "failed", "start-limit-hit", Condition.UNHEALTHY),
        ("loaded", "inactive", "dead", "success", Condition.STOPPED),
        ("loaded", "inactive", "dead", "exit-code", Condition.UNHEALTHY),
        ("loaded", "activating", "auto-restart", "signal", Condition.TRANSIENT),
        ("loaded", "deactivating", "stop-sigterm", "success", Condition.TRANSIENT),
        ("not-found", "inactive", "dead", "", Condition.MISSING),
        ("masked", "inactive", "dead", "", Condition.MISSING),
        ("loaded", "", "", "", Condition.UNKNOWN),
    ],
)
def test_unit_condition(load: str, active: str, sub: str, result: str, expected: Condition) -> None:
    assert unit_condition(UnitView(load, active, sub, result)) is expected


def test_describe_names_the_failure() -> None:
    assert describe(UnitView("loaded", "failed", "failed", "signal")) == "failed/failed (signal)"
    assert describe(UnitView("loaded", "active", "running", "success")) == "active/running"


# -- check thresholds and the unit's aggregate ------------------------------

from dataclasses import dataclass  # noqa: E402

from supervisor.checks.result import Status  # noqa: E402
from supervisor.core.health import CheckHealth, HardState, record, unit_health  # noqa: E402

OK, WARN, CRIT, UNK = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


@dataclass(frozen=True)
class T:
    failures: int = 3
    successes: int = 2
    start_period: float = 0.0


def feed(statuses: list[Status], th: T = T(), started_at: float | None = None) -> list[HardState]:
    state, hards = CheckHealth(), []
    for n, status in enumerate(statuses):
        state = record(th, state, status, float(n), started_at)
        hards.append(state.hard)
    return hards


P, K, W, C, U = (
    HardState.PENDING,
    HardState.OK,
    HardState.WARNING,
    HardState.CRITICAL,
    HardState.UNKNOWN,
)


def test_first_good_result_is_ok_at_once() -> None:
    assert feed([OK]) == [K]


def test_failures_in_a_row_make_it_hard_and_successes_bring_it_back() -> None:
    assert feed([OK, CRIT, CRIT, CRIT, OK, CRIT, OK, OK]) == [K, K, K, C, C, C, C, K]


def test_a_good_result_breaks_the_failure_streak() -> None:
    assert feed([OK, CRIT, CRIT, OK, CRIT, CRIT]) == [K, K, K, K, K, K]


def test_warning_and_critical_count_together_and_the_latest_shows() -> None:
    assert feed([WARN, CRIT, WARN, CRIT]) == [P, P, W, C]


def test_unknown_results_do_not_count_as_failures() -> None:
    assert feed([OK, UNK, UNK, UNK, CRIT, CRIT, CRIT]) == [K, K, K, U, U, U, C]
    assert feed([OK, UNK, CRIT, UNK, CRIT]) == [K, K, K, K, K]


def test_bad_results_in_the_start_period_are_not_counted() -> None:
    th = T(failures=2, start_period=3.0)
    # started at t=0: results at t=0,1,2 are inside the start period; t=3,4 count.
    assert feed([CRIT, CRIT, CRIT, CRIT, CRIT], th, started_at=0.0) == [P, P, P, P, C]
    # A good result inside the start period counts.
    assert feed([CRIT, OK, CRIT, CRIT, CRIT], th, started_at=0.0) == [P, K, K, K, C]


def test_soft_means_a_threshold_is_being_counted() -> None:
    state = record(T(), CheckHealth(), OK, 0.0, None)
    state = record(T(), state, CRIT, 1.0, None)
    assert state.hard is K and state.soft


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        ([], Condition.HEALTHY),
        ([(True, P), (True, P)], Condition.UNKNOWN),
        ([(True, K), (True, P)], Condition.HEALTHY),
        ([(True, K), (True, C)], Condition.UNHEALTHY),
        ([(False, C), (True, K)], Condition.DEGRADED),
        ([(True, W), (True, K)], Condition.DEGRADED),
        ([(True, U), (True, K)], Condition.HEALTHY),
        ([(False, C), (True, C)], Condition.UNHEALTHY),
    ],
)
def test_unit_health_from_checks(checks: list[tuple[bool, HardState]], expected: Condition) -> None:
    assert unit_health(Condition.HEALTHY, checks) is expected


@pytest.mark.parametrize(
    "condition", [Condition.UNHEALTHY, Condition.STOPPED, Condition.TRANSIENT, Condition.MISSING]
)
def test_systemds_view_wins_when_the_unit_is_not_running(condition: Condition) -> None:
    assert unit_health(condition, [(True, K)]) is condition
