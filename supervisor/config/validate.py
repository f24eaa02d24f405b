"""The `validate` command: check a config directory and print every problem."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from supervisor.config.loader import load_config
from supervisor.errors import ConfigError

__all__ = ["validate_command"]


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def validate_command(config_dir: Path, out: TextIO) -> int:
    """Print each issue as FILE:LINE:COL, then a summary; return 0 if clean, else 1."""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        print(exc, file=out)
        return 1
    for issue in loaded.errors:
        print(issue, file=out)
    policies = len(loaded.policies)
    if loaded.errors:
        valid = _count(policies, "policy", "policies")
        print(f"{valid} valid, {_count(len(loaded.errors), 'error', 'errors')}", file=out)
        return 1
    units = _count(len(loaded.policies), "unit", "units")
    print(f"OK: {_count(policies, 'policy', 'policies')} for {units}", file=out)
    return 0
