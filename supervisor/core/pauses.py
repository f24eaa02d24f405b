"""An operator's pause of one unit: watched, not repaired; until `resume`, or until the
end the operator gave (`pause UNIT --for 2h`). Pure: time is an argument.

The reducer arms a ("pause", unit) timer at the end; when it fires, `pause_expired`
says whether the pause is over (it may have been resumed or renewed since).
"""

from __future__ import annotations

from dataclasses import replace

from supervisor.core.guard_state import GuardState, PauseNote

__all__ = ["pause", "pause_ends", "pause_expired", "resume"]


def pause(state: GuardState, unit: str, until: float | None = None, reason: str = "") -> GuardState:
    """An operator pauses automation on `unit` (maintenance): watched, not repaired;
    until `until` (wall-clock time) when given, else until `resume`. Pausing a paused
    unit again replaces its end and reason."""
    notes = frozenset(n for n in state.pause_notes if n.unit != unit)
    if until is not None or reason:
        notes |= {PauseNote(unit, until, reason)}
    if unit in state.paused and notes == state.pause_notes:
        return state
    return replace(state, paused=state.paused | {unit}, pause_notes=notes)


def resume(state: GuardState, unit: str) -> GuardState:
    """Ends `pause(unit)`. It does not end `pause_all`, which only `resume_all` does."""
    if unit not in state.paused and state.pause_note(unit) is None:
        return state
    notes = frozenset(n for n in state.pause_notes if n.unit != unit)
    return replace(state, paused=state.paused - {unit}, pause_notes=notes)


def pause_expired(state: GuardState, unit: str, now: float) -> bool:
    """True when `unit`'s pause had an end and `now` is past it: the pause is over."""
    note = state.pause_note(unit)
    return (
        unit in state.paused and note is not None and note.until is not None and now >= note.until
    )


def pause_ends(state: GuardState) -> dict[str, float]:
    """The units whose pause ends on its own, and when: the timers the shell arms."""
    return {n.unit: n.until for n in state.pause_notes if n.until is not None}
