"""The recovery ladder as a pure state machine: `step(spec, state, event, now)`.

One machine per supervised unit. It is fed the unit's condition as it changes
(`Observed`), the outcome of each repair it asked for (`ActionFinished`) and the
passing of time (`Tick`, whenever `state.deadline` is reached), and returns the
new state and the actions for the shell to perform. It never reads the clock.

Attempt `n` (counting from 0) uses rung `ladder[min(n + skips, len(ladder) - 1)]`,
so the default attempts try each rung once; a rung that cannot apply to the unit
(`Skipped`, e.g. reload without ExecReload=) moves on to the next rung at once
without using an attempt. An action the guard, a precondition or a pause refuses
(`Held`) is not an attempt either: the unit waits in HELD until told to retry or
`Resume`d. The first attempt is immediate; attempt
`n >= 1` waits `cooldown * backoff**(n-1)` (at most `max_cooldown`) after the
previous one. After each action the machine waits `settle`, then judges: healthy
means recovered, still unhealthy means the next attempt. Attempt counts are kept
until the unit has been healthy for `reset_after`, never dropped at the first good
result, so a unit that keeps crashing climbs the ladder instead of being restarted
forever. After `max_attempts` the unit is exhausted: nothing more is tried until
it has been healthy for `reset_after` or an operator resets it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from supervisor.core.health import Condition
from supervisor.core.stored import build
from supervisor.core.values import Rung


class LadderSpec(Protocol):
    """The recovery settings of a policy (satisfied by `config.Recovery`)."""

    @property
    def ladder(self) -> Sequence[str]: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def backoff(self) -> float: ...
    @property
    def max_cooldown(self) -> float: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def settle(self) -> float: ...


class Phase(enum.Enum):
    IDLE = "idle"
    ACTING = "acting"
    SETTLING = "settling"
    COOLDOWN = "cooldown"
    HELD = "held"
    EXHAUSTED = "exhausted"


@dataclass(frozen=True)
class RecoveryState:
    phase: Phase = Phase.IDLE
    condition: Condition = Condition.UNKNOWN
    attempts: int = 0
    deadline: float | None = None
    last_action_at: float | None = None
    healthy_since: float | None = None
    episode_open: bool = False  # an action was taken and recovery not yet reported
    skips: int = 0  # rungs skipped in this episode (they shift the ladder, not the count)
    prev_action_at: float | None = None  # last_action_at before the action in flight
    prev_episode_open: bool = False  # episode_open before the action in flight
    held_reason: str = ""
    ran: tuple[str, ...] = ()  # the rungs run in this episode, in order (skipped ones not)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the store (times are wall-clock seconds)."""
        doc = dataclasses.asdict(self)
        doc["phase"] = self.phase.value
        doc["condition"] = self.condition.value
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> RecoveryState:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in doc.items() if k in fields}
        values["phase"] = Phase(values.get("phase", Phase.IDLE.value))
        values["condition"] = Condition(values.get("condition", Condition.UNKNOWN.value))
        values["ran"] = tuple(values.get("ran", ()))
        return build(cls, values)


# Events -------------------------------------------------------------------


@dataclass(frozen=True)
class Observed:
    condition: Condition


@dataclass(frozen=True)
class ActionFinished:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class OperatorReset:
    pass


@dataclass(frozen=True)
class Held:
    """The action asked for was not performed (guard, precondition, pause, flapping)."""

    reason: str
    until: float | None = None  # ask again then; None: wait for Resume or health


@dataclass(frozen=True)
class Resume:
    """Whatever held the unit is gone: act now if it is still unhealthy."""


@dataclass(frozen=True)
class Skipped:
    """The rung cannot apply to this unit (e.g. reload without ExecReload=)."""

    detail: str


Event = Observed | ActionFinished | Tick | OperatorReset | Held | Resume | Skipped


# Actions ------------------------------------------------------------------


@dataclass(frozen=True)
class RunRung:
    """Perform one repair: `rung` is `restart`, `reload` or `restore`."""

    rung: Rung
    attempt: int
    max_attempts: int


class Notice(enum.Enum):
    HELD = "held"
    SKIPPED = "skipped"
    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"
    ACTION_FAILED = "action-failed"
    ATTEMPTS_RESET = "attempts-reset"
    EPISODE_ABANDONED = "episode-abandoned"
    ROLLBACK = "rollback"  # the rung asked for became restore (`core.rollback`)


@dataclass(frozen=True)
class Report:
    """Something a person should hear about (logged, later alerted)."""

    notice: Notice
    detail: str


Action = RunRung | Report


def cooldown_before(spec: LadderSpec, attempts_done: int) -> float:
    """How long to wait after the previous action before attempt number `attempts_done`."""
    if attempts_done <= 0:
        return 0.0
    return float(min(spec.cooldown * spec.backoff ** (attempts_done - 1), spec.max_cooldown))


def step(
    spec: LadderSpec, state: RecoveryState, event: Event, now: float
) -> tuple[RecoveryState, list[Action]]:
    match event:
        case Observed(condition):
            return _observe(spec, state, condition, now)
        case ActionFinished(ok, detail):
            return _finished(spec, state, ok, detail, now)
        case Tick():
            return _tick(spec, state, now)
        case OperatorReset():
            return _reset(spec, state, now)
        case Held(reason, until):
            return _held(state, reason, until)
        case Resume():
            if state.phase is not Phase.HELD:
                return state, []
            if state.condition is Condition.UNHEALTHY:
                return _attempt_or_wait(spec, replace(state, held_reason=""), now)
            return replace(state, phase=Phase.IDLE, deadline=None, held_reason=""), []
        case Skipped(detail):
            return _skipped(spec, state, detail, now)
    raise TypeError(f"unknown event {event!r}")  # pragma: no cover


def _reset(
    spec: LadderSpec, state: RecoveryState, now: float
) -> tuple[RecoveryState, list[Action]]:
    """Attempts and exhaustion forgotten. An action in flight is still judged; a unit
    that is unhealthy now gets its first rung at once (the reset re-arms the ladder)."""
    if state.phase in (Phase.ACTING, Phase.SETTLING):
        return replace(state, attempts=1, skips=0, prev_action_at=None, ran=state.ran[-1:]), []
    fresh = RecoveryState(condition=state.condition, healthy_since=state.healthy_since)
    if fresh.condition is Condition.UNHEALTHY:
        return _act(spec, fresh, now)
    return fresh, []


def _observe(
    spec: LadderSpec, state: RecoveryState, condition: Condition, now: float
) -> tuple[RecoveryState, list[Action]]:
    if condition is Condition.DEGRADED:
        condition = Condition.HEALTHY  # degraded does not call for repair
    if condition is Condition.HEALTHY:
        healthy_since = state.healthy_since if state.healthy_since is not None else now
    else:
        healthy_since = None
    state = replace(state, condition=condition, healthy_since=healthy_since)

    match state.phase, condition:
        case Phase.IDLE, Condition.UNHEALTHY:
            return _attempt_or_wait(spec, state, now)
        case Phase.IDLE | Phase.EXHAUSTED, Condition.HEALTHY:
            state = _arm_reset(spec, state)
            if not state.episode_open:
                return state, []
            if state.phase is Phase.EXHAUSTED:
                return _recovered(state, f"healthy again after {state.attempts} attempt(s)")
            return _recovered(state, f"healthy again after attempt {state.attempts}")
        case Phase.COOLDOWN | Phase.HELD, Condition.HEALTHY:
            state = _arm_reset(spec, replace(state, phase=Phase.IDLE, held_reason=""))
            if not state.episode_open:
                return state, []
            return _recovered(state, "healthy again while waiting to retry")
        case Phase.COOLDOWN | Phase.HELD, Condition.STOPPED:
            # Stopped by someone while we waited: respect it, keep the counts.
            return replace(state, phase=Phase.IDLE, deadline=None, held_reason=""), [
                Report(Notice.EPISODE_ABANDONED, "unit stopped while waiting to retry")
            ]
        case Phase.IDLE | Phase.EXHAUSTED, _:
            return replace(state, deadline=None), []
    # ACTING, SETTLING and COOLDOWN otherwise wait for their own event or deadline.
    return state, []


def _finished(
    spec: LadderSpec, state: RecoveryState, ok: bool, detail: str, now: float
) -> tuple[RecoveryState, list[Action]]:
    if state.phase is not Phase.ACTING:
        return state, []
    # A failed action settles too: systemd may still be busy with the unit, and
    # judging at once would let a refused job be retried in a tight loop.
    state = replace(state, phase=Phase.SETTLING, deadline=now + spec.settle)
    return state, [] if ok else [Report(Notice.ACTION_FAILED, detail)]


def _tick(spec: LadderSpec, state: RecoveryState, now: float) -> tuple[RecoveryState, list[Action]]:
    if state.deadline is None or now < state.deadline:
        return state, []
    match state.phase:
        case Phase.SETTLING:
            return _judge(spec, state, now)
        case Phase.COOLDOWN | Phase.HELD:
            if state.condition is Condition.UNHEALTHY:
                return _act(spec, replace(state, held_reason=""), now)
            return replace(state, phase=Phase.IDLE, deadline=None, held_reason=""), []
        case Phase.IDLE | Phase.EXHAUSTED if state.healthy_since is not None:
            if state.attempts == 0 and state.phase is Phase.IDLE:
                return replace(state, deadline=None), []
            fresh = RecoveryState(condition=state.condition, healthy_since=state.healthy_since)
            return fresh, [
                Report(
                    Notice.ATTEMPTS_RESET,
                    f"healthy for {spec.reset_after:g}s: {state.attempts} attempt(s) forgotten",
                )
            ]
    return replace(state, deadline=None), []


def _judge(
    spec: LadderSpec, state: RecoveryState, now: float
) -> tuple[RecoveryState, list[Action]]:
    match state.condition:
        case Condition.HEALTHY:
            state = _arm_reset(spec, replace(state, phase=Phase.IDLE))
            return _recovered(state, f"healthy after attempt {state.attempts}")
        case Condition.UNHEALTHY:
            return _attempt_or_wait(spec, state, now)
    return replace(state, phase=Phase.IDLE, deadline=None), []


def _attempt_or_wait(
    spec: LadderSpec, state: RecoveryState, now: float
) -> tuple[RecoveryState, list[Action]]:
    if state.attempts >= spec.max_attempts:
        tried = ", ".join(state.ran)
        return replace(state, phase=Phase.EXHAUSTED, deadline=None), [
            Report(
                Notice.EXHAUSTED,
                f"{state.attempts} attempt(s) ({tried}) did not keep it healthy; a person must act",
            )
        ]
    if state.last_action_at is not None:
        ready_at = state.last_action_at + cooldown_before(spec, state.attempts)
        if ready_at > now:
            return replace(state, phase=Phase.COOLDOWN, deadline=ready_at), []
    return _act(spec, state, now)


def _act(spec: LadderSpec, state: RecoveryState, now: float) -> tuple[RecoveryState, list[Action]]:
    rung = _rung(spec, state.attempts + state.skips)
    attempts = state.attempts + 1
    state = replace(
        state,
        phase=Phase.ACTING,
        attempts=attempts,
        prev_action_at=state.last_action_at,
        prev_episode_open=state.episode_open,
        last_action_at=now,
        deadline=None,
        episode_open=True,
        ran=(*state.ran, rung.value),
    )
    return state, [RunRung(rung, attempts, spec.max_attempts)]


def _undo_attempt(state: RecoveryState) -> RecoveryState:
    """The action in flight did not happen: it is not an attempt, and no cooldown runs."""
    return replace(
        state,
        attempts=state.attempts - 1,
        last_action_at=state.prev_action_at,
        episode_open=state.prev_episode_open,
        ran=state.ran[:-1],
    )


def _held(
    state: RecoveryState, reason: str, until: float | None
) -> tuple[RecoveryState, list[Action]]:
    if state.phase is not Phase.ACTING:
        return state, []
    state = replace(_undo_attempt(state), phase=Phase.HELD, deadline=until, held_reason=reason)
    return state, [Report(Notice.HELD, reason)]


def _skipped(
    spec: LadderSpec, state: RecoveryState, detail: str, now: float
) -> tuple[RecoveryState, list[Action]]:
    if state.phase is not Phase.ACTING:
        return state, []
    index = state.attempts - 1 + state.skips
    if index >= len(spec.ladder) - 1:
        # No later rung to move to: it counts as a failed attempt, judged after settle.
        return _finished(spec, state, False, detail, now)
    state = replace(_undo_attempt(state), skips=state.skips + 1)
    state, actions = _act(spec, state, now)
    return state, [Report(Notice.SKIPPED, detail), *actions]


def _recovered(state: RecoveryState, detail: str) -> tuple[RecoveryState, list[Action]]:
    return replace(state, episode_open=False), [Report(Notice.RECOVERED, detail)]


def _arm_reset(spec: LadderSpec, state: RecoveryState) -> RecoveryState:
    if state.attempts == 0 or state.healthy_since is None:
        return replace(state, deadline=None)
    return replace(state, deadline=state.healthy_since + spec.reset_after)


def _rung(spec: LadderSpec, attempt_index: int) -> Rung:
    return Rung(spec.ladder[min(attempt_index, len(spec.ladder) - 1)])
