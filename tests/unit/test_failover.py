"""The failover machine, driven directly with explicit times (no clock, no sleeps).

Every event goes through `Run`, which simulates which units run (a unit counts as
running from the StartUnit asked for it until a successful stop of it is reported)
and asserts after each step that at most one of the primary and its backups runs,
that it is the one the state calls `active`, and that the state survives its JSON
round trip.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from supervisor.config import Failover
from supervisor.core import failover
from supervisor.core.failover import (
    MAX_FAILBACK_WAIT,
    Action,
    Event,
    FailoverState,
    Health,
    JobDone,
    Kind,
    LadderExhausted,
    ManualFailback,
    ManualFailover,
    Notify,
    Phase,
    PrimaryHardFailure,
    PrimaryStable,
    Record,
    Recoverable,
    RunCanRecover,
    StartUnit,
    Step,
    StopUnit,
    Tick,
    Verb,
    failback_wait,
    render_table,
    repairs_allowed,
    resume,
    step,
)
from supervisor.core.values import Severity

P, B1, B2 = "web.service", "b1.service", "b2.service"


def spec(**overrides: Any) -> Failover:
    raw: dict[str, Any] = {
        "backup": [B1, B2],
        "settle": "10s",
        "failback": {"delay": "30s", "successes": 2},
    }
    raw.update(overrides)
    return Failover.model_validate(raw)


def stopped(unit: str, ok: bool = True, detail: str = "") -> JobDone:
    return JobDone(unit, Verb.STOP, ok, detail)


def started(unit: str, ok: bool = True, detail: str = "") -> JobDone:
    return JobDone(unit, Verb.START, ok, detail)


def healthy(unit: str) -> Health:
    return Health(unit, True)


def sick(unit: str, detail: str = "") -> Health:
    return Health(unit, False, detail)


def kinds(actions: list[Action]) -> list[Kind]:
    return [a.kind for a in actions if isinstance(a, Notify)]


def note(actions: list[Action], kind: Kind) -> str:
    """The message of the one Notify of `kind` among `actions`."""
    [message] = [a.message for a in actions if isinstance(a, Notify) and a.kind is kind]
    return message


def jobs(actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, StopUnit | StartUnit)]


SEEN: list[FailoverState] = []  # every state any test reached: the corpus for the property tests


class Run:
    def __init__(self, spec: Failover, state: FailoverState | None = None) -> None:
        self.spec = spec
        self.state = state or FailoverState.initial(P)
        self.running: set[str] = {self.state.active} if self.state.active else set()
        self.actions: list[Action] = []

    def __call__(self, event: Event, now: float) -> list[Action]:
        state, actions = step(self.spec, self.state, event, now)
        self._check(event, state, actions)
        return actions

    def resume(self, now: float) -> list[Action]:
        state, actions = resume(self.state, now)
        self._check(None, state, actions)
        return actions

    def _check(self, event: Event | None, state: FailoverState, actions: list[Action]) -> None:
        if isinstance(event, JobDone) and event.verb is Verb.STOP and event.ok:
            self.running.discard(event.unit)
        self.running |= {a.unit for a in actions if isinstance(a, StartUnit)}
        units = {P, *self.spec.backup}
        assert len(self.running & units) <= 1, f"both started: {self.running} after {event}"
        assert self.running <= {state.active}, f"{self.running} running, active {state.active}"
        doc = json.loads(json.dumps(state.to_dict()))
        assert doc == state.to_dict()
        assert FailoverState.from_dict(doc) == state
        self.state = state
        self.actions.extend(actions)
        SEEN.append(state)


def to_backup(run: Run, at: float = 0.0) -> None:
    """Ladder exhausted at `at`; b1 stopped/started/healthy within 5 s: BACKUP on b1."""
    run(LadderExhausted(), at)
    run(stopped(P), at + 1)
    run(started(B1), at + 2)
    run(healthy(B1), at + 5)
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B1)


# Rule 1 and 2: triggers and the failover steps ----------------------------


def test_full_failover_stops_primary_then_starts_backup_then_judges_it() -> None:
    run = Run(spec())
    actions = run(LadderExhausted("3 attempts (restart, reload, restore)"), 100.0)
    assert actions[-1] == StopUnit(P)
    assert kinds(actions) == [Kind.FAILOVER_STARTED]
    assert isinstance(actions[0], Notify) and actions[0].severity is Severity.WARNING
    assert "restart, reload, restore" in actions[0].message
    assert (run.state.phase, run.state.in_flight, run.state.unit) == (
        Phase.FAILING_OVER,
        Step.STOP,
        P,
    )
    assert not repairs_allowed(run.state)

    assert run(stopped(P), 101.0) == [StartUnit(B1)]
    assert run(started(B1), 102.0) == []
    assert (run.state.in_flight, run.state.deadline) == (Step.JUDGE, 112.0)

    actions = run(healthy(B1), 104.0)
    assert kinds(actions) == [Kind.FAILOVER_DONE]
    assert run.state.phase is Phase.BACKUP
    assert (run.state.serving, run.state.active) == (B1, B1)
    assert run.state.failback_at == 134.0 == run.state.deadline
    assert jobs(run.actions) == [StopUnit(P), StartUnit(B1)]


def test_health_before_the_start_job_is_done_is_ignored() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    before = run.state
    assert run(healthy(B1), 1.5) == []
    assert run.state == before  # still waiting for the start job


def test_hard_failures_count_toward_after_failures() -> None:
    run = Run(spec(after_failures=3))
    assert run(PrimaryHardFailure("http check"), 0.0) == [
        Record(f"hard failure 1/3 of {P}: http check")
    ]
    run(PrimaryHardFailure(), 10.0)
    assert (run.state.phase, run.state.failures) == (Phase.PRIMARY, 2)
    actions = run(PrimaryHardFailure(), 20.0)
    assert run.state.phase is Phase.FAILING_OVER
    assert actions[-1] == StopUnit(P)
    assert "failed hard 3 time(s)" in note(actions, Kind.FAILOVER_STARTED)


def test_hard_failures_are_ignored_without_after_failures() -> None:
    run = Run(spec())
    before = run.state
    assert run(PrimaryHardFailure(), 0.0) == []
    assert run.state == before


def test_a_stable_primary_forgets_its_hard_failures() -> None:
    run = Run(spec(after_failures=2))
    run(PrimaryHardFailure(), 0.0)
    assert run(PrimaryStable(), 3600.0) == [Record(f"{P} stable: 1 hard failure(s) forgotten")]
    run(PrimaryHardFailure(), 3700.0)
    assert (run.state.phase, run.state.failures) == (Phase.PRIMARY, 1)


def test_backup_that_fails_to_start_is_stopped_and_the_next_started() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    actions = run(started(B1, ok=False, detail="unit not found"), 2.0)
    assert kinds(actions) == [Kind.BACKUP_FAILED]
    assert actions[-1] == StopUnit(B1)  # cold standby: never a half-started backup left
    assert run(stopped(B1), 3.0) == [StartUnit(B2)]
    run(started(B2), 4.0)
    run(healthy(B2), 5.0)
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B2)
    assert run.state.tried == ((B1, "start failed: unit not found"),)
    assert jobs(run.actions) == [StopUnit(P), StartUnit(B1), StopUnit(B1), StartUnit(B2)]


def test_backup_judged_unhealthy_is_stopped_and_the_next_tried() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1), 2.0)
    actions = run(sick(B1, "http 502"), 3.0)
    assert actions[-1] == StopUnit(B1)
    assert run.state.tried == ((B1, "unhealthy: http 502"),)
    assert run(stopped(B1), 4.0) == [StartUnit(B2)]


def test_backup_not_judged_healthy_within_settle_is_abandoned() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1), 2.0)
    assert run(Tick(), 11.9) == []
    assert run.state.in_flight is Step.JUDGE
    actions = run(Tick(), 12.0)
    assert actions[-1] == StopUnit(B1)
    assert run.state.tried == ((B1, "not judged healthy within 10s"),)


def test_all_backups_fail_then_primary_started_again_and_failed_critical() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1, ok=False, detail="exit-code"), 2.0)
    run(stopped(B1), 3.0)
    run(started(B2), 4.0)
    run(sick(B2), 5.0)
    # No backup left: the best state known is the primary, started again.
    assert run(stopped(B2), 6.0) == [StartUnit(P)]
    assert (run.state.phase, run.state.in_flight) == (Phase.FAILING_OVER, Step.START)
    actions = run(started(P), 7.0)
    assert run.state.phase is Phase.FAILED
    assert (run.state.serving, run.state.active) == (None, P)
    [notice] = actions
    assert isinstance(notice, Notify)
    assert (notice.kind, notice.severity) == (Kind.FAILOVER_FAILED, Severity.CRITICAL)
    assert f"{B1} (start failed: exit-code)" in notice.message
    assert f"{B2} (unhealthy)" in notice.message
    assert "a person must act" in notice.message
    assert jobs(run.actions) == [
        StopUnit(P),
        StartUnit(B1),
        StopUnit(B1),
        StartUnit(B2),
        StopUnit(B2),
        StartUnit(P),
    ]


def test_primary_that_cannot_be_stopped_starts_nothing() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    actions = run(stopped(P, ok=False, detail="access denied"), 1.0)
    assert run.state.phase is Phase.FAILED
    assert jobs(actions) == []
    assert kinds(actions) == [Kind.FAILOVER_FAILED]
    assert "could not stop web.service (access denied)" in note(actions, Kind.FAILOVER_FAILED)
    assert run.state.active == P


def test_failed_backup_that_cannot_be_stopped_starts_nothing_else() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1), 2.0)
    run(sick(B1), 3.0)
    actions = run(stopped(B1, ok=False, detail="timeout"), 4.0)
    assert run.state.phase is Phase.FAILED
    assert jobs(actions) == []
    assert run.state.active == B1


def test_job_results_for_another_unit_or_verb_are_ignored() -> None:
    run = Run(spec())
    run(LadderExhausted(), 0.0)
    before = run.state
    for stale in (started(P), stopped(B1), started(B1), JobDone(P, Verb.START, False)):
        assert run(stale, 0.5) == []
        assert run.state == before  # nothing is started before the primary is stopped


# Rule 3: failback ----------------------------------------------------------


def test_failback_after_delay_requires_successes_within_settle() -> None:
    run = Run(spec())
    to_backup(run, at=0.0)  # BACKUP since 5
    assert run(Tick(), 34.9) == []
    actions = run(Tick(), 35.0)
    assert kinds(actions) == [Kind.FAILBACK_STARTED]
    assert actions[-1] == StopUnit(B1)
    assert run.state.phase is Phase.FAILING_BACK
    assert run(stopped(B1), 36.0) == [StartUnit(P)]
    assert run(started(P), 37.0) == []
    assert run.state.deadline == 47.0
    assert run(healthy(P), 40.0) == []
    assert (run.state.phase, run.state.successes) == (Phase.FAILING_BACK, 1)
    actions = run(healthy(P), 45.0)
    assert kinds(actions) == [Kind.FAILBACK_DONE]
    assert run.state == replace(FailoverState.initial(P), since=45.0)
    assert repairs_allowed(run.state)
    assert jobs(run.actions) == [StopUnit(P), StartUnit(B1), StopUnit(B1), StartUnit(P)]


def test_failed_failback_returns_to_backup_and_doubles_the_wait() -> None:
    run = Run(spec())
    to_backup(run, at=0.0)
    run(Tick(), 35.0)
    run(stopped(B1), 36.0)
    run(started(P), 37.0)
    run(healthy(P), 38.0)
    actions = run(sick(P, "http 500"), 39.0)
    assert kinds(actions) == [Kind.FAILBACK_FAILED]
    assert actions[-1] == StopUnit(P)
    assert "the next failback waits 1m" in note(actions, Kind.FAILBACK_FAILED)
    assert run.state.failed_failbacks == 1
    assert run(stopped(P), 40.0) == [StartUnit(B1)]
    run(started(B1), 41.0)
    run(healthy(B1), 42.0)
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B1)
    assert run.state.deadline == 42.0 + 60.0
    # The second failback fails by its deadline: the wait doubles again.
    run(Tick(), 102.0)
    run(stopped(B1), 103.0)
    run(started(P), 104.0)
    run(healthy(P), 105.0)
    actions = run(Tick(), 114.0)
    assert "1/2 healthy result(s) within 10s" in note(actions, Kind.FAILBACK_FAILED)
    run(stopped(P), 115.0)
    run(started(B1), 116.0)
    run(healthy(B1), 117.0)
    assert run.state.deadline == 117.0 + 120.0
    # A successful failback forgets the back-off.
    run(Tick(), 237.0)
    run(stopped(B1), 238.0)
    run(started(P), 239.0)
    run(healthy(P), 240.0)
    run(healthy(P), 241.0)
    assert (run.state.phase, run.state.failed_failbacks) == (Phase.PRIMARY, 0)


def test_failback_wait_is_capped() -> None:
    state = FailoverState.initial(P)
    assert failback_wait(spec(), state) == 30.0
    assert failback_wait(spec(), FailoverState(P, failed_failbacks=3)) == 240.0
    assert failback_wait(spec(), FailoverState(P, failed_failbacks=500)) == MAX_FAILBACK_WAIT
    long = spec(failback={"delay": "2h", "successes": 1})
    assert failback_wait(long, FailoverState(P, failed_failbacks=4)) == 7200.0


def test_failback_whose_primary_does_not_start_goes_back() -> None:
    run = Run(spec())
    to_backup(run)
    run(Tick(), 35.0)
    run(stopped(B1), 36.0)
    actions = run(started(P, ok=False, detail="exit-code"), 37.0)
    assert kinds(actions) == [Kind.FAILBACK_FAILED]
    assert actions[-1] == StopUnit(P)
    assert run(stopped(P), 38.0) == [StartUnit(B1)]


def test_failback_whose_backup_cannot_be_stopped_keeps_the_backup() -> None:
    run = Run(spec())
    to_backup(run)
    run(Tick(), 35.0)
    actions = run(stopped(B1, ok=False, detail="timeout"), 36.0)
    assert kinds(actions) == [Kind.FAILBACK_FAILED]
    assert jobs(actions) == []  # the primary is not started beside it
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B1)
    assert run.state.deadline == 36.0 + 60.0


def test_can_recover_false_keeps_the_backup_and_asks_again() -> None:
    run = Run(spec(can_recover=["/bin/true"]))
    to_backup(run)
    assert run(Tick(), 35.0) == [RunCanRecover()]
    assert run.state.in_flight is Step.CHECK
    actions = run(Recoverable(False, "exit 1"), 35.5)
    assert actions == [Record(f"{P} cannot recover yet (exit 1); asking again in 30s")]
    assert (run.state.phase, run.state.serving, run.state.deadline) == (Phase.BACKUP, B1, 65.5)
    assert run(Tick(), 65.5) == [RunCanRecover()]
    actions = run(Recoverable(True), 66.0)
    assert actions[-1] == StopUnit(B1)
    assert run.state.phase is Phase.FAILING_BACK


def test_manual_failback_mode() -> None:
    run = Run(spec(failback="manual"))
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1), 2.0)
    actions = run(healthy(B1), 3.0)
    assert kinds(actions) == [Kind.FAILOVER_DONE, Kind.MANUAL_NEEDED]
    assert f"host-supervisor failback {P}" in note(actions, Kind.MANUAL_NEEDED)
    assert run.state.deadline is None
    assert run(Tick(), 10 * 86400.0) == []
    assert run.state.phase is Phase.BACKUP
    # Moving to another backup is the same episode: no second manual-needed.
    run(sick(B1), 100.0)
    run(stopped(B1), 101.0)
    run(started(B2), 102.0)
    assert kinds(run(healthy(B2), 103.0)) == [Kind.FAILOVER_DONE]
    actions = run(ManualFailback(), 200.0)
    assert actions[-1] == StopUnit(B2)
    run(stopped(B2), 201.0)
    run(started(P), 202.0)
    assert kinds(run(healthy(P), 203.0)) == [Kind.FAILBACK_DONE]  # one success with manual


def test_serving_backup_that_fails_moves_to_the_other_backups() -> None:
    run = Run(spec())
    to_backup(run)
    actions = run(sick(B1, "port 80 closed"), 20.0)
    assert kinds(actions) == [Kind.BACKUP_FAILED]
    assert actions[-1] == StopUnit(B1)
    assert run.state.order == (B2,)
    assert run(stopped(B1), 21.0) == [StartUnit(B2)]


def test_serving_backups_health_good_news_changes_nothing() -> None:
    run = Run(spec())
    to_backup(run)
    before = run.state
    assert run(healthy(B1), 20.0) == []
    assert run(sick(B2), 20.0) == []
    assert run.state == before


# Manual commands -----------------------------------------------------------


def test_manual_failover_to_a_named_backup_holds_failback() -> None:
    run = Run(spec())
    actions = run(ManualFailover(B2), 0.0)
    assert actions[-1] == StopUnit(P)
    assert run.state.order == (B2, B1)
    assert run.state.manual_hold
    assert run(stopped(P), 1.0) == [StartUnit(B2)]
    run(started(B2), 2.0)
    actions = run(healthy(B2), 3.0)
    assert "held by an operator" in note(actions, Kind.FAILOVER_DONE)
    assert run.state.deadline is None  # no automatic failback
    assert run(Tick(), 1e6) == []
    run(ManualFailback(), 100.0)
    assert (run.state.phase, run.state.manual_hold) == (Phase.FAILING_BACK, False)


def test_manual_failover_to_an_unknown_backup_is_refused() -> None:
    run = Run(spec())
    before = run.state
    [record] = run(ManualFailover("nope.service"), 0.0)
    assert isinstance(record, Record) and "not a backup" in record.message
    assert run.state == before


def test_manual_commands_refused_where_they_make_no_sense() -> None:
    run = Run(spec())
    before = run.state
    assert run(ManualFailback(), 0.0) == [Record(f"manual failback refused: {P} already serves")]
    assert run.state == before
    run(LadderExhausted(), 1.0)
    busy = run.state
    assert run(ManualFailover(), 2.0) == [
        Record("manual failover refused: failing-over: stop web.service in flight")
    ]
    assert run.state == busy


def test_manual_switch_between_backups_keeps_the_serving_one_last() -> None:
    run = Run(spec())
    to_backup(run)
    before = run.state
    assert run(ManualFailover(), 20.0) == [
        Record(f"manual failover refused: {B1} already serves: name another backup")
    ]
    assert run.state == before
    actions = run(ManualFailover(B2), 20.0)
    assert actions[-1] == StopUnit(B1)
    assert run.state.order == (B2, B1)
    run(stopped(B1), 21.0)
    run(started(B2, ok=False), 22.0)
    run(stopped(B2), 23.0)
    assert run.state.unit == B1  # the one that served, before giving up on backups
    run(started(B1), 24.0)
    run(healthy(B1), 25.0)
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B1)


# Rule 4: what PRIMARY and FAILED ignore ------------------------------------


def failed_run() -> Run:
    run = Run(spec(backup=[B1]))
    run(LadderExhausted(), 0.0)
    run(stopped(P), 1.0)
    run(started(B1, ok=False), 2.0)
    run(stopped(B1), 3.0)
    run(started(P), 4.0)
    assert run.state.phase is Phase.FAILED
    return run


def test_failed_changes_only_on_manual_commands_or_a_healthy_primary() -> None:
    run = failed_run()
    before = run.state
    for event in (
        LadderExhausted(),
        PrimaryHardFailure(),
        Tick(),
        healthy(B1),
        sick(P),
        started(P),
        stopped(B1),
        Recoverable(True),
    ):
        assert run(event, 10.0) == [], event
        assert run.state == before, event
    actions = run(healthy(P), 20.0)
    assert kinds(actions) == [Kind.FAILBACK_DONE]
    assert run.state.phase is Phase.PRIMARY


def test_manual_failover_from_failed_stops_the_started_primary_first() -> None:
    run = failed_run()
    actions = run(ManualFailover(), 10.0)
    assert actions[-1] == StopUnit(P)
    assert run(stopped(P), 11.0) == [StartUnit(B1)]


def test_manual_failback_from_failed_judges_the_primary() -> None:
    run = failed_run()
    actions = run(ManualFailback(), 10.0)
    assert actions[-1] == StartUnit(P)  # nothing else runs
    run(started(P), 11.0)
    actions = run(sick(P), 12.0)
    assert [(n.kind, n.severity) for n in actions if isinstance(n, Notify)] == [
        (Kind.FAILBACK_FAILED, Severity.CRITICAL)
    ]
    assert (run.state.phase, run.state.active) == (Phase.FAILED, P)  # left started: the best


def test_primary_ignores_events_about_backups() -> None:
    run = Run(spec())
    before = run.state
    for event in (healthy(B1), sick(B1), started(B1), stopped(B2), Recoverable(True), Tick()):
        assert run(event, 5.0) == []
        assert run.state == before


def tour() -> list[FailoverState]:
    """Drive every phase and every step in flight; return the states reached."""
    start = len(SEEN)
    run = Run(spec(can_recover=["/bin/true"]))
    to_backup(run)
    run(Tick(), 35.0)  # CHECK
    run(Recoverable(True), 36.0)
    run(stopped(B1), 37.0)
    run(started(P), 38.0)
    run(sick(P), 39.0)
    run(stopped(P), 40.0)
    run(started(B1), 41.0)
    run(healthy(B1), 42.0)
    run(Tick(), 102.0)
    run(Recoverable(True), 103.0)
    run(stopped(B1), 104.0)
    run(started(P), 105.0)
    run(healthy(P), 106.0)
    run(healthy(P), 107.0)
    assert run.state.phase is Phase.PRIMARY
    failed_run()
    return SEEN[start:]


def test_the_tour_reaches_every_phase_and_step() -> None:
    states = tour()
    assert {s.phase for s in states} == set(Phase)
    assert {s.in_flight for s in states} == set(Step)


EVENTS: list[Event] = [
    LadderExhausted(),
    PrimaryHardFailure(),
    PrimaryStable(),
    started(P),
    stopped(P),
    started(B1),
    stopped(B1),
    started(B2, ok=False),
    healthy(P),
    sick(P),
    healthy(B1),
    sick(B1),
    Recoverable(True),
    Recoverable(False),
    Tick(),
]


@pytest.mark.parametrize("event", EVENTS, ids=repr)
def test_events_outside_the_table_leave_the_state_unchanged(event: Event) -> None:
    checked = 0
    for state in tour():
        if (state.phase, state.in_flight, type(event)) in failover._TABLE:
            continue
        assert step(spec(after_failures=1), state, event, 50.0) == (state, [])
        checked += 1
    assert checked > 0


def test_operator_commands_outside_the_table_are_refused_and_change_nothing() -> None:
    for state in tour():
        for event in (ManualFailover(B2), ManualFailback()):
            if (state.phase, state.in_flight, type(event)) in failover._TABLE:
                continue
            new, actions = step(spec(), state, event, 50.0)
            assert new == state
            assert len(actions) == 1 and isinstance(actions[0], Record)
            assert "refused" in actions[0].message


# Rule 5: persistence and resume -------------------------------------------


def test_round_trip_at_every_phase() -> None:
    for state in tour():
        doc = json.loads(json.dumps(state.to_dict()))
        assert FailoverState.from_dict(doc) == state
    assert FailoverState.from_dict({"primary": P}) == FailoverState(P)


def test_resume_asks_again_for_the_step_in_flight() -> None:
    run = Run(spec(can_recover=["/bin/true"]))
    run(LadderExhausted(), 0.0)
    assert run.resume(0.5) == [StopUnit(P)]
    run(stopped(P), 1.0)
    assert run.resume(1.5) == [StartUnit(B1)]
    run(started(B1), 2.0)
    assert run.state.in_flight is Step.JUDGE
    assert run.resume(100.0) == [StartUnit(B1)]  # judged afresh once started again
    assert (run.state.in_flight, run.state.deadline) == (Step.START, None)
    run(started(B1), 101.0)
    assert run.state.deadline == 111.0
    run(healthy(B1), 102.0)
    assert run.resume(103.0) == [StopUnit(P)]  # never the primary behind the backup
    run(stopped(P), 103.5)  # its result changes nothing
    assert (run.state.phase, run.state.serving) == (Phase.BACKUP, B1)
    run(Tick(), 132.0)
    assert run.resume(133.0) == [RunCanRecover()]
    run(Recoverable(True), 134.0)
    assert run.resume(135.0) == [StopUnit(B1)]
    run(stopped(B1), 136.0)
    assert run.resume(137.0) == [StartUnit(P)]
    run(started(P), 138.0)
    run(healthy(P), 139.0)
    assert run.resume(140.0) == [StartUnit(P)]
    assert run.state.successes == 0
    run(started(P), 141.0)
    run(healthy(P), 142.0)
    run(healthy(P), 143.0)
    assert run.state.phase is Phase.PRIMARY
    assert run.resume(144.0) == []
    assert failed_run().resume(10.0) == []


def test_resume_never_starts_a_unit_the_state_does_not_call_active() -> None:
    for state in tour():
        new, actions = resume(state, 1000.0)
        for action in actions:
            if isinstance(action, StartUnit):
                assert new.in_flight is Step.START
                assert action.unit == new.unit == new.active == state.active
            if state.phase is Phase.BACKUP:
                assert action != StartUnit(P)


# The table ---------------------------------------------------------------


def test_the_docstring_shows_the_table_step_runs() -> None:
    assert failover.__doc__ is not None
    assert render_table() in failover.__doc__
    assert all(len(line) <= 100 for line in render_table().splitlines())
    for rule in failover.RULES:
        assert rule.event.__name__ in render_table()
