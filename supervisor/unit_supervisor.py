"""One supervised unit: its policy, what we last saw of it, and its recovery machine.

This is the seam between the pure decisions and the shell: `observe` and
`finish` feed events to `recovery.step` and hand the resulting actions back to
the caller, which performs them. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supervisor.config import Policy
from supervisor.health import Condition, UnitView, describe, unit_condition
from supervisor.recovery import (
    Action,
    ActionFinished,
    Event,
    Observed,
    Phase,
    RecoveryState,
    Tick,
    step,
)


@dataclass
class UnitSupervisor:
    policy: Policy
    view: UnitView | None = None
    condition: Condition = Condition.UNKNOWN
    recovery: RecoveryState = field(default_factory=RecoveryState)
    last_event: str = ""

    @property
    def unit(self) -> str:
        return self.policy.unit

    def observe(self, view: UnitView, now: float) -> tuple[Condition, list[Action]]:
        """Record a new view of the unit; returns the previous condition and any actions."""
        previous = self.condition
        self.view = view
        self.condition = unit_condition(view)
        if self.condition is previous:
            return previous, []
        self.last_event = f"{describe(view)} -> {self.condition.value}"
        return previous, self._feed(Observed(self.condition), now)

    def finish(self, ok: bool, detail: str, now: float) -> list[Action]:
        return self._feed(ActionFinished(ok, detail), now)

    def tick(self, now: float) -> list[Action]:
        return self._feed(Tick(), now)

    def feed(self, event: Event, now: float) -> list[Action]:
        return self._feed(event, now)

    @property
    def deadline(self) -> float | None:
        return self.recovery.deadline

    @property
    def acting(self) -> bool:
        return self.recovery.phase is Phase.ACTING

    def _feed(self, event: Event, now: float) -> list[Action]:
        self.recovery, actions = step(self.policy.recovery, self.recovery, event, now)
        return actions
