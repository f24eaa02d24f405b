"""`simulate`: a recorded history replayed through the host reducer with the
policies it was recorded with, and with changed ones (against a golden file)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from supervisor.commands.simulate import side_by_side, simulate_command
from supervisor.config.loader import load_config
from supervisor.core.replay import Decision, Entry, actual, decision_of, replay, snapshot_of
from supervisor.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "replay"
END = 1200.0  # the fixture's rows lie between 1000 and 1052 (seconds since the epoch)


def recorded() -> list[Entry]:
    rows = json.loads((FIXTURES / "history.json").read_text())
    return [Entry(*row) for row in rows]


def simulated(policies: str) -> list[Decision]:
    loaded = load_config(FIXTURES / policies)
    assert not loaded.errors
    return replay(loaded, recorded(), end=END)


def test_the_recorded_policies_replay_to_what_was_done() -> None:
    done = actual(recorded())
    assert [(d.unit, d.text) for d in done] == [
        ("web.service", "restart (1/3)"),
        ("web.service", "restart (2/3)"),
        ("web.service", "restart (3/3)"),
        ("web.service", "exhausted"),
        ("api.service", "restart (1/3)"),
    ]
    again = simulated("recorded")
    assert [(d.unit, d.text) for d in again] == [(d.unit, d.text) for d in done]
    # On the recorded clock: each decision within 20 ms of the row that records it.
    assert all(abs(s.time - d.time) <= 0.02 for s, d in zip(again, done, strict=True))
    assert side_by_side(again, done, 1000.0)[-1] == "5 simulated, 5 actual; 0 rows differ"


def test_a_changed_ladder_and_mode_print_the_golden_table(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Store(state / "state.db") as store:
        for entry in recorded():
            store.append(entry.unit, entry.kind, entry.message, dict(entry.data), time=entry.time)
    config = tmp_path / "changed"
    shutil.copytree(FIXTURES / "changed", config)
    out, err = io.StringIO(), io.StringIO()
    assert simulate_command(config, state, 86400.0, out, err, now=END) == 0, err.getvalue()
    text = out.getvalue().replace(str(config), "CONFIG")
    assert text == (FIXTURES / "changed.txt").read_text()
    # Deterministic: the same history prints the same table.
    again = io.StringIO()
    simulate_command(config, state, 86400.0, again, err, now=END)
    assert again.getvalue().replace(str(config), "CONFIG") == text


def test_the_window_leaves_older_rows_out(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as store:
        for entry in recorded():
            store.append(entry.unit, entry.kind, entry.message, dict(entry.data), time=entry.time)
    out = io.StringIO()
    # The last 150 s before 1200: only api.service's rows (from 1050 on).
    assert (
        simulate_command(FIXTURES / "recorded", tmp_path, 150.0, out, io.StringIO(), now=END) == 0
    )
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("replay of 7 history rows from 1970-01-01 00:17:30 UTC")
    assert [line.split()[1] for line in lines[2:-1]] == ["api.service"]


def test_no_state_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    err = io.StringIO()
    code = simulate_command(FIXTURES / "recorded", tmp_path, 3600.0, io.StringIO(), err)
    assert code == 1
    assert err.getvalue() == (
        f"host-supervisor: cannot replay {tmp_path / 'state.db'}: "
        f"no state database at {tmp_path / 'state.db'}\n"
    )


def test_a_broken_policy_is_named_and_nothing_is_replayed(tmp_path: Path) -> None:
    (tmp_path / "policies.d").mkdir()
    (tmp_path / "policies.d" / "web.yaml").write_text(
        "unit: web.service\nrecovery: {ladder: [kick]}\n"
    )
    err = io.StringIO()
    assert simulate_command(tmp_path, tmp_path, 3600.0, io.StringIO(), err) == 1
    assert "web.yaml:2" in err.getvalue()
    assert "fix these first" in err.getvalue()


@pytest.mark.parametrize(
    ("message", "states"),
    [
        ("failed: failed/failed (signal)", ("loaded", "failed", "failed", "signal")),
        ("failed: inactive/dead (exit-code)", ("loaded", "inactive", "dead", "exit-code")),
        ("healthy", ("loaded", "active", "running", "success")),
        ("stopped cleanly; not restarted", ("loaded", "inactive", "dead", "success")),
        ("disappeared", ("not-found", "inactive", "dead", "success")),
    ],
)
def test_health_rows_become_systemd_views(message: str, states: tuple[str, ...]) -> None:
    seen = snapshot_of("web.service", message)
    assert seen is not None
    assert (seen.load_state, seen.active_state, seen.sub_state, seen.result) == states


def test_rows_that_name_no_view_or_decision_are_none() -> None:
    assert snapshot_of("web.service", "unhealthy: failing checks http") is None
    assert decision_of(Entry(1.0, "web.service", "result", "restart done: job done", {})) is None


def test_shadow_rows_read_as_decisions_not_done() -> None:
    row = Entry(
        5.0,
        "web.service",
        "action",
        "would have restarted (attempt 1/3) because failed/failed (signal); shadow mode: not done",
        {"shadow": True, "rung": "restart", "attempt": 1, "max_attempts": 3},
    )
    assert [(d.time, d.text) for d in actual([row])] == [(5.0, "restart (1/3) (not done)")]
