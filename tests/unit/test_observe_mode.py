"""`mode: observe` in a policy: the host reducer alerts on the unit, never repairs it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from supervisor.config.loader import LoadedConfig
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.core import host
from supervisor.core.actions import (
    Action,
    CheckPreconditions,
    Event,
    PoliciesLoaded,
    PreconditionsChecked,
    RunRepair,
    SendAlert,
    Started,
    UnitChanged,
)
from supervisor.core.state import HostState
from supervisor.core.values import UnitSnapshot

CHANNELS = {"alerts": {"channels": {"ops": {"url": "json://localhost/hook"}}}}


def snapshot(unit: str, active: str, sub: str, result: str) -> UnitSnapshot:
    return UnitSnapshot(unit, "loaded", active, sub, result, 0, 0, True, "no")


def loaded_with(mode: str) -> LoadedConfig:
    policy = Policy.model_validate({"unit": "web.service", "mode": mode, "alerts": ["ops"]})
    return LoadedConfig(MainConfig.model_validate(CHANNELS), {"web.service": policy}, {})


def fail(mode: str) -> tuple[HostState, list[Action]]:
    """Start a daemon with one policy in `mode`, then let its unit fail and the shell
    answer the precondition check with 'all hold'."""
    unit = "web.service"
    state, _ = host.initial(loaded_with(mode), {}, {}, hostname="h", dry_run=False, now=0.0)
    actions: list[Action] = []
    events: tuple[Event, ...] = (
        UnitChanged(snapshot(unit, "active", "running", "success")),
        Started(),
        UnitChanged(snapshot(unit, "failed", "failed", "exit-code")),
        PreconditionsChecked(unit, ""),
    )
    for now, event in enumerate(events, start=1):
        state, out = host.step(state, event, 100.0 + now)
        actions += out
    return state, actions


def test_an_observed_unit_that_fails_is_alerted_and_held_never_repaired() -> None:
    state, actions = fail("observe")
    assert not [a for a in actions if isinstance(a, RunRepair)]
    alerts = [a.alert for a in actions if isinstance(a, SendAlert) and a.alert.unit]
    assert [(a.event, a.unit) for a in alerts] == [("unhealthy", "web.service")]
    assert "mode: observe" in alerts[0].body
    assert state.units["web.service"].held_by == "observe only"


def test_the_same_policy_with_mode_act_is_repaired() -> None:
    _, actions = fail("act")
    assert any(isinstance(a, CheckPreconditions) for a in actions)
    assert [(a.unit, a.rung) for a in actions if isinstance(a, RunRepair)] == [
        ("web.service", "restart")
    ]


def test_promoting_a_held_unit_to_act_asks_for_its_repair_at_once() -> None:
    state, _ = fail("observe")
    state, actions = host.step(state, PoliciesLoaded(loaded_with("act")), 200.0)
    assert CheckPreconditions("web.service") in actions
    state, actions = host.step(state, PreconditionsChecked("web.service", ""), 200.1)
    assert [(a.unit, a.rung) for a in actions if isinstance(a, RunRepair)] == [
        ("web.service", "restart")
    ]


def test_a_reload_that_keeps_observe_asks_nothing() -> None:
    state, _ = fail("observe")
    _, actions = host.step(state, PoliciesLoaded(loaded_with("observe")), 200.0)
    assert not [a for a in actions if isinstance(a, (CheckPreconditions, RunRepair))]


def test_mode_defaults_to_act_and_refuses_other_words() -> None:
    assert Policy.model_validate({"unit": "web.service"}).mode == "act"
    with pytest.raises(ValidationError, match="'act' or 'observe'"):
        Policy.model_validate({"unit": "web.service", "mode": "watch"})


@pytest.mark.parametrize(
    ("section", "value"),
    [("failover", {"backup": "b.service"}), ("cluster", {"hosts": ["a", "b"]})],
)
def test_observe_cannot_fail_over_or_cluster(section: str, value: object) -> None:
    with pytest.raises(ValidationError, match=f"mode observe never acts.*{section}"):
        Policy.model_validate({"unit": "web.service", "mode": "observe", section: value})
