"""The daemon puts each MESSAGE_ID= on the log record of its event, in whole-host
scenarios (the records structlog would send to the journal)."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from supervisor.core.notices import MessageId
from tests.scenarios.host_replay import replay_world

HERE = Path(__file__).parent / "host"

EXPECTED = {
    "crash-ladder-exhausted-failover-failback": {
        MessageId.DETECTED: {"unit failed"},
        MessageId.EXHAUSTED: {"exhausted"},
        MessageId.FAILED_OVER: {
            "web-backup.service serves in place of web.service; failback in 30s",
            "web-backup.service serves in place of web.service; failback in 1m",
        },
        MessageId.FAILED_BACK: {"web.service serves again (2 healthy)"},
    },
    "hold-flapping": {
        MessageId.DETECTED: {"unit unhealthy"},
        MessageId.REPAIRED: {"recovered"},
        MessageId.EXHAUSTED: {"exhausted"},
    },
    "hold-budget-frozen": {
        MessageId.DETECTED: {"unit failed"},
        MessageId.REPAIRED: {"recovered"},
        MessageId.FROZEN: {
            "automation frozen: 2 automatic actions in 10m; watching and alerting only for "
            "10m or until `host-supervisor resume --all`"
        },
        MessageId.THAWED: {"automation resumed: the repair budget's freeze has ended"},
    },
}


def records(scenario: str, tmp_path: Path) -> list[MutableMapping[str, Any]]:
    with capture_logs() as logs:
        replay_world(HERE / scenario, tmp_path)
    return logs


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_event_carries_its_message_id(scenario: str, tmp_path: Path) -> None:
    logs = records(scenario, tmp_path)
    seen: dict[MessageId, set[str]] = {}
    for entry in logs:
        if "message_id" in entry:
            seen.setdefault(MessageId(entry["message_id"]), set()).add(entry["event"])
    assert seen == EXPECTED[scenario]


def test_every_message_id_is_sent_by_some_scenario() -> None:
    assert set().union(*(ids.keys() for ids in EXPECTED.values())) == set(MessageId)


def test_a_detected_record_names_the_unit_and_its_state(tmp_path: Path) -> None:
    logs = records("crash-ladder-exhausted-failover-failback", tmp_path)
    detected = [e for e in logs if e.get("message_id") == MessageId.DETECTED.value]
    assert detected
    assert all(e["unit"] == "web.service" for e in detected)
    assert all(e["state"] == "failed/failed (exit-code)" for e in detected)
