"""What the daemon would have done, when it does not act: shadow mode (`run --shadow`,
the whole host) and `mode: observe` (one policy).

Each decision it does not carry out is written to the history as an `action` row
that says so ("would have restarted (attempt 1/3) because failed/failed (signal)"),
with `shadow: true` and the rung, attempt and reason in its data: `history`, `why`
and `simulate` read what was decided from the same rows as what was done.
"""

from __future__ import annotations

from typing import Any

from supervisor.core.health import Condition, describe, unit_condition
from supervisor.core.reasons import cause, rung_fields
from supervisor.core.recovery import RunRung
from supervisor.core.state import Tx
from supervisor.core.unit import UnitState

SHADOW_NOTE = "shadow mode: not done"
OBSERVE_NOTE = "mode observe: not done"
NOT_RUN = "dry run"  # the outcome the shell reports for a job it did not run in shadow mode

_DONE = {
    "restart": "restarted",
    "reload": "reloaded",
    "restore": "restored",
    "start": "started",
    "stop": "stopped",
}


def done(verb: str) -> str:
    """`restart` -> `restarted`: spelt out, never built ("stoped")."""
    return _DONE.get(verb, f"run {verb}")


def repair_reason(state: UnitState) -> str:
    """Why the unit needs a repair, in a few words."""
    view = state.view
    if view is not None and unit_condition(view) is Condition.UNHEALTHY:
        return describe(view)
    failing = state.failing_checks()
    if failing:
        return "failing checks " + ",".join(failing)
    return state.condition.value


def would_repair(tx: Tx, state: UnitState, rung: RunRung, note: str) -> None:
    """Record the rung the ladder chose and did not run."""
    reason = repair_reason(state)
    attempt = f"{rung.attempt}/{rung.max_attempts}"
    tx.history(
        state.unit,
        "action",
        f"would have {done(rung.rung.value)} (attempt {attempt}) because {reason}; {note}",
        **{
            **rung_fields(state.policy.recovery, state.recovery, rung),
            **shadow_fields(rung.rung.value, reason),
            "cause": cause(state),
        },
        not_done=note,
    )


def would_switch(tx: Tx, primary: str, verb: str, target: str) -> None:
    """Record a failover job (start or stop of `target`) that was not run."""
    reason = f"failover of {primary}"
    tx.history(  # "failover", as the jobs it stands for are recorded
        primary,
        "failover",
        f"would have {done(verb)} {target} because of the {reason}; {SHADOW_NOTE}",
        **shadow_fields(verb, reason),
        not_done=SHADOW_NOTE,
        target=target,
    )


def shadow_fields(action: str, reason: str) -> dict[str, Any]:
    # dry_run: the name the first readers of these rows (`why`) know them by.
    return {"shadow": True, "dry_run": True, "rung": action, "reason": reason}
