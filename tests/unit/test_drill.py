"""Recovery drills, the pure part: who may be drilled, the figures read from the daemon's
history, the verdict against `expect:`, the record, and a check forced to fail."""

from __future__ import annotations

from typing import Any

import pytest

from supervisor.config import GuardConfig, Policy
from supervisor.core.actions import ProbeDone, ProbesDone
from supervisor.core.drill import (
    Fault,
    Figures,
    Forced,
    Result,
    apply_forced,
    describe_plan,
    drill_check,
    figures,
    judge,
    refusal,
    settled,
    still_forced,
)
from supervisor.core.drill_record import parse_record, record_of, summary
from supervisor.core.values import CheckResult, Status

GUARD = GuardConfig()  # protects postgresql*, mysql*, ...
HEALTHY: dict[str, Any] = {"condition": "healthy", "paused": False, "flapping": False}


def policy(**extra: Any) -> Policy:
    doc: dict[str, Any] = {
        "unit": "web.service",
        "checks": [
            {"name": "up", "unit": {}},
            {"name": "mem", "memory": {"max_rss": "1GiB"}, "critical": False},
            {"name": "http", "http": {"url": "http://127.0.0.1:8080/"}},
        ],
    }
    doc.update(extra)
    return Policy.model_validate(doc)


def entry(at: float, kind: str, message: str, **data: Any) -> dict[str, Any]:
    return {"time": at, "unit": "web.service", "kind": kind, "message": message, "data": data}


# -- may it run ---------------------------------------------------------------------------


def test_a_healthy_acting_unit_may_be_drilled() -> None:
    assert refusal(policy(), GUARD, HEALTHY, Fault.KILL) is None


@pytest.mark.parametrize(
    ("row", "extra", "fault", "expected"),
    [
        (None, {}, Fault.KILL, "does not supervise web.service"),
        ({**HEALTHY, "paused": True}, {}, Fault.KILL, "is paused"),
        ({**HEALTHY, "flapping": True}, {}, Fault.KILL, "is flapping"),
        ({**HEALTHY, "condition": "unhealthy"}, {}, Fault.KILL, "is unhealthy now"),
        (HEALTHY, {"mode": "observe"}, Fault.KILL, "mode: observe"),
        (HEALTHY, {}, Fault.BREAK_CONFIG, "needs recovery.restore.paths"),
        (
            HEALTHY,
            {"recovery": {"ladder": ["restart"], "restore": {"paths": ["/etc/web.conf"]}}},
            Fault.BREAK_CONFIG,
            "needs restore in web.service's recovery.ladder",
        ),
    ],
)
def test_refusals_name_the_reason(
    row: dict[str, Any] | None, extra: dict[str, Any], fault: Fault, expected: str
) -> None:
    why = refusal(policy(**extra), GUARD, row, fault)
    assert why is not None and expected in why


def test_a_dry_run_daemon_is_refused() -> None:
    why = refusal(policy(), GUARD, HEALTHY, Fault.KILL, daemon_dry_run=True)
    assert why == "the daemon runs with --dry-run: it would repair nothing"


def test_a_protected_unit_needs_force_even_when_automation_is_allowed() -> None:
    db = policy(unit="postgresql.service", allow_automatic=True)
    why = refusal(db, GUARD, HEALTHY, Fault.KILL)
    assert why == (
        "postgresql.service is protected (guard.protected 'postgresql*'): --force drills it anyway"
    )
    assert refusal(db, GUARD, HEALTHY, Fault.KILL, force=True) is None


def test_fail_check_picks_the_first_critical_probed_check() -> None:
    picked = drill_check(policy(), None)
    assert not isinstance(picked, str) and picked.name == "http"
    assert drill_check(policy(), "up") == (
        "check 'up' is a unit: check, judged from systemd: it cannot be forced"
    )
    assert drill_check(policy(), "mem") == (
        "check 'mem' is not critical: its failure only degrades, nothing repairs"
    )
    assert drill_check(policy(), "nope") == (
        "web.service has no check 'nope' (checks: up, mem, http)"
    )
    bare = policy(checks=[])
    assert refusal(bare, GUARD, HEALTHY, Fault.FAIL_CHECK) == (
        "web.service has no critical probed check for fail-check to force"
    )


def test_the_plan_says_what_and_the_target() -> None:
    timed = policy(expect={"recover_within": "30s"})
    assert describe_plan(timed, Fault.KILL, 120) == (
        "would SIGKILL the main process of web.service (systemd KillUnit); watch up to 120s; "
        "expect healthy within 30s"
    )
    assert describe_plan(policy(), Fault.FAIL_CHECK, 60).startswith(
        "would force check 'http' of web.service to fail; watch up to 60s"
    )


# -- the figures ----------------------------------------------------------------------------


def test_figures_from_a_crash_and_a_restart() -> None:
    history = [
        entry(99.0, "health", "failed: failed/failed (signal)"),  # an older episode
        entry(100.004, "health", "failed: failed/failed (signal)"),
        entry(100.005, "action", "restart (attempt 1)"),
        entry(100.120, "result", "restart done: job done"),
        entry(100.121, "health", "unknown"),  # restarted: its checks start afresh
        entry(100.600, "check", "http: pending -> ok: HTTP 200", check="http", state="ok"),
        entry(100.700, "recovery", "recovered: healthy after attempt 1"),
        entry(101.0, "health", "failed: failed/failed (signal)"),  # a later episode
    ]
    found = figures(history, fault_at=100.0, fault=Fault.KILL)
    assert found.detected_after == pytest.approx(0.004)
    assert found.repaired_after == pytest.approx(0.120)
    assert found.recovered_after == pytest.approx(0.600)
    assert found.rungs == ("restart",)
    assert not found.stopped
    assert settled(Fault.KILL, found)


def test_a_unit_without_checks_is_healthy_again_in_its_health_entry() -> None:
    history = [
        entry(1.01, "health", "failed: failed/failed (signal)"),
        entry(1.02, "action", "restart (attempt 1)"),
        entry(1.2, "check", "http: critical -> ok", check="http", state="ok"),  # not after unknown
        entry(1.3, "health", "healthy"),
    ]
    assert figures(history, 1.0, Fault.KILL).recovered_after == pytest.approx(0.3)


def test_healthy_before_the_restart_job_ends_waits_for_its_result() -> None:
    history = [
        entry(1.01, "health", "failed: failed/failed (signal)"),
        entry(1.02, "action", "restart (attempt 1)"),
        entry(1.10, "health", "healthy"),  # systemd's signal came before the job's end
    ]
    early = figures(history, 1.0, Fault.KILL)
    assert early.recovered_after == pytest.approx(0.1) and early.repaired_after is None
    assert not settled(Fault.KILL, early)
    history += [
        entry(1.11, "result", "restart done: job done"),
        entry(5.0, "health", "failed: failed/failed (signal)"),
        entry(5.1, "action", "restart (attempt 2)"),
    ]
    done = figures(history, 1.0, Fault.KILL)
    assert done.repaired_after == pytest.approx(0.11) and done.rungs == ("restart",)
    assert settled(Fault.KILL, done)


def test_figures_of_a_ladder_that_climbed() -> None:
    history = [
        entry(10.5, "health", "unhealthy: failing checks http"),
        entry(10.6, "action", "restart (attempt 1)"),
        entry(10.7, "result", "restart failed: job failed"),
        entry(12.0, "action", "restore (attempt 2)"),
        entry(12.5, "result", "restore done: 1 file restored"),
        entry(13.0, "health", "degraded"),
    ]
    found = figures(history, fault_at=10.0, fault=Fault.FAIL_CHECK)
    assert found.rungs == ("restart", "restore")
    assert found.repaired_after == pytest.approx(2.5)
    assert found.recovered_after == pytest.approx(3.0)


def test_a_stop_is_seen_as_a_clean_stop_and_nothing_else_is_settled_yet() -> None:
    stop = figures([entry(5.1, "health", "stopped cleanly; not restarted")], 5.0, Fault.STOP)
    assert stop.stopped and stop.detected_after == pytest.approx(0.1)
    assert settled(Fault.STOP, stop)
    crash = figures([entry(5.1, "health", "failed: failed/failed (signal)")], 5.0, Fault.KILL)
    assert not settled(Fault.KILL, crash)


def test_a_restart_passing_by_a_clean_stop_is_not_the_detection_of_a_broken_config() -> None:
    history = [
        entry(1.01, "health", "transient"),
        entry(1.02, "health", "stopped cleanly; not restarted"),
        entry(1.03, "health", "transient"),
        entry(1.05, "health", "failed: failed/failed (exit-code)"),
        entry(1.06, "action", "restart (attempt 1)"),
        entry(1.08, "result", "restart failed: job failed"),
        entry(3.0, "action", "restore (attempt 2)"),
        entry(3.4, "result", "restore done: restored"),
        entry(3.5, "health", "healthy"),
    ]
    found = figures(history, 1.0, Fault.BREAK_CONFIG)
    assert not found.stopped and found.detected_after == pytest.approx(0.05)
    assert found.rungs == ("restart", "restore") and found.recovered_after == pytest.approx(2.5)


# -- the verdict ----------------------------------------------------------------------------


def test_met_within_the_target_missed_past_it() -> None:
    found = Figures(
        detected_after=0.01, repaired_after=0.2, recovered_after=1.5, rungs=("restart",)
    )
    assert judge(Fault.KILL, found, 30.0).result is Result.MET
    assert judge(Fault.KILL, found, None).result is Result.MET
    late = judge(Fault.KILL, found, 1.0)
    assert late.result is Result.MISSED
    assert late.reasons == (
        "healthy again after 1.500s, expected within 1s (expect.recover_within)",
    )


def test_missed_when_never_detected_or_never_healthy() -> None:
    assert judge(Fault.FAIL_CHECK, Figures(), None).reasons == (
        "the daemon never recorded the unit unhealthy",
    )
    assert judge(Fault.KILL, Figures(detected_after=0.1), None).reasons == (
        "the daemon did not bring the unit back to healthy in time",
    )


def test_a_stop_is_met_only_when_the_daemon_leaves_it_alone() -> None:
    respected = Figures(detected_after=0.05, stopped=True)
    assert judge(Fault.STOP, respected, 1.0).result is Result.MET
    fought = Figures(detected_after=0.05, stopped=True, rungs=("restart",))
    assert judge(Fault.STOP, fought, None).reasons == (
        "the daemon fought the stop: it ran restart",
    )


# -- the record -----------------------------------------------------------------------------


def test_a_record_survives_the_socket_and_reads_as_one_line() -> None:
    found = Figures(
        detected_after=0.00412, repaired_after=0.2, recovered_after=0.61234, rungs=("restart",)
    )
    record = record_of(Fault.KILL, found, judge(Fault.KILL, found, 30.0), 30.0)
    assert parse_record(record.to_dict()) == record
    assert record.recovery_s == 0.6123
    assert summary(record) == (
        "drill kill: met: detected in 0.004s, healthy again in 0.612s (restart); "
        "expected within 30s"
    )


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "the body must be a JSON object"),
        ({"fault": "nuke", "result": "met"}, "fault must be one of kill, "),
        ({"fault": "kill", "result": "ok"}, "result must be met or missed"),
        ({"fault": "kill", "result": "met", "detection_s": -1}, "must not be negative"),
        ({"fault": "kill", "result": "met", "recovery_s": "1s"}, "recovery_s must be a number"),
        ({"fault": "kill", "result": "met", "rungs": "restart"}, "rungs must be a list"),
    ],
)
def test_a_bad_record_is_refused_naming_the_field(body: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_record(body)


# -- a check forced to fail -----------------------------------------------------------------


def test_a_forced_check_fails_until_the_daemon_acts_or_time_runs_out() -> None:
    forced = Forced("web.service", 2, "http", until=50.0, attempts=0, caller="uid 0 (root)")
    table = {("web.service", 2): forced}
    ok = CheckResult(Status.OK, "HTTP 200", 0.01)
    event = ProbesDone((ProbeDone("web.service", 2, ok), ProbeDone("web.service", 1, ok)))
    out = apply_forced(event, table)
    assert isinstance(out, ProbesDone)
    assert out.results[0].result.status is Status.CRITICAL
    assert out.results[0].result.message == "forced to fail by a recovery drill by uid 0 (root)"
    assert out.results[1].result is ok
    assert apply_forced(ProbeDone("other.service", 2, ok), table) == ProbeDone(
        "other.service", 2, ok
    )
    assert still_forced(forced, attempts=0, now=49.0)
    assert not still_forced(forced, attempts=1, now=10.0)  # repaired once
    assert not still_forced(forced, attempts=0, now=50.0)  # expired
    assert not still_forced(forced, attempts=None, now=10.0)  # policy gone
