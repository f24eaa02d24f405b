"""`host-supervisor config show`: the configuration in force once loaded, every default
filled in, as YAML: the main config, then each valid policy by unit. Durations are in
seconds and sizes in bytes, as the daemon holds them. Secrets are masked (alert URLs
down to their scheme, any secret-named key whole), so the output can be pasted into a
ticket. A file with an error is left out and named on stderr, as the daemon would."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

__all__ = ["config_show_command", "effective_config"]


def effective_config(config_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The masked configuration as data, and the errors of the files left out."""
    from supervisor.config import load_config
    from supervisor.secrets import mask_data

    loaded = load_config(config_dir)
    data: dict[str, Any] = {
        "main": loaded.main.model_dump(mode="json"),
        "policies": {
            unit: {"file": str(loaded.sources[unit]), **policy.model_dump(mode="json")}
            for unit, policy in sorted(loaded.policies.items())
        },
    }
    return mask_data(data), [str(issue) for issue in loaded.errors]


def config_show_command(config_dir: Path, out: TextIO) -> int:
    """0 when every file is valid, 1 when some were left out (each named on stderr)."""
    import yaml

    from supervisor.errors import ConfigError

    try:
        data, errors = effective_config(config_dir)
    except ConfigError as exc:
        print(f"host-supervisor: {exc}", file=sys.stderr)
        return 1
    out.write(f"# The effective configuration of {config_dir}, defaults filled in.\n")
    out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100))
    for error in errors:
        print(f"left out: {error}", file=sys.stderr)
    return 1 if errors else 0
