"""Run every check of a policy once, now, and report it as a monitoring plugin does.

This is `host-supervisor check`: no daemon, no soft/hard states, no history. The exit
code follows the Nagios convention: 0 healthy, 1 degraded, 2 unhealthy, 3 unknown.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

from supervisor.checks import Prober
from supervisor.checks.result import CheckResult, ProbeContext, Status
from supervisor.config.model import Check, Policy

__all__ = ["EXIT_WORDS", "exit_code", "render_json", "render_table", "run_policy_once"]

EXIT_WORDS = {0: "healthy", 1: "degraded", 2: "unhealthy", 3: "unknown"}
"""What each exit code of `exit_code` means."""

Results = Sequence[tuple[Check, CheckResult]]


async def run_policy_once(
    policy: Policy, context: ProbeContext, *, max_concurrent_commands: int = 4
) -> list[tuple[Check, CheckResult]]:
    """Run each check of `policy` once, all at the same time; results in the policy's order."""
    prober = Prober(max_concurrent_commands=max_concurrent_commands)
    try:
        results = await asyncio.gather(*(prober.run(check, context) for check in policy.checks))
    finally:
        await prober.close()
    return list(zip(policy.checks, results, strict=True))


def exit_code(results: Results) -> int:
    """The Nagios exit code of one run of a policy's checks.

    2 (unhealthy) when a critical check is CRITICAL; otherwise 3 (unknown) when any
    probe could not run, or there are no checks; otherwise 1 (degraded) when a check
    warns or a non-critical check is CRITICAL; otherwise 0 (healthy).
    """
    if not results:
        return 3
    statuses = [(check.critical, result.status) for check, result in results]
    if (True, Status.CRITICAL) in statuses:
        return 2
    if any(status is Status.UNKNOWN for _, status in statuses):
        return 3
    if any(status in (Status.WARNING, Status.CRITICAL) for _, status in statuses):
        return 1
    return 0


def _milliseconds(result: CheckResult) -> str:
    return f"{result.duration * 1000:.1f}"


def render_table(results: Results) -> str:
    """A plain-text table: check, status, duration in ms, message; then the verdict."""
    rows = [("CHECK", "STATUS", "MS", "MESSAGE")]
    for check, result in results:
        status = result.status.value
        if not check.critical and result.status is not Status.OK:
            status += " (non-critical)"
        rows.append((check.name, status, _milliseconds(result), result.message))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [
        f"{name:<{widths[0]}}  {status:<{widths[1]}}  {ms:>{widths[2]}}  {message}".rstrip()
        for name, status, ms, message in rows
    ]
    lines.append(EXIT_WORDS[exit_code(results)])
    return "\n".join(lines) + "\n"


def render_json(results: Results) -> str:
    """One JSON object: the verdict, its exit code and every check's result."""
    code = exit_code(results)
    document = {
        "health": EXIT_WORDS[code],
        "exit_code": code,
        "checks": [
            {
                "name": check.name,
                "kind": check.kind,
                "critical": check.critical,
                "status": result.status.value,
                "duration_ms": round(result.duration * 1000, 1),
                "message": result.message,
            }
            for check, result in results
        ],
    }
    return json.dumps(document, indent=2) + "\n"
