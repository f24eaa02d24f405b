"""`why`: causal chains from recorded history rows (as `/v1/history` returns them)."""

from __future__ import annotations

from typing import Any

from supervisor.core.why import ACTION, DECISION, EVENT, OUTCOME, RESULT, explain, one_line, render

UNIT = "web.service"


def row(time: float, kind: str, message: str, unit: str = UNIT, **data: Any) -> dict[str, Any]:
    return {"id": 0, "time": time, "unit": unit, "kind": kind, "message": message, "data": data}


def clock(t: float) -> str:
    seconds = int(t)
    return f"12:{seconds // 60:02d}:{seconds % 60:02d}"


ACTION_DATA: dict[str, Any] = {
    "reason": "http check failed 3 time(s) in a row (threshold 3): connection refused",
    "condition": "unhealthy",
    "rule": "ladder rung 1 of 2 (restart), attempt 1 of 3, cooldown 30s before the next",
    "rung": "restart",
    "rung_index": 1,
    "ladder": ["restart", "reload"],
    "attempt": 1,
    "max_attempts": 3,
    "cooldown_s": 30.0,
    "settle_s": 5.0,
}

CRASH = [
    row(
        184,
        "check",
        "http: ok -> critical: connection refused",
        check="http",
        state="critical",
        threshold=3,
        critical=True,
    ),
    row(184, "health", "unhealthy: failing checks http", condition="unhealthy"),
    row(184, "action", "restart (attempt 1/3)", **ACTION_DATA),
    row(
        185,
        "result",
        "restart done: job done",
        rung="restart",
        attempt=1,
        max_attempts=3,
        result="done",
        took_ms=1200.0,
    ),
    row(186, "check", "http: critical -> ok: 200 OK", check="http", state="ok", threshold=1),
    row(189, "health", "healthy", condition="healthy"),
    row(191, "recovery", "recovered: healthy after attempt 1", notice="recovered"),
]


def test_a_crash_reads_event_rule_decision_action_result_outcome() -> None:
    [chain] = explain(UNIT, CRASH)
    roles = [link.role for link in chain.links]
    assert roles == [EVENT, DECISION, ACTION, RESULT, OUTCOME, OUTCOME]
    assert chain.links[2].rule == ACTION_DATA["rule"]
    assert one_line(chain, clock) == (
        "12:03:04 http check critical after 3 result(s) in a row (threshold 3): connection "
        "refused -> unhealthy (failing checks http) -> ladder rung 1 of 2: restart (attempt 1 "
        "of 3, cooldown 30s) -> restart done: job done (1.2s) -> healthy at 12:03:09 -> "
        "recovered: healthy after attempt 1"
    )


def test_the_rendering_puts_each_step_under_its_time() -> None:
    text = render(UNIT, explain(UNIT, CRASH), clock)
    lines = text.splitlines()
    assert lines[0].startswith("web.service: the last 1 chain(s)")
    assert lines[2] == "12:03:04     http check critical after 3 result(s) in a row "\
        "(threshold 3): connection refused"  # fmt: skip
    assert "12:03:04  -> ladder rung 1 of 2: restart (attempt 1 of 3, cooldown 30s)" in lines
    assert "12:03:09  -> healthy" in lines


def test_an_action_whose_cause_left_the_history_explains_itself() -> None:
    [chain] = explain(UNIT, CRASH[2:])
    assert chain.links[0].role == EVENT
    assert chain.links[0].text == ACTION_DATA["reason"]
    assert chain.links[1].role == ACTION


def test_an_action_recorded_before_reasons_were_says_so() -> None:
    [chain] = explain(UNIT, [row(10, "action", "restart (attempt 1/3)")])
    assert chain.links[0].text == "unknown (not recorded)"
    assert chain.links[1].text == "restart (attempt 1/3)"


def test_a_hold_asked_again_is_folded_into_one_step() -> None:
    held = "held: precondition: disk / is 95.0% used (repairs need below 90%)"
    entries = [
        row(10, "health", "failed: failed/failed (exit-code)", condition="unhealthy"),
        row(10, "recovery", held, notice="held", held_by="precondition"),
        row(40, "recovery", held, notice="held", held_by="precondition"),
        row(70, "recovery", held, notice="held", held_by="precondition"),
        row(70, "action", "restart (attempt 1/3)", **ACTION_DATA),
    ]
    [chain] = explain(UNIT, entries)
    assert chain.links[0].text == "unit failed (failed/failed (exit-code)) -> unhealthy"
    assert chain.links[1].role == DECISION
    assert (chain.links[1].repeats, chain.links[1].last_time) == (3, 70)
    assert f"{held} (3 times, the last at 12:01:10)" in render(UNIT, [chain], clock)


def test_each_failure_starts_a_chain_and_last_keeps_the_newest() -> None:
    entries = []
    for n in range(5):
        entries.append(row(100 * n, "health", "failed: failed/failed (signal)"))
        entries.append(row(100 * n + 1, "action", f"restart (attempt {n + 1}/9)"))
    chains = explain(UNIT, entries, last=2)
    assert [c.started for c in chains] == [300, 400]
    assert [c.actions for c in chains] == [1, 1]
    assert explain(UNIT, entries, last=0) == []


def test_a_stop_inside_a_restart_is_no_new_chain_a_clean_stop_is() -> None:
    entries = [
        row(10, "health", "failed: failed/failed (exit-code)", condition="unhealthy"),
        row(10, "action", "restart (attempt 1/3)", **ACTION_DATA),
        row(10, "health", "stopped", condition="stopped"),
        # a unit active but for its checks passes through a clean stop when restarted
        row(10, "health", "stopped cleanly; not restarted", condition="stopped"),
        row(11, "health", "healthy", condition="healthy"),
        row(11, "result", "restart done: job done", rung="restart", took_ms=40.0),
        row(50, "health", "stopped cleanly; not restarted", condition="stopped"),
    ]
    first, second = explain(UNIT, entries)
    assert [link.role for link in first.links] == [EVENT, ACTION, OUTCOME, RESULT]
    assert first.links[-1].text == "restart done: job done (40ms)"
    assert [link.text for link in second.links] == [
        "stopped cleanly; not restarted",
        "not repaired: a clean stop is respected",
    ]


def test_other_units_and_rows_answering_nothing_are_left_out() -> None:
    entries = [
        row(1, "result", "restart done: job done"),  # its action is gone
        row(2, "health", "healthy", condition="healthy"),
        row(3, "health", "failed: failed/failed (signal)", unit="db.service"),
        row(4, "restore", "snapshot taken: /var/lib/x"),
    ]
    assert explain(UNIT, entries) == []
    assert render(UNIT, [], clock) == "web.service: no decisions in the history\n"


def test_failover_and_operator_steps_are_in_the_chain() -> None:
    entries = [
        row(10, "health", "failed: failed/failed (exit-code)", condition="unhealthy"),
        row(
            12,
            "alert",
            "exhausted: 2 attempt(s) (restart, restart) did not keep it healthy",
            notice="exhausted",
            attempts=2,
            max_attempts=2,
            tried=["restart", "restart"],
        ),
        row(
            12,
            "failover",
            "the repair ladder gave up: stopping web, then trying web-b",
            action="failover-started",
        ),
        row(13, "result", "start web-b.service: job done", failover="start", result="done"),
        row(13, "failover", "web-b.service serves in place of web.service", action="failover-done"),
        row(20, "operator", "reset: attempts and exhaustion forgotten"),
    ]
    [chain] = explain(UNIT, entries)
    assert [link.role for link in chain.links] == [
        EVENT, OUTCOME, DECISION, RESULT, OUTCOME, "operator"
    ]  # fmt: skip
    operator = chain.to_dict()["links"][5]
    assert operator["text"] == "operator: reset: attempts and exhaustion forgotten"


def test_rows_with_unreadable_data_still_explain() -> None:
    entries = [row(10, "health", "failed: failed/failed (exit-code)")]
    entries[0]["data"] = "not a mapping"
    [chain] = explain(UNIT, entries)
    assert chain.links[0].role == EVENT


def test_a_failover_decided_in_the_same_step_follows_its_event() -> None:
    entries = [
        row(
            10,
            "failover",
            "web.service failed hard 1 time(s): stopping web.service",
            action="failover-started",
        ),
        row(10, "health", "failed: failed/failed (exit-code)", condition="unhealthy"),
        row(11, "result", "stop web.service: job done", failover="stop", result="done"),
    ]
    [chain] = explain(UNIT, entries)
    assert [link.role for link in chain.links] == [EVENT, DECISION, RESULT]
    assert chain.links[1].text.startswith("web.service failed hard 1 time(s)")


def test_only_critical_checks_still_failing_lead_a_chain() -> None:
    entries = [
        row(
            1,
            "check",
            "disk: ok -> warning: 85% used",
            check="disk",
            state="warning",
            threshold=1,
            critical=False,
        ),
        row(
            2,
            "check",
            "http: ok -> critical: timed out",
            check="http",
            state="critical",
            threshold=2,
            critical=True,
        ),
        row(3, "check", "http: critical -> ok: 200 OK", check="http", state="ok", threshold=1),
        row(
            4,
            "check",
            "port: ok -> critical: refused",
            check="port",
            state="critical",
            threshold=1,
            critical=True,
        ),
        row(4, "health", "unhealthy: failing checks port", condition="unhealthy"),
    ]
    [chain] = explain(UNIT, entries)
    assert [link.text for link in chain.links] == [
        "port check critical after 1 result(s) in a row (threshold 1): refused",
        "unhealthy (failing checks port)",
    ]
    assert [link.role for link in chain.links] == [EVENT, DECISION]
