"""Value types as a user writes them in YAML, held as plain numbers.

`Duration` holds float seconds, `Size` int bytes, `Percent` a float from 0 to 100.
Each parses the strings people write ("1m30s", "512MiB", "90%") and refuses anything
else with a message that names the value and shows what would work.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from supervisor.secrets import mask_url
from supervisor.text import clip

__all__ = [
    "DURATION_PATTERN",
    "PERCENT_PATTERN",
    "SIZE_PATTERN",
    "Duration",
    "Percent",
    "PositiveDuration",
    "Size",
    "describe",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_percent",
    "parse_positive_duration",
    "parse_size",
]

_NUMBER = r"\d+(?:\.\d+)?"

_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(rf"({_NUMBER})\s*(ms|s|m|h|d)")
_DURATION_FULL = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+")
DURATION_PATTERN = rf"^\s*(?:(?:{_NUMBER}\s*(?:ms|s|m|h|d)\s*)+|{_NUMBER})\s*$"

# SI units are powers of 1000; IEC units and systemd's bare K/M/G/T are powers of 1024.
_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
}
_SIZE_RE = re.compile(rf"\s*({_NUMBER})\s*([KMGT]i?B|[KMGT]|B)?\s*", re.IGNORECASE)
SIZE_PATTERN = rf"^\s*{_NUMBER}\s*([KkMmGgTt][Ii]?[Bb]|[KkMmGgTt]|[Bb])?\s*$"

_PERCENT_RE = re.compile(rf"\s*({_NUMBER})\s*%?\s*")
PERCENT_PATTERN = rf"^\s*{_NUMBER}\s*%?\s*$"


def describe(value: object) -> str:
    """Show a user's value in a message: strings quoted (a URL by its scheme and host
    only, see `supervisor.secrets.mask_url`), containers by kind."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if "://" in value:  # an apprise or check URL: passwords and tokens anywhere
            return repr(mask_url(value.strip(), keep_host=True))
        return repr(clip(value, 60))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: Any) -> float:
    """Turn "500ms", "5s", "1m30s", "1h", "1d" or a number of seconds into float seconds."""
    hint = "use e.g. 500ms, 5s, 5m, 1h"
    if _is_number(value):
        if value < 0:
            raise ValueError(f"{describe(value)} is not a duration; it must not be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 5s, got {describe(value)}")
    text = value.strip()
    if re.fullmatch(_NUMBER, text):
        return float(text)
    if not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"{describe(value)} is not a duration; {hint}")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


def parse_positive_duration(value: Any) -> float:
    """Like parse_duration, but zero is refused: for intervals, timeouts and windows."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{describe(value)} is too short; it must be more than 0s")
    return seconds


def parse_size(value: Any) -> int:
    """Turn "512MiB", "1GiB", "100MB", "512M" (systemd's, 1024-based) or bytes into int bytes."""
    if _is_number(value):
        if value < 0:
            raise ValueError(f"{describe(value)} is not a size; it must not be negative")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 512MiB, got {describe(value)}")
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise ValueError(
            f"{describe(value)} is not a size; use e.g. 512MiB, 1GiB, 100MB or a number of bytes"
        )
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[(unit or "").upper()])


def parse_percent(value: Any) -> float:
    """Turn "90%", "90" or 90 into 90.0; refuse anything outside 0..100."""
    hint = "use a value from 0% to 100%, e.g. 90%"
    if _is_number(value):
        number = float(value)
    elif isinstance(value, str) and (match := _PERCENT_RE.fullmatch(value)):
        number = float(match.group(1))
    elif isinstance(value, str):
        raise ValueError(f"{describe(value)} is not a percentage; {hint}")
    else:
        raise ValueError(f"expected a percentage like 90%, got {describe(value)}")
    if not 0 <= number <= 100:
        raise ValueError(f"{describe(value)} is not a percentage; {hint}")
    return number


def format_duration(seconds: float) -> str:
    """Write seconds back the way a user would: 90.0 -> "1m30s", 0.5 -> "500ms"."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms" if seconds else "0s"
    parts: list[str] = []
    rest = seconds
    for unit in ("d", "h", "m"):
        step = _DURATION_UNITS[unit]
        count = int(rest // step)
        if count:
            parts.append(f"{count}{unit}")
            rest -= count * step
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def format_size(size: int) -> str:
    """Write bytes back with the largest exact IEC unit: 536870912 -> "512MiB"."""
    for unit, factor in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": "A duration: 500ms, 5s, 5m, 1h, 1d, combined as 1m30s; "
            "a bare number is seconds.",
        }
    ),
]
"""Float seconds, written as "500ms", "5s", "5m", "1h", "1d", "1m30s" or a number of seconds."""

_POSITIVE_DURATION_PATTERN = (
    r"^\s*(?=.*[1-9])(?:(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+|\d+(?:\.\d+)?)\s*$"
)

PositiveDuration = Annotated[
    float,
    BeforeValidator(parse_positive_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": _POSITIVE_DURATION_PATTERN},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "A duration above zero: 500ms, 5s, 5m, 1h, 1d, combined as 1m30s; "
            "a bare number is seconds.",
        }
    ),
]
"""Like Duration, but more than zero."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SIZE_PATTERN},
                {"type": "integer", "minimum": 0},
            ],
            "description": "A size: 512MiB, 1GiB, 10KiB (1024-based), 100MB (1000-based); "
            "a bare number is bytes.",
        }
    ),
]
"""Int bytes, written as "512MiB", "1GiB", "10KiB", "100MB" or a number of bytes."""

Percent = Annotated[
    float,
    BeforeValidator(parse_percent),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": PERCENT_PATTERN},
                {"type": "number", "minimum": 0, "maximum": 100},
            ],
            "description": "A percentage from 0 to 100: 90% or 90.",
        }
    ),
]
"""Float from 0 to 100, written as "90%" or 90."""
