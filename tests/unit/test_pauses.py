"""An operator's pause with an end (`pause UNIT --for 2h --reason ...`): pure decisions,
time passed in."""

from __future__ import annotations

import pytest

from supervisor.core import guard
from supervisor.core.guard_state import GuardState, PauseNote
from supervisor.core.pauses import pause, pause_ends, pause_expired, resume


def test_a_pause_with_an_end_expires_at_its_end_not_before() -> None:
    state = pause(GuardState(), "web.service", until=7300.0, reason="deploy")
    assert "web.service" in state.paused
    assert state.pause_note("web.service") == PauseNote("web.service", 7300.0, "deploy")
    assert not pause_expired(state, "web.service", 7299.9)
    assert pause_expired(state, "web.service", 7300.0)
    assert pause_ends(state) == {"web.service": 7300.0}


def test_a_pause_without_an_end_never_expires() -> None:
    state = pause(GuardState(), "web.service")
    assert state.pause_notes == frozenset()
    assert not pause_expired(state, "web.service", 1e12)
    assert pause_ends(state) == {}
    with_reason = pause(GuardState(), "web.service", reason="disk swap")
    assert pause_ends(with_reason) == {}
    assert with_reason.pause_note("web.service") == PauseNote("web.service", None, "disk swap")


def test_pausing_again_replaces_the_end_and_reason() -> None:
    first = pause(GuardState(), "web.service", until=100.0, reason="a")
    again = pause(first, "web.service", until=500.0, reason="b")
    assert again.pause_notes == {PauseNote("web.service", 500.0, "b")}
    assert not pause_expired(again, "web.service", 200.0)  # the first end no longer counts
    forever = pause(again, "web.service")
    assert forever.pause_notes == frozenset() and "web.service" in forever.paused
    assert pause(forever, "web.service") is forever  # nothing changed: the same state


def test_a_resumed_pause_is_not_expired_and_leaves_no_note() -> None:
    state = resume(pause(GuardState(), "web.service", until=100.0), "web.service")
    assert state.paused == frozenset() and state.pause_notes == frozenset()
    assert not pause_expired(state, "web.service", 200.0)


def test_other_units_keep_their_pauses() -> None:
    state = pause(pause(GuardState(), "a.service", until=100.0), "b.service", until=200.0)
    state = resume(state, "a.service")
    assert pause_ends(state) == {"b.service": 200.0}


def test_resume_all_ends_every_pause_and_note() -> None:
    state = pause(GuardState(), "a.service", until=100.0, reason="x")
    state, _notices = guard.resume_all(state, 50.0)
    assert state.paused == frozenset() and state.pause_notes == frozenset()


def test_notes_survive_the_store() -> None:
    state = pause(GuardState(), "web.service", until=7300.5, reason="deploy")
    assert GuardState.from_dict(state.to_dict()) == state
    assert GuardState.from_dict({"paused": ["web.service"]}).pause_notes == frozenset()


@pytest.mark.parametrize(
    ("notes", "words"),
    [
        (["web.service"], "pause_notes must hold mappings"),
        ([{"unit": 3}], "pause_notes must hold unit names"),
        ([{"unit": "a", "until": "soon"}], "until must hold numbers"),
        ([{"unit": "a", "reason": 7}], "a pause's reason must be text"),
    ],
)
def test_a_bad_stored_note_is_refused_naming_it(notes: list[object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        GuardState.from_dict({"pause_notes": notes})
