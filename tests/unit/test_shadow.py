"""Shadow mode and `mode: observe` in the host reducer: the repair is recorded as
'would have', with what `why` and `simulate` read from it, and never asked of the shell."""

from __future__ import annotations

from typing import Any

from supervisor.config.loader import LoadedConfig
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.core import host
from supervisor.core.actions import (
    Action,
    Event,
    PreconditionsChecked,
    RecordHistory,
    RunRepair,
    Started,
    UnitChanged,
)
from supervisor.core.recovery import Phase
from supervisor.core.state import HostState
from supervisor.core.status import status_line, unit_rows
from supervisor.core.values import UnitSnapshot

UNIT = "web.service"


def loaded(mode: str) -> LoadedConfig:
    policy = Policy.model_validate({"unit": UNIT, "mode": mode})
    return LoadedConfig(MainConfig.model_validate({}), {UNIT: policy}, {})


def crash(mode: str, *, shadow: bool) -> tuple[HostState, list[Action]]:
    state, _ = host.initial(loaded(mode), {}, {}, hostname="h", dry_run=shadow, now=0.0)
    actions: list[Action] = []
    events: tuple[Event, ...] = (
        UnitChanged(UnitSnapshot(UNIT, "loaded", "active", "running", "success", 7, 0, True)),
        Started(),
        UnitChanged(UnitSnapshot(UNIT, "loaded", "failed", "failed", "signal", 0, 0, True)),
        PreconditionsChecked(UNIT, ""),
    )
    for now, event in enumerate(events, start=1):
        state, out = host.step(state, event, 100.0 + now)
        actions += out
    return state, actions


def action_rows(actions: list[Action]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (a.message, dict(a.data))
        for a in actions
        if isinstance(a, RecordHistory) and a.kind == "action"
    ]


def test_shadow_mode_records_the_rung_with_its_reason_and_runs_none() -> None:
    state, actions = crash("act", shadow=True)
    assert not [a for a in actions if isinstance(a, RunRepair)]
    [(message, data)] = action_rows(actions)
    assert message == (
        "would have restarted (attempt 1/3) because failed/failed (signal); shadow mode: not done"
    )
    expected = {
        "shadow": True,
        "dry_run": True,
        "rung": "restart",
        "reason": "failed/failed (signal)",
        "not_done": "shadow mode: not done",
        "attempt": 1,
        "max_attempts": 3,
    }
    assert {key: data[key] for key in expected} == expected
    assert data["rule"].startswith("ladder rung 1 of ")  # as `why` reads a repair's rule
    assert data["cause"] == "systemd reports failed/failed (signal)"
    # The ladder goes on as after a repair that did not help: judged after settle.
    assert state.units[UNIT].recovery.phase is Phase.SETTLING
    assert state.repairs == 0


def test_mode_observe_records_what_it_would_have_done_and_holds() -> None:
    state, actions = crash("observe", shadow=False)
    assert not [a for a in actions if isinstance(a, RunRepair)]
    [(message, data)] = action_rows(actions)
    assert message.startswith("would have restarted (attempt 1/3) because failed/failed (signal)")
    assert data["not_done"] == "mode observe: not done"
    assert state.units[UNIT].recovery.phase is Phase.HELD


def test_a_real_run_records_the_rung_it_runs() -> None:
    _, actions = crash("act", shadow=False)
    assert [(a.unit, a.rung) for a in actions if isinstance(a, RunRepair)] == [(UNIT, "restart")]
    assert [message for message, _ in action_rows(actions)] == ["restart (attempt 1/3)"]


def test_status_says_shadow_on_its_line_and_on_each_unit() -> None:
    shadow, _ = crash("act", shadow=True)
    assert "SHADOW MODE: nothing is acted on" in status_line(shadow, 110.0)
    assert [row["mode"] for row in unit_rows(shadow, 110.0)] == ["shadow"]
    observe, _ = crash("observe", shadow=False)
    assert "SHADOW" not in status_line(observe, 110.0)
    assert [row["mode"] for row in unit_rows(observe, 110.0)] == ["observe"]
