"""The guard's state and its answers, as stored and as the reducer reads them."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from supervisor.core.values import Severity

DecisionKind = Literal["ok", "protected", "frozen", "breaker", "concurrency", "paused"]
NoticeKind = Literal["frozen", "thawed", "breaker-open", "breaker-half-open", "breaker-closed"]


class Verdict(enum.Enum):
    ALLOW = "allow"
    WAIT = "wait"
    DENY = "deny"


class BreakerPhase(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"
    TRIAL = "trial"


@dataclass(frozen=True)
class Decision:
    """The guard's answer to one request."""

    verdict: Verdict
    reason: str  # one line for a person
    retry_at: float | None  # WAIT: when to ask again; None: when a slot frees. Else None.
    kind: DecisionKind


_SEVERITY: dict[str, Severity] = {
    "frozen": Severity.CRITICAL,
    "breaker-open": Severity.WARNING,
}


@dataclass(frozen=True)
class GuardNotice:
    """Something the shell logs and alerts, once: the guard emits each when it happens."""

    kind: NoticeKind
    message: str

    @property
    def severity(self) -> Severity:
        return _SEVERITY.get(self.kind, Severity.INFO)


@dataclass(frozen=True)
class PauseNote:
    """What an operator said with a pause: when it ends on its own, and why."""

    unit: str
    until: float | None = None  # wall-clock time; None: until `resume`
    reason: str = ""


@dataclass(frozen=True)
class GuardState:
    actions: tuple[float, ...] = ()  # start times of automatic actions inside the budget window
    frozen_until: float | None = None  # frozen (budget spent) until then, or until resume_all
    failures_in_a_row: int = 0
    breaker_open_until: float | None = None
    half_open: bool = False  # the half-open breaker let its trial through; awaiting a result
    running: frozenset[str] = frozenset()  # units with an automatic action in flight
    paused: frozenset[str] = frozenset()  # units paused by an operator
    paused_all: bool = False
    pause_notes: frozenset[PauseNote] = frozenset()  # of paused units, with an end or a reason

    def pause_note(self, unit: str) -> PauseNote | None:
        return next((note for note in self.pause_notes if note.unit == unit), None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (lists sorted, so equal states give equal documents)."""
        return {
            "actions": list(self.actions),
            "frozen_until": self.frozen_until,
            "failures_in_a_row": self.failures_in_a_row,
            "breaker_open_until": self.breaker_open_until,
            "half_open": self.half_open,
            "running": sorted(self.running),
            "paused": sorted(self.paused),
            "paused_all": self.paused_all,
            "pause_notes": [
                {"unit": n.unit, "until": n.until, "reason": n.reason}
                for n in sorted(self.pause_notes, key=lambda n: n.unit)
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GuardState:
        """The inverse of `to_dict`. Missing keys take their defaults and unknown keys are
        ignored (a state written by another version still loads); a value of the wrong
        type raises ValueError naming the key."""
        return cls(
            actions=tuple(_number(v, "actions") for v in _list(d, "actions")),
            frozen_until=_optional_number(d, "frozen_until"),
            failures_in_a_row=_int(d, "failures_in_a_row"),
            breaker_open_until=_optional_number(d, "breaker_open_until"),
            half_open=_bool(d, "half_open"),
            running=frozenset(_str(v, "running") for v in _list(d, "running")),
            paused=frozenset(_str(v, "paused") for v in _list(d, "paused")),
            paused_all=_bool(d, "paused_all"),
            pause_notes=frozenset(_pause_note(v) for v in _list(d, "pause_notes")),
        )


# --- queries -------------------------------------------------------------------------------


def _list(d: Mapping[str, Any], key: str) -> Iterable[Any]:
    value = d.get(key, [])
    if not isinstance(value, list | tuple):
        raise ValueError(f"guard state: {key} must be a list, got {type(value).__name__}")
    return value


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"guard state: {key} must hold numbers, got {value!r}")
    return float(value)


def _optional_number(d: Mapping[str, Any], key: str) -> float | None:
    value = d.get(key)
    return None if value is None else _number(value, key)


def _int(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"guard state: {key} must be a count, got {value!r}")
    return value


def _bool(d: Mapping[str, Any], key: str) -> bool:
    value = d.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"guard state: {key} must be true or false, got {value!r}")
    return value


def _pause_note(value: Any) -> PauseNote:
    if not isinstance(value, Mapping):
        raise ValueError(f"guard state: pause_notes must hold mappings, got {value!r}")
    reason = value.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError(f"guard state: a pause's reason must be text, got {reason!r}")
    return PauseNote(
        _str(value.get("unit"), "pause_notes"), _optional_number(value, "until"), reason
    )


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"guard state: {key} must hold unit names, got {value!r}")
    return value
