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

The queue and the writer thread, with the bounds named above, are
:mod:`supervisor.store_writer`; this module is the facade the daemon calls.
"""

from __future__ import annotations

import asyncio
import time as _time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from supervisor.store import HistoryEntry, Store, StoreUnavailable
from supervisor.store_rows import encode_object
from supervisor.store_writer import StateWriter

T = TypeVar("T")


class AsyncStore:
    """A `Store` owned by a writer thread; see the module's docstring.

    Build it with `await AsyncStore.open(path)` (the opening, its checks and any moving
    aside run on a thread), or around a `Store` already open (`AsyncStore(store)`), which
    it then owns: nothing else may use that `Store` any more.
    """

    def __init__(self, store: Store, *, monotonic: Callable[[], float] = _time.monotonic) -> None:
        self.path: Path = store.path
        self._store = store
        self._writer = StateWriter(store, monotonic)

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
        self._writer.put(("unit", unit), encode_object(state, f"state of {unit}"))

    def delete_unit(self, unit: str) -> None:
        """Queue forgetting `unit`'s state (its history stays)."""
        self._writer.put(("unit", unit), None)

    def save_doc(self, key: str, doc: dict[str, Any]) -> None:
        """Queue the document `key` (replacing one still queued); TypeError if not JSON."""
        self._writer.put(("doc", key), encode_object(doc, f"document {key}"))

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
        encoded = encode_object({} if data is None else data, f"data of {kind} event")
        row = (_time.time() if time is None else float(time), unit, kind, message, encoded)
        self._writer.add_row(row)

    def flush(self) -> None:
        """Ask for everything queued to be written now; returns at once."""
        self._writer.flush()

    # -- durability and health -----------------------------------------------------------

    async def durable(self, timeout: float) -> None:  # noqa: ASYNC109 - a bound, not a deadline
        """Return once everything queued before this call is committed; raise
        `StoreUnavailable` saying why if that takes longer than `timeout` seconds."""
        waiter = self._writer.waiter()
        if waiter is None:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(waiter), timeout)
        except TimeoutError:
            raise StoreUnavailable(self._why_not(timeout)) from None

    @property
    def healthy(self) -> bool:
        """False while the last write attempt failed (the writer is retrying)."""
        return self._writer.healthy

    @property
    def last_error(self) -> str | None:
        """Why the database cannot be written, and for how long; None when it can."""
        return self._writer.last_error

    @property
    def pending(self) -> tuple[int, int]:
        """(documents, history entries) queued and not yet committed."""
        return self._writer.pending

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
        result: T = await asyncio.wrap_future(self._writer.call(run, write_first))
        return result

    # -- closing ---------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued within `timeout` seconds, log what could not be, close.
        Blocks the calling thread that long at most (see `aclose` for the loop)."""
        self._writer.begin_close(timeout)
        self._writer.join(timeout + 1.0)

    async def aclose(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """`close` without blocking the event loop."""
        self._writer.begin_close(timeout)
        await asyncio.wait_for(asyncio.wrap_future(self._writer.finished), timeout + 1.0)
