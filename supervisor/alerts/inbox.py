"""The inbox: each alert a channel takes, kept on disk while it waits in the grouping
window and until the message that tells of it was delivered or spooled, so a daemon
killed at any point loses none (``SPOOL/<channel>/pending/<sortable>.json``).

Writes and removals run in order on one writer thread, never on the event loop. A file
is written and renamed into place without fsync: that survives the death of the
process, which is what the inbox is for (a power loss may take the last alerts; the
spool, where messages wait for long, is fsync'd). At start, what an earlier run left is
recovered into the spool: files a spooled message already covers are removed, the
others are moved in by rename, so each alert is told once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from pathlib import Path

import structlog

from supervisor.alerts.spool import Spool, SpooledMessage
from supervisor.fsutil import CREATE, TEMP_SUFFIX, removed_on_error, temp_name, write_all

__all__ = ["Inbox"]

log = structlog.get_logger("host-supervisor")

PENDING = "pending"


class Inbox:
    """One channel's alerts that are taken but not yet delivered or spooled."""

    def __init__(self, spool: Spool, writer: Executor) -> None:
        self.spool = spool
        self.directory = spool.directory / PENDING
        self._writer = writer
        self._last = 0

    def add(self, message: SpooledMessage) -> str:
        """Name the alert's file now and write it on the writer thread; the name."""
        self._last = max(time.time_ns(), self._last + 1)
        name = f"{self._last:020d}.json"
        self._submit(self._write, name, message.to_json().encode("utf-8"))
        return name

    def release(self, names: Iterable[str]) -> None:
        """The messages telling of these alerts were delivered or spooled: remove them
        (on the writer thread, so after they were written)."""
        names = tuple(names)
        if names:
            self._submit(self._remove, names)

    def recover(self) -> int:
        """Move what an earlier run left into the spool (runs in a thread before the pump
        starts). Returns how many alerts were recovered."""
        try:
            left = sorted(p.name for p in self.directory.glob("*.json") if p.stem.isdigit())
        except OSError:
            return 0
        for stale in self.directory.glob(f".*{TEMP_SUFFIX}"):
            stale.unlink(missing_ok=True)
        if not left:
            return 0
        self._last = max(self._last, int(Path(left[-1]).stem))
        covered = self._covered()
        moved = 0
        for name in left:
            source = self.directory / name
            try:
                if name in covered:
                    source.unlink(missing_ok=True)
                else:
                    self.spool.adopt(source)
                    moved += 1
            except OSError as exc:
                log.error(
                    "cannot recover a pending alert",
                    channel=self.spool.directory.name,
                    path=str(source),
                    error=exc.strerror,
                )
        if moved:
            log.warning(
                "alerts left pending by an earlier run were moved to the spool",
                channel=self.spool.directory.name,
                alerts=moved,
            )
        return moved

    def _submit(self, work: Callable[..., None], *args: object) -> None:
        try:
            self._writer.submit(work, *args)
        except RuntimeError:  # the alerter has closed: what comes now is spooled directly
            log.debug("alert inbox closed", channel=self.spool.directory.name)

    def _covered(self) -> set[str]:
        """Names of pending alerts a spooled message already tells of."""
        covered: set[str] = set()
        for _path, found in self.spool.read_all(self.spool.files()):
            if isinstance(found, SpooledMessage):
                covered.update(found.covers)
        return covered

    def _write(self, name: str, data: bytes) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            temp = self.directory / temp_name(name)
            fd = os.open(temp, CREATE, 0o600)
            with removed_on_error(temp):
                try:
                    write_all(fd, data)
                finally:
                    os.close(fd)
                os.rename(temp, self.directory / name)
        except OSError as exc:
            log.error(
                "cannot keep a pending alert on disk; it lives in memory until sent",
                channel=self.spool.directory.name,
                path=str(self.directory),
                error=exc.strerror,
            )

    def _remove(self, names: tuple[str, ...]) -> None:
        for name in names:
            try:
                (self.directory / name).unlink(missing_ok=True)
            except OSError as exc:
                log.error(
                    "cannot remove a sent alert from the pending directory",
                    channel=self.spool.directory.name,
                    path=str(self.directory / name),
                    error=exc.strerror,
                )
