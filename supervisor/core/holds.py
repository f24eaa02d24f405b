"""What may hold a repair the ladder asks for, in the order they are asked.

`HOLDS` is the order itself: `hold_reason` walks it and the first hold that
applies wins. The list in docs/decisions.md is rendered from it (`render_hold_order`), so the
documentation cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisor.core import cluster_host, failover_host, guard, incident_host
from supervisor.core.flapping import FlapState
from supervisor.core.guard import Verdict
from supervisor.core.notices import AlertKind
from supervisor.core.state import AlertText, Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import Severity

PRECONDITION_RETRY = 30.0  # a repair held by a precondition asks again this much later
OBSERVE_POLL = 0.5  # while observing, a held repair asks again this often

OBSERVE_RULE = "observe only"  # the name of the hold, as `UnitState.held_by` keeps it
OBSERVE_ONLY = "observe only (mode: observe): watched and alerted, never repaired"

Hold = tuple[str, float | None]
"""Why, and when to ask again (None: when something changes, or a resume)."""

STORE_RETRY = 10.0  # a repair held because its state is not on disk asks again then


@dataclass(frozen=True)
class Checked:
    """What the shell found before a repair: a failing precondition ("" if none), and
    why the state queued with the request is not on disk ("" if it is)."""

    precondition: str = ""
    unsaved: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    question: str
    check: Callable[[Tx, UnitState, Checked], Hold | None]


def _observe_only(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if state.policy.mode == "observe":
        return OBSERVE_ONLY, None
    return None


def _observing(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if tx.now < tx.observe_until and not first_round_done(tx):
        retry = min(tx.observe_until, tx.now + OBSERVE_POLL)
        return "observing units and running one round of checks after a start", retry
    return None


def _failed_over(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if failover_host.owns(tx, state.unit):
        return "failed over: the failover machine acts on this unit", None
    return None


def _standby(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    reason = cluster_host.standby_reason(tx, state.unit)
    return (reason, None) if reason is not None else None


def _waiting_for_root(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    return incident_host.hold(tx, state)


def _flapping(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if tx.flaps.get(state.unit, FlapState()).flapping:
        # A clustered unit that flaps here goes to another host rather than stay down.
        cluster_host.cannot_repair(tx, state, "flapping: repairs paused")
        return "flapping: repairs paused until it settles", None
    return None


def _precondition(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if checked.precondition:
        return f"precondition: {checked.precondition}", tx.now + PRECONDITION_RETRY
    return None


def _unsaved(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    if checked.unsaved:
        return f"state not saved: {checked.unsaved}", tx.now + STORE_RETRY
    return None


def _guard(tx: Tx, state: UnitState, checked: Checked) -> Hold | None:
    unit = state.unit
    tx.guard, decision, notices = guard.request(
        tx.loaded.main.guard,
        tx.guard,
        unit,
        allow_automatic=state.policy.allow_automatic,
        now=tx.now,
    )
    tx.guard_changed(notices)
    if decision.verdict is Verdict.ALLOW:
        return None
    if decision.kind == "protected":
        tx.tell(
            state,
            "error",
            "protected unit unhealthy; not repaired automatically",
            record="alert",
            recorded=f"protected: {decision.reason}",
            alert=AlertText(
                AlertKind.PROTECTED,
                Severity.CRITICAL,
                f"{unit} is unhealthy and protected: a person must act",
                f"{decision.reason}. It is not repaired automatically unless its policy "
                "says allow_automatic: true.",
                problem=True,
            ),
        )
    if decision.kind == "concurrency" and unit not in tx.waiting:
        tx.waiting.append(unit)
    return decision.reason, decision.retry_at


HOLDS = (
    Rule(
        OBSERVE_RULE,
        "Does the unit's policy say `mode: observe`? Then it is watched, checked and "
        "alerted on, never acted on; `mode: act` promotes it.",
        _observe_only,
    ),
    Rule(
        "observing",
        "Is the daemon still observing after its start? The unit states and one round "
        "of checks come first (30 s at most).",
        _observing,
    ),
    Rule(
        "failover",
        "Does the failover machine own the unit? While it serves from a backup, or fails "
        "back, the failover machine acts on it, not the ladder.",
        _failed_over,
    ),
    Rule(
        "standby",
        "Is the unit clustered and held by another host, or by none yet? Only the "
        "holder repairs it; elsewhere it stays stopped.",
        _standby,
    ),
    Rule(
        incident_host.RULE,
        "Is the unit's failure a symptom of another supervised unit's? A unit that "
        "failed within `guard.incidents.window` of a unit it depends on (systemd's "
        "Requires=, BindsTo=, PartOf=, After=) waits until that root is healthy again "
        "and its own settle time has passed; then it is judged afresh.",
        _waiting_for_root,
    ),
    Rule(
        "flapping",
        "Is the unit flapping? Nagios' percent state change over the last 21 samples, "
        "between `guard.flapping.low` and `high`; it ends when the samples age out of "
        "the window, even if the unit stays failed.",
        _flapping,
    ),
    Rule(
        "state saved",
        "Is the state that counts this attempt on disk? If the state database cannot "
        "be written (locked, full), the repair waits, so that a crash never repeats it; "
        "it asks again in 10 s.",
        _unsaved,
    ),
    Rule(
        "preconditions",
        "Do the policy's preconditions hold: disk below X% on the listed paths, host "
        "memory below Y%, the listed units active? If not, it asks again in 30 s.",
        _precondition,
    ),
    Rule(
        "guard",
        "What does the guard (`supervisor/core/guard.py`, pure) say? Its rules, in order:",
        _guard,
    ),
)


def hold_reason(tx: Tx, state: UnitState, checked: Checked) -> tuple[str, Hold] | None:
    """Which rule holds the repair asked for, why, and when to ask again; None: go."""
    for rule in HOLDS:
        if (held := rule.check(tx, state, checked)) is not None:
            return rule.name, held
    return None


def first_round_done(tx: Tx) -> bool:
    """Every scheduled check of every running unit has reported since the start."""
    return all(
        runs > 0
        for state in tx.units.values()
        if state.running
        for check, runs in zip(state.policy.checks, state.runs, strict=True)
        if check.kind != "unit"
    )


def render_hold_order() -> str:
    """The list in docs/decisions.md, from `HOLDS` and the guard's `RULES`."""
    lines = [f"{n}. {rule.question}" for n, rule in enumerate(HOLDS, 1)]
    lines += [f"   - **{name}** {text}" for name, text in guard.RULES]
    return "\n".join(lines) + "\n"
