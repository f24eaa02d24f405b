"""Unit probe: the unit's own ActiveState, as the shell last saw it from systemd's signals."""

from __future__ import annotations

import time

from supervisor.checks.result import CheckResult, ProbeContext, Status, finish
from supervisor.config.model import UnitProbe

__all__ = ["run"]


async def run(
    spec: UnitProbe,
    context: ProbeContext,
    timeout: float,  # noqa: ASYNC109 - the probe spends it itself
) -> CheckResult:
    """OK when `context.active_state` is `spec.expect`, CRITICAL otherwise.

    UNKNOWN when the shell does not know the state yet (an empty `active_state`).
    """
    del timeout  # nothing to wait for
    started = time.monotonic()
    state = context.active_state
    if not state:
        return finish(Status.UNKNOWN, f"state of {context.unit} not known yet", started)
    if state == spec.expect:
        return finish(Status.OK, f"{context.unit} is {state}", started)
    return finish(Status.CRITICAL, f"{context.unit} is {state}, expected {spec.expect}", started)
