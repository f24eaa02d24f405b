"""A state document read back from the store is checked field by field."""

from __future__ import annotations

import json

import pytest

from supervisor.core.failover import FailoverState
from supervisor.core.recovery import Phase, RecoveryState


def test_a_recovery_state_round_trips() -> None:
    state = RecoveryState(phase=Phase.COOLDOWN, attempts=2, deadline=30.0, ran=("restart",))
    assert RecoveryState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"attempts": "x"}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"deadline": "soon"}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"held_reason": 3}, "held_reason"),
        ({"episode_open": 1}, "episode_open"),
        ({"ran": ["restart", 2]}, "ran"),
    ],
)
def test_a_recovery_field_of_the_wrong_type_is_refused_by_name(
    doc: dict[str, object], field: str
) -> None:
    with pytest.raises(TypeError, match=rf"RecoveryState\.{field}"):
        RecoveryState.from_dict(doc)


def test_an_unknown_phase_is_refused() -> None:
    with pytest.raises(ValueError, match="'dancing'"):
        RecoveryState.from_dict({"phase": "dancing"})


def test_a_failover_field_of_the_wrong_type_is_refused_by_name() -> None:
    good = FailoverState.initial("web.service").to_dict()
    assert FailoverState.from_dict(json.loads(json.dumps(good))) == FailoverState.initial(
        "web.service"
    )
    with pytest.raises(TypeError, match=r"FailoverState\.successes"):
        FailoverState.from_dict({**good, "successes": "2"})
    with pytest.raises(TypeError, match=r"FailoverState\.tried"):
        FailoverState.from_dict({**good, "tried": [["b1.service"]]})
