"""Duration, Size and Percent: what users write, what the models hold."""

import re
from collections.abc import Callable

import pytest
from pydantic import BaseModel, ValidationError

from supervisor.config.values import (
    DURATION_PATTERN,
    MAX_DURATION,
    MAX_SIZE,
    MIN_POSITIVE_DURATION,
    PERCENT_PATTERN,
    SIZE_PATTERN,
    Duration,
    Percent,
    PositiveDuration,
    Size,
    describe,
    format_duration,
    format_size,
    parse_duration,
    parse_percent,
    parse_positive_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("5s", 5.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        ("1.5s", 1.5),
        ("10", 10.0),
        (7, 7.0),
        (0.25, 0.25),
        ("0s", 0.0),
        # systemd's time spans (systemd.time(7))
        ("5min", 300.0),
        ("30sec", 30.0),
        ("1h 30min", 5400.0),
        ("2h", 7200.0),
        ("1 hour 2 minutes", 3720.0),
        ("2 weeks", 14 * 86400.0),
        ("1w", 7 * 86400.0),
        ("250msec", 0.25),
        ("1day 1hr", 90000.0),
        ("1000us", 0.001),
    ],
)
def test_duration_parses(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["5x", "", "s", "5 s s", "-5s", "1h-2m", "five seconds", "5mins", "1M", "5 min utes"]
)
def test_duration_refuses_garbage_naming_it(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    hint = "use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d"
    assert str(caught.value) == f"{text!r} is not a duration; {hint}"


def test_duration_refuses_negative_numbers_and_other_types() -> None:
    with pytest.raises(ValueError, match=r"^-5 is not a duration; it must not be negative$"):
        parse_duration(-5)
    with pytest.raises(ValueError, match=r"^expected a duration like 5s, got true$"):
        parse_duration(True)
    with pytest.raises(ValueError, match=r"^expected a duration like 5s, got a list$"):
        parse_duration(["5s"])


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 1024**2),
        ("1GiB", 1024**3),
        ("10KiB", 10240),
        ("100MB", 100_000_000),
        ("1024", 1024),
        (1024, 1024),
        ("512M", 512 * 1024**2),
        ("2kb", 2000),
        ("1.5GiB", 3 * 1024**3 // 2),
        ("10 B", 10),
    ],
)
def test_size_parses(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["12XB", "MiB", "-1MiB", "1 GiB GiB"])
def test_size_refuses_garbage_naming_it(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(text)
    assert str(caught.value) == (
        f"{text!r} is not a size; use e.g. 512MiB, 1GiB, 100MB or a number of bytes"
    )


@pytest.mark.parametrize(
    ("text", "percent"), [("90%", 90.0), (90, 90.0), ("0%", 0.0), ("99.5", 99.5)]
)
def test_percent_parses(text: str | int, percent: float) -> None:
    assert parse_percent(text) == percent


@pytest.mark.parametrize("value", ["120%", "-5%", "ninety", 101, -1])
def test_percent_refuses_out_of_range_and_garbage(value: str | int) -> None:
    shown = repr(value) if isinstance(value, str) else str(value)
    with pytest.raises(ValueError) as caught:
        parse_percent(value)
    assert (
        str(caught.value) == f"{shown} is not a percentage; use a value from 0% to 100%, e.g. 90%"
    )


class _Holder(BaseModel):
    duration: Duration = 0.0
    positive: PositiveDuration = 1.0
    size: Size = 0
    percent: Percent = 0.0


def test_annotated_types_hold_plain_numbers() -> None:
    held = _Holder.model_validate(
        {"duration": "1m30s", "positive": "500ms", "size": "1GiB", "percent": "90%"}
    )
    assert (held.duration, held.positive, held.size, held.percent) == (90.0, 0.5, 1024**3, 90.0)
    assert isinstance(held.size, int)


def test_positive_duration_refuses_zero() -> None:
    with pytest.raises(ValidationError, match="'0s' is too short; it must be more than 0s"):
        _Holder.model_validate({"positive": "0s"})


def test_json_schema_offers_string_patterns_and_numbers() -> None:
    props = _Holder.model_json_schema()["properties"]
    assert {"type": "string", "pattern": DURATION_PATTERN} in props["duration"]["anyOf"]
    assert {"type": "number", "minimum": 0, "maximum": MAX_DURATION} in props["duration"]["anyOf"]
    assert {"type": "string", "pattern": SIZE_PATTERN} in props["size"]["anyOf"]
    assert {"type": "integer", "minimum": 0, "maximum": MAX_SIZE} in props["size"]["anyOf"]
    assert {"type": "number", "minimum": 0, "maximum": 100} in props["percent"]["anyOf"]


@pytest.mark.parametrize(
    ("pattern", "parse", "samples"),
    [
        (DURATION_PATTERN, parse_duration, ["500ms", "1m30s", "10", "5x", "-5s", "1h 30m", ""]),
        (DURATION_PATTERN, parse_duration, ["5min", "30sec", "1h 30min", "5mins", "2 weeks", "1M"]),
        (SIZE_PATTERN, parse_size, ["512MiB", "100MB", "512M", "1024", "12XB", "2kb", "MiB"]),
        (PERCENT_PATTERN, parse_percent, ["90%", "90", "99.5%", "ninety", "%", "5 %"]),
    ],
)
def test_schema_patterns_agree_with_the_parsers(
    pattern: str, parse: Callable[[str], object], samples: list[str]
) -> None:
    for sample in samples:
        try:
            parse(sample)
            accepted = True
        except ValueError:
            accepted = False
        assert bool(re.search(pattern, sample)) == accepted, sample


def test_format_round_trips() -> None:
    assert format_duration(90) == "1m30s"
    assert format_duration(0.5) == "500ms"
    assert format_duration(3600) == "1h"
    assert format_duration(0) == "0s"
    assert parse_duration(format_duration(93784)) == 93784
    assert format_size(512 * 1024**2) == "512MiB"
    assert format_size(1000) == "1000B"


# --- bounds: nothing a user writes can overflow, spin or wait forever ------------------------

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NAN, ".nan is not a duration; use e.g. 500ms, 30s, 5min, 1h 30min, 2h, 1d"),
        (INF, ".inf is too long; a duration is at most 365d (a year)"),
        (10**400, "a whole number of 401 digits is too long; a duration is at most 365d (a year)"),
        (2**63, "9223372036854775808 is too long; a duration is at most 365d (a year)"),
        (1e308, "1e+308 is too long; a duration is at most 365d (a year)"),
        ("366d", "'366d' is too long; a duration is at most 365d (a year)"),
        ("9" * 400 + "s", "'" + "9" * 57 + "...' is too long; a duration is at most 365d (a year)"),
    ],
)
def test_duration_refuses_nan_infinite_and_over_a_year(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)
    assert str(caught.value) == message


def test_duration_bounds_are_inclusive_and_positive_ones_start_at_a_millisecond() -> None:
    assert parse_duration("365d") == MAX_DURATION
    assert parse_duration(MAX_DURATION) == MAX_DURATION
    assert parse_positive_duration("1ms") == MIN_POSITIVE_DURATION
    with pytest.raises(ValueError, match=r"^0\.0001 is too short; it must be at least 1ms$"):
        parse_positive_duration(0.0001)
    with pytest.raises(ValueError, match=r"^'0\.5ms' is too short; it must be at least 1ms$"):
        parse_positive_duration("0.5ms")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (NAN, ".nan is not a size; use e.g. 512MiB, 1GiB or a number of bytes"),
        (INF, ".inf is too large; a size is at most 1024TiB (2^50 bytes)"),
        (-INF, "-.inf is not a size; it must not be negative"),
        (2**50 + 1, "1125899906842625 is too large; a size is at most 1024TiB (2^50 bytes)"),
        ("1025TiB", "'1025TiB' is too large; a size is at most 1024TiB (2^50 bytes)"),
        pytest.param(
            10**5000,
            "a whole number of 5001 digits is too large; a size is at most 1024TiB (2^50 bytes)",
            id="10**5000",
        ),
    ],
)
def test_size_refuses_nan_infinite_and_over_a_pebibyte(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_size(value)
    assert str(caught.value) == message


def test_size_bound_is_inclusive() -> None:
    assert parse_size("1024TiB") == MAX_SIZE == parse_size(MAX_SIZE)


@pytest.mark.parametrize(("value", "shown"), [(NAN, ".nan"), (INF, ".inf"), (10**400, None)])
def test_percent_refuses_nan_infinite_and_huge(value: float, shown: str | None) -> None:
    with pytest.raises(ValueError, match="is not a percentage; use a value from 0% to 100%"):
        parse_percent(value)
    if shown:
        with pytest.raises(ValueError, match=f"^{re.escape(shown)} "):
            parse_percent(value)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (NAN, ".nan"),
        (-INF, "-.inf"),
        pytest.param(10**5000, "a whole number of 5001 digits", id="10**5000"),
        (-(10**20), "a negative whole number of 21 digits"),
        (2**64 - 1, str(2**64 - 1)),
    ],
)
def test_describe_shows_what_yaml_would_and_never_fails(value: object, shown: str) -> None:
    assert describe(value) == shown
