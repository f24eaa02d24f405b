"""Durable state and the event history: one SQLite database in WAL mode.

The daemon keeps three things here, in `/var/lib/host-supervisor/state.db` by default:

- per-unit state (ladder rung, attempts, cooldown deadline, paused, ...), one opaque
  JSON document per unit; the daemon serialises its own dataclasses;
- host-wide documents by key (the guard's budget window and breaker, the paused-all
  flag, ...);
- an append-only history of events (check transitions, actions and their results,
  alerts, operator commands), read back by `host-supervisor history`.

Durability. Every write is a transaction committed with `synchronous=FULL`, so what
`save_unit`, `save_doc`, `delete_unit` and `flush` have returned survives a SIGKILL and
a power cut. A unit's state is saved before each action, so a daemon killed at any
moment resumes with no counter reset, no cooldown skipped and no action repeated.
History entries are cheap: `append` only buffers them in memory (a daemon start logs
thousands of check transitions); they reach the disk at `flush`, at the next
`save_unit`/`save_doc`/`delete_unit` (in the same transaction, so an action's state is
never on disk without the history that led to it), when 500 are buffered, and at
`close`. Entries still buffered when the process is killed are lost.

A corrupt or unreadable database (an empty 0-byte file, not a database, `PRAGMA
quick_check` not ok, a schema from a newer version, a database that is not ours, one of
our tables missing) is moved aside to `<path>.corrupt-<UTC timestamp>` with its
-wal/-shm files, and a fresh one is created: the daemon starts fresh rather than not at
all. A schema from a newer version is moved aside too, not refused: the host stays
supervised, and the file is kept for the newer version (reinstall it, move the file
back). A -wal beside a good database that is not a write-ahead log (SQLite would
silently ignore, then overwrite it) is moved aside alone, to
`<path>.corrupt-<UTC timestamp>-wal`. Each of these is logged once, kept in
`discarded`, and written to the history. Errors that say nothing about the file's
contents (a directory that cannot be created or written, a full disk, a lock held too
long) are not corruption: they raise `SupervisorError` naming the path, and the file
is left alone.

Contents. A row that is not what we wrote (a flipped byte) never makes loading raise:
a unit state or document that cannot be read (`supervisor.store_rows` says when) is
dropped: logged naming the unit or key, recorded in `discarded` and in the history
("state of X unreadable; starting it fresh", with the stored text in the entry's data),
and deleted. `load_units_checked` and `load_doc_checked` do the same for a row the
caller's parser rejects (one of `PARSE_ERRORS`).

Secrets. The store writes what it is given, verbatim: callers mask secrets (alert
URLs, passwords, tokens) before they pass them in. The database and the directory it
creates are readable by their owner only (0600, 0700).

One thread. A `Store` is used by one thread at a time; it starts no thread of its own,
and its calls block that thread. The daemon uses it through
`supervisor.store_async.AsyncStore`, whose writer thread owns it; commands and tests use
it directly. Measured on the
development VM's disk: `save_unit` 0.35-0.45 ms (one fsync), `append` 3-6 us, 1,000 appends
with their flushes 12-19 ms, `history(limit=1000)` 4 ms with 200,000 entries stored (a
filter on kinds alone scans the time index: 55 ms), opening with its quick_check
50 ms. `prune` costs about 6 ms per 1,000 entries deleted: call it often (hourly),
so that each call deletes little. A statement waits up to `BUSY_TIMEOUT_MS` for a
lock held by another process (an operator's `sqlite3` shell, say).
"""

from __future__ import annotations

import os
import sqlite3
import time as _time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import structlog

from supervisor.errors import SupervisorError
from supervisor.store_rows import PARSE_ERRORS as PARSE_ERRORS
from supervisor.store_rows import HistoryEntry as HistoryEntry
from supervisor.store_rows import (
    Row,
    UnusableRow,
    check_doc,
    check_units,
    encode_object,
    history_entries,
    history_query,
    stored_text,
)
from supervisor.store_schema import BUSY_TIMEOUT_MS as BUSY_TIMEOUT_MS
from supervisor.store_schema import SCHEMA_VERSION as SCHEMA_VERSION
from supervisor.store_schema import (
    Unusable,
    bad_wal,
    connect,
    empty_file,
    move_aside,
    prepare,
)

log = structlog.get_logger("host-supervisor")

T = TypeVar("T")

#: Buffered history entries that trigger a flush from `append`.
FLUSH_AT: Final = 500
#: Most entries kept in memory while the database cannot be written; beyond it the
#: oldest are dropped, and one entry says how many once writing works again.
MAX_BUFFER: Final = 50_000


class StoreUnavailable(SupervisorError):
    """What was asked of the state database was not done in time; the message says why."""


class Store:
    """The state database at `path`: per-unit state, host-wide documents, history.

    Opening creates the directory (0700) and the database (0600) if needed, or
    migrates an older schema. A database whose contents are unusable is moved aside
    (see the module's docstring): `moved_aside` is then where it went and
    `moved_aside_reason` why, both None otherwise. Anything else that prevents
    opening or writing raises `SupervisorError` naming the path.
    """

    moved_aside: Path | None
    moved_aside_reason: str | None
    discarded: list[str]
    """Every file or row set aside or dropped since opening, one message each (each is
    also logged and written to the history)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.moved_aside = None
        self.moved_aside_reason = None
        self.discarded = []
        self._buffer: deque[Row] = deque()
        self._dropped = 0  # entries dropped from a full buffer, not yet reported
        self._flush_at = FLUSH_AT
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as e:
            raise SupervisorError(
                f"state directory {self.path.parent} cannot be created: {e.strerror or e}"
            ) from e
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise SupervisorError(f"state directory {self.path.parent} is not writable")
        # Opening, checking, migrating and moving aside: supervisor.store_schema.
        if (empty := empty_file(self.path)) is not None:
            self._moved(move_aside(self.path, empty), empty)
        elif (wal := bad_wal(self.path)) is not None:
            aside = move_aside(self.path, wal, main=False)
            self._report(
                None,
                f"state database {self.path}: {wal}; moved it aside to {aside}-wal"
                " and opened the database without it",
                "write-ahead log moved aside",
            )
        conn = connect(self.path)
        try:
            prepare(conn, self.path)
        except Unusable as e:
            try:
                # Renamed while still open: SQLite deletes the -wal when the last
                # connection closes, and that evidence is worth keeping.
                aside = move_aside(self.path, str(e))
            finally:
                conn.close()
            self._moved(aside, str(e))
            conn = connect(self.path)
            try:
                prepare(conn, self.path)
            except Unusable as again:  # a fresh file cannot be unusable
                conn.close()
                raise SupervisorError(f"state database {self.path}: {again}") from again
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    def _moved(self, aside: Path, reason: str) -> None:
        self.moved_aside, self.moved_aside_reason = aside, reason
        self._report(
            None,
            f"state database {self.path}: {reason}; moved it aside to {aside}, starting afresh",
            "state database moved aside",
        )

    def _report(
        self, unit: str | None, message: str, entry: str, data: dict[str, Any] | None = None
    ) -> None:
        """Say once that something stored was set aside: log, `discarded`, history."""
        self.discarded.append(message)
        log.error(message, **({"unit": unit} if unit is not None else {}))
        self.append(unit, "daemon", entry, {"detail": message, **(data or {})})

    def set_busy_timeout(self, ms: int) -> None:
        """How long a statement waits for another connection's lock before failing."""
        self._db().execute(f"PRAGMA busy_timeout = {int(ms)}")

    # -- transactions ----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SupervisorError(f"state database {self.path} is closed")
        return self._conn

    def _error(self, what: str, e: sqlite3.Error) -> SupervisorError:
        return SupervisorError(f"state database {self.path}: {what} failed: {e}")

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One committed transaction that also writes the buffered history first.

        The buffer is emptied only once the commit succeeded; on failure it is kept
        for the next attempt and `SupervisorError` is raised.
        """
        db = self._db()
        buffered = len(self._buffer)
        rows = list(self._buffer)
        if self._dropped:
            rows.append(self._dropped_row())
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    db.executemany(
                        "INSERT INTO history (time, unit, kind, message, data)"
                        " VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                yield db
                db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            if self._buffer:  # retry `FLUSH_AT` entries later, not at every append
                self._flush_at = min(len(self._buffer) + FLUSH_AT, MAX_BUFFER)
            raise self._error(what, e) from e
        for _ in range(buffered):
            self._buffer.popleft()
        self._dropped = 0
        self._flush_at = FLUSH_AT

    def _dropped_row(self) -> Row:
        message = (
            f"{self._dropped} history entries were lost while the state database"
            " could not be written"
        )
        return (
            _time.time(),
            None,
            "daemon",
            message,
            encode_object({"lost": self._dropped}, "data"),
        )

    # -- per-unit state ----------------------------------------------------------------

    def load_units(self) -> dict[str, dict[str, Any]]:
        """Every unit's saved state that reads as a JSON object, by unit name (the others
        are dropped and reported: see the module's docstring)."""
        return self.load_units_checked(lambda unit, doc: doc)[0]

    def load_units_checked(
        self, parse: Callable[[str, dict[str, Any]], T]
    ) -> tuple[dict[str, T], list[str]]:
        """Every unit's saved state as `parse(unit, doc)` returns it, and one message per
        row dropped: unreadable, or rejected by `parse` (one of `PARSE_ERRORS`). A row
        dropped is logged, recorded in the history with what it held, and deleted."""
        try:
            rows = (
                self._db()
                .execute(
                    "SELECT rowid, CAST(unit AS BLOB), CAST(state AS BLOB) FROM units ORDER BY unit"
                )
                .fetchall()
            )
        except sqlite3.Error as e:
            raise self._error("loading unit states", e) from e
        parsed, bad = check_units(rows, parse)
        return parsed, [self._drop("units", row) for row in bad]

    def _drop(self, table: str, row: UnusableRow) -> str:
        """Report a row that cannot be used, and delete it; the message said."""
        rowid, name, why, raw = row
        what = f"state of {name}" if table == "units" else f"stored document {name}"
        message = f"{what} unreadable ({why}); starting it fresh"
        unit = name if table == "units" else None
        self._report(
            unit,
            message,
            f"{what} unreadable; starting it fresh",
            {"reason": why, "stored": stored_text(raw)},
        )
        try:
            with self._write(f"dropping the {what}") as db:
                db.execute(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
        except SupervisorError as e:  # read again (and dropped again) at the next start
            log.error("cannot drop an unreadable row", error=str(e), row=name)
        return message

    def save_unit(self, unit: str, state: dict[str, Any]) -> None:
        """Insert or replace `unit`'s state and commit (with the buffered history)."""
        encoded = encode_object(state, f"state of {unit}")
        with self._write(f"saving the state of {unit}") as db:
            db.execute(
                "INSERT INTO units (unit, state, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (unit) DO UPDATE SET state = excluded.state,"
                " updated = excluded.updated",
                (unit, encoded, _time.time()),
            )

    def delete_unit(self, unit: str) -> None:
        """Forget `unit`'s state (its history stays) and commit; no error if absent."""
        with self._write(f"deleting the state of {unit}") as db:
            db.execute("DELETE FROM units WHERE unit = ?", (unit,))

    # -- host-wide documents -------------------------------------------------------

    def load_doc(self, key: str) -> dict[str, Any] | None:
        """The document saved under `key`, or None (also when it is unreadable: it is
        then dropped and reported)."""
        return self.load_doc_checked(key, lambda doc: doc)[0]

    def load_doc_checked(
        self, key: str, parse: Callable[[dict[str, Any]], T]
    ) -> tuple[T | None, list[str]]:
        """`parse(doc)` of the document under `key` (None if there is none), and the
        message if the stored one was dropped: unreadable or rejected by `parse`."""
        try:
            row = (
                self._db()
                .execute("SELECT rowid, CAST(doc AS BLOB) FROM docs WHERE key = ?", (key,))
                .fetchone()
            )
        except sqlite3.Error as e:
            raise self._error(f"loading document {key}", e) from e
        if row is None:
            return None, []
        parsed, bad = check_doc(row[0], key, row[1], parse)
        return parsed, [] if bad is None else [self._drop("docs", bad)]

    def save_doc(self, key: str, doc: dict[str, Any]) -> None:
        """Insert or replace the document `key` and commit (with the buffered history)."""
        encoded = encode_object(doc, f"document {key}")
        with self._write(f"saving document {key}") as db:
            db.execute(
                "INSERT INTO docs (key, doc, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, updated = excluded.updated",
                (key, encoded, _time.time()),
            )

    # -- history -------------------------------------------------------------------------

    def append(
        self,
        unit: str | None,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        time: float | None = None,
    ) -> None:
        """Buffer one history entry; `time` defaults to now (wall clock).

        `data` is serialised here: a value that is not JSON (an object, NaN, a cycle)
        raises TypeError now, not at the flush. When `FLUSH_AT` entries are buffered,
        they are written at once; if that fails, `SupervisorError` is raised, the
        entries stay buffered and the next attempt is `FLUSH_AT` entries later (or at
        any flush or save). Past `MAX_BUFFER` the oldest are dropped, and counted in an
        entry written once the database takes writes again.
        """
        encoded = encode_object({} if data is None else data, f"data of {kind} event")
        when = _time.time() if time is None else float(time)
        self._buffer.append((when, unit, kind, message, encoded))
        if len(self._buffer) > MAX_BUFFER:
            self._buffer.popleft()
            self._dropped += 1
        if len(self._buffer) >= self._flush_at:
            self.flush()

    def flush(self) -> None:
        """Write every buffered entry in one transaction (nothing to do if none)."""
        if not self._buffer and not self._dropped:
            return
        with self._write("writing the history"):
            pass

    def commit_encoded(
        self,
        rows: Sequence[Row],
        units: Mapping[str, str | None],
        docs: Mapping[str, str],
    ) -> None:
        """One transaction of what `AsyncStore` queued, already encoded: history rows
        (after the buffered ones), unit states (None deletes one) and documents.
        On failure nothing is written and `SupervisorError` is raised, caused by the
        `sqlite3.Error`."""
        now = _time.time()
        with self._write("saving state and history") as db:
            if rows:
                db.executemany(
                    "INSERT INTO history (time, unit, kind, message, data) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            for unit, state in units.items():
                if state is None:
                    db.execute("DELETE FROM units WHERE unit = ?", (unit,))
                else:
                    db.execute(
                        "INSERT INTO units (unit, state, updated) VALUES (?, ?, ?)"
                        " ON CONFLICT (unit) DO UPDATE SET state = excluded.state,"
                        " updated = excluded.updated",
                        (unit, state, now),
                    )
            for key, doc in docs.items():
                db.execute(
                    "INSERT INTO docs (key, doc, updated) VALUES (?, ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET doc = excluded.doc,"
                    " updated = excluded.updated",
                    (key, doc, now),
                )

    def history(
        self,
        unit: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]:
        """The last `limit` entries matching, oldest first (by time, then id).

        `unit` None means every unit and host-wide events; `since` keeps entries at or
        after that time; `kinds` None means every kind (an empty list matches none).
        Buffered entries are flushed first, so they are included.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        if isinstance(kinds, str):
            raise TypeError("kinds must be a sequence of kinds, not one string")
        if limit == 0 or (kinds is not None and not kinds):
            return []
        self.flush()
        sql, params = history_query(unit, since, limit, kinds)
        try:
            rows = self._db().execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise self._error("reading the history", e) from e
        return history_entries(rows)

    def prune(
        self, keep_days: float = 90, keep_max: int = 200_000, *, now: float | None = None
    ) -> int:
        """Delete entries older than `keep_days` and the oldest beyond `keep_max`.

        Returns how many were deleted. `now` defaults to the wall clock.
        """
        if keep_days < 0 or keep_max < 0:
            raise ValueError(f"keep_days and keep_max must be >= 0, not {keep_days}, {keep_max}")
        cutoff = (_time.time() if now is None else now) - keep_days * 86_400
        with self._write("pruning the history") as db:
            deleted = db.execute("DELETE FROM history WHERE time < ?", (cutoff,)).rowcount
            deleted += db.execute(
                "DELETE FROM history WHERE id IN (SELECT id FROM history"
                " ORDER BY time DESC, id DESC LIMIT -1 OFFSET ?)",
                (keep_max,),
            ).rowcount
        return deleted

    # -- closing -----------------------------------------------------------------------

    def close(self) -> None:
        """Flush, checkpoint the WAL into the database, close. Closing twice is fine."""
        if self._conn is None:
            return
        try:
            self.flush()
            with suppress(sqlite3.Error):  # a checkpoint is an optimisation only
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
