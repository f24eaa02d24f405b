"""Change-aware rollback, the pure part: when a failure counts as caused by a change, how
the ladder is shifted to restore, and the host reducer's handling (fake clock)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from supervisor.config.loader import LoadedConfig
from supervisor.config.main import MainConfig
from supervisor.config.policy import Policy
from supervisor.config.recovery import Recovery
from supervisor.core import host
from supervisor.core.actions import (
    Action,
    ConfigChanged,
    ConfigWatched,
    Event,
    PoliciesLoaded,
    PreconditionsChecked,
    RepairDone,
    RunRepair,
    SaveUnit,
    SendAlert,
    Started,
    UnitChanged,
    UnwatchConfig,
    WatchConfig,
)
from supervisor.core.recovery import Notice, RecoveryState, Report, RunRung
from supervisor.core.rollback import ConfigChange, reason, redirect, seen_start
from supervisor.core.state import HostState
from supervisor.core.status import unit_rows
from supervisor.core.values import RepairResult, Rung, UnitSnapshot

UNIT = "web.service"
CHANNELS = {"alerts": {"channels": {"ops": {"url": "json://localhost/hook"}}}}
RESTORE = {"paths": ["/etc/nginx"], "from": "last-known-good"}


def recovery(**restore: Any) -> Recovery:
    return Recovery.model_validate(
        {"ladder": ["restart", "reload", "restore"], "restore": {**RESTORE, **restore}}
    )


# -- reason: does this failure count as caused by the change? ---------------------------------


def test_a_failure_within_the_window_after_a_change_is_a_rollback() -> None:
    change = ConfigChange(1000.0, ("/etc/nginx",))
    why = reason(recovery(), change, True, 1000.0 + 599)
    assert why is not None and "/etc/nginx" in why and "599s" in why
    assert reason(recovery(), change, True, 1000.0 + 601) is None  # the default 10m passed
    assert reason(recovery(rollback_window="30s"), change, True, 1031.0) is None
    assert reason(recovery(rollback_window="30s"), change, True, 1029.0) is not None


def test_no_rollback_without_a_proven_snapshot_a_change_restore_or_a_window() -> None:
    change = ConfigChange(1000.0, ("/etc/nginx",))
    assert reason(recovery(), change, False, 1001.0) is None  # nothing proven to restore
    assert reason(recovery(), None, True, 1001.0) is None  # nothing changed
    assert reason(recovery(rollback_window="0s"), change, True, 1001.0) is None  # off
    no_restore_rung = Recovery.model_validate({"ladder": ["restart"], "restore": RESTORE})
    assert reason(no_restore_rung, change, True, 1001.0) is None
    defaults = Recovery.model_validate(
        {"ladder": ["restart", "restore"], "restore": {"paths": ["/etc/hostname"], "from": "/etc"}}
    )
    assert reason(defaults, change, True, 1001.0) is None  # not a proven snapshot


def test_a_change_while_stopped_counts_from_the_next_start() -> None:
    change = ConfigChange(1000.0, ("/etc/nginx",), while_stopped=True)
    # Never seen starting: the failing start is now, whatever the change's age.
    assert reason(recovery(), change, True, 99_000.0) is not None
    started = seen_start(change, 50_000.0)
    assert started is not None and started.started_at == 50_000.0
    assert seen_start(started, 60_000.0) == started  # the first start opens the window
    assert reason(recovery(), started, True, 50_000.0 + 30) is not None
    assert reason(recovery(), started, True, 50_000.0 + 601) is None
    running = ConfigChange(1000.0, ("/etc/nginx",))
    assert seen_start(running, 2000.0) == running  # made while running: counts from itself


def test_a_diff_mask_that_is_no_regular_expression_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match=r"'\(unclosed' is not a regular expression"):
        recovery(diff_mask=["(?i)token", "(unclosed"])
    restore = recovery().restore
    assert restore is not None and restore.rollback_window == 600.0  # 10m by default


# -- redirect: the rung asked for becomes restore ---------------------------------------------


def test_the_first_rung_becomes_restore_and_the_ladder_shifts_as_if_skipped() -> None:
    spec = recovery()
    asked = RecoveryState(attempts=1, ran=("restart",))
    state, actions = redirect(spec, asked, [RunRung(Rung.RESTART, 1, 3)], "changed")
    assert actions[-1] == RunRung(Rung.RESTORE, 1, 3)
    report = actions[0]
    assert isinstance(report, Report) and report.notice is Notice.ROLLBACK
    assert "skipping restart, reload" in report.detail
    assert (state.attempts, state.skips, state.ran) == (1, 2, ("restore",))


def test_no_redirect_without_a_reason_or_once_restore_is_next() -> None:
    spec = recovery()
    asked = RecoveryState(attempts=1, ran=("restart",))
    assert redirect(spec, asked, [RunRung(Rung.RESTART, 1, 3)], None) == (
        asked,
        [RunRung(Rung.RESTART, 1, 3)],
    )
    at_restore = RecoveryState(attempts=2, skips=1, ran=("restart", "restore"))
    assert redirect(spec, at_restore, [RunRung(Rung.RESTORE, 2, 3)], "changed") == (
        at_restore,
        [RunRung(Rung.RESTORE, 2, 3)],
    )


# -- the host reducer --------------------------------------------------------------------------


def snapshot(active: str, sub: str, result: str = "success") -> UnitSnapshot:
    return UnitSnapshot(UNIT, "loaded", active, sub, result, 0, 0, True, "no")


def loaded(**restore: Any) -> LoadedConfig:
    policy = Policy.model_validate(
        {
            "unit": UNIT,
            "alerts": ["ops"],
            "recovery": {"ladder": ["restart", "restore"], "restore": {**RESTORE, **restore}},
        }
    )
    return LoadedConfig(MainConfig.model_validate(CHANNELS), {UNIT: policy}, {})


def run(
    events: list[tuple[float, Event]], state: HostState | None = None
) -> tuple[HostState, list[Action]]:
    if state is None:
        state, _ = host.initial(loaded(), {}, {}, hostname="h", dry_run=False, now=0.0)
    actions: list[Action] = []
    for now, event in events:
        state, out = host.step(state, event, now)
        actions += out
    return state, actions


START: list[tuple[float, Event]] = [
    (1.0, UnitChanged(snapshot("active", "running"))),
    (2.0, Started()),
    (3.0, ConfigWatched(UNIT, True, "the newest proven snapshot")),
]


def rungs(actions: list[Action]) -> list[str]:
    return [a.rung.value for a in actions if isinstance(a, RunRepair)]


def test_started_watches_the_paths_and_a_reload_that_turns_it_off_unwatches() -> None:
    state, actions = run(START)
    assert WatchConfig(UNIT, ("/etc/nginx",)) in actions
    assert state.units[UNIT].proven
    _, actions = run([(4.0, PoliciesLoaded(loaded(rollback_window="0s")))], state)
    assert UnwatchConfig(UNIT) in actions


def test_a_change_then_a_failure_restores_first_and_the_result_carries_the_diff() -> None:
    state, actions = run(
        [
            *START,
            (10.0, ConfigChanged(UNIT, ("/etc/nginx",))),
            (20.0, UnitChanged(snapshot("failed", "failed", "exit-code"))),
            (20.1, PreconditionsChecked(UNIT, "")),
        ]
    )
    assert rungs(actions) == ["restore"]
    row = unit_rows(state, 20.2)[0]
    assert row["config_changed"] == {"at": 10.0, "paths": ["/etc/nginx"], "while_stopped": False}
    titles = [a.alert.event for a in actions if isinstance(a, SendAlert)]
    assert "rollback" in titles
    diff = "--- /etc/nginx/nginx.conf (found)\n+++ /etc/nginx/nginx.conf (restored)\n-bad\n+good\n"
    done = RepairDone(UNIT, Rung.RESTORE, 1, 3, RepairResult.DONE, "restored", 5.0, diff)
    state, actions = run([(20.5, done)], state)
    result = next(a.alert for a in actions if isinstance(a, SendAlert))
    assert result.event == "result:restore#1" and "-bad\n+good" in result.body
    assert state.units[UNIT].config_change is None  # the change is undone
    assert unit_rows(state, 21.0)[0]["config_changed"] is None


def test_a_change_seen_while_the_restart_waits_for_its_preconditions_turns_it() -> None:
    # The D-Bus signal of the failure can beat the watcher: the restart is not run yet.
    _, actions = run(
        [
            *START,
            (20.0, UnitChanged(snapshot("failed", "failed", "exit-code"))),
            (20.01, ConfigChanged(UNIT, ("/etc/nginx",))),
            (20.1, PreconditionsChecked(UNIT, "")),
        ]
    )
    assert rungs(actions) == ["restore"]


def test_the_restores_own_writes_are_no_change() -> None:
    state, _ = run(
        [
            *START,
            (10.0, ConfigChanged(UNIT, ("/etc/nginx",))),
            (20.0, UnitChanged(snapshot("failed", "failed", "exit-code"))),
            (20.1, PreconditionsChecked(UNIT, "")),
            (20.2, ConfigChanged(UNIT, ("/etc/nginx",))),  # the restore writing
        ]
    )
    assert state.units[UNIT].config_change == ConfigChange(10.0, ("/etc/nginx",))


def test_without_a_change_the_ladder_restarts_first() -> None:
    _, actions = run(
        [
            *START,
            (20.0, UnitChanged(snapshot("failed", "failed", "exit-code"))),
            (20.1, PreconditionsChecked(UNIT, "")),
        ]
    )
    assert rungs(actions) == ["restart"]


def test_the_change_is_stored_with_the_unit_and_taken_up_after_a_restart() -> None:
    _, actions = run([*START, (10.0, ConfigChanged(UNIT, ("/etc/nginx",)))])
    saved = [a.doc for a in actions if isinstance(a, SaveUnit)][-1]
    assert saved["config_change"] == {
        "at": 10.0,
        "paths": ["/etc/nginx"],
        "while_stopped": False,
        "started_at": None,
    }
    assert host.checked_unit_doc(UNIT, saved) == saved
    again, _ = host.initial(loaded(), {UNIT: saved}, {}, hostname="h", dry_run=False, now=15.0)
    assert again.units[UNIT].config_change == ConfigChange(10.0, ("/etc/nginx",))
    with pytest.raises((ValueError, TypeError, KeyError)):
        host.checked_unit_doc(UNIT, {**saved, "config_change": {"paths": []}})
