"""The `simulate` command: replay the last hours of history through a (changed)
policy directory and print what it would have decided beside what was done.

It reads the state database read-only (a running daemon is not disturbed) and
replays its `health` and `check` rows with `supervisor.core.replay`. Times are
printed relative to the first row replayed, whose wall-clock time heads the
output, so the same history always prints the same table.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from supervisor.config.loader import load_config
from supervisor.core.replay import Decision, Entry, ReplayError, actual, replay
from supervisor.errors import ConfigError
from supervisor.store_rows import history_entries, history_query

__all__ = ["side_by_side", "simulate_command"]

PAIR_WITHIN = 2.0  # a simulated and an actual decision this close are one row
MAX_ROWS = 1_000_000  # history rows read at most
# What the replay needs, and what says what was done.
KINDS = ("health", "check", "action", "result", "alert", "recovery", "failover")


def simulate_command(
    config_dir: Path,
    state_dir: Path,
    since: float,
    out: TextIO,
    err: TextIO,
    *,
    now: float | None = None,
) -> int:
    """Print the table of the last `since` seconds before `now` (default: the clock);
    0 if it was printed, 1 if the config or the history is unusable."""
    try:
        loaded = load_config(config_dir)
    except ConfigError as exc:
        print(f"host-supervisor: {exc}", file=err)
        return 1
    if loaded.errors:
        for issue in loaded.errors:
            print(issue, file=err)
        print(f"host-supervisor: {config_dir}: fix these first (see `validate`)", file=err)
        return 1
    now = time.time() if now is None else now
    try:
        entries = read_history(state_dir / "state.db", now - since)
        simulated = replay(loaded, entries, end=now)
    except (OSError, sqlite3.Error, ReplayError) as exc:
        print(f"host-supervisor: cannot replay {state_dir / 'state.db'}: {exc}", file=err)
        return 1
    origin = entries[0].time if entries else now
    when = datetime.fromtimestamp(origin, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    print(f"replay of {len(entries)} history rows from {when} through {config_dir}", file=out)
    for line in side_by_side(simulated, actual(entries), origin):
        print(line, file=out)
    return 0


def read_history(path: Path, since: float) -> list[Entry]:
    """The rows the replay needs since `since`, oldest first, without writing."""
    if not path.is_file():
        raise OSError(f"no state database at {path}")
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        sql, params = history_query(None, since, MAX_ROWS, KINDS)
        rows = history_entries(conn.execute(sql, params).fetchall())
    finally:
        conn.close()
    return [Entry(row.time, row.unit, row.kind, row.message, row.data) for row in rows]


def side_by_side(
    simulated: Sequence[Decision], done: Sequence[Decision], origin: float
) -> list[str]:
    """The table: one row per decision, a simulated and an actual one for the same unit
    within `PAIR_WITHIN` seconds sharing a row; then a count of the rows that differ."""
    rows: list[tuple[float, str, str, str]] = []
    for unit in sorted({d.unit for d in simulated} | {d.unit for d in done}):
        rows += _pair([d for d in simulated if d.unit == unit], [d for d in done if d.unit == unit])
    rows.sort(key=lambda row: (row[0], row[1]))
    table = [("TIME", "UNIT", "SIMULATED", "ACTUAL")]
    table += [(_offset(t - origin), unit, sim, act) for t, unit, sim, act in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [
        ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[3]).rstrip()
        for row in table
    ]
    differ = sum(1 for _, _, sim, act in rows if sim != act)
    lines.append(f"{len(simulated)} simulated, {len(done)} actual; {differ} rows differ")
    return lines


def _pair(sim: list[Decision], act: list[Decision]) -> list[tuple[float, str, str, str]]:
    rows: list[tuple[float, str, str, str]] = []
    i = j = 0
    while i < len(sim) or j < len(act):
        s = sim[i] if i < len(sim) else None
        a = act[j] if j < len(act) else None
        if s is not None and a is not None and abs(s.time - a.time) <= PAIR_WITHIN:
            rows.append((min(s.time, a.time), s.unit, s.text, a.text))
            i, j = i + 1, j + 1
        elif s is not None and (a is None or s.time < a.time):
            rows.append((s.time, s.unit, s.text, "-"))
            i += 1
        elif a is not None:
            rows.append((a.time, a.unit, "-", a.text))
            j += 1
    return rows


def _offset(seconds: float) -> str:
    """`+0:01:02.5`: hours, minutes, seconds to a tenth."""
    tenths = round(max(0.0, seconds) * 10)
    minutes, tenth_seconds = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    return f"+{hours}:{minutes:02d}:{tenth_seconds // 10:02d}.{tenth_seconds % 10}"


def run(args: argparse.Namespace) -> int:
    """`host-supervisor simulate`."""
    return simulate_command(args.config, args.state_dir, args.since, sys.stdout, sys.stderr)
