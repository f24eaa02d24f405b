"""The recovery ladder, driven directly with explicit times (no clock, no sleeps)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from supervisor.core.health import Condition
from supervisor.core.recovery import (
    ActionFinished,
    Notice,
    Observed,
    OperatorReset,
    Phase,
    RecoveryState,
    Report,
    RunRung,
    Tick,
    cooldown_before,
    step,
)


@dataclass(frozen=True)
class Spec:
    ladder: tuple[str, ...] = ("restart", "reload", "restore")
    cooldown: float = 60.0
    backoff: float = 1.0
    max_cooldown: float = 3600.0
    max_attempts: int = 3
    reset_after: float = 600.0
    settle: float = 10.0
    extra: dict[str, str] = field(default_factory=dict)


UNHEALTHY = Observed(Condition.UNHEALTHY)
HEALTHY = Observed(Condition.HEALTHY)


def test_first_failure_restarts_at_once() -> None:
    state, actions = step(Spec(), RecoveryState(), UNHEALTHY, now=100.0)
    assert actions == [RunRung("restart", 1, 3)]
    assert state.phase is Phase.ACTING
    assert state.attempts == 1
    assert state.last_action_at == 100.0


def test_success_settles_then_reports_recovered() -> None:
    spec = Spec()
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, actions = step(spec, state, ActionFinished(True), 1.0)
    assert (state.phase, state.deadline, actions) == (Phase.SETTLING, 11.0, [])
    state, _ = step(spec, state, HEALTHY, 1.5)
    # Healthy before the settle time is not yet judged.
    state, actions = step(spec, state, Tick(), 10.9)
    assert state.phase is Phase.SETTLING and actions == []
    state, actions = step(spec, state, Tick(), 11.0)
    assert state.phase is Phase.IDLE
    assert actions == [Report(Notice.RECOVERED, "healthy after attempt 1")]
    # Counts are kept until the unit has been healthy for reset_after.
    assert state.attempts == 1
    assert state.deadline == 1.5 + 600.0


def test_still_unhealthy_escalates_after_cooldown() -> None:
    spec = Spec()
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 1.0)
    state, actions = step(spec, state, Tick(), 11.0)
    assert state.phase is Phase.COOLDOWN
    assert state.deadline == 60.0  # cooldown counts from the previous action
    assert actions == []
    state, actions = step(spec, state, Tick(), 60.0)
    assert actions == [RunRung("reload", 2, 3)]


def test_backoff_grows_cooldown_up_to_max() -> None:
    spec = Spec(cooldown=10.0, backoff=2.0, max_cooldown=30.0)
    assert [cooldown_before(spec, n) for n in range(5)] == [0.0, 10.0, 20.0, 30.0, 30.0]


def test_exhausted_after_max_attempts_says_what_was_tried() -> None:
    spec = Spec(cooldown=0.0, settle=1.0)
    state = RecoveryState()
    rungs = []
    now = 0.0
    state, actions = step(spec, state, UNHEALTHY, now)
    while True:
        runs = [a for a in actions if isinstance(a, RunRung)]
        rungs += [a.rung for a in runs]
        if not runs:
            break
        now += 1.0
        state, actions = step(spec, state, ActionFinished(True), now)
        now += 1.0
        state, actions = step(spec, state, Tick(), now)
    assert rungs == ["restart", "reload", "restore"]
    assert state.phase is Phase.EXHAUSTED
    assert actions == [
        Report(
            Notice.EXHAUSTED,
            "3 attempt(s) (restart, reload, restore) did not keep it healthy; a person must act",
        )
    ]
    # Exhausted: a further failure does nothing.
    state2, actions = step(spec, state, UNHEALTHY, now + 100)
    assert actions == [] and state2.phase is Phase.EXHAUSTED


def test_ladder_repeats_last_rung_when_attempts_exceed_rungs() -> None:
    spec = Spec(ladder=("restart",), cooldown=0.0, max_attempts=3, settle=1.0)
    state, a1 = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.5)
    state, a2 = step(spec, state, Tick(), 1.5)
    assert a1 == [RunRung("restart", 1, 3)] and a2 == [RunRung("restart", 2, 3)]


def test_failed_action_settles_before_the_next_attempt() -> None:
    spec = Spec(cooldown=0.0, settle=5.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, actions = step(spec, state, ActionFinished(False, "job failed"), 2.0)
    assert actions == [Report(Notice.ACTION_FAILED, "job failed")]
    assert (state.phase, state.deadline) == (Phase.SETTLING, 7.0)
    # Even with no cooldown, a refused job is not retried in a tight loop.
    state, actions = step(spec, state, Tick(), 7.0)
    assert actions == [RunRung("reload", 2, 3)]


def test_crash_soon_after_recovery_keeps_climbing() -> None:
    spec = Spec(cooldown=30.0, settle=5.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 1.0)
    state, _ = step(spec, state, HEALTHY, 1.1)
    state, _ = step(spec, state, Tick(), 6.0)
    assert state.phase is Phase.IDLE and state.attempts == 1
    # It crashes again 10 s later: not a fresh start at `restart`, and the cooldown holds.
    state, actions = step(spec, state, UNHEALTHY, 16.0)
    assert actions == [] and state.phase is Phase.COOLDOWN and state.deadline == 30.0
    state, actions = step(spec, state, Tick(), 30.0)
    assert actions == [RunRung("reload", 2, 3)]


def test_attempts_reset_only_after_reset_after_of_health() -> None:
    spec = Spec(settle=1.0, reset_after=100.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.5)
    state, _ = step(spec, state, HEALTHY, 0.6)
    state, _ = step(spec, state, Tick(), 1.5)
    state, actions = step(spec, state, Tick(), 100.5)
    assert state.attempts == 1 and actions == []
    state, actions = step(spec, state, Tick(), 100.6)
    assert state.attempts == 0
    assert [a.notice for a in actions if isinstance(a, Report)] == [Notice.ATTEMPTS_RESET]


def test_operator_stop_during_cooldown_abandons_the_episode() -> None:
    spec = Spec(settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.5)
    state, _ = step(spec, state, Tick(), 1.5)
    assert state.phase is Phase.COOLDOWN
    state, actions = step(spec, state, Observed(Condition.STOPPED), 5.0)
    assert state.phase is Phase.IDLE and state.deadline is None
    assert [a.notice for a in actions if isinstance(a, Report)] == [Notice.EPISODE_ABANDONED]
    state, actions = step(spec, state, Tick(), 60.0)
    assert actions == []


@pytest.mark.parametrize(
    "condition", [Condition.STOPPED, Condition.TRANSIENT, Condition.MISSING, Condition.HEALTHY]
)
def test_only_unhealthy_triggers_an_action(condition: Condition) -> None:
    state, actions = step(Spec(), RecoveryState(), Observed(condition), 0.0)
    assert actions == [] and state.phase is Phase.IDLE


def test_systemd_restart_after_settle_is_not_judged_unhealthy() -> None:
    spec = Spec(settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.2)
    state, _ = step(spec, state, Observed(Condition.TRANSIENT), 0.3)
    state, actions = step(spec, state, Tick(), 1.2)
    assert actions == [] and state.phase is Phase.IDLE


def test_operator_reset_clears_exhaustion() -> None:
    spec = Spec(max_attempts=1, settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.1)
    state, _ = step(spec, state, Tick(), 1.1)
    assert state.phase is Phase.EXHAUSTED
    state, actions = step(spec, state, OperatorReset(), 2.0)
    # Still unhealthy: the reset re-arms the ladder, and its first rung runs at once.
    assert (state.phase, state.attempts) == (Phase.ACTING, 1)
    assert actions == [RunRung("restart", 1, 1)]


def test_operator_reset_of_a_healthy_unit_forgets_the_attempts() -> None:
    spec = Spec(max_attempts=3, settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.1)
    state, _ = step(spec, state, Observed(Condition.HEALTHY), 0.5)
    state, _ = step(spec, state, Tick(), 1.1)
    assert (state.phase, state.attempts) == (Phase.IDLE, 1)
    state, actions = step(spec, state, OperatorReset(), 2.0)
    assert (state.phase, state.attempts, actions) == (Phase.IDLE, 0, [])


def test_operator_reset_during_an_action_still_judges_it() -> None:
    spec = Spec(max_attempts=3, settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(False), 0.1)
    state, _ = step(spec, state, Tick(), 1.1)
    state, _ = step(spec, state, Tick(), 400.0)
    assert (state.phase, state.attempts) == (Phase.ACTING, 2)
    state, actions = step(spec, state, OperatorReset(), 400.5)
    assert (state.phase, state.attempts, actions) == (Phase.ACTING, 1, [])
    state, _ = step(spec, state, ActionFinished(True), 401.0)
    assert state.phase is Phase.SETTLING  # the action in flight is judged, not lost


def test_results_out_of_phase_change_nothing() -> None:
    state = RecoveryState()
    assert step(Spec(), state, ActionFinished(True), 1.0) == (state, [])
    assert step(Spec(), state, Tick(), 1.0) == (state, [])


def test_recovery_seen_after_settle_is_reported_once() -> None:
    # Checks restart as pending after a restart, so health may come after settle.
    spec = Spec(settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.1)
    state, _ = step(spec, state, Observed(Condition.UNKNOWN), 0.2)
    state, actions = step(spec, state, Tick(), 1.1)
    assert actions == [] and state.phase is Phase.IDLE and state.episode_open
    state, actions = step(spec, state, HEALTHY, 5.0)
    assert actions == [Report(Notice.RECOVERED, "healthy again after attempt 1")]
    state, actions = step(spec, state, Observed(Condition.DEGRADED), 6.0)
    state, actions = step(spec, state, HEALTHY, 7.0)
    assert actions == []


def test_degraded_is_not_repaired() -> None:
    state, actions = step(Spec(), RecoveryState(), Observed(Condition.DEGRADED), 0.0)
    assert actions == [] and state.phase is Phase.IDLE


# -- held, resumed, skipped, and persistence -------------------------------

from supervisor.core.recovery import Held, Resume, Skipped  # noqa: E402


def test_a_held_action_is_not_an_attempt_and_retries_at_its_time() -> None:
    spec = Spec(cooldown=60.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, actions = step(spec, state, Held("repair budget spent", until=30.0), 0.0)
    assert actions == [Report(Notice.HELD, "repair budget spent")]
    assert (state.phase, state.attempts, state.last_action_at) == (Phase.HELD, 0, None)
    assert state.deadline == 30.0 and state.held_reason == "repair budget spent"
    state, actions = step(spec, state, Tick(), 30.0)
    assert actions == [RunRung("restart", 1, 3)]  # no cooldown: nothing had run


def test_held_without_a_time_waits_for_resume() -> None:
    state, _ = step(Spec(), RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(Spec(), state, Held("paused by an operator"), 0.0)
    assert state.deadline is None
    state, actions = step(Spec(), state, Tick(), 1000.0)
    assert actions == []
    state, actions = step(Spec(), state, Resume(), 1001.0)
    assert actions == [RunRung("restart", 1, 3)]


def test_held_then_healthy_goes_idle_without_acting() -> None:
    state, _ = step(Spec(), RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(Spec(), state, Held("protected unit"), 0.0)
    state, actions = step(Spec(), state, HEALTHY, 5.0)
    assert state.phase is Phase.IDLE and actions == []
    state, actions = step(Spec(), state, Resume(), 6.0)
    assert actions == []


def test_a_skipped_rung_moves_to_the_next_at_once_without_using_an_attempt() -> None:
    spec = Spec(ladder=("reload", "restart"), cooldown=60.0)
    state, actions = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    assert actions == [RunRung("reload", 1, 3)]
    state, actions = step(spec, state, Skipped("cannot reload: no ExecReload="), 0.1)
    assert actions == [
        Report(Notice.SKIPPED, "cannot reload: no ExecReload="),
        RunRung("restart", 1, 3),
    ]
    assert state.attempts == 1 and state.skips == 1


def test_exhaustion_names_the_rungs_that_ran_not_the_ones_skipped() -> None:
    spec = Spec(ladder=("restart", "reload", "restore"), cooldown=0.0, settle=1.0)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)  # restart
    state, _ = step(spec, state, ActionFinished(True), 0.1)
    state, actions = step(spec, state, Tick(), 1.1)
    assert actions == [RunRung("reload", 2, 3)]
    state, actions = step(spec, state, Skipped("cannot reload"), 1.2)
    assert actions[-1] == RunRung("restore", 2, 3)
    state, _ = step(spec, state, ActionFinished(True), 1.3)
    state, actions = step(spec, state, Tick(), 2.3)
    assert actions == [RunRung("restore", 3, 3)]
    state, _ = step(spec, state, ActionFinished(True), 2.4)
    state, actions = step(spec, state, Tick(), 3.4)
    assert actions == [
        Report(
            Notice.EXHAUSTED,
            "3 attempt(s) (restart, restore, restore) did not keep it healthy; a person must act",
        )
    ]


def test_skipping_the_last_rung_counts_as_a_failed_attempt() -> None:
    spec = Spec(ladder=("restart", "reload"), cooldown=0.0, settle=1.0, max_attempts=2)
    state, _ = step(spec, RecoveryState(), UNHEALTHY, 0.0)
    state, _ = step(spec, state, ActionFinished(True), 0.1)
    state, actions = step(spec, state, Tick(), 1.1)
    assert actions == [RunRung("reload", 2, 2)]
    state, actions = step(spec, state, Skipped("cannot reload"), 1.2)
    assert actions == [Report(Notice.ACTION_FAILED, "cannot reload")]
    assert state.phase is Phase.SETTLING and state.attempts == 2


def test_state_round_trips_through_json() -> None:
    import json

    state, _ = step(Spec(), RecoveryState(), UNHEALTHY, 100.0)
    state, _ = step(Spec(), state, ActionFinished(True), 101.0)
    restored = RecoveryState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
