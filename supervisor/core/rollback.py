"""Change-aware rollback, pure: a unit that turns unhealthy soon after its configuration
changed is restored to its last proven snapshot first, not restarted on the bad files.

The shell watches each policy's restore paths and says when they changed
(`ConfigChange`); the unit's state keeps the latest change. When the ladder is about to
run a rung that comes before `restore` in the policy's ladder, `redirect` turns it into
the restore rung, shifting the ladder as a skipped rung would (the attempt count is
the same), if and only if:

- the policy has a restore section from last-known-good with `rollback_window` > 0,
  and restore in its ladder;
- a proven snapshot exists (one taken of files the unit had applied and stayed healthy
  on): without one, a restore could only put back files nobody knows to be good;
- the change opened its window less than `rollback_window` ago. A change made while the
  unit was not running opens its window at the unit's next start (or, for a start that
  fails before it is seen activating, at the failure itself).

The redirected rung goes through the holds and the guard like any other. No clock here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from typing import Any

from supervisor.config import Recovery
from supervisor.core.recovery import Action, Notice, RecoveryState, Report, RunRung
from supervisor.core.values import Rung


@dataclass(frozen=True)
class ConfigChange:
    """The restore paths changed at `at` (wall-clock seconds)."""

    at: float
    paths: tuple[str, ...]
    while_stopped: bool = False  # made while the unit was not running
    started_at: float | None = None  # for such a change: the unit's next start began then

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, for the store."""
        doc = dataclasses.asdict(self)
        doc["paths"] = list(self.paths)
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ConfigChange:
        """Raises ValueError, TypeError or KeyError for a document that does not parse."""
        started = doc.get("started_at")
        return cls(
            at=float(doc["at"]),
            paths=tuple(str(path) for path in doc["paths"]),
            while_stopped=bool(doc.get("while_stopped", False)),
            started_at=float(started) if started is not None else None,
        )

    def window_opens(self, now: float) -> float:
        if not self.while_stopped:
            return self.at
        return self.started_at if self.started_at is not None else now


def seen_start(change: ConfigChange | None, now: float) -> ConfigChange | None:
    """The unit began a start: a change made while it was stopped opens its window now."""
    if change is None or not change.while_stopped or change.started_at is not None:
        return change
    return replace(change, started_at=now)


def reason(spec: Recovery, change: ConfigChange | None, proven: bool, now: float) -> str | None:
    """Why the next repair should be a rollback, or None when the normal ladder applies."""
    restore = spec.restore
    if restore is None or restore.rollback_window <= 0 or Rung.RESTORE not in spec.ladder:
        return None
    if restore.source != "last-known-good" or change is None or not proven:
        return None
    opened = change.window_opens(now)
    age = now - opened
    if age < 0 or age > restore.rollback_window:
        return None
    paths = ", ".join(change.paths)
    if change.while_stopped:
        when = f"while it was stopped; it failed {age:.0f}s after its start"
    else:
        when = f"{age:.0f}s before it turned unhealthy"
    return f"its configuration changed ({paths}) {when}"


def redirect(
    spec: Recovery, state: RecoveryState, actions: list[Action], why: str | None
) -> tuple[RecoveryState, list[Action]]:
    """`actions` with a rung before restore in the ladder turned into restore, and the
    ladder's state shifted to match (as if the rungs between had been skipped)."""
    if why is None:
        return state, actions
    target = list(spec.ladder).index("restore")
    out: list[Action] = []
    for action in actions:
        if not isinstance(action, RunRung) or action.rung is Rung.RESTORE:
            out.append(action)
            continue
        index = state.attempts - 1 + state.skips
        if index >= target:
            out.append(action)
            continue
        skipped = ", ".join(spec.ladder[index:target])
        state = replace(
            state, skips=state.skips + target - index, ran=(*state.ran[:-1], Rung.RESTORE.value)
        )
        out.append(
            Report(
                Notice.ROLLBACK,
                f"{why}: skipping {skipped}, restoring the last proven snapshot",
            )
        )
        out.append(replace(action, rung=Rung.RESTORE))
    return state, out
