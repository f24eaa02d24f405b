"""The confirmation interval: a pure decision of when a check runs next, on a fake clock."""

from __future__ import annotations

import pytest

from supervisor.config.check import Check
from supervisor.core.health import CheckHealth, HardState, confirming, next_run, record
from supervisor.core.values import Status


def check(**fields: object) -> Check:
    return Check.model_validate({"name": "port", "tcp": {"port": 80}, "interval": "1s", **fields})


def run_against(spec: Check, answers: list[Status], start: float = 0.0) -> list[tuple[float, str]]:
    """Drive the schedule with a fake clock: each run answers at once; (time, hard) per run."""
    state, due, seen = CheckHealth(), start, []
    for status in answers:
        now = due
        state = record(spec, state, status, now, None)
        seen.append((round(now, 3), state.hard.value))
        due = next_run(spec, state, due, now)
    return seen


def test_without_it_a_failure_takes_failures_intervals() -> None:
    seen = run_against(check(failures=3), [Status.CRITICAL] * 4)
    assert seen == [(0.0, "pending"), (1.0, "pending"), (2.0, "critical"), (3.0, "critical")]


def test_with_it_the_verdict_comes_after_confirmations() -> None:
    spec = check(failures=3, confirm_interval="100ms")
    seen = run_against(spec, [Status.OK, Status.CRITICAL, Status.CRITICAL, Status.CRITICAL] * 1)
    # ok at 0; bad at 1 (first failure), confirmed at 1.1 and 1.2: hard-failed at 1.2.
    assert seen == [(0.0, "ok"), (1.0, "ok"), (1.1, "ok"), (1.2, "critical")]
    # Once hard-failed, back to the regular interval.
    seen = run_against(spec, [Status.OK] + [Status.CRITICAL] * 4)
    assert [t for t, _ in seen] == [0.0, 1.0, 1.1, 1.2, 2.2]


def test_a_success_resets_it() -> None:
    spec = check(failures=3, confirm_interval="100ms")
    seen = run_against(spec, [Status.OK, Status.CRITICAL, Status.OK, Status.OK])
    assert [t for t, _ in seen] == [0.0, 1.0, 1.1, 2.1]
    assert [h for _, h in seen] == ["ok"] * 4


def test_unknown_is_confirmed_too_but_not_inside_the_start_period() -> None:
    spec = check(failures=2, confirm_interval="100ms", start_period="10s")
    inside = record(spec, CheckHealth(hard=HardState.OK), Status.CRITICAL, 1.0, 0.0)
    assert not confirming(inside)
    assert next_run(spec, inside, 1.0, 1.0) == 2.0
    unknown = record(spec, CheckHealth(hard=HardState.OK), Status.UNKNOWN, 20.0, 0.0)
    assert confirming(unknown)
    assert next_run(spec, unknown, 20.0, 20.0) == pytest.approx(20.1)


def test_the_regular_time_wins_when_it_comes_first_and_late_runs_do_not_burst() -> None:
    spec = check(failures=3, confirm_interval="900ms")
    bad = record(spec, CheckHealth(hard=HardState.OK), Status.CRITICAL, 0.5, None)
    assert next_run(spec, bad, 0.0, 0.5) == 1.0  # regular (1.0) before 0.5 + 0.9
    ok = record(spec, CheckHealth(), Status.OK, 5.0, None)
    assert next_run(spec, ok, 0.0, 5.0) == 5.0  # outlasted its interval: now, once


def test_it_must_be_shorter_than_the_interval() -> None:
    with pytest.raises(ValueError, match="confirm_interval must be shorter than interval"):
        check(confirm_interval="1s")
