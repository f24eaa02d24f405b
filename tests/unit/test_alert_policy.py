"""The alert policy, pure: the gate (dedup, reminders, recoveries), routing, batching.

Times are explicit: `now` on the shell's clock, `Alert.time` on the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from supervisor.core.alerting import (
    Alert,
    AlertGate,
    Batcher,
    BatchState,
    GateState,
    Severity,
    format_clock,
    render,
    route,
)

HOUR = 3600.0
WALL = 1_767_600_000.0  # some wall-clock moment; only shown in text


def alert(
    unit: str | None = "web.service",
    event: str = "unhealthy",
    severity: Severity = Severity.CRITICAL,
    *,
    at: float = 0.0,
    problem: bool | None = None,
    resolves: tuple[str, ...] = (),
    channels: tuple[str, ...] = ("mail", "chat"),
    title: str | None = None,
) -> Alert:
    return Alert(
        unit=unit,
        event=event,
        severity=severity,
        title=title or f"{unit} {event}",
        body=f"what happened to {unit}: {event}",
        channels=channels,
        time=WALL + at,
        resolves=resolves,
        problem=event in ("unhealthy", "exhausted", "frozen") if problem is None else problem,
    )


def recovered(unit: str | None = "web.service", at: float = 0.0) -> Alert:
    return alert(
        unit, "recovered", Severity.INFO, at=at, resolves=("unhealthy", "exhausted"), problem=False
    )


def sends(gate: AlertGate, state: GateState, *steps: tuple[float, Alert]) -> list[list[str]]:
    """Submit each (now, alert); the titles sent at each step."""
    out: list[list[str]] = []
    for now, item in steps:
        state, sent = gate.submit(state, item, now)
        out.append([a.title for a in sent])
    return out


# --- severity ----------------------------------------------------------------------------


def test_severity_from_name_and_order() -> None:
    assert Severity.from_name("warning") is Severity.WARNING
    assert Severity.from_name("CRITICAL") is Severity.CRITICAL
    assert Severity.INFO < Severity.WARNING < Severity.CRITICAL
    with pytest.raises(ValueError, match="info, warning, critical"):
        Severity.from_name("urgent")


# --- dedup -------------------------------------------------------------------------------


def test_same_unit_and_event_is_not_sent_again_within_repeat_interval() -> None:
    gate = AlertGate(HOUR)
    a = alert(event="action", problem=False)
    steps = sends(gate, GateState(), (0, a), (10, a), (HOUR - 1, a), (HOUR, a))
    assert steps == [[a.title], [], [], [a.title]]


def test_dedup_is_per_unit_and_per_event() -> None:
    gate = AlertGate(HOUR)
    steps = sends(
        gate,
        GateState(),
        (0, alert("web.service", "action", problem=False)),
        (1, alert("db.service", "action", problem=False)),
        (2, alert("web.service", "result", problem=False)),
        (3, alert(None, "daemon", Severity.INFO, problem=False)),
        (4, alert(None, "daemon", Severity.INFO, problem=False)),
    )
    assert [len(s) for s in steps] == [1, 1, 1, 1, 0]


def test_gate_forgets_old_sends() -> None:
    gate = AlertGate(60)
    state, _ = gate.submit(GateState(), alert(event="action", problem=False), 0)
    state, _ = gate.submit(state, alert("db.service", "action", problem=False), 100)
    assert list(state.sent_at) == [("db.service", "action")]


# --- reminders ---------------------------------------------------------------------------


def test_open_problem_is_reminded_once_per_interval() -> None:
    gate = AlertGate(HOUR)
    state, sent = gate.submit(GateState(), alert(at=0), 0)
    assert len(sent) == 1
    assert gate.next_deadline(state) == HOUR

    state, reminders = gate.tick(state, HOUR - 1)
    assert reminders == []
    state, again = gate.submit(state, alert(at=600), 600)  # still unhealthy: no repeat
    assert again == []

    state, reminders = gate.tick(state, HOUR)
    assert len(reminders) == 1
    reminder = reminders[0]
    assert f"still unhealthy since {format_clock(WALL)}; reminder" in reminder.title
    assert reminder.title.startswith("web.service unhealthy")
    assert "Still unhealthy since" in reminder.body
    assert reminder.body.endswith("what happened to web.service: unhealthy")
    assert gate.next_deadline(state) == 2 * HOUR

    state, reminders = gate.tick(state, HOUR + 5)  # not twice in one interval
    assert reminders == []
    state, reminders = gate.tick(state, 2 * HOUR)
    assert len(reminders) == 1


def test_no_reminder_after_recovery_and_none_for_events_that_are_not_problems() -> None:
    gate = AlertGate(HOUR)
    state, _ = gate.submit(GateState(), alert(), 0)
    state, _ = gate.submit(state, alert(event="action", problem=False), 1)
    state, sent = gate.submit(state, recovered(at=60), 60)
    assert len(sent) == 1
    assert gate.next_deadline(state) is None
    state, reminders = gate.tick(state, 10 * HOUR)
    assert reminders == []


# --- recoveries --------------------------------------------------------------------------


def test_recovery_follows_a_sent_problem_once() -> None:
    gate = AlertGate(HOUR)
    steps = sends(
        gate,
        GateState(),
        (0, alert()),
        (30, recovered(at=30)),
        (40, recovered(at=40)),
    )
    assert steps == [["web.service unhealthy"], ["web.service recovered"], []]


def test_recovery_with_nothing_open_is_suppressed() -> None:
    gate = AlertGate(HOUR)
    steps = sends(
        gate,
        GateState(),
        (0, recovered()),
        (1, alert("db.service")),  # another unit's problem does not count
        (2, recovered("web.service", at=2)),
    )
    assert steps == [[], ["db.service unhealthy"], []]


def test_recovery_closes_every_problem_it_names() -> None:
    gate = AlertGate(HOUR)
    state, _ = gate.submit(GateState(), alert(), 0)
    state, _ = gate.submit(state, alert(event="exhausted"), 5)
    assert len(state.open) == 2
    assert [p.alert.event for p in gate.resolved_by(state, recovered(at=9))] == [
        "unhealthy",
        "exhausted",
    ]
    state, sent = gate.submit(state, recovered(at=10), 10)
    assert len(sent) == 1
    assert state.open == {}


def test_a_problem_back_within_the_interval_is_held_then_reminded() -> None:
    """Flapping: failed, recovered, failed again 5 minutes later. No second mail at
    once, no recovery for the unsent one, but a reminder once the hour is up."""
    gate = AlertGate(HOUR)
    state = GateState()
    steps = []
    for now, item in [(0, alert()), (60, recovered(at=60)), (300, alert(at=300))]:
        state, sent = gate.submit(state, item, now)
        steps.append(len(sent))
    assert steps == [1, 1, 0]
    assert gate.next_deadline(state) == HOUR

    flapped, sent = gate.submit(state, recovered(at=400), 400)
    assert sent == []  # nothing told, so nothing to take back
    assert gate.next_deadline(flapped) is None

    state, reminders = gate.tick(state, HOUR)
    assert [r.title for r in reminders] == [
        f"web.service unhealthy (still unhealthy since {format_clock(WALL + 300)}; reminder)"
    ]
    state, sent = gate.submit(state, recovered(at=HOUR + 10), HOUR + 10)
    assert len(sent) == 1  # now it was told, so the recovery goes out


def test_host_wide_problem_and_its_end() -> None:
    gate = AlertGate(HOUR)
    frozen = alert(None, "frozen", title="automation frozen")
    thawed = alert(
        None, "unfrozen", Severity.INFO, resolves=("frozen",), problem=False, title="thawed"
    )
    assert sends(gate, GateState(), (0, frozen), (900, thawed), (901, thawed)) == [
        ["automation frozen"],
        ["thawed"],
        [],
    ]


def test_gate_refuses_a_repeat_interval_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        AlertGate(0)


# --- routing -----------------------------------------------------------------------------

MINS = {
    "everything": Severity.INFO,
    "pager": Severity.CRITICAL,
    "mail": Severity.WARNING,
}


def test_route_keeps_only_channels_whose_min_severity_is_met() -> None:
    channels = ("everything", "pager", "mail")
    assert route(alert(severity=Severity.INFO, channels=channels), MINS).channels == ("everything",)
    assert route(alert(severity=Severity.WARNING, channels=channels), MINS).channels == (
        "everything",
        "mail",
    )
    assert route(alert(severity=Severity.CRITICAL, channels=channels), MINS).channels == channels


def test_route_drops_unknown_channels_and_duplicates() -> None:
    routed = route(alert(channels=("mail", "nowhere", "mail")), MINS)
    assert routed.channels == ("mail",)


def test_recovery_reaches_the_channels_that_heard_of_the_problem() -> None:
    item = replace(recovered(), channels=("everything", "pager", "mail"))
    assert route(item, MINS).channels == ("everything",)
    assert route(item, MINS, also_at=Severity.CRITICAL).channels == item.channels
    assert route(item, MINS, also_at=Severity.WARNING).channels == ("everything", "mail")


# --- batching ----------------------------------------------------------------------------


def test_a_lone_alert_goes_out_as_itself_after_group_wait() -> None:
    batcher = Batcher("web01", group_wait=3)
    state, flush_at = batcher.add(BatchState(), alert(channels=("mail",)), 100)
    assert flush_at == 103
    state, out = batcher.due(state, 102.9)
    assert out == []
    state, out = batcher.due(state, 103)
    assert len(out) == 1
    message = out[0]
    assert (message.channel, message.title, message.severity) == (
        "mail",
        "web.service unhealthy",
        Severity.CRITICAL,
    )
    assert message.body.startswith("web01: critical, web.service, ")
    assert message.body.endswith("what happened to web.service: unhealthy")
    assert state.batches == {}
    assert batcher.next_deadline(state) is None


def test_five_alerts_within_group_wait_make_one_message_per_channel() -> None:
    batcher = Batcher("web01", group_wait=3)
    state = BatchState()
    units = [f"app{i}.service" for i in range(5)]
    for offset, unit in enumerate(units):
        severity = Severity.CRITICAL if unit == "app3.service" else Severity.WARNING
        state, flush_at = batcher.add(state, alert(unit, severity=severity), 10 + offset * 0.5)
        assert flush_at == 13  # the first alert opened the window
    state, out = batcher.due(state, 13)
    assert [m.channel for m in out] == ["chat", "mail"]
    for message in out:
        assert message.title == "5 alerts on web01"
        assert message.severity is Severity.CRITICAL
        assert message.body.startswith("web01: 5 alerts from ")
        for number, unit in enumerate(units, start=1):
            assert f"{number}. " in message.body
            assert f"{unit} unhealthy" in message.body
            assert f"what happened to {unit}: unhealthy" in message.body
        assert "4. CRITICAL [app3.service]" in message.body


def test_alerts_after_the_window_start_a_new_batch() -> None:
    batcher = Batcher("web01", group_wait=3)
    state, _ = batcher.add(BatchState(), alert("a.service", channels=("mail",)), 0)
    state, _ = batcher.add(state, alert("b.service", channels=("mail",)), 2)
    state, first = batcher.due(state, 3)
    state, flush_at = batcher.add(state, alert("c.service", channels=("mail",)), 3.5)
    assert flush_at == 6.5
    state, second = batcher.due(state, 6.5)
    assert [m.title for m in first] == ["2 alerts on web01"]
    assert [m.title for m in second] == ["c.service unhealthy"]


def test_each_channel_has_its_own_window() -> None:
    batcher = Batcher("web01", group_wait=3)
    state, _ = batcher.add(BatchState(), alert("a.service", channels=("mail",)), 0)
    state, flush_at = batcher.add(state, alert("b.service", channels=("chat",)), 2)
    assert flush_at == 3  # the earliest batch
    state, out = batcher.due(state, 3)
    assert [(m.channel, m.title) for m in out] == [("mail", "a.service unhealthy")]
    assert batcher.next_deadline(state) == 5
    state, out = batcher.flush_all(state)
    assert [(m.channel, m.title) for m in out] == [("chat", "b.service unhealthy")]


def test_channel_filtering_happens_before_batching() -> None:
    """A channel that only takes critical alerts gets the critical one as itself."""
    batcher = Batcher("web01", group_wait=3)
    state = BatchState()
    for unit, severity in [("a.service", Severity.WARNING), ("b.service", Severity.CRITICAL)]:
        routed = route(alert(unit, severity=severity, channels=("everything", "pager")), MINS)
        state, _ = batcher.add(state, routed, 0)
    _, out = batcher.due(state, 3)
    titles = {m.channel: m.title for m in out}
    assert titles == {"everything": "2 alerts on web01", "pager": "b.service unhealthy"}


def test_render_of_a_host_wide_alert_and_an_empty_list() -> None:
    title, body, severity = render([alert(None, "daemon", Severity.INFO, title="started")], "h1")
    assert (title, severity) == ("started", Severity.INFO)
    assert body.startswith("h1: info, ")
    assert time.strftime("%Y-%m-%d", time.localtime(WALL)) in body.splitlines()[0]
    with pytest.raises(ValueError):
        render([], "h1")
