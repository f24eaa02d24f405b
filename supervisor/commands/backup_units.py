"""The part of `validate` that needs systemd: do the failover backup units exist?

Not a probe (the `unit:` probe kind, a unit's ActiveState, is `supervisor.checks.unit`):
this asks systemd once whether the units a policy names are known. `validate` runs it
when the system bus answers (a missing backup unit would make a failover fail when it
is needed most), and says so when it cannot.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from supervisor.config.loader import ConfigIssue, LoadedConfig
from supervisor.errors import BusError
from supervisor.systemd.manager import SystemdManager

BUS_TIMEOUT = 3.0


def _backup_positions(path: Path) -> list[tuple[int, int]]:
    """(line, col) of each `failover.backup` entry in a policy file, in order."""
    root = yaml.compose(path.read_text())
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value != "failover" or not isinstance(value, yaml.MappingNode):
            continue
        for inner_key, backups in value.value:
            if inner_key.value != "backup":
                continue
            nodes = backups.value if isinstance(backups, yaml.SequenceNode) else [backups]
            return [(n.start_mark.line + 1, n.start_mark.column + 1) for n in nodes]
    return []


async def missing_backup_units(loaded: LoadedConfig) -> list[ConfigIssue]:
    """An issue for every failover backup unit systemd does not know.

    Raises BusError when the system bus or systemd cannot be asked.
    """
    manager = SystemdManager(lambda _snapshot: None, call_timeout=BUS_TIMEOUT)
    issues: list[ConfigIssue] = []
    await manager.connect()
    try:
        for unit, policy in sorted(loaded.policies.items()):
            if policy.failover is None:
                continue
            path = loaded.sources[unit]
            positions = _backup_positions(path)
            for index, backup in enumerate(policy.failover.backup):
                if (await manager.snapshot(backup)).load_state != "not-found":
                    continue
                line, col = positions[index] if index < len(positions) else (1, 1)
                issues.append(
                    ConfigIssue(
                        path,
                        line,
                        col,
                        f"backup unit {backup} does not exist",
                        f"failover.backup[{index}]",
                    )
                )
    finally:
        await manager.close()
    return issues


__all__ = ["BusError", "missing_backup_units"]
