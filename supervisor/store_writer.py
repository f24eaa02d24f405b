"""The writer thread of `supervisor.store_async.AsyncStore`: the queue of encoded changes
and the one thread that owns the `Store`, commits what is queued in batches, retries
with backoff while the database cannot be written, runs the reads in order among the
writes, and says at close what was not saved.

What the queue promises (bounds, ordering, durability) is told in
:mod:`supervisor.store_async`; this module is how it is kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import sqlite3
import threading
import time as _time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import structlog

from supervisor.errors import SupervisorError
from supervisor.store import Store, StoreUnavailable
from supervisor.store_rows import Row

log = structlog.get_logger("host-supervisor")

#: Longest a write attempt waits for another connection's lock (milliseconds): SQLite
#: polls the lock within it at 1, 2, 5, 10, 15, 20, 25 ms intervals, the thread asleep.
BUSY_MS: Final = 100
#: Waits between attempts while the database cannot be written (seconds, doubling):
#: short, so that what is queued is committed within about 50 ms of the lock's end.
RETRY_MIN: Final = 0.01
RETRY_MAX: Final = 0.05
#: History alone reaches the disk within this long (seconds), or at `FLUSH_AT` entries.
FLUSH_EVERY: Final = 1.0
FLUSH_AT: Final = 500
#: Most history entries queued; beyond it the oldest are dropped (and counted).
MAX_HISTORY: Final = 50_000
#: How often a database that still cannot be written is logged again (seconds).
REMIND_EVERY: Final = 60.0

_SQLITE_BUSY: Final = 5
_SQLITE_LOCKED: Final = 6

# A queued document: ("unit", name) or ("doc", key) -> encoded JSON (None: delete).
DocKey = tuple[str, str]


@dataclass
class _Batch:
    seq: int  # every change queued up to this one is in the batch (or replaced by it)
    docs: dict[DocKey, str | None]
    rows: list[Row]
    dropped: int


@dataclass
class _Job:
    run: Callable[[Store], Any]
    future: cf.Future[Any]
    write_first: bool = False


@dataclass
class _Failure:
    since: float  # monotonic
    error: str  # "is locked by another process", "cannot be written: disk I/O error"
    reminded: float = field(default=0.0)


class StateWriter:
    """The queue and the writer thread that owns `store` (started here)."""

    def __init__(self, store: Store, monotonic: Callable[[], float]) -> None:
        self.path: Path = store.path
        self._store = store
        self._now = monotonic
        store.set_busy_timeout(BUSY_MS)
        self._cond = threading.Condition()
        self._docs: dict[DocKey, str | None] = {}
        self._history: deque[Row] = deque()
        self._history_since: float | None = None
        self._dropped = 0
        self._seq = 0
        self._committed = 0
        self._waiters: list[tuple[int, cf.Future[None]]] = []
        self._jobs: deque[_Job] = deque()
        self._urgent = False
        self._closing = False
        self._close_by = 0.0
        self._retry_at = 0.0
        self._backoff = RETRY_MIN
        self._failure: _Failure | None = None
        self.finished: cf.Future[None] = cf.Future()
        """Settled once the thread has stopped and the `Store` is closed."""
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()

    # -- queueing, from any thread -----------------------------------------------------------

    def add_row(self, row: Row) -> None:
        """Queue one encoded history entry."""
        with self._cond:
            self._open()
            self._history.append(row)
            self._seq += 1
            if len(self._history) > MAX_HISTORY:
                self._history.popleft()
                self._dropped += 1
            if self._history_since is None:
                self._history_since = self._now()
                self._cond.notify()  # the writer learns when this one is due
            elif len(self._history) == FLUSH_AT:
                self._cond.notify()

    def flush(self) -> None:
        """Ask for everything queued to be written now; returns at once."""
        with self._cond:
            self._urgent = True
            self._cond.notify()

    def put(self, key: DocKey, encoded: str | None) -> None:
        """Queue a unit's state or a document (None: delete), replacing one queued."""
        with self._cond:
            self._open()
            self._docs.pop(key, None)  # the newest goes last: the order of the changes
            self._docs[key] = encoded
            self._seq += 1
            self._cond.notify()

    def _open(self) -> None:
        if self._closing:
            raise SupervisorError(f"state database {self.path} is closed")

    def call(self, run: Callable[[Store], Any], write_first: bool) -> cf.Future[Any]:
        """Queue `run(store)` for the writer thread; its future."""
        future: cf.Future[Any] = cf.Future()
        with self._cond:
            self._open()
            self._jobs.append(_Job(run, future, write_first))
            self._cond.notify()
        return future

    def waiter(self) -> cf.Future[None] | None:
        """A future settled once everything queued so far is committed; None if it is
        already. `StoreUnavailable` if the writer has stopped."""
        with self._cond:
            target = self._seq
            if self._committed >= target:
                return None
            if self.finished.done():
                raise StoreUnavailable(f"state database {self.path} is closed")
            waiter: cf.Future[None] = cf.Future()
            self._waiters.append((target, waiter))
            self._urgent = True
            self._cond.notify()
        return waiter

    # -- health ------------------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        """False while the last write attempt failed (the writer is retrying)."""
        return self._failure is None

    @property
    def last_error(self) -> str | None:
        """Why the database cannot be written, and for how long; None when it can."""
        failure = self._failure
        if failure is None:
            return None
        return f"state database {self.path} {failure.error} for {self._now() - failure.since:.0f} s"

    @property
    def pending(self) -> tuple[int, int]:
        """(documents, history entries) queued and not yet committed."""
        with self._cond:
            return len(self._docs), len(self._history)

    # -- closing -----------------------------------------------------------------------------

    def begin_close(self, timeout: float) -> None:
        """Write what is queued within `timeout` seconds, then stop; returns at once."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_by = self._now() + timeout
                self._cond.notify()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # -- the thread -------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    work = self._next()
                if work is None:
                    break
                if isinstance(work, _Job):
                    if work.write_first:
                        with self._cond:
                            batch = self._take() if self._has_work() else None
                        if batch is not None:
                            self._commit(batch)
                    self._do(work)
                else:
                    self._commit(work)
        except BaseException as e:  # pragma: no cover - a bug: say so, never hang waiters
            log.exception("state writer stopped", error=str(e))
        finally:
            self._finish()

    def _next(self) -> _Job | _Batch | None:
        """What to do next (called holding the lock); waits for it. None: stop."""
        while True:
            now = self._now()
            if self._jobs:
                return self._jobs.popleft()
            work = self._has_work()
            if self._closing and (not work or now >= self._close_by):
                return None
            if work and now >= self._retry_at and self._due(now):
                return self._take()
            wake = [self._close_by] if self._closing else []
            if work and now < self._retry_at:
                wake.append(self._retry_at)
            elif self._history_since is not None:
                wake.append(self._history_since + FLUSH_EVERY)
            self._cond.wait(max(0.0, min(wake) - now) if wake else None)

    def _has_work(self) -> bool:
        return bool(self._docs or self._history or self._dropped)

    def _due(self, now: float) -> bool:
        return bool(
            self._docs
            or self._urgent
            or self._closing
            or self._failure is not None  # retrying: whatever is queued
            or len(self._history) >= FLUSH_AT
            or (self._history_since is not None and now >= self._history_since + FLUSH_EVERY)
        )

    def _take(self) -> _Batch:
        batch = _Batch(self._seq, self._docs, list(self._history), self._dropped)
        self._docs, self._dropped, self._urgent = {}, 0, False
        self._history.clear()
        self._history_since = None
        return batch

    def _commit(self, batch: _Batch) -> None:
        rows = batch.rows
        if batch.dropped:
            message = (
                f"{batch.dropped} history entries were dropped while the state database"
                " could not be written"
            )
            rows = [*rows, (_time.time(), None, "daemon", message, f'{{"lost":{batch.dropped}}}')]
        units = {name: doc for (kind, name), doc in batch.docs.items() if kind == "unit"}
        docs = {
            name: doc
            for (kind, name), doc in batch.docs.items()
            if kind == "doc" and doc is not None  # documents are never deleted
        }
        try:
            self._store.commit_encoded(rows, units, docs)
        except Exception as e:
            self._failed(batch, e)
            return
        with self._cond:
            self._committed = batch.seq
            self._retry_at, self._backoff = 0.0, RETRY_MIN
            failure, self._failure = self._failure, None
            waiters, self._waiters = self._waiters, []
            for target, waiter in waiters:
                if target <= self._committed:
                    _resolve(waiter)
                else:
                    self._waiters.append((target, waiter))
        if failure is not None:
            log.warning(
                "state database written again",
                path=str(self.path),
                after_s=round(self._now() - failure.since, 1),
                documents=len(batch.docs),
                entries=len(rows),
            )

    def _failed(self, batch: _Batch, e: Exception) -> None:
        """Put the batch back in front of what was queued since, and retry later."""
        error = _describe(e)
        now = self._now()
        with self._cond:
            docs = dict(batch.docs)
            for key, doc in self._docs.items():  # newer: they replace, and go after
                docs.pop(key, None)
                docs[key] = doc
            self._docs = docs
            self._history.extendleft(reversed(batch.rows))
            self._dropped += batch.dropped
            while len(self._history) > MAX_HISTORY:
                self._history.popleft()
                self._dropped += 1
            if self._history and self._history_since is None:
                self._history_since = now
            self._retry_at = now + self._backoff
            self._backoff = min(self._backoff * 2, RETRY_MAX)
            first = self._failure is None
            if first:  # said at once, then every REMIND_EVERY while it lasts
                self._failure = _Failure(now, error, reminded=now)
            else:
                assert self._failure is not None
                self._failure.error = error
            failure = self._failure
            remind = not first and now - failure.reminded >= REMIND_EVERY
            if remind:
                failure.reminded = now
            documents, entries = len(self._docs), len(self._history)
        if first or remind:
            log.error(
                "state database cannot be written; retrying",
                error=f"state database {self.path} {error}" if first else self.last_error,
                documents=documents,
                entries=entries,
            )

    def _do(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.run(self._store)
        except BaseException as e:
            job.future.set_exception(e)
        else:
            job.future.set_result(result)

    def _finish(self) -> None:
        """Stop: say what was not saved, fail who waits, close the connection."""
        with self._cond:
            self._closing = True
            lost_docs = sorted(f"{kind} {name}" for kind, name in self._docs)
            lost_entries = len(self._history) + self._dropped
            waiters, self._waiters = self._waiters, []
            jobs, self._jobs = list(self._jobs), deque()
        if lost_docs or lost_entries:
            log.error(
                "state not saved at close",
                error=self.last_error,
                documents=lost_docs,
                entries=lost_entries,
            )
        closed = StoreUnavailable(f"state database {self.path} is closed")
        for _, waiter in waiters:
            _resolve(waiter, closed)
        for job in jobs:
            _resolve(job.future, closed)
        try:
            self._store.close()
        except SupervisorError as e:  # its own buffer (rows it dropped): said, then gone
            log.error("state database closed without writing everything", error=str(e))
        except Exception as e:  # pragma: no cover
            log.exception("closing the state database failed", error=str(e))
        _resolve(self.finished)


def _resolve(future: cf.Future[Any], error: BaseException | None = None) -> None:
    """Settle `future` unless it was cancelled (a `durable` that timed out) meanwhile."""
    try:
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
    except cf.InvalidStateError:
        pass


def _describe(e: Exception) -> str:
    """Why a write failed, in words for the status: "is locked by another process"."""
    cause = e.__cause__ if isinstance(e.__cause__, sqlite3.Error) else e
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return "is locked by another process"
    return f"cannot be written: {cause}"
