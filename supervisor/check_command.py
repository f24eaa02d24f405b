"""`host-supervisor check UNIT_OR_POLICY_FILE`: every check of one policy, once, now.

Works without the daemon, so it also serves as a Nagios/Icinga plugin: exit 0
healthy, 1 degraded, 2 unhealthy, 3 unknown. systemd is asked for the unit's
state (MainPID, ActiveState, MemoryCurrent) when the system bus answers; without
it, the probes that need those report unknown.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from supervisor.checks.once import exit_code, render_json, render_table, run_policy_once
from supervisor.checks.result import ProbeContext
from supervisor.config import Policy, load_config, load_policy_file
from supervisor.errors import BusError, ConfigError
from supervisor.systemd.manager import SystemdManager

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
        print(f"host-supervisor: systemd not asked: {problem}", file=sys.stderr)
    results = await run_policy_once(policy, context)
    out.write(render_json(results) if as_json else render_table(results))
    return exit_code(results)


def check_command(target: str, config_dir: Path, as_json: bool, out: TextIO) -> int:
    policy, problem = find_policy(target, config_dir)
    if policy is None:
        print(f"host-supervisor: {problem}", file=sys.stderr)
        return EXIT_UNKNOWN
    return asyncio.run(_check(policy, as_json, out))
