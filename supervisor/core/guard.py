"""The global guard: may this automatic action run now? Pure, no I/O, no clock.

Every automatic repair on the host asks the guard first (`request`) and reports its
outcome afterwards (`finished`). The guard holds what is global: the repair budget,
the circuit breaker, the units with an action in flight, and operator pauses. The
shell calls `tick` when `next_deadline` is reached (`request` and `finished` tick
first themselves, so a late tick changes nothing but the moment notices appear).

`request` checks, in this order, and the first rule that applies decides:

| rule | condition                                              | verdict, kind           |
| ---- | ------------------------------------------------------ | ----------------------- |
| 0    | the unit already has an action in flight (illegal)     | DENY, concurrency       |
| 1    | a `protected` glob matches (and no allow_automatic)    | DENY, protected         |
| 2    | the unit is paused, or all automation is               | DENY, paused            |
| 3    | automation is frozen (`frozen_until` not yet reached)  | DENY, frozen            |
| 4    | `repair_budget.max` actions already in the window      | DENY, frozen (freezes)  |
| 5    | breaker open / half-open with its trial in flight      | WAIT, breaker           |
| 6    | `max_concurrent` actions in flight                     | WAIT, concurrency       |
| 7    | otherwise: record the action, mark the unit running    | ALLOW, ok               |

The circuit breaker's phases (`breaker_phase`), from `breaker_open_until` (OPEN while
set; `tick` clears it when reached), `half_open` and `failures_in_a_row`:

| phase     | state                            | a request        | a result coming back          |
| --------- | -------------------------------- | ---------------- | ----------------------------- |
| CLOSED    | count below `breaker.failures`   | on to rule 6     | ok: count 0; failed: count+1, |
|           |                                  |                  | OPEN when it reaches failures |
| OPEN      | `breaker_open_until` set         | WAIT until then  | not counted                   |
| HALF_OPEN | not open, count at `failures`    | ALLOW one: TRIAL | decides, as in TRIAL          |
| TRIAL     | HALF_OPEN with `half_open`       | WAIT 1s          | ok: CLOSED, count 0;          |
|           |                                  |                  | failed: OPEN again            |

While half-open the first result to come back decides, the trial's or that of an
action started before the breaker opened: either is news of whether systemd's jobs
work again. A result is never counted while the breaker is open.

Times are whatever clock the shell passes as `now` (the state is persisted, so one
that survives a restart). Durations come from `GuardConfig` as float seconds.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fnmatch import fnmatchcase

from supervisor.config.main import GuardConfig
from supervisor.config.values import format_duration
from supervisor.core.guard_state import (
    BreakerPhase,
    Decision,
    DecisionKind,
    GuardNotice,
    GuardState,
    NoticeKind,
    PauseNote,
    Verdict,
)
from supervisor.core.pauses import pause, pause_ends, pause_expired, resume

__all__ = [
    "HALF_OPEN_RETRY",
    "BreakerPhase",
    "Decision",
    "DecisionKind",
    "GuardNotice",
    "GuardState",
    "NoticeKind",
    "PauseNote",
    "Verdict",
    "breaker_phase",
    "budget_used",
    "finished",
    "is_protected",
    "next_deadline",
    "pause",
    "pause_all",
    "pause_ends",
    "pause_expired",
    "protecting_glob",
    "request",
    "resume",
    "resume_all",
    "tick",
]

HALF_OPEN_RETRY = 1.0
"""Seconds after which a request held back by a half-open breaker's trial asks again."""


def protecting_glob(unit: str, cfg: GuardConfig, allow_automatic: bool) -> str | None:
    """The first `protected` glob that keeps automation off `unit`, if any."""
    if allow_automatic:
        return None
    return next((glob for glob in cfg.protected if fnmatchcase(unit, glob)), None)


def is_protected(unit: str, cfg: GuardConfig, allow_automatic: bool) -> bool:
    """True when `unit` matches a `protected` glob and its policy does not allow automation."""
    return protecting_glob(unit, cfg, allow_automatic) is not None


def breaker_phase(cfg: GuardConfig, state: GuardState) -> BreakerPhase:
    if state.breaker_open_until is not None:
        return BreakerPhase.OPEN
    if state.half_open:
        return BreakerPhase.TRIAL
    if state.failures_in_a_row >= cfg.breaker.failures:
        return BreakerPhase.HALF_OPEN
    return BreakerPhase.CLOSED


def budget_used(cfg: GuardConfig, state: GuardState, now: float) -> int:
    """Automatic actions started within the budget window that ends at `now`."""
    return len(_recent(cfg, state.actions, now))


RULES = (
    (
        "Protected units",
        "(`guard.protected`, globs) are never repaired automatically unless their policy "
        "says `allow_automatic: true`. They are alerted and held.",
    ),
    ("Paused units", "(`host-supervisor pause UNIT`) are watched, not repaired."),
    (
        "The repair budget",
        "allows `repair_budget.max` automatic actions per `window` across the host. The "
        "next one freezes automation for the window, or until `resume --all`, with one "
        "critical alert. STATUS= says `AUTOMATION FROZEN`.",
    ),
    (
        "The circuit breaker",
        "opens after `breaker.failures` failed actions in a row for `open_for`, then lets "
        "one trial through (half-open).",
    ),
    (
        "Concurrency",
        "limits repairs to `max_concurrent` at once; the others wait for a slot.",
    ),
)
"""The guard's rules in the order `request` applies them (docs/decisions.md renders this)."""


def next_deadline(state: GuardState) -> float | None:
    """The earliest time at which `tick` changes something: a thaw or a half-open breaker."""
    deadlines = [t for t in (state.frozen_until, state.breaker_open_until) if t is not None]
    return min(deadlines, default=None)


# --- events --------------------------------------------------------------------------------


def request(
    cfg: GuardConfig, state: GuardState, unit: str, *, allow_automatic: bool, now: float
) -> tuple[GuardState, Decision, list[GuardNotice]]:
    """May an automatic action on `unit` start now? ALLOW records it as started."""
    if unit in state.running:
        # Illegal: the shell asks again before reporting the first action's result.
        return (
            state,
            Decision(
                Verdict.DENY,
                f"{unit} already has an automatic action in flight; wait for its result",
                None,
                "concurrency",
            ),
            [],
        )
    state, notices = tick(cfg, state, now)
    budget = cfg.repair_budget

    glob = protecting_glob(unit, cfg, allow_automatic)
    if glob is not None:
        reason = (
            f"{unit} is protected (matches {glob!r}): never repaired automatically, "
            "alerting only; its policy may set allow_automatic: true"
        )
        return state, Decision(Verdict.DENY, reason, None, "protected"), notices

    if state.paused_all:
        reason = "all automation is paused by an operator; `host-supervisor resume --all` ends it"
        return state, Decision(Verdict.DENY, reason, None, "paused"), notices
    if unit in state.paused:
        reason = f"{unit} is paused by an operator; `host-supervisor resume {unit}` ends it"
        return state, Decision(Verdict.DENY, reason, None, "paused"), notices

    if state.frozen_until is not None:  # tick thawed it if its time had come
        reason = (
            f"repair budget spent; automation frozen for {_span(state.frozen_until - now)} "
            "more, or until `host-supervisor resume --all`"
        )
        return state, Decision(Verdict.DENY, reason, None, "frozen"), notices

    used = budget_used(cfg, state, now)
    if used >= budget.max:
        state = replace(state, frozen_until=now + budget.window)
        spent = f"{used} automatic actions in {_span(budget.window)}"
        reason = (
            f"repair budget spent: {spent}; automation frozen for {_span(budget.window)}, "
            "or until `host-supervisor resume --all`"
        )
        notice = GuardNotice(
            "frozen",
            f"automation frozen: {spent}; watching and alerting only for "
            f"{_span(budget.window)} or until `host-supervisor resume --all`",
        )
        return state, Decision(Verdict.DENY, reason, None, "frozen"), [*notices, notice]

    phase = breaker_phase(cfg, state)
    if phase is BreakerPhase.OPEN:
        assert state.breaker_open_until is not None
        reason = (
            f"circuit breaker open after {state.failures_in_a_row} failed actions in a row; "
            f"one trial in {_span(state.breaker_open_until - now)}"
        )
        return (
            state,
            Decision(Verdict.WAIT, reason, state.breaker_open_until, "breaker"),
            notices,
        )
    if phase is BreakerPhase.TRIAL:
        reason = "circuit breaker half-open: waiting for the trial action's result"
        return (
            state,
            Decision(Verdict.WAIT, reason, now + HALF_OPEN_RETRY, "breaker"),
            notices,
        )

    if len(state.running) >= cfg.max_concurrent:
        reason = (
            f"{len(state.running)} automatic actions in flight (max_concurrent "
            f"{cfg.max_concurrent}); waiting for one to finish"
        )
        return state, Decision(Verdict.WAIT, reason, None, "concurrency"), notices

    state = replace(
        state,
        actions=(*state.actions, now),
        running=state.running | {unit},
        half_open=state.half_open or phase is BreakerPhase.HALF_OPEN,
    )
    reason = f"automatic action {used + 1} of {budget.max} in {_span(budget.window)}"
    if phase is BreakerPhase.HALF_OPEN:
        reason += "; the circuit breaker's trial"
    return state, Decision(Verdict.ALLOW, reason, None, "ok"), notices


def operator_request(
    cfg: GuardConfig, state: GuardState, unit: str, *, now: float
) -> tuple[GuardState, Decision, list[GuardNotice]]:
    """May an operator's action on `unit` (a failover, a failback) start now?

    It passes the same rules as an automatic action but protection (a person asked),
    and counts in the repair budget; it is not an automatic action in flight and says
    nothing about whether automation works, so it never touches the circuit breaker
    (neither its failure count nor a half-open trial) and needs no `finished`."""
    after, decision, notices = request(cfg, state, unit, allow_automatic=True, now=now)
    if decision.verdict is Verdict.ALLOW:
        after = replace(after, running=after.running - {unit}, half_open=state.half_open)
        used = len(after.actions)
        reason = f"operator action; {used} of {cfg.repair_budget.max} in the budget window"
        decision = Decision(Verdict.ALLOW, reason, None, "ok")
    return after, decision, notices


def cancelled(state: GuardState, unit: str, started: float) -> GuardState:
    """An allowed action did not run after all (its rung could not apply to the unit):
    it frees its slot and is neither a repair in the budget nor a failure for the
    breaker. `started` is the `now` its request was allowed at. For a unit not
    running: no change."""
    if unit not in state.running:
        return state
    actions = list(state.actions)
    if started in actions:
        actions.remove(started)
    # If it was the breaker's half-open trial, it proved nothing: the next one may try.
    return replace(state, running=state.running - {unit}, actions=tuple(actions), half_open=False)


def finished(
    cfg: GuardConfig, state: GuardState, unit: str, ok: bool, now: float
) -> tuple[GuardState, list[GuardNotice]]:
    """An allowed action on `unit` ended, `ok` or not. For a unit not running: no change."""
    if unit not in state.running:
        return state, []
    state, notices = tick(cfg, state, now)
    state = replace(state, running=state.running - {unit})
    breaker = cfg.breaker
    match breaker_phase(cfg, state), ok:
        case BreakerPhase.OPEN, _:
            return state, notices
        case BreakerPhase.HALF_OPEN | BreakerPhase.TRIAL, True:
            state = replace(state, failures_in_a_row=0, half_open=False)
            notice = GuardNotice(
                "breaker-closed",
                f"circuit breaker closed: the automatic action on {unit} succeeded",
            )
            return state, [*notices, notice]
        case BreakerPhase.HALF_OPEN | BreakerPhase.TRIAL, False:
            state = replace(
                state,
                failures_in_a_row=state.failures_in_a_row + 1,
                breaker_open_until=now + breaker.open_for,
                half_open=False,
            )
            notice = GuardNotice(
                "breaker-open",
                f"circuit breaker open again: the automatic action on {unit} failed; "
                f"no automatic action for {_span(breaker.open_for)}, then one trial",
            )
            return state, [*notices, notice]
        case BreakerPhase.CLOSED, True:
            return replace(state, failures_in_a_row=0), notices
    failures = state.failures_in_a_row + 1
    state = replace(state, failures_in_a_row=failures)
    if failures < breaker.failures:
        return state, notices
    state = replace(state, breaker_open_until=now + breaker.open_for)
    notice = GuardNotice(
        "breaker-open",
        f"circuit breaker open: {failures} automatic actions failed in a row (the last on "
        f"{unit}); no automatic action for {_span(breaker.open_for)}, then one trial",
    )
    return state, [*notices, notice]


def tick(cfg: GuardConfig, state: GuardState, now: float) -> tuple[GuardState, list[GuardNotice]]:
    """Let time pass: thaw at `frozen_until`, half-open the breaker at its `open_until`,
    forget action times that left the budget window."""
    notices: list[GuardNotice] = []
    if state.frozen_until is not None and now >= state.frozen_until:
        state = replace(state, frozen_until=None)
        notices.append(
            GuardNotice("thawed", "automation resumed: the repair budget's freeze has ended")
        )
    if state.breaker_open_until is not None and now >= state.breaker_open_until:
        state = replace(state, breaker_open_until=None)
        notices.append(
            GuardNotice(
                "breaker-half-open",
                "circuit breaker half-open: the next automatic action is a trial",
            )
        )
    recent = _recent(cfg, state.actions, now)
    if recent != state.actions:
        state = replace(state, actions=recent)
    return state, notices


def pause_all(state: GuardState) -> GuardState:
    return state if state.paused_all else replace(state, paused_all=True)


def resume_all(state: GuardState, now: float) -> tuple[GuardState, list[GuardNotice]]:
    """`host-supervisor resume --all`: ends every pause and thaws a frozen budget.

    Thawing also empties the budget window: the operator has looked and said go, and
    keeping the actions that froze it would freeze again at the next request."""
    notices: list[GuardNotice] = []
    if state.frozen_until is not None:
        left = state.frozen_until - now
        early = f" {_span(left)} early" if left > 0 else ""
        notices.append(
            GuardNotice(
                "thawed",
                f"automation resumed by an operator{early}; the repair budget starts afresh",
            )
        )
        state = replace(state, frozen_until=None, actions=())
    if state.paused or state.paused_all or state.pause_notes:
        state = replace(state, paused=frozenset(), paused_all=False, pause_notes=frozenset())
    return state, notices


# --- helpers -------------------------------------------------------------------------------


def _recent(cfg: GuardConfig, actions: tuple[float, ...], now: float) -> tuple[float, ...]:
    # An action counts for `window` seconds after it started, not at `start + window`.
    start = now - cfg.repair_budget.window
    return tuple(t for t in actions if t > start)


def _span(seconds: float) -> str:
    """A duration for a person, to the next whole second: 723.2 -> '12m4s'."""
    return format_duration(float(math.ceil(max(seconds, 0.0))))
