"""Benchmark: another process holds the state database's lock for 60 s (an operator's
`sqlite3` shell with `BEGIN EXCLUSIVE;` typed in) while a busy daemon's store traffic
goes on. Prints the longest gap between 'watchdog' ticks of the event loop, the loop's
worst lag, and how long after the lock ended everything queued was committed.

Run: tests/bench/run lock   (or: .venv/bin/python -m tests.bench.store_lock --seconds 60)

Target: watchdog gap <= 5 s (WatchdogSec=30s pings every 15 s; the issue measured 62 s
with the synchronous store). Expected: tens of milliseconds. `--sync` runs the same
traffic through the synchronous `Store` on the loop, as the daemon did before, for
comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from supervisor.errors import SupervisorError
from supervisor.store import Store, StoreUnavailable
from supervisor.store_async import AsyncStore
from tests.sqlite_lock import OutsideLock

REPO = Path(__file__).resolve().parents[2]
WATCHDOG_EVERY = 0.5  # the bench's 'watchdog' ticks this often
LAG_TICK = 0.05
UNITS = 50


class Figures:
    def __init__(self) -> None:
        self.watchdog_gap = 0.0
        self.watchdog_ticks = 0
        self.lag = 0.0
        self.held = 0
        self.actions = 0
        self.reasons: list[str] = []
        self.most_queued = (0, 0)
        self.write_errors = 0


async def watchdog(fig: Figures) -> None:
    last = time.monotonic()
    while True:
        await asyncio.sleep(WATCHDOG_EVERY)
        now = time.monotonic()
        fig.watchdog_gap = max(fig.watchdog_gap, now - last)
        fig.watchdog_ticks += 1
        last = now


async def lag(fig: Figures) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_TICK)
        fig.lag = max(fig.lag, loop.time() - before - LAG_TICK)


async def traffic(store: Any, fig: Figures, sync: bool) -> None:
    """Every 100 ms a unit's state and five check transitions (a busy host)."""
    n = 0
    while True:
        unit = f"unit-{n % UNITS}.service"
        try:
            for k in range(5):
                store.append(unit, "check", f"transition {n}.{k}", {"n": n})
            store.save_unit(unit, {"recovery": {"attempts": n, "phase": "idle"}})
        except SupervisorError:
            fig.write_errors += 1
        if not sync:
            fig.most_queued = max(fig.most_queued, store.pending)
        n += 1
        await asyncio.sleep(0.1)


async def actions(store: Any, fig: Figures, sync: bool) -> None:
    """Every 5 s a repair: its state must be saved before it runs, or it is held."""
    while True:
        await asyncio.sleep(5.0)
        fig.actions += 1
        try:
            store.save_unit("repaired.service", {"recovery": {"phase": "acting"}})
            if not sync:
                await store.durable(2.0)
        except (StoreUnavailable, SupervisorError) as e:
            fig.held += 1
            fig.reasons.append(str(e))


async def run(path: Path, seconds: float, sync: bool) -> Figures:
    fig = Figures()
    store: Any = Store(path) if sync else await AsyncStore.open(path)
    tasks = [
        asyncio.create_task(watchdog(fig)),
        asyncio.create_task(lag(fig)),
        asyncio.create_task(traffic(store, fig, sync)),
        asyncio.create_task(actions(store, fig, sync)),
    ]
    await asyncio.sleep(2.0)
    lock = await OutsideLock.hold(path, seconds)
    try:
        released = await lock.released()
    finally:
        lock.kill()
    if sync:
        store.flush()
    else:
        await store.durable(30.0)
    commit_delay = time.time() - released
    await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
    if sync:
        store.close()
    else:
        await store.aclose()
    print(f"store: {'synchronous Store on the loop' if sync else 'AsyncStore'}")
    print(f"lock held by another process (BEGIN EXCLUSIVE) for {seconds:g} s")
    print(
        f"max gap between watchdog ticks: {fig.watchdog_gap * 1000:.0f} ms"
        f" (ticks every {WATCHDOG_EVERY * 1000:.0f} ms, {fig.watchdog_ticks} ticks; target <= 5 s)"
    )
    print(f"worst event loop lag (50 ms ticker): {fig.lag * 1000:.0f} ms")
    print(f"commit delay after the lock ended: {commit_delay * 1000:.0f} ms")
    print(f"actions held (state not saved within 2 s): {fig.held} of {fig.actions}")
    if fig.reasons:
        print(f"  reason shown: {fig.reasons[-1]}")
    if sync:
        print(f"writes that raised: {fig.write_errors}")
    else:
        docs, entries = fig.most_queued
        print(f"queued at most: {docs} documents, {entries} history entries")
    check = Store(path)
    try:
        dropped = [e for e in check.history(kinds=["daemon"]) if "dropped" in e.message]
        print(f"history entries dropped: {dropped[-1].data['lost'] if dropped else 0}")
    finally:
        check.close()
    return fig


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the lock is held")
    parser.add_argument("--sync", action="store_true", help="the synchronous Store, as before")
    parser.add_argument("--dir", type=Path, default=REPO / ".cache" / "bench-store-lock")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    args.dir.mkdir(parents=True)
    asyncio.run(run(args.dir / "state.db", args.seconds, args.sync))
    return 0  # figures, not a verdict (see tests/bench/run)


if __name__ == "__main__":
    sys.exit(main())
