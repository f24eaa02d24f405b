"""`host-supervisor history [UNIT] [--since D] [--follow]`: what happened, oldest first.

`--follow` asks the daemon again every `--interval` for what came since the last entry
shown, like `journalctl -f`; Ctrl-C ends it with 130. It keeps only the keys of the
entries of the last second it showed (to skip them when they come again), so it runs
for days in constant memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from supervisor.commands.rendering import history_line
from supervisor.commands.talk import ask, print_json, talking
from supervisor.commands.terminal import Terminal

__all__ = ["EXIT_INTERRUPTED", "Follower", "history_command"]

EXIT_INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT): how `--follow` ends."""

_OVERLAP_S = 2.0
"""How far back each poll of `--follow` asks, to be sure to miss nothing at the edge."""

Entry = Mapping[str, Any]


def _query(unit: str | None, since_s: float | None, limit: int) -> str:
    query = {"limit": str(limit)}
    if unit:
        query["unit"] = unit
    if since_s is not None:
        query["since_s"] = repr(since_s)
    return "/v1/history?" + urlencode(query)


def _key(entry: Entry) -> str:
    return json.dumps(
        [entry.get("time"), entry.get("unit"), entry.get("kind"), entry.get("message")]
    )


class Follower:
    """Which entries of each poll are new: those after the last one shown, or at the same
    time but not shown yet. Pure; the caller polls and prints."""

    def __init__(self) -> None:
        self.last_time: float | None = None
        self._shown_at_last: set[str] = set()

    def new(self, entries: Iterable[Entry]) -> list[Entry]:
        fresh: list[Entry] = []
        for entry in entries:
            when = float(entry["time"])
            if self.last_time is not None and when < self.last_time:
                continue
            key = _key(entry)
            if when == self.last_time and key in self._shown_at_last:
                continue
            if self.last_time is None or when > self.last_time:
                self.last_time, self._shown_at_last = when, set()
            self._shown_at_last.add(key)
            fresh.append(entry)
        return fresh

    def since_s(self, now: float) -> float | None:
        """The `since_s` of the next poll: from a little before the last entry shown."""
        if self.last_time is None:
            return None
        return max(0.0, now - self.last_time + _OVERLAP_S)


def history_command(args: argparse.Namespace) -> int:
    term = Terminal.of(sys.stdout, no_colour=args.no_color)

    def show(entries: Iterable[Entry]) -> None:
        for entry in entries:
            print(json.dumps(entry) if args.json else history_line(entry, term), flush=True)

    def run() -> int:
        body = ask(args.socket, "GET", _query(args.unit, args.since, args.limit))
        if not args.follow:
            if args.json:
                print_json(body)
            else:
                show(body["entries"])
            return 0
        # Followed, --json prints one entry per line (JSON Lines), as journalctl -o json.
        follower = Follower()
        show(follower.new(body["entries"]))
        return follow(args.socket, args.unit, args.limit, args.interval, follower, show)

    return talking(run)


def follow(
    socket: Path,
    unit: str | None,
    limit: int,
    interval: float,
    follower: Follower,
    show: Callable[[Iterable[Entry]], None],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """Poll until Ctrl-C (130); a daemon that goes away ends it with its error."""
    try:
        while True:
            sleep(interval)
            since = follower.since_s(clock())
            body = ask(socket, "GET", _query(unit, since, limit))
            show(follower.new(body["entries"]))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
