"""`host-supervisor config show`: the configuration in force once loaded, every default
filled in, as YAML: the main config, then each valid policy by unit.

Values are written as a person writes them (durations as `1m30s`, sizes as `512MiB`),
keys as the files spell them, and unset options are left out; so a policy printed
here, pasted into a file, loads as the same policy (a test checks it). Secrets are
masked (alert URLs down to their scheme, any secret-named key whole), so the output
can go into a ticket. A file with an error is left out and named on stderr, as the
daemon would leave it out.
"""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, BeforeValidator
from pydantic_core import to_jsonable_python

from supervisor.config.values import (
    format_duration,
    format_size,
    parse_duration,
    parse_positive_duration,
    parse_size,
)

__all__ = ["config_show_command", "effective_config", "written"]

_FORMAT_OF_PARSER = {
    parse_duration: format_duration,
    parse_positive_duration: format_duration,
    parse_size: format_size,
}


def _formatter(annotation: Any) -> Any:
    """How to write a value of this type back, if it is a duration or a size."""
    if typing.get_origin(annotation) is typing.Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, BeforeValidator) and meta.func in _FORMAT_OF_PARSER:
                return _FORMAT_OF_PARSER[meta.func]
    for arg in typing.get_args(annotation):  # Duration | None, and the like
        if (found := _formatter(arg)) is not None:
            return found
    return None


def written(model: BaseModel) -> dict[str, Any]:
    """`model` as its file would say it: aliases as keys, None left out, durations and
    sizes in their units."""
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        key = field.alias or name
        formatter = _formatter(field.annotation) or _formatter_of_metadata(field.metadata)
        if isinstance(value, BaseModel):
            out[key] = written(value)
        elif isinstance(value, list | tuple) and value and isinstance(value[0], BaseModel):
            out[key] = [written(item) for item in value]
        elif (
            isinstance(value, dict) and value and isinstance(next(iter(value.values())), BaseModel)
        ):
            out[key] = {k: written(v) for k, v in value.items()}
        elif formatter is not None and isinstance(value, int | float):
            out[key] = formatter(value)
        else:
            out[key] = to_jsonable_python(value)
    return out


def _formatter_of_metadata(metadata: list[Any]) -> Any:
    for meta in metadata:
        if isinstance(meta, BeforeValidator) and meta.func in _FORMAT_OF_PARSER:
            return _FORMAT_OF_PARSER[meta.func]
    return None


def effective_config(config_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The masked configuration as data, and the errors of the files left out."""
    from supervisor.config import load_config
    from supervisor.secrets import mask_data

    loaded = load_config(config_dir)
    data: dict[str, Any] = {
        "main": written(loaded.main),
        "policies": {
            str(loaded.sources[unit]): written(policy)
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
