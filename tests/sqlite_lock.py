"""Another process holding a database's write lock, as an operator's `sqlite3` shell
with `BEGIN EXCLUSIVE;` typed in would: for the store's tests and the `lock` bench."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HOLDER = """
import select, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", time.time(), flush=True)
select.select([sys.stdin], [], [], float(sys.argv[2]))  # the time, or a word on stdin
conn.execute("COMMIT")
print("released", time.time(), flush=True)
"""


class OutsideLock:
    """`await OutsideLock.hold(path, seconds)` returns once the lock is held; `await
    released()` once it is let go, with the wall-clock time it was; `await release()`
    lets it go at once (a test's lock then lasts as long as the test needs it)."""

    def __init__(self, proc: asyncio.subprocess.Process, locked_at: float) -> None:
        self.proc = proc
        self.locked_at = locked_at

    @classmethod
    async def hold(cls, path: Path, seconds: float) -> OutsideLock:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            HOLDER,
            str(path),
            str(seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        word, at = (await proc.stdout.readline()).decode().split()
        assert word == "locked", word
        return cls(proc, float(at))

    async def release(self) -> float:
        """Let go now (before `seconds`); the wall-clock time it was."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"release\n")
        await self.proc.stdin.drain()
        return await self.released()

    async def released(self) -> float:
        assert self.proc.stdout is not None
        line = (await self.proc.stdout.readline()).decode().split()
        assert await self.proc.wait() == 0
        assert line and line[0] == "released", line
        return float(line[1])

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
