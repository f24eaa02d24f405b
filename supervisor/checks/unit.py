"""Unit probe: the unit's own ActiveState, as the shell last saw it from systemd's signals.

The daemon evaluates unit checks on every state change it is signalled (`judge`), not
on an interval; `run` is the same judgement for `host-supervisor check`.
"""

from __future__ import annotations

import time

from supervisor.checks.result import CheckResult, ProbeContext, Status, finish
from supervisor.config.probes import UnitProbe

__all__ = ["judge", "run"]


def judge(spec: UnitProbe, unit: str, active_state: str) -> tuple[Status, str]:
    """OK when `active_state` is `spec.expect`, CRITICAL otherwise, UNKNOWN when not known."""
    if not active_state:
        return Status.UNKNOWN, f"state of {unit} not known yet"
    if active_state == spec.expect:
        return Status.OK, f"{unit} is {active_state}"
    return Status.CRITICAL, f"{unit} is {active_state}, expected {spec.expect}"


async def run(
    spec: UnitProbe,
    context: ProbeContext,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    del timeout  # nothing to wait for
    started = time.monotonic()
    status, message = judge(spec, context.unit, context.active_state)
    return finish(status, message, started)
