"""The words of an incident: its problem message (the root, its symptoms, what was
tried and what comes next) and its recovery message. Pure, like the rest of core."""

from __future__ import annotations

import dataclasses

from supervisor.core import incidents
from supervisor.core.health import describe
from supervisor.core.incidents import WELL, Incident
from supervisor.core.notices import UNIT_PROBLEMS, AlertKind, doing
from supervisor.core.recovery import Phase
from supervisor.core.state import Tx
from supervisor.core.unit import UnitState
from supervisor.core.values import Severity


def problem(tx: Tx, incident: Incident) -> None:
    """The incident's first message, `gather` after the root's failure."""
    root = tx.unit(incident.root)
    if root is None:
        return
    tx.incidents[incident.root] = dataclasses.replace(incident, alerted=True)
    title = incidents.problem_title(incident, incident.why)
    body = f"{incident.root} {incident.why}. {root_doing(tx, root)}"
    if incident.symptoms:
        body += (
            f"\n\nSymptoms ({len(incident.symptoms)}): {', '.join(incident.symptoms)}. Their "
            "repairs wait until it is healthy again; then each is judged afresh after its "
            "settle time, and repaired only if it is still unhealthy."
        )
    tx.alert(root, AlertKind.UNHEALTHY, Severity.WARNING, title, body, problem=True, incident=True)


def root_doing(tx: Tx, root: UnitState) -> str:
    """What was tried on the root and what comes next, for the problem message."""
    recovery, policy = root.recovery, root.policy.recovery
    state = describe(root.view) if root.view is not None else root.condition.value
    wait = " Its dependents wait for it." if tx.incidents[root.unit].symptoms else ""
    attempt = f"attempt {recovery.attempts} of {policy.max_attempts}"
    tried = f"{recovery.ran[-1]} ({attempt})" if recovery.ran else ""
    match recovery.phase:
        case Phase.ACTING if recovery.ran:
            return f"Now {doing(recovery.ran[-1])} {root.unit} ({attempt}).{wait}"
        case Phase.SETTLING if root.condition in WELL:
            return (
                f"Tried: {tried}; it is {state} again. Next: once it has settled, each "
                "dependent is judged afresh."
            )
        case Phase.SETTLING | Phase.COOLDOWN:
            return f"Tried: {tried}; it is {state}. Next: its repair ladder goes on.{wait}"
        case Phase.HELD:
            return f"Its repair is held: {recovery.held_reason}.{wait}"
        case Phase.EXHAUSTED:
            return f"Its repairs are exhausted: a person must act.{wait}"
    if root.condition in WELL:
        done = ", ".join(recovery.ran) or "no repair"
        return f"Tried: {done}; it is {state} again. Next: each dependent is judged afresh."
    rungs = ", ".join(policy.ladder)
    return f"Next: its repair ladder ({rungs}), up to {policy.max_attempts} attempts.{wait}"


def recovered(tx: Tx, incident: Incident, still: list[str]) -> None:
    """The incident's last message: the root and its symptoms are well again, but for
    `still` (symptoms whose own ladder gave up)."""
    root = incident.root
    state = tx.unit(root)
    assert state is not None
    repaired = [
        name
        for name in incident.symptoms
        if name not in still and (s := tx.units.get(name)) is not None and s.recovery.ran
    ]
    body = f"{root} is {describe(state.view) if state.view else state.condition.value} again."
    on_their_own = len(incident.symptoms) - len(repaired) - len(still)
    if repaired:
        body += f" Repaired after it: {incidents.listed(repaired)}."
    if on_their_own:
        body += f" {incidents.dependents_word(on_their_own)} came back without a repair."
    if still:
        body += (
            f" Still unhealthy, their repairs exhausted: {', '.join(still)}; a person must act "
            "(`host-supervisor reset UNIT` re-arms a ladder)."
        )
    tx.history(root, "incident", incidents.recovery_title(incident, state.recovery.ran, still))
    tx.problem_alerted.discard(root)
    state.recovered_pending = False
    tx.alert(
        state,
        AlertKind.RECOVERED,
        Severity.INFO,
        incidents.recovery_title(incident, state.recovery.ran, still),
        body,
        resolves=UNIT_PROBLEMS,
        incident=True,
    )
    for name in incident.symptoms:
        # A symptom whose own problem alert went out (before it was known as one) hears
        # of its recovery too; the others were never told.
        if name in tx.problem_alerted and name not in still:
            symptom = tx.unit(name)
            if symptom is not None:
                from supervisor.core import ladder

                ladder.announce_recovered(tx, symptom)
