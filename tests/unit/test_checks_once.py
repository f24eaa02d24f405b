"""`host-supervisor check`: every check of a policy once, its exit code and its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.checks.result import CheckResult, ProbeContext, Status
from supervisor.commands.check import exit_code, render_json, render_plugin, run_policy_once
from supervisor.config.check import Check
from supervisor.config.policy import Policy

OK, WARN, CRIT, UNK = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


def _results(*rows: tuple[bool, Status]) -> list[tuple[Check, CheckResult]]:
    return [
        (
            Check(name=f"c{index}", unit={}, critical=critical),
            CheckResult(status, f"said {status.value}", 0.001),
        )
        for index, (critical, status) in enumerate(rows)
    ]


@pytest.mark.parametrize(
    ("rows", "code"),
    [
        ((), 3),  # no checks: nothing is known
        (((True, OK),), 0),
        (((True, OK), (False, OK)), 0),
        (((True, WARN),), 1),
        (((False, WARN),), 1),
        (((True, OK), (False, CRIT)), 1),  # a non-critical failure only degrades
        (((True, CRIT),), 2),
        (((True, CRIT), (True, UNK)), 2),  # unhealthy beats unknown
        (((True, CRIT), (False, WARN)), 2),
        (((True, UNK),), 3),
        (((False, UNK), (True, OK)), 3),
        (((True, UNK), (True, WARN)), 3),  # unknown beats degraded: the picture is incomplete
        (((True, UNK), (False, CRIT)), 3),
    ],
)
def test_exit_code(rows: tuple[tuple[bool, Status], ...], code: int) -> None:
    assert exit_code(_results(*rows)) == code


def test_render_plugin_puts_the_status_line_first() -> None:
    results = _results((True, OK), (False, CRIT))
    text, code = render_plugin("app.service", results)
    lines = text.splitlines()
    assert code == 1
    assert lines[0] == (
        "HOST-SUPERVISOR WARNING - app.service: c1 critical (non-critical) (said critical)"
    )
    assert lines[1:] == [
        "c0: OK - said ok",
        "c1: CRITICAL (non-critical) - said critical",
    ]


def test_render_json() -> None:
    document = json.loads(render_json(_results((True, OK), (True, UNK))))
    assert document["health"] == "unknown"
    assert document["exit_code"] == 3
    assert document["checks"][1] == {
        "name": "c1",
        "kind": "unit",
        "critical": True,
        "status": "unknown",
        "duration_ms": 1.0,
        "message": "said unknown",
        "measures": [],
    }


async def test_run_policy_once(tmp_path: Path) -> None:
    script = tmp_path / "warn"
    script.write_text("#!/bin/sh\necho 'queue is long'\nexit 1\n")
    script.chmod(0o755)
    policy = Policy.model_validate(
        {
            "unit": "app.service",
            "checks": [
                {"name": "state", "unit": {}},
                {"name": "disk", "disk": {"path": str(tmp_path), "max_used": "100%"}},
                {"name": "queue", "command": {"argv": [str(script)]}},
                {"name": "port", "tcp": {"port": 1}, "critical": False},
            ],
        }
    )
    context = ProbeContext(unit="app.service", active_state="active")
    results = await run_policy_once(policy, context)
    assert [check.name for check, _ in results] == ["state", "disk", "queue", "port"]
    assert [result.status for _, result in results] == [OK, OK, WARN, CRIT]
    assert exit_code(results) == 1
    assert "queue is long" in render_plugin("app.service", results)[0]


async def test_run_policy_once_unhealthy_when_a_critical_check_fails(tmp_path: Path) -> None:
    policy = Policy.model_validate(
        {"unit": "app.service", "checks": [{"name": "state", "unit": {}}]}
    )
    results = await run_policy_once(policy, ProbeContext("app.service", active_state="failed"))
    assert exit_code(results) == 2
    assert json.loads(render_json(results))["health"] == "unhealthy"
