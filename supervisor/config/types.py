"""The pieces every section of the policy language shares: the frozen base model,
errors located below a key, the constants, and the annotated types for unit names,
names, absolute paths and argv. (Durations, sizes and percentages are in `values`.)
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from supervisor.config.trust import path_refusal
from supervisor.config.values import (
    describe,
)

__all__ = [
    "DEFAULT_PROTECTED",
    "LADDER_STEPS",
    "NAME_PATTERN",
    "PROBE_KINDS",
    "UNIT_PATTERN",
    "UNIT_TYPES",
    "AbsolutePath",
    "Argv",
    "ExistingPath",
    "FrozenModel",
    "LadderStep",
    "Name",
    "Severity",
    "UnitName",
    "located_error",
    "one_or_many",
]

UNIT_TYPES = (
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "swap",
    "path",
    "slice",
    "scope",
    "device",
)
PROBE_KINDS = ("http", "tcp", "process", "disk", "memory", "command", "unit")
LadderStep = Literal["restart", "reload", "restore"]
LADDER_STEPS: tuple[LadderStep, ...] = ("restart", "reload", "restore")
DEFAULT_PROTECTED = (
    "postgresql*",
    "mysql*",
    "mariadb*",
    "redis*",
    "clickhouse*",
    "etcd*",
    "mongod*",
)

Severity = Literal["info", "warning", "critical"]


def located_error(path: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error for a key below the one being validated; the loader appends `path` to its loc."""
    return PydanticCustomError("located", "{message}", {"message": message, "path": path})


class FrozenModel(BaseModel):
    # NaN and infinities are never a setting: `interval: .nan` would silently stop a check.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --- names and paths --------------------------------------------------------------------

_UNIT_RE = re.compile(r"[A-Za-z0-9:_.\\-]+(@[A-Za-z0-9:_.\\-]+)?\.(" + "|".join(UNIT_TYPES) + ")")
UNIT_PATTERN = "^" + _UNIT_RE.pattern + "$"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NAME_PATTERN = "^" + _NAME_RE.pattern + "$"


def _check_unit_name(value: str) -> str:
    if _UNIT_RE.fullmatch(value) and len(value) <= 255:
        return value
    stem, dot, suffix = value.rpartition(".")
    if dot and stem and suffix not in UNIT_TYPES:
        raise ValueError(
            f"{describe(value)} has no known unit type; end it with .service, .socket, "
            ".target, .timer, .mount or another systemd unit type"
        )
    if not dot:
        raise ValueError(
            f"{describe(value)} is not a systemd unit name; write it with its type, "
            f"e.g. '{value}.service'"
        )
    raise ValueError(f"{describe(value)} is not a valid systemd unit name")


def _check_name(value: str) -> str:
    if _NAME_RE.fullmatch(value):
        return value
    raise ValueError(
        f"{describe(value)} is not a valid name; use letters, digits, '-', '_' and '.'"
    )


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError(f"{describe(value)} is not an absolute path; start it with /")
    return os.path.normpath(value)


def _check_existing_path(value: str) -> str:
    value = _check_absolute(value)
    if not os.path.exists(value):
        raise ValueError(f"path {value} does not exist")
    return value


def _check_argv(argv: tuple[str, ...]) -> tuple[str, ...]:
    if not argv:
        raise ValueError("the command is empty; give at least the program, e.g. [/usr/bin/true]")
    program = argv[0]
    if not os.path.isabs(program):
        raise located_error(
            (0,), f"{describe(program)} is not an absolute path; commands run without a shell"
        )
    if not os.path.exists(program):
        raise located_error((0,), f"{program} does not exist")
    if not os.path.isfile(program) or not os.access(program, os.X_OK):
        raise located_error((0,), f"{program} is not an executable file")
    refusal = path_refusal(program, name="it")
    if refusal:  # it would run as root: see supervisor.config.trust
        raise located_error((0,), f"{program} is refused: {refusal}")
    return argv


def one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


UnitName = Annotated[
    str,
    AfterValidator(_check_unit_name),
    WithJsonSchema({"type": "string", "pattern": UNIT_PATTERN}),
]
Name = Annotated[
    str, AfterValidator(_check_name), WithJsonSchema({"type": "string", "pattern": NAME_PATTERN})
]
AbsolutePath = Annotated[
    str, AfterValidator(_check_absolute), WithJsonSchema({"type": "string", "pattern": "^/"})
]
ExistingPath = Annotated[
    str, AfterValidator(_check_existing_path), WithJsonSchema({"type": "string", "pattern": "^/"})
]
Argv = Annotated[
    tuple[str, ...],
    AfterValidator(_check_argv),
    WithJsonSchema(
        {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string"},
            "prefixItems": [{"type": "string", "pattern": "^/"}],
        }
    ),
]
