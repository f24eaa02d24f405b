"""The global guard, driven directly with explicit times (no clock, no sleeps)."""

from __future__ import annotations

import json

import pytest

from supervisor.config.main import GuardConfig
from supervisor.core.guard import (
    HALF_OPEN_RETRY,
    BreakerPhase,
    Decision,
    GuardNotice,
    GuardState,
    Verdict,
    breaker_phase,
    budget_used,
    finished,
    is_protected,
    next_deadline,
    operator_request,
    pause,
    pause_all,
    request,
    resume,
    resume_all,
    tick,
)
from supervisor.core.values import Severity

CFG = GuardConfig()  # budget 5 per 15m, 3 at once, breaker 5 failures / 60s
WINDOW = 900.0


def ask(
    state: GuardState,
    unit: str,
    now: float,
    cfg: GuardConfig = CFG,
    *,
    allow_automatic: bool = False,
) -> tuple[GuardState, Decision, list[GuardNotice]]:
    return request(cfg, state, unit, allow_automatic=allow_automatic, now=now)


def run(
    state: GuardState, unit: str, now: float, ok: bool = True, cfg: GuardConfig = CFG
) -> tuple[GuardState, list[GuardNotice]]:
    """Request an action on `unit` at `now`, expect it allowed, and finish it at once."""
    state, decision, _ = ask(state, unit, now, cfg)
    assert decision.verdict is Verdict.ALLOW, decision
    return finished(cfg, state, unit, ok, now)


def kinds(notices: list[GuardNotice]) -> list[str]:
    return [n.kind for n in notices]


# -- protected units ------------------------------------------------------------------------


def test_protected_globs_match_and_allow_automatic_lifts_them() -> None:
    assert is_protected("postgresql-15.service", CFG, allow_automatic=False)
    assert is_protected("redis-server.service", CFG, allow_automatic=False)
    assert not is_protected("postgresql-15.service", CFG, allow_automatic=True)
    assert not is_protected("nginx.service", CFG, allow_automatic=False)
    # Globs match the whole name, case-sensitively.
    assert not is_protected("my-postgresql.service", CFG, allow_automatic=False)
    assert not is_protected("PostgreSQL.service", CFG, allow_automatic=False)


def test_protected_unit_is_denied_and_nothing_is_recorded() -> None:
    state, decision, notices = ask(GuardState(), "postgresql-15.service", 10.0)
    assert decision.verdict is Verdict.DENY
    assert decision.kind == "protected"
    assert "'postgresql*'" in decision.reason and "allow_automatic" in decision.reason
    assert state == GuardState() and notices == []


def test_allow_automatic_lets_a_protected_unit_be_repaired() -> None:
    state, decision, _ = ask(GuardState(), "postgresql-15.service", 10.0, allow_automatic=True)
    assert decision.verdict is Verdict.ALLOW and decision.kind == "ok"
    assert state.running == {"postgresql-15.service"}
    assert state.actions == (10.0,)


def test_configured_protected_list_replaces_the_default() -> None:
    cfg = GuardConfig.model_validate({"protected": ["nginx*"]})
    assert is_protected("nginx.service", cfg, allow_automatic=False)
    assert not is_protected("postgresql.service", cfg, allow_automatic=False)


# -- the repair budget ----------------------------------------------------------------------


def test_five_allowed_sixth_freezes_with_one_notice_seventh_denied_silently() -> None:
    state = GuardState()
    for i in range(5):
        state, _ = run(state, f"u{i}.service", 100.0 + i)
    assert budget_used(CFG, state, 104.0) == 5

    state, decision, notices = ask(state, "u5.service", 110.0)
    assert decision.verdict is Verdict.DENY and decision.kind == "frozen"
    assert state.frozen_until == 110.0 + WINDOW
    assert "5 automatic actions in 15m" in decision.reason
    assert kinds(notices) == ["frozen"]
    assert notices[0].severity is Severity.CRITICAL
    assert "host-supervisor resume --all" in notices[0].message
    assert "u5.service" not in state.running and len(state.actions) == 5

    frozen = state
    state, decision, notices = ask(state, "u6.service", 120.0)
    assert (decision.verdict, decision.kind, notices) == (Verdict.DENY, "frozen", [])
    assert "14m50s more" in decision.reason
    assert state == frozen


def test_protected_and_paused_are_reported_before_frozen() -> None:
    state = GuardState(frozen_until=1000.0)
    _, decision, _ = ask(state, "mysql.service", 10.0)
    assert decision.kind == "protected"
    _, decision, _ = ask(pause(state, "a.service"), "a.service", 10.0)
    assert decision.kind == "paused"


def test_thaw_at_frozen_until_then_a_fresh_budget() -> None:
    state = GuardState()
    for i in range(5):
        state, _ = run(state, f"u{i}.service", float(i))
    state, _, _ = ask(state, "u5.service", 100.0)  # freezes until 1000
    assert next_deadline(state) == 1000.0

    state, notices = tick(CFG, state, 999.9)
    assert notices == [] and state.frozen_until == 1000.0
    state, notices = tick(CFG, state, 1000.0)
    assert kinds(notices) == ["thawed"]
    assert state.frozen_until is None
    # The actions that froze it (at 0..4) left the window long ago.
    assert state.actions == ()
    state, notices = tick(CFG, state, 1001.0)
    assert notices == []
    state, decision, _ = ask(state, "u5.service", 1001.0)
    assert decision.verdict is Verdict.ALLOW
    assert "action 1 of 5" in decision.reason


def test_request_after_a_missed_tick_thaws_and_says_so_once() -> None:
    state = GuardState(frozen_until=1000.0)
    state, decision, notices = ask(state, "a.service", 1500.0)
    assert decision.verdict is Verdict.ALLOW
    assert kinds(notices) == ["thawed"]
    state, decision, notices = ask(state, "b.service", 1501.0)
    assert decision.verdict is Verdict.ALLOW and notices == []


def test_the_budget_window_slides() -> None:
    state = GuardState()
    for i in range(5):
        state, _ = run(state, f"u{i}.service", 100.0 * i)  # at 0, 100, ..., 400
    # At 899.9 the action at 0 is still inside the 15m window: the sixth would freeze.
    _, decision, _ = ask(state, "u5.service", 899.9)
    assert decision.kind == "frozen"
    # At 900 it has left the window: room for one more.
    assert budget_used(CFG, state, 900.0) == 4
    state, decision, notices = ask(state, "u5.service", 900.0)
    assert decision.verdict is Verdict.ALLOW and notices == []
    assert state.actions == (100.0, 200.0, 300.0, 400.0, 900.0)


def test_resume_all_thaws_early_and_starts_the_budget_afresh() -> None:
    state = GuardState()
    for i in range(5):
        state, _ = run(state, f"u{i}.service", float(i))
    state, _, _ = ask(state, "u5.service", 10.0)
    assert state.frozen_until == 910.0

    state, notices = resume_all(state, 20.0)
    assert kinds(notices) == ["thawed"]
    assert "by an operator 14m50s early" in notices[0].message
    assert state.frozen_until is None and state.actions == ()
    assert next_deadline(state) is None
    state, decision, notices = ask(state, "u5.service", 21.0)
    assert decision.verdict is Verdict.ALLOW and notices == []


def test_resume_all_with_nothing_frozen_says_nothing() -> None:
    state = GuardState(actions=(1.0, 2.0))
    after, notices = resume_all(state, 5.0)
    assert after == state and notices == []


# -- the circuit breaker --------------------------------------------------------------------


def fail_in_a_row(
    state: GuardState, count: int, start: float, cfg: GuardConfig = CFG
) -> tuple[GuardState, list[GuardNotice]]:
    notices: list[GuardNotice] = []
    for i in range(count):
        state, more = run(state, f"f{i}.service", start + i, ok=False, cfg=cfg)
        notices += more
    return state, notices


BIG_BUDGET = GuardConfig.model_validate({"repair_budget": {"max": 100, "window": "15m"}})


def test_breaker_opens_after_five_failures_in_a_row() -> None:
    state, notices = fail_in_a_row(GuardState(), 4, 0.0, BIG_BUDGET)
    assert notices == [] and state.failures_in_a_row == 4
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.CLOSED

    state, notices = run(state, "f4.service", 4.0, ok=False, cfg=BIG_BUDGET)
    assert kinds(notices) == ["breaker-open"]
    assert notices[0].severity is Severity.WARNING
    assert "5 automatic actions failed in a row" in notices[0].message
    assert state.breaker_open_until == 64.0
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.OPEN
    assert next_deadline(state) == 64.0


def test_open_breaker_makes_requests_wait_until_open_for_has_passed() -> None:
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)  # open until 64
    after, decision, notices = ask(state, "x.service", 30.0, BIG_BUDGET)
    assert decision == Decision(
        Verdict.WAIT,
        "circuit breaker open after 5 failed actions in a row; one trial in 34s",
        64.0,
        "breaker",
    )
    assert after == state and notices == []


def test_half_open_lets_exactly_one_trial_through_and_success_closes() -> None:
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    state, notices = tick(BIG_BUDGET, state, 64.0)
    assert kinds(notices) == ["breaker-half-open"]
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.HALF_OPEN

    state, decision, _ = ask(state, "trial.service", 65.0, BIG_BUDGET)
    assert decision.verdict is Verdict.ALLOW and "trial" in decision.reason
    assert state.half_open
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.TRIAL

    state, decision, _ = ask(state, "other.service", 66.0, BIG_BUDGET)
    assert decision.verdict is Verdict.WAIT and decision.kind == "breaker"
    assert decision.retry_at == 66.0 + HALF_OPEN_RETRY
    assert "other.service" not in state.running

    state, notices = finished(BIG_BUDGET, state, "trial.service", True, 70.0)
    assert kinds(notices) == ["breaker-closed"]
    assert state.failures_in_a_row == 0 and not state.half_open
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.CLOSED
    state, decision, _ = ask(state, "other.service", 71.0, BIG_BUDGET)
    assert decision.verdict is Verdict.ALLOW


def test_failed_trial_reopens_the_breaker_for_open_for() -> None:
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    state, decision, notices = ask(state, "trial.service", 100.0, BIG_BUDGET)  # missed tick
    assert kinds(notices) == ["breaker-half-open"]
    assert decision.verdict is Verdict.ALLOW

    state, notices = finished(BIG_BUDGET, state, "trial.service", False, 105.0)
    assert kinds(notices) == ["breaker-open"]
    assert "open again" in notices[0].message
    assert state.breaker_open_until == 165.0 and not state.half_open
    _, decision, _ = ask(state, "trial.service", 106.0, BIG_BUDGET)
    assert (decision.verdict, decision.retry_at) == (Verdict.WAIT, 165.0)


def test_a_success_in_between_resets_the_count() -> None:
    state, _ = fail_in_a_row(GuardState(), 4, 0.0, BIG_BUDGET)
    state, _ = run(state, "good.service", 10.0, ok=True, cfg=BIG_BUDGET)
    assert state.failures_in_a_row == 0
    state, notices = fail_in_a_row(state, 4, 20.0, BIG_BUDGET)
    assert notices == [] and state.breaker_open_until is None
    assert state.failures_in_a_row == 4


def test_results_that_come_back_while_open_are_not_counted() -> None:
    state = GuardState()
    # Two actions still running when the breaker opens.
    state, _, _ = ask(state, "slow.service", 0.0, BIG_BUDGET)
    state, _, _ = ask(state, "slower.service", 0.0, BIG_BUDGET)
    state, _ = fail_in_a_row(state, 5, 1.0, BIG_BUDGET)
    assert state.breaker_open_until == 65.0
    state, notices = finished(BIG_BUDGET, state, "slow.service", True, 30.0)
    assert notices == []
    assert state.failures_in_a_row == 5 and state.breaker_open_until == 65.0
    state, notices = finished(BIG_BUDGET, state, "slower.service", False, 40.0)
    assert notices == []
    assert state.failures_in_a_row == 5 and state.breaker_open_until == 65.0
    assert state.running == frozenset()


# -- concurrency ----------------------------------------------------------------------------


def test_three_running_then_the_fourth_waits_until_one_finishes() -> None:
    state = GuardState()
    for unit in ("a.service", "b.service", "c.service"):
        state, decision, _ = ask(state, unit, 1.0)
        assert decision.verdict is Verdict.ALLOW
    after, decision, _ = ask(state, "d.service", 2.0)
    assert decision.verdict is Verdict.WAIT and decision.kind == "concurrency"
    assert decision.retry_at is None
    assert after == state

    state, _ = finished(CFG, state, "b.service", True, 3.0)
    state, decision, _ = ask(state, "d.service", 3.0)
    assert decision.verdict is Verdict.ALLOW
    assert state.running == {"a.service", "c.service", "d.service"}


def test_a_unit_asking_again_while_running_is_refused_and_nothing_changes() -> None:
    state, _, _ = ask(GuardState(), "a.service", 1.0)
    after, decision, notices = ask(state, "a.service", 2.0)
    assert decision.verdict is Verdict.DENY and decision.kind == "concurrency"
    assert "already has an automatic action in flight" in decision.reason
    assert after == state and notices == []


def test_finished_for_a_unit_not_running_changes_nothing() -> None:
    state = GuardState(actions=(1.0,), failures_in_a_row=2, running=frozenset({"a.service"}))
    after, notices = finished(CFG, state, "b.service", False, 5.0)
    assert after is state and notices == []
    # Not even a due tick is applied by an illegal event.
    frozen = GuardState(frozen_until=3.0)
    assert finished(CFG, frozen, "a.service", True, 5.0) == (frozen, [])


# -- pauses ---------------------------------------------------------------------------------


def test_pause_and_resume_one_unit() -> None:
    state = pause(GuardState(), "a.service")
    assert pause(state, "a.service") is state
    _, decision, _ = ask(state, "a.service", 1.0)
    assert decision.verdict is Verdict.DENY and decision.kind == "paused"
    assert "host-supervisor resume a.service" in decision.reason
    _, decision, _ = ask(state, "b.service", 1.0)
    assert decision.verdict is Verdict.ALLOW

    state = resume(state, "a.service")
    assert state == GuardState()
    assert resume(state, "a.service") is state
    _, decision, _ = ask(state, "a.service", 2.0)
    assert decision.verdict is Verdict.ALLOW


def test_pause_all_holds_every_unit_until_resume_all() -> None:
    state = pause(pause_all(GuardState()), "a.service")
    _, decision, _ = ask(state, "b.service", 1.0)
    assert decision.kind == "paused" and "resume --all" in decision.reason
    # Resuming one unit does not end the pause of all.
    _, decision, _ = ask(resume(state, "a.service"), "a.service", 1.0)
    assert decision.kind == "paused"

    state, notices = resume_all(state, 2.0)
    assert notices == []
    assert state == GuardState()


# -- persistence and deadlines --------------------------------------------------------------


def roundtrip(state: GuardState) -> GuardState:
    return GuardState.from_dict(json.loads(json.dumps(state.to_dict())))


def test_to_dict_round_trips_through_json() -> None:
    state = GuardState(
        actions=(1.5, 2.0),
        running=frozenset({"b.service", "a.service"}),
        paused=frozenset({"c.service"}),
        paused_all=True,
    )
    assert roundtrip(state) == state
    assert state.to_dict()["running"] == ["a.service", "b.service"]
    assert roundtrip(GuardState()) == GuardState()


def test_round_trip_after_freezing_and_with_the_breaker_open() -> None:
    state = GuardState()
    for i in range(5):
        state, _ = run(state, f"u{i}.service", float(i))
    state, _, _ = ask(state, "u5.service", 10.0)
    assert state.frozen_until is not None
    assert roundtrip(state) == state

    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    state, _, _ = ask(state, "slow.service", 70.0, BIG_BUDGET)  # the half-open trial
    assert state.half_open
    assert roundtrip(state) == state
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    assert state.breaker_open_until is not None
    restored = roundtrip(state)
    assert restored == state
    # The restored state behaves the same.
    assert ask(restored, "x.service", 30.0, BIG_BUDGET)[1].retry_at == 64.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"actions": "1.0"}, "actions"),
        ({"actions": [True]}, "actions"),
        ({"frozen_until": "soon"}, "frozen_until"),
        ({"failures_in_a_row": -1}, "failures_in_a_row"),
        ({"half_open": 1}, "half_open"),
        ({"running": [3]}, "running"),
    ],
)
def test_from_dict_names_the_bad_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        GuardState.from_dict(data)


def test_from_dict_takes_defaults_for_missing_keys_and_ignores_unknown_ones() -> None:
    assert GuardState.from_dict({"paused_all": True, "future": 1}) == GuardState(paused_all=True)


def test_next_deadline_is_the_earliest_of_thaw_and_breaker() -> None:
    assert next_deadline(GuardState()) is None
    assert next_deadline(GuardState(frozen_until=50.0)) == 50.0
    assert next_deadline(GuardState(breaker_open_until=40.0)) == 40.0
    assert next_deadline(GuardState(frozen_until=50.0, breaker_open_until=60.0)) == 50.0
    # Old action times do not need a tick: requests count only the window.
    assert next_deadline(GuardState(actions=(1.0,))) is None


def test_tick_with_nothing_due_returns_the_same_state() -> None:
    state = GuardState(actions=(10.0,), frozen_until=2000.0, breaker_open_until=3000.0)
    assert tick(CFG, state, 100.0) == (state, [])


def test_a_cancelled_action_is_neither_budget_nor_breaker() -> None:
    from supervisor.config import GuardConfig
    from supervisor.core.guard import GuardState, cancelled, request

    cfg = GuardConfig.model_validate({"repair_budget": {"max": 1, "window": "15m"}})
    state, decision, _ = request(cfg, GuardState(), "a.service", allow_automatic=False, now=10.0)
    assert decision.verdict.value == "allow" and state.actions == (10.0,)
    state = cancelled(state, "a.service", 10.0)
    assert state.running == frozenset() and state.actions == ()
    assert state.failures_in_a_row == 0
    # The budget of one is still there for a real repair.
    _, decision, _ = request(cfg, state, "a.service", allow_automatic=False, now=11.0)
    assert decision.verdict.value == "allow"
    # Not running: no change.
    assert cancelled(state, "b.service", 10.0) is state


# -- operators' actions -----------------------------------------------------------------------


def test_an_operator_action_counts_in_the_budget_but_never_touches_the_breaker() -> None:
    state, _ = fail_in_a_row(GuardState(), 4, 0.0, BIG_BUDGET)
    assert state.failures_in_a_row == 4
    state, decision, _ = operator_request(BIG_BUDGET, state, "web.service", now=1.0)
    assert decision.verdict is Verdict.ALLOW
    assert state.failures_in_a_row == 4  # not reset: nothing automatic has succeeded
    assert "web.service" not in state.running  # nothing to finish
    assert budget_used(BIG_BUDGET, state, 1.0) == 5


def test_an_operator_action_does_not_use_up_or_close_a_half_open_breaker() -> None:
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    state, _ = tick(BIG_BUDGET, state, 64.0)
    state, decision, notices = operator_request(BIG_BUDGET, state, "web.service", now=65.0)
    assert decision.verdict is Verdict.ALLOW and notices == []
    assert breaker_phase(BIG_BUDGET, state) is BreakerPhase.HALF_OPEN  # the trial is still due
    state, decision, _ = ask(state, "trial.service", 66.0, BIG_BUDGET)
    assert decision.verdict is Verdict.ALLOW and "trial" in decision.reason


def test_an_operator_action_is_refused_while_the_breaker_is_open_and_when_paused() -> None:
    state, _ = fail_in_a_row(GuardState(), 5, 0.0, BIG_BUDGET)
    _, decision, _ = operator_request(BIG_BUDGET, state, "web.service", now=1.0)
    assert (decision.verdict, decision.kind) == (Verdict.WAIT, "breaker")
    paused = pause(GuardState(), "web.service")
    _, decision, _ = operator_request(CFG, paused, "web.service", now=1.0)
    assert (decision.verdict, decision.kind) == (Verdict.DENY, "paused")
