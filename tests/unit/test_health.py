from __future__ import annotations

import pytest

from supervisor.health import Condition, UnitView, describe, unit_condition


@pytest.mark.parametrize(
    ("load", "active", "sub", "result", "expected"),
    [
        ("loaded", "active", "running", "success", Condition.HEALTHY),
        ("loaded", "reloading", "reload", "success", Condition.HEALTHY),
        ("loaded", "failed", "failed", "signal", Condition.UNHEALTHY),
        ("loaded", "failed", "failed", "start-limit-hit", Condition.UNHEALTHY),
        ("loaded", "inactive", "dead", "success", Condition.STOPPED),
        ("loaded", "inactive", "dead", "exit-code", Condition.UNHEALTHY),
        ("loaded", "activating", "auto-restart", "signal", Condition.TRANSIENT),
        ("loaded", "deactivating", "stop-sigterm", "success", Condition.TRANSIENT),
        ("not-found", "inactive", "dead", "", Condition.MISSING),
        ("masked", "inactive", "dead", "", Condition.MISSING),
        ("loaded", "", "", "", Condition.UNKNOWN),
    ],
)
def test_unit_condition(load: str, active: str, sub: str, result: str, expected: Condition) -> None:
    assert unit_condition(UnitView(load, active, sub, result)) is expected


def test_describe_names_the_failure() -> None:
    assert describe(UnitView("loaded", "failed", "failed", "signal")) == "failed/failed (signal)"
    assert describe(UnitView("loaded", "active", "running", "success")) == "active/running"
