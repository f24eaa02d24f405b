"""The spool: one directory per channel of alerts waiting for delivery, written durably
(`supervisor.fsutil.atomic_write`), oldest name first, at most `spool_max` files.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from supervisor.core.alerting import Severity
from supervisor.fsutil import TEMP_SUFFIX, atomic_write, fsync_dir

__all__ = ["Spool", "SpooledMessage", "unlink_all"]

log = structlog.get_logger("host-supervisor")


@dataclass(frozen=True)
class SpooledMessage:
    title: str
    body: str
    severity: Severity
    created: float  # wall clock
    covers: tuple[str, ...] = ()
    """Names of the pending alerts (`inbox.py`) this message tells of."""

    def to_json(self) -> str:
        doc: dict[str, object] = {
            "title": self.title,
            "body": self.body,
            "severity": self.severity.label,
            "created": self.created,
        }
        if self.covers:
            doc["covers"] = list(self.covers)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> SpooledMessage:
        data = json.loads(text)
        return cls(
            title=str(data["title"]),
            body=str(data["body"]),
            severity=Severity.from_name(str(data["severity"])),
            created=float(data["created"]),
            covers=tuple(str(name) for name in data.get("covers", ())),
        )


class Spool:
    """One channel's directory of messages waiting for delivery, oldest name first.

    Names are fixed-width nanosecond counters: wall-clock based, but never going
    backwards within a run or behind a file already there.
    """

    _DROPPED = ".dropped"

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = limit
        self._last = 0
        self._gone: set[Path] = set()
        self.dropped = 0
        """Messages dropped (spool full) since a message last went through."""
        self.dropped_total = 0
        """Messages dropped (spool full) by this process, for /metrics; never goes down."""

    def prepare(self) -> None:
        """Create the directory; remove half-written files; read the counters."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for pattern in (f".*{TEMP_SUFFIX}", ".*.tmp"):  # .tmp: left by an older version
            for stale in self.directory.glob(pattern):
                stale.unlink(missing_ok=True)
        files = self.files()
        if files:
            self._last = max(self._last, int(files[-1].stem))
        with contextlib.suppress(OSError, ValueError):
            self.dropped = int((self.directory / self._DROPPED).read_text().strip() or 0)

    def files(self) -> list[Path]:
        try:
            return sorted(
                path
                for path in self.directory.glob("*.json")
                if path.stem.isdigit() and path not in self._gone and path.is_file()
            )
        except OSError:
            return []

    def write(self, message: SpooledMessage) -> Path:
        """Write one message durably, then drop the oldest over the limit."""
        self._last = max(time.time_ns(), self._last + 1)
        path = self.directory / f"{self._last:020d}.json"
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(path, message.to_json().encode("utf-8"))
        files = self.files()
        excess = len(files) - self.limit
        if excess > 0:
            for old in files[:excess]:
                old.unlink(missing_ok=True)
            self.dropped_total += excess
            self.set_dropped(self.dropped + excess)
            log.warning(
                "alert spool full; dropped the oldest",
                channel=self.directory.name,
                dropped=excess,
                spool_max=self.limit,
            )
        return path

    def adopt(self, source: Path) -> Path:
        """Move a message file in under its own (sortable) name, or a newer one if taken."""
        stem = int(source.stem)
        if (self.directory / source.name).exists():
            stem = max(time.time_ns(), self._last + 1)
        self._last = max(self._last, stem)
        target = self.directory / f"{stem:020d}.json"
        os.rename(source, target)
        fsync_dir(self.directory)
        return target

    def read(self, path: Path) -> SpooledMessage:
        return SpooledMessage.from_json(path.read_text(encoding="utf-8"))

    def remove(self, path: Path) -> None:
        """Remove a delivered message; one that cannot be removed is never listed again."""
        for failed, exc in unlink_all([path]):
            self.forget(failed, exc)

    def forget(self, path: Path, exc: OSError) -> None:
        """A delivered message that could not be removed: never list it again."""
        self._gone.add(path)
        log.error(
            "cannot remove a delivered alert from the spool",
            channel=self.directory.name,
            path=str(path),
            error=exc.strerror,
        )

    def read_all(self, paths: list[Path]) -> list[tuple[Path, SpooledMessage | Exception]]:
        """Each message, or why it cannot be read; touches no state (runs in a thread)."""
        found: list[tuple[Path, SpooledMessage | Exception]] = []
        for path in paths:
            try:
                found.append((path, self.read(path)))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                found.append((path, exc))
        return found

    def quarantine(self, path: Path, exc: Exception) -> None:
        """Set an unreadable message aside (as .corrupt) so the pump moves on."""
        target = path.with_suffix(".corrupt")
        log.error(
            "unreadable spooled alert set aside",
            channel=self.directory.name,
            path=str(target),
            error=f"{type(exc).__name__}: {exc}",
        )
        try:
            path.rename(target)
        except OSError:
            path.unlink(missing_ok=True)

    def set_dropped(self, count: int) -> None:
        self.dropped = max(0, count)
        path = self.directory / self._DROPPED
        try:
            if self.dropped:
                atomic_write(path, f"{self.dropped}\n".encode())
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot record dropped alerts", channel=self.directory.name, error=str(exc))


def unlink_all(paths: list[Path]) -> list[tuple[Path, OSError]]:
    """Remove each file; the ones that could not be, and why (touches no spool state)."""
    failed: list[tuple[Path, OSError]] = []
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            failed.append((path, exc))
    return failed
