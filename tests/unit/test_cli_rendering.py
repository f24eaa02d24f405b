"""How `status` and `history` look, from fake daemon answers: labelled human durations,
not-found units, colour only where it belongs, rows cut to the terminal, and the exit
codes scripts read."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest

from supervisor.commands.acting import pause_confirmation
from supervisor.commands.history import Follower
from supervisor.commands.rendering import (
    cluster_line,
    history_line,
    human_duration,
    next_label,
    pause_label,
    render_status,
    state_label,
    status_exit_code,
)
from supervisor.commands.terminal import Terminal

ANSI = re.compile(r"\033\[[0-9;]*m")
PLAIN = Terminal()


def unit(name: str = "web.service", **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "unit": name,
        "condition": "healthy",
        "state": "active/running",
        "systemd": {
            "load_state": "loaded",
            "active_state": "active",
            "sub_state": "running",
            "result": "success",
        },
        "phase": "idle",
        "attempts": 0,
        "max_attempts": 3,
        "next_action_in_s": None,
        "held": "",
        "paused": False,
        "pause_left_s": None,
        "pause_reason": "",
        "flapping": False,
        "last_event": "started",
        "failover": None,
        "cluster": None,
    }
    row.update(fields)
    return row


def body(*units: dict[str, Any], **guard: Any) -> dict[str, Any]:
    return {
        "status": f"{len(units)} units",
        "dry_run": False,
        "guard": {"frozen": False, "breaker": "closed", "paused_all": False, **guard},
        "units": list(units),
    }


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "now"),
        (0.4, "1s"),
        (42.9, "42s"),
        (250, "4m 10s"),
        (600, "10m"),
        (3596.1, "59m"),
        (5400, "1h 30m"),
        (7200, "2h"),
        (7199, "1h 59m"),
        (2 * 86400 + 3 * 3600 + 59, "2d 3h"),
        (86400, "1d"),
        (float("nan"), "now"),
    ],
)
def test_human_durations(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"phase": "idle", "next_action_in_s": 3596.1}, "attempts reset in 59m"),
        ({"phase": "cooldown", "next_action_in_s": 30}, "next repair in 30s"),
        ({"phase": "settling", "next_action_in_s": 3}, "repair judged in 3s"),
        ({"phase": "held", "held": "budget spent", "next_action_in_s": 90}, "held: budget spent"),
        ({"phase": "acting"}, "judging the repair"),
        ({"phase": "idle"}, ""),
        ({"phase": "exhausted"}, "gave up; `host-supervisor reset web.service` to try again"),
    ],
)
def test_the_next_action_is_labelled(fields: dict[str, Any], text: str) -> None:
    label = next_label(unit(**fields))
    assert label.startswith(text) and (label == "") == (text == "")


def test_a_pause_shows_its_time_left_and_reason() -> None:
    paused = unit(paused=True, pause_left_s=7190, pause_reason="deploy")
    assert pause_label(paused) == "paused (1h 59m left: deploy)"
    assert pause_label(unit(paused=True, pause_left_s=30)) == "paused (30s left)"
    assert pause_label(unit(paused=True, pause_reason="disk")) == "paused: disk"
    assert pause_label(unit(paused=True)) == "paused"
    assert pause_label(unit(paused=True), paused_all=True) == "paused (all units)"
    assert pause_label(unit()) == ""
    lines = render_status(body(paused), PLAIN)
    assert "paused (1h 59m left: deploy)" in lines[-1]


def test_a_missing_unit_is_not_found_not_inactive_dead() -> None:
    missing = unit(
        condition="missing",
        state="inactive/dead",
        systemd={
            "load_state": "not-found",
            "active_state": "inactive",
            "sub_state": "dead",
            "result": "success",
        },
    )
    assert state_label(missing) == "not-found"
    assert state_label(unit()) == "active/running"
    assert state_label(unit(state="", systemd=None)) == "-"
    row = render_status(body(missing), PLAIN)[-1]
    assert "not-found" in row and "inactive/dead" not in row


@pytest.mark.parametrize(
    ("conditions", "code"),
    [
        ([], 0),
        (["healthy", "healthy"], 0),
        (["healthy", "degraded"], 1),
        (["transient"], 1),
        (["degraded", "unhealthy"], 2),
        (["missing"], 2),
        (["stopped"], 2),
        (["healthy", "unknown"], 3),
        (["degraded", "unknown"], 3),
        (["unknown", "unhealthy"], 2),
        (["something-new"], 3),
    ],
)
def test_exit_codes_follow_the_worst_unit(conditions: list[str], code: int) -> None:
    assert status_exit_code([unit(condition=c) for c in conditions]) == code


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Terminal.of(Tty(), environ={}).colour
    assert not Terminal.of(Tty(), environ={"NO_COLOR": "1"}).colour
    assert Terminal.of(Tty(), environ={"NO_COLOR": ""}).colour  # set but empty: no effect
    assert not Terminal.of(Tty(), environ={"TERM": "dumb"}).colour
    assert not Terminal.of(Tty(), no_colour=True, environ={}).colour
    assert not Terminal.of(io.StringIO(), environ={}).colour
    assert Terminal.of(io.StringIO(), environ={}).width is None  # a pipe gets rows whole
    assert Terminal.of(Tty(), full=True, environ={}).width is None
    assert Terminal.of(Tty(), environ={}).width is not None


def test_colour_marks_the_health_and_keeps_the_columns() -> None:
    data = body(unit(), unit("db.service", condition="unhealthy"))
    coloured = render_status(data, Terminal(colour=True))
    plain = render_status(data, PLAIN)
    assert "\033[32mhealthy\033[0m" in coloured[2]
    assert "\033[31munhealthy\033[0m" in coloured[3]
    assert [ANSI.sub("", line) for line in coloured] == plain
    assert not any(ANSI.search(line) for line in plain)


def test_rows_fit_the_terminal_and_full_keeps_them_whole() -> None:
    long_event = "check http critical: connection refused " * 5
    data = body(unit(last_event=long_event, phase="idle", next_action_in_s=3596.1))
    cut = render_status(data, Terminal(width=100))
    assert all(len(line) <= 100 for line in cut[1:])
    assert cut[-1].endswith("\u2026") and "attempts reset in 59m" in cut[-1]
    whole = render_status(data, Terminal(width=None))
    assert whole[-1].endswith(long_event.rstrip())
    narrow = render_status(data, Terminal(width=60))
    assert narrow[-1].startswith("web.service") and all(len(line) <= 60 for line in narrow)
    columns = render_status(
        body(unit(), unit("db.service", last_event="x" * 200)), Terminal(width=90)
    )
    assert columns[2].index("started") == columns[1].index("LAST EVENT")  # aligned


def test_the_header_names_the_columns_and_the_guard_shows_when_it_holds() -> None:
    lines = render_status(body(unit(), frozen=True, frozen_for_s=600), PLAIN)
    assert lines[0] == "1 units"
    assert lines[1].startswith("automation frozen for 10m")
    assert lines[2].split() == [
        "UNIT",
        "HEALTH",
        "STATE",
        "PHASE",
        "ATTEMPTS",
        "NEXT",
        "LAST",
        "EVENT",
    ]
    assert render_status(body(), PLAIN) == ["0 units"]


def test_history_lines() -> None:
    entry: dict[str, Any] = {
        "time": 0.0,
        "unit": None,
        "kind": "daemon",
        "message": "started",
        "data": {},
    }
    line = history_line(entry)
    assert line.endswith("  -                        daemon    started")
    assert ANSI.sub("", history_line(entry | {"kind": "alert"}, Terminal(colour=True))) == (
        history_line(entry | {"kind": "alert"})
    )


def test_follow_shows_each_entry_once() -> None:
    follower = Follower()
    a = {"time": 10.0, "unit": "w", "kind": "x", "message": "a"}
    b = {"time": 10.0, "unit": "w", "kind": "x", "message": "b"}
    c = {"time": 11.0, "unit": "w", "kind": "x", "message": "c"}
    assert follower.since_s(100.0) is None
    assert follower.new([a]) == [a]
    assert follower.since_s(100.0) == pytest.approx(92.0)  # from 2 s before the last
    assert follower.new([a, b]) == [b]  # the same second, one not shown yet
    assert follower.new([a, b, c]) == [c]
    assert follower.new([b, c]) == []


def test_pause_confirms_in_one_line() -> None:
    text = pause_confirmation("web.service", 7200, "deploy", 0.0)
    assert text.startswith("web.service paused for 2h (until ")
    assert text.endswith("): watched, not repaired; reason: deploy")
    assert pause_confirmation("web.service", None, "", 0.0) == (
        "web.service paused: watched, not repaired, until `host-supervisor resume web.service`"
    )


def test_a_clustered_unit_gets_its_line_with_the_lease_in_words() -> None:
    section: dict[str, Any] = {
        "role": "holder",
        "holder": "db1",
        "token": 42,
        "alive": [],
        "lease_left_s": 3.4,
    }
    lines = render_status(body(unit("db.service", cluster=section)), PLAIN)
    assert lines[-1] == "db.service: holder here, token 42, lease 3s left"
    standby: dict[str, Any] = {"role": "standby", "holder": None, "token": None, "alive": []}
    assert cluster_line("db.service", standby) == "db.service: standby here, held by nobody"
