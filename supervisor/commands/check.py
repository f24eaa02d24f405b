"""`host-supervisor check UNIT_OR_POLICY_FILE`: every check of one policy, once, now.

Works without the daemon, so it also serves as a Nagios/Icinga plugin: exit 0
healthy, 1 degraded, 2 unhealthy, 3 unknown. systemd is asked for the unit's
state (MainPID, ActiveState, MemoryCurrent) when the system bus answers; without
it, the probes that need those report unknown.

Run every check of a policy once, now, and report it as a monitoring plugin does:
no daemon, no soft/hard states, no history. (The probes themselves, including the
`command:` probe kind, live in `supervisor.checks`.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from supervisor.checks import Prober
from supervisor.checks.result import CheckResult, ProbeContext, Status
from supervisor.config import Check, Policy, load_config, load_policy_file
from supervisor.errors import BusError, ConfigError
from supervisor.secrets import mask
from supervisor.systemd.manager import SystemdManager

__all__ = [
    "EXIT_WORDS",
    "check_command",
    "exit_code",
    "find_policy",
    "render_json",
    "render_table",
    "run_policy_once",
    "unit_context",
]

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
        rows.append((check.name, status, _milliseconds(result), mask(result.message)))
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
                "message": mask(result.message),
            }
            for check, result in results
        ],
    }
    return json.dumps(document, indent=2) + "\n"


EXIT_UNKNOWN = 3


def find_policy(target: str, config_dir: Path) -> tuple[Policy | None, str]:
    """The policy a user named, by file path or by unit; or None and why not."""
    path = Path(target)
    if path.is_file():
        policy, issues = load_policy_file(path)
        if policy is None:
            return None, "\n".join(str(issue) for issue in issues)
        return policy, ""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        return None, str(exc)
    policy = loaded.policies.get(target)
    if policy is None:
        return None, f"no valid policy for unit {target} in {config_dir / 'policies.d'}"
    return policy, ""


async def unit_context(unit: str) -> tuple[ProbeContext, str]:
    """What systemd says of the unit, or a bare context and why systemd did not say."""
    manager = SystemdManager(lambda _snapshot: None)
    try:
        await manager.connect()
        snapshot = await manager.watch(unit)
        memory = await manager.memory_current(unit)
    except BusError as exc:
        return ProbeContext(unit=unit), str(exc)
    finally:
        await manager.close()
    context = ProbeContext(
        unit=unit,
        main_pid=snapshot.main_pid,
        memory_current=memory,
        active_state=snapshot.active_state,
    )
    return context, ""


async def _check(policy: Policy, as_json: bool, out: TextIO) -> int:
    context, problem = await unit_context(policy.unit)
    if problem:
        print(f"host-supervisor: systemd not asked: {mask(problem)}", file=sys.stderr)
    results = await run_policy_once(policy, context)
    out.write(render_json(results) if as_json else render_table(results))
    return exit_code(results)


def check_command(target: str, config_dir: Path, as_json: bool, out: TextIO) -> int:
    policy, problem = find_policy(target, config_dir)
    if policy is None:
        print(f"host-supervisor: {mask(problem)}", file=sys.stderr)
        return EXIT_UNKNOWN
    return asyncio.run(_check(policy, as_json, out))
