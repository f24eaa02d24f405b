"""Checking a state document read back from the store against its dataclass.

A stored document may have been damaged (a flipped byte, an older or newer
version): a field of the wrong type must be refused when it is read, with the
field's name, not fail later inside a decision.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def build(cls: type[T], values: dict[str, Any]) -> T:
    """`cls(**values)` once every value is of its field's declared type (TypeError
    naming the field if not); fields not in `values` keep their defaults."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in values and not _fits(values[field.name], hints[field.name]):
            raise TypeError(
                f"{cls.__name__}.{field.name}: {values[field.name]!r} is not {hints[field.name]}"
            )
    return cls(**values)


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_fits(item, args[0]) for item in value)
        return len(args) == len(value) and all(map(_fits, value, args))
    if origin is frozenset:
        (arg,) = typing.get_args(hint)
        return isinstance(value, frozenset) and all(_fits(item, arg) for item in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and math.isfinite(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return isinstance(value, hint)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this checker does not know: not ours to refuse
