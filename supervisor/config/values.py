"""Value types as a user writes them in YAML, held as plain numbers.

`Duration` holds float seconds, `Size` int bytes, `Percent` a float from 0 to 100.
Each parses the strings people write ("1m30s", "512MiB", "90%") and refuses anything
else with a message that names the value and shows what would work.

Every value has finite bounds, so nothing the daemon computes from one can overflow,
spin or wait forever: a duration is at most `MAX_DURATION` (365d) and a positive one
at least `MIN_POSITIVE_DURATION` (1ms); a size at most `MAX_SIZE` (2^50 bytes, 1PiB);
a percentage from 0 to 100; a count from 1 to `MAX_COUNT` (1,000,000).
NaN and infinities are refused everywhere.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

from supervisor.secrets import mask_url
from supervisor.text import clip

__all__ = [
    "DURATION_HINT",
    "DURATION_PATTERN",
    "MAX_COUNT",
    "MAX_DURATION",
    "MAX_SIZE",
    "MIN_POSITIVE_DURATION",
    "PERCENT_PATTERN",
    "POSITIVE_DURATION_PATTERN",
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

MAX_DURATION = 365 * 86400.0
"""The longest duration anywhere: 365d (a year)."""
MIN_POSITIVE_DURATION = 0.001
"""The shortest duration that must be above zero (an interval, a timeout): 1ms."""
MAX_SIZE = 2**50
"""The largest size: 2^50 bytes (1PiB, 1024TiB)."""
MAX_COUNT = 1_000_000
"""The largest count (failures, attempts, limits): 1,000,000."""

_NUMBER = r"\d+(?:\.\d+)?"

# The short forms, then systemd's time span words (systemd.time(7)): "5min", "30sec",
# "1h 30min", "2 hours". Case matters, as in systemd (its "M" is a month; not taken).
_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_WORDS: dict[str, float] = {
    **dict.fromkeys(("usec", "us", "\u00b5s"), 0.000001),
    **dict.fromkeys(("msec", "ms"), 0.001),
    **dict.fromkeys(("seconds", "second", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
    **dict.fromkeys(("weeks", "week", "w"), 7 * 86400.0),
}
# Longest first, so that "min" is not read as "m" followed by "in".
_UNIT = "|".join(sorted(_DURATION_WORDS, key=len, reverse=True))
_DURATION_PART = re.compile(rf"({_NUMBER})\s*({_UNIT})(?![a-z])")
_DURATION_FULL = re.compile(rf"(?:{_NUMBER}\s*(?:{_UNIT})(?![a-z])\s*)+")
DURATION_PATTERN = rf"^\s*(?:(?:{_NUMBER}\s*(?:{_UNIT})(?![a-z])\s*)+|{_NUMBER})\s*$"
DURATION_HINT = "use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d"

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
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
    if isinstance(value, int) and value.bit_length() > 64:
        return f"a {'negative ' if value < 0 else ''}whole number of {_digits(value)} digits"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _digits(value: int) -> int:
    """How many decimal digits `value` has (str() refuses ints of over 4,300 digits)."""
    digits = int(abs(value).bit_length() * math.log10(2)) + 1
    return digits if abs(value) >= 10 ** (digits - 1) else digits - 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_duration(value: Any) -> float:
    """Turn "500ms", "5s", "1m30s", "1h", "1d", systemd's time spans ("5min", "30sec",
    "1h 30min", "2 weeks") or a number of seconds into float seconds, from 0 to
    `MAX_DURATION`."""
    hint = DURATION_HINT
    if _is_number(value):
        if value != value:  # NaN
            raise ValueError(f"{describe(value)} is not a duration; {hint}")
        if value < 0:
            raise ValueError(f"{describe(value)} is not a duration; it must not be negative")
        seconds = value  # compared before any float(): a huge int would overflow it
    elif not isinstance(value, str):
        raise ValueError(f"expected a duration like 5s, got {describe(value)}")
    elif re.fullmatch(_NUMBER, text := value.strip()):
        seconds = float(text)
    elif not _DURATION_FULL.fullmatch(text):
        raise ValueError(f"{describe(value)} is not a duration; {hint}")
    else:
        seconds = sum(float(n) * _DURATION_WORDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds > MAX_DURATION:  # also an infinity
        raise ValueError(f"{describe(value)} is too long; a duration is at most 365d (a year)")
    return float(seconds)


def parse_positive_duration(value: Any) -> float:
    """Like parse_duration, but at least 1ms: for intervals, timeouts and windows."""
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"{describe(value)} is too short; it must be more than 0s")
    if seconds < MIN_POSITIVE_DURATION:
        raise ValueError(f"{describe(value)} is too short; it must be at least 1ms")
    return seconds


def parse_size(value: Any) -> int:
    """Turn "512MiB", "1GiB", "100MB", "512M" (systemd's, 1024-based) or bytes into int bytes,
    at most `MAX_SIZE`."""
    if _is_number(value):
        if value != value:  # NaN
            raise ValueError(
                f"{describe(value)} is not a size; use e.g. 512MiB, 1GiB or a number of bytes"
            )
        if value < 0:
            raise ValueError(f"{describe(value)} is not a size; it must not be negative")
        size = value  # compared before any int(): an infinity would overflow it
    elif not isinstance(value, str):
        raise ValueError(f"expected a size like 512MiB, got {describe(value)}")
    elif match := _SIZE_RE.fullmatch(value):
        number, unit = match.groups()
        size = float(number) * _SIZE_UNITS[(unit or "").upper()]
    else:
        raise ValueError(
            f"{describe(value)} is not a size; use e.g. 512MiB, 1GiB, 100MB or a number of bytes"
        )
    if size > MAX_SIZE:  # also an infinity
        raise ValueError(f"{describe(value)} is too large; a size is at most 1024TiB (2^50 bytes)")
    return int(size)


def parse_percent(value: Any) -> float:
    """Turn "90%", "90" or 90 into 90.0; refuse anything outside 0..100 (NaN too)."""
    hint = "use a value from 0% to 100%, e.g. 90%"
    if _is_number(value):
        number = value  # compared before any float(): a huge int would overflow it
    elif isinstance(value, str) and (match := _PERCENT_RE.fullmatch(value)):
        number = float(match.group(1))
    elif isinstance(value, str):
        raise ValueError(f"{describe(value)} is not a percentage; {hint}")
    else:
        raise ValueError(f"expected a percentage like 90%, got {describe(value)}")
    if not 0 <= number <= 100:  # false for NaN too
        raise ValueError(f"{describe(value)} is not a percentage; {hint}")
    return float(number)


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
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION},
            ],
            "description": "A duration from 0s to 365d: 500ms, 5s, 5m, 1h, 1d, combined as "
            "1m30s, or systemd's time spans (5min, 30sec, 1h 30min, 2 weeks); a bare number "
            "is seconds.",
        }
    ),
]
"""Float seconds from 0 to 365d, written as "500ms", "5s", "5m", "1h", "1d", "1m30s" or a
number of seconds."""

POSITIVE_DURATION_PATTERN = rf"^(?=.*[1-9]){DURATION_PATTERN[1:]}"

PositiveDuration = Annotated[
    float,
    BeforeValidator(parse_positive_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": POSITIVE_DURATION_PATTERN},
                {"type": "number", "minimum": MIN_POSITIVE_DURATION, "maximum": MAX_DURATION},
            ],
            "description": "A duration from 1ms to 365d: 500ms, 5s, 5m, 1h, 1d, combined as "
            "1m30s, or systemd's time spans (5min, 30sec, 1h 30min, 2 weeks); a bare number "
            "is seconds.",
        }
    ),
]
"""Like Duration, but at least 1ms."""

Size = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": SIZE_PATTERN},
                {"type": "integer", "minimum": 0, "maximum": MAX_SIZE},
            ],
            "description": "A size up to 1024TiB: 512MiB, 1GiB, 10KiB (1024-based), 100MB "
            "(1000-based); a bare number is bytes.",
        }
    ),
]
"""Int bytes up to 2^50, written as "512MiB", "1GiB", "10KiB", "100MB" or a number of bytes."""

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
