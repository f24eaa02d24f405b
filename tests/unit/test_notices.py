"""The words of log lines and the names of alerts, defined once."""

from __future__ import annotations

from pathlib import Path

from supervisor.core.failover import Kind
from supervisor.core.notices import AlertKind, doing


def test_verbs_are_spelt_not_built() -> None:
    assert [doing(v) for v in ("restart", "reload", "restore", "start", "stop")] == [
        "restarting",
        "reloading",
        "restoring",
        "starting",
        "stopping",
    ]


def test_no_log_line_is_built_by_appending_ing() -> None:
    core = Path(__file__).parents[2] / "supervisor" / "core"
    for module in core.glob("*.py"):
        assert "}ing " not in module.read_text(), f"{module.name} builds a verb with 'ing'"


def test_failover_notices_are_alert_kinds() -> None:
    assert Kind is AlertKind
    assert AlertKind.ACTION.numbered("restart", 2) == "action:restart#2"
