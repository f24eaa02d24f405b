"""The `validate` command: check a config directory, or single files, and print every
problem as FILE:LINE:COL. Single files are for Ansible's `validate: host-supervisor
validate %s` and for pre-commit hooks: a file is judged on its own, wherever it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from supervisor.config.loader import ConfigIssue, LoadedConfig, load_config
from supervisor.errors import ConfigError

__all__ = ["validate_command", "validate_files"]


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def validate_command(config_dir: Path, out: TextIO) -> int:
    """Print each issue as FILE:LINE:COL, then a summary; return 0 if clean, else 1."""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        print(exc, file=out)
        return 1
    from supervisor.commands.cluster_check import cluster_issues

    cluster_errors, cluster_warnings = cluster_issues(loaded)
    errors = [*loaded.errors, *_unit_issues(loaded), *cluster_errors]
    for issue in errors:
        print(issue, file=out)
    for warning in [*restore_warnings(loaded), *cluster_warnings]:
        print(warning, file=out)
    policies = len(loaded.policies)
    if errors:
        valid = _count(policies, "policy", "policies")
        print(f"{valid} valid, {_count(len(errors), 'error', 'errors')}", file=out)
        return 1
    units = _count(len(loaded.policies), "unit", "units")
    print(f"OK: {_count(policies, 'policy', 'policies')} for {units}", file=out)
    return 0


def validate_files(paths: list[Path], out: TextIO, *, main: bool = False) -> int:
    """Each file as a policy (or with `main` as host-supervisor.yaml) on its own; 0 when
    every one is valid, else 1. Cross-file rules (one policy per unit, alert channels
    that the main config defines) need the whole directory: `validate --config DIR`."""
    from supervisor.config.loader import load_main_file, load_policy_file

    bad = 0
    for path in paths:
        if main:
            issues = load_main_file(path)
        else:
            _policy, issues = load_policy_file(path)
        for issue in issues:
            print(issue, file=out)
        bad += bool(issues)
    if bad:
        print(f"{_count(bad, 'file', 'files')} of {len(paths)} invalid", file=out)
        return 1
    print(f"OK: {_count(len(paths), 'file', 'files')} valid", file=out)
    return 0


def _unit_issues(loaded: LoadedConfig) -> list[ConfigIssue]:
    """Units that policies name but systemd lacks, when the system bus can be asked."""
    if not any(policy.failover for policy in loaded.policies.values()):
        return []
    import asyncio

    from supervisor.commands.backup_units import BusError, missing_backup_units

    try:
        return asyncio.run(missing_backup_units(loaded))
    except BusError as exc:
        print(f"note: backup units not checked ({exc})", file=sys.stderr)
        return []


def restore_warnings(loaded: LoadedConfig) -> list[str]:
    """Restore paths that a snapshot and a restore would refuse on this host (a symlink
    above a named path, a named fifo or device), one warning with a hint each. They
    are warnings, not errors: the policy is valid, its restore step would not run."""
    from supervisor.restore import RestoreError, check_paths, live_problems

    warnings: list[str] = []
    for unit, policy in sorted(loaded.policies.items()):
        spec = policy.recovery.restore
        if spec is None:
            continue
        where = loaded.sources.get(unit, Path(unit))
        try:
            problems = live_problems(spec.paths)
            if not problems and spec.source != "last-known-good":
                check_paths(spec.paths, Path(spec.source))
        except RestoreError as exc:
            problems = [str(exc)]
        for problem in problems:
            warnings.append(
                f"{where}: recovery.restore: warning: {problem} (hint: snapshots and "
                "restores never follow a symlink on the way to a named path; "
                "until this is fixed the restore step is refused)"
            )
    return warnings
