"""What the rows of the state database (:mod:`supervisor.store`) hold: canonical JSON
written, and read back without trusting it.

A database can pass `quick_check` and still hold a row that is not what we wrote (a
flipped byte). Reading never raises for contents: `decode_object` says why a stored
unit state or document is unusable (not UTF-8, a NUL byte, not JSON, not a JSON
object), `check_units` and `check_doc` also apply the caller's parser and turn one of
`PARSE_ERRORS` into such a reason, and the store drops and reports what they reject. A
history entry whose data is not JSON reads back as `{"unreadable": <text>}`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

T = TypeVar("T")

#: Errors a caller's parser raises for a stored document of the wrong shape.
PARSE_ERRORS: Final = (ValueError, TypeError, KeyError, AttributeError, IndexError)
#: Most characters of an unreadable row kept in the history entry that reports it.
KEEP_UNREADABLE: Final = 65_536


@dataclass(frozen=True)
class HistoryEntry:
    """One event of the history, as stored."""

    id: int
    time: float  # wall clock, seconds since the epoch
    unit: str | None  # None for host-wide events (guard frozen, daemon started, ...)
    kind: str  # short machine word: check, action, result, alert, operator, guard, ...
    message: str  # one human line
    data: dict[str, Any]  # extra JSON fields (may be {})


# (time, unit, kind, message, data as JSON), as inserted.
Row = tuple[float, str | None, str, str, str]

#: A stored row that cannot be used: (rowid, unit or key, why, what it held).
UnusableRow = tuple[int, str, str, object]


def decode_object(raw: object) -> tuple[dict[str, Any] | None, str]:
    """A stored document (read as bytes) and "", or None and why it is unreadable."""
    if raw is None:
        return None, "it is NULL"
    if isinstance(raw, int | float):
        return None, f"a number ({raw!r}) where a JSON object was expected"
    if isinstance(raw, str):  # a history entry's data (text already decoded)
        data = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, bytes):
        data = raw
    else:
        return None, f"a {type(raw).__name__} where a JSON object was expected"
    if (nul := data.find(b"\0")) >= 0:
        return None, f"a NUL byte at offset {nul}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 ({e.reason} at offset {e.start})"
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        return None, f"not JSON ({e})"
    if not isinstance(value, dict):
        return None, f"a JSON {type(value).__name__} where a JSON object was expected"
    return value, ""


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def stored_text(raw: object) -> str:
    """What a stored row held, for the operator (not UTF-8: with U+FFFD)."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    else:
        text = "NULL" if raw is None else str(raw)
    return text[:KEEP_UNREADABLE]


def encode_object(value: dict[str, Any], what: str) -> str:
    """Canonical JSON for `value`; TypeError naming `what` if it is not JSON."""
    if not isinstance(value, dict):
        raise TypeError(f"{what}: expected a dict, got {type(value).__name__}")
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:  # ValueError: NaN/inf, circular reference
        raise TypeError(f"{what} is not JSON-serialisable: {e}") from e


def check_units(
    rows: Iterable[tuple[int, object, object]], parse: Callable[[str, dict[str, Any]], T]
) -> tuple[dict[str, T], list[UnusableRow]]:
    """The rows of the units table (rowid, unit, state) as `parse(unit, doc)` returns
    them, by unit, and the rows that cannot be used."""
    parsed: dict[str, T] = {}
    bad: list[UnusableRow] = []
    for rowid, raw_unit, raw in rows:
        unit = stored_text(raw_unit)
        doc, why = decode_object(raw)
        if doc is not None:
            try:
                parsed[unit] = parse(unit, doc)
                continue
            except PARSE_ERRORS as e:
                why = f"{type(e).__name__}: {e}"
        bad.append((rowid, unit, why, raw))
    return parsed, bad


def check_doc(
    rowid: int, key: str, raw: object, parse: Callable[[dict[str, Any]], T]
) -> tuple[T | None, UnusableRow | None]:
    """`parse(doc)` of the stored document `key`, or None and the row if it cannot be
    used."""
    doc, why = decode_object(raw)
    if doc is not None:
        try:
            return parse(doc), None
        except PARSE_ERRORS as e:
            why = f"{type(e).__name__}: {e}"
    return None, (rowid, key, why, raw)


def history_query(
    unit: str | None, since: float | None, limit: int, kinds: Sequence[str] | None
) -> tuple[str, list[Any]]:
    """The SELECT (and its parameters) of the last `limit` history entries matching,
    newest first."""
    where: list[str] = []
    params: list[Any] = []
    if unit is not None:
        where.append("unit = ?")
        params.append(unit)
    if since is not None:
        where.append("time >= ?")
        params.append(since)
    if kinds is not None:
        where.append(f"kind IN ({', '.join('?' * len(kinds))})")
        params.extend(kinds)
    sql = "SELECT id, time, unit, kind, message, data FROM history"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY time DESC, id DESC LIMIT ?"
    params.append(limit)
    return sql, params


def history_entries(rows: Sequence[tuple[Any, ...]]) -> list[HistoryEntry]:
    """The rows `history_query` selected, oldest first."""
    return [
        HistoryEntry(
            id=i,
            time=t if isinstance(t, int | float) else 0.0,
            unit=u,
            kind=str(k),
            message=str(m),
            data=_entry_data(d),
        )
        for i, t, u, k, m, d in reversed(rows)
    ]


def _entry_data(raw: object) -> dict[str, Any]:
    data, _ = decode_object(raw)
    return {"unreadable": stored_text(raw)} if data is None else data
