"""The state store as the event loop uses it: every write returns at once, and one
writer thread owns the SQLite connection (DESIGN principle 9: the event loop never waits).

Another process holding the database's lock (an operator's `sqlite3` shell, a backup
tool) used to freeze the event loop for the busy timeout of every write. Here:

- `save_unit`, `delete_unit`, `save_doc` and `append` encode their argument (a value
  that is not JSON raises TypeError at once, as `Store` does), queue it and return.
  Documents are never dropped: the newest document per unit or key replaces an older
  one still queued, so the queue of documents is bounded by the number of units and
  keys. History entries are bounded (`MAX_HISTORY`): beyond it the oldest are dropped,
  and one entry written later says how many.
- The writer thread commits everything queued in one transaction (history first, so an
  action's state is never on disk without the history that led to it): at once for a
  document or a `durable`/`flush` request, within `FLUSH_EVERY` for history alone. While
  the database is locked or cannot be written it retries with backoff (`RETRY_MIN` to
  `RETRY_MAX`), keeping the queue; each attempt waits `BUSY_MS` at most for a lock.
- `await durable(timeout)` returns once everything queued before the call is committed,
  or raises `StoreUnavailable` saying why ("state database ... is locked by another
  process for 12 s"). This is how the daemon saves state before an action, and stores
  an operator's command before it says {"ok": true}.
- `healthy` and `last_error` tell the status; `pending` how much waits.
- Reads (`load_units_checked`, `load_doc_checked`, `history`, `prune`) run on the writer
  thread too, in the order they were asked among the writes; `history` first tries to
  write what is queued, so it sees it.
- `close`/`aclose` write what they can within a bound, then say what was not saved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import sqlite3
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import structlog

from supervisor.errors import SupervisorError
from supervisor.store import HistoryEntry, Store, StoreUnavailable
from supervisor.store_rows import Row as _Row
from supervisor.store_rows import encode_object as _dumps

log = structlog.get_logger("host-supervisor")

T = TypeVar("T")

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
_Key = tuple[str, str]


@dataclass
class _Batch:
    seq: int  # every change queued up to this one is in the batch (or replaced by it)
    docs: dict[_Key, str | None]
    rows: list[_Row]
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


class AsyncStore:
    """A `Store` owned by a writer thread; see the module's docstring.

    Build it with `await AsyncStore.open(path)` (the opening, its checks and any moving
    aside run on a thread), or around a `Store` already open (`AsyncStore(store)`), which
    it then owns: nothing else may use that `Store` any more.
    """

    def __init__(self, store: Store, *, monotonic: Callable[[], float] = _time.monotonic) -> None:
        self.path: Path = store.path
        self._store = store
        self._now = monotonic
        store.set_busy_timeout(BUSY_MS)
        self._cond = threading.Condition()
        self._docs: dict[_Key, str | None] = {}
        self._history: deque[_Row] = deque()
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
        self._finished: cf.Future[None] = cf.Future()
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._thread.start()

    @classmethod
    async def open(cls, path: Path) -> AsyncStore:
        """Open (create, check, migrate, move aside) the database at `path` off the loop."""
        return cls(await asyncio.to_thread(Store, path))

    # -- what opening found ----------------------------------------------------------------

    @property
    def moved_aside(self) -> Path | None:
        return self._store.moved_aside

    @property
    def moved_aside_reason(self) -> str | None:
        return self._store.moved_aside_reason

    @property
    def discarded(self) -> list[str]:
        """Files and rows set aside or dropped (see `Store.discarded`)."""
        return list(self._store.discarded)

    # -- writes: each returns at once ----------------------------------------------------

    def save_unit(self, unit: str, state: dict[str, Any]) -> None:
        """Queue `unit`'s state (replacing one still queued); TypeError if not JSON."""
        self._put(("unit", unit), _dumps(state, f"state of {unit}"))

    def delete_unit(self, unit: str) -> None:
        """Queue forgetting `unit`'s state (its history stays)."""
        self._put(("unit", unit), None)

    def save_doc(self, key: str, doc: dict[str, Any]) -> None:
        """Queue the document `key` (replacing one still queued); TypeError if not JSON."""
        self._put(("doc", key), _dumps(doc, f"document {key}"))

    def append(
        self,
        unit: str | None,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        *,
        time: float | None = None,
    ) -> None:
        """Queue one history entry (see `Store.append`); TypeError if `data` is not JSON."""
        encoded = _dumps({} if data is None else data, f"data of {kind} event")
        row = (_time.time() if time is None else float(time), unit, kind, message, encoded)
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

    def _put(self, key: _Key, encoded: str | None) -> None:
        with self._cond:
            self._open()
            self._docs.pop(key, None)  # the newest goes last: the order of the changes
            self._docs[key] = encoded
            self._seq += 1
            self._cond.notify()

    def _open(self) -> None:
        if self._closing:
            raise SupervisorError(f"state database {self.path} is closed")

    # -- durability and health -----------------------------------------------------------

    async def durable(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Return once everything queued before this call is committed; raise
        `StoreUnavailable` saying why if that takes longer than `timeout` seconds."""
        with self._cond:
            target = self._seq
            if self._committed >= target:
                return
            if self._finished.done():
                raise StoreUnavailable(f"state database {self.path} is closed")
            waiter: cf.Future[None] = cf.Future()
            self._waiters.append((target, waiter))
            self._urgent = True
            self._cond.notify()
        try:
            await asyncio.wait_for(asyncio.wrap_future(waiter), timeout)
        except TimeoutError:
            raise StoreUnavailable(self._why_not(timeout)) from None

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

    def _why_not(self, timeout: float) -> str:
        if (error := self.last_error) is not None:
            return f"{error}; not saved within {timeout:g} s"
        documents, entries = self.pending
        return (
            f"state database {self.path}: not saved within {timeout:g} s"
            f" ({documents} documents and {entries} history entries queued)"
        )

    # -- reads, on the writer thread --------------------------------------------------------

    async def load_units_checked(
        self, parse: Callable[[str, dict[str, Any]], T]
    ) -> tuple[dict[str, T], list[str]]:
        """`Store.load_units_checked` on the writer thread (`parse` runs there)."""
        return await self._call(lambda store: store.load_units_checked(parse))

    async def load_doc_checked(
        self, key: str, parse: Callable[[dict[str, Any]], T]
    ) -> tuple[T | None, list[str]]:
        """`Store.load_doc_checked` on the writer thread (`parse` runs there)."""
        return await self._call(lambda store: store.load_doc_checked(key, parse))

    async def history(
        self,
        *,
        unit: str | None = None,
        since: float | None = None,
        limit: int = 1000,
        kinds: Sequence[str] | None = None,
    ) -> list[HistoryEntry]:
        """`Store.history`, after one attempt to write what is queued (so that it is
        included when the database can be written)."""
        return await self._call(
            lambda store: store.history(unit=unit, since=since, limit=limit, kinds=kinds),
            write_first=True,
        )

    async def prune(self, keep_days: float = 90, keep_max: int = 200_000) -> int:
        """`Store.prune` on the writer thread; `SupervisorError` if it cannot write now."""
        return await self._call(lambda store: store.prune(keep_days, keep_max))

    async def _call(self, run: Callable[[Store], T], *, write_first: bool = False) -> T:
        future: cf.Future[T] = cf.Future()
        with self._cond:
            self._open()
            self._jobs.append(_Job(run, future, write_first))
            self._cond.notify()
        return await asyncio.wrap_future(future)

    # -- closing ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued within `timeout` seconds, log what could not be, close.
        Blocks the calling thread that long at most (see `aclose` for the loop)."""
        self._begin_close(timeout)
        self._thread.join(timeout + 1.0)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """`close` without blocking the event loop."""
        self._begin_close(timeout)
        await asyncio.wait_for(asyncio.wrap_future(self._finished), timeout + 1.0)

    def _begin_close(self, timeout: float) -> None:
        with self._cond:
            if not self._closing:
                self._closing = True
                self._close_by = self._now() + timeout
                self._cond.notify()

    # -- the writer thread -------------------------------------------------------------------

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
        _resolve(self._finished)


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
