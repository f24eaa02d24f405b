"""Watching each policy's restore paths for changes, for change-aware rollback.

Linux inotify through the C library (ctypes: no extension, no new dependency), read on
the event loop with ``add_reader``: the loop never waits on it. Every directory watched
is first opened by the restore walk (from ``/``, by descriptor, no symlink followed in
any component) and watched through ``/proc/self/fd/N``, so a symlink can never lead a
watch outside the trusted tree; below the named paths, subdirectories are found the
same way and a symlink is never descended into. The parent of a named path is watched
too (editors replace files by rename), with its events filtered to the named entry.

An event does not report a change by itself: it asks for the tree's fingerprint (the
restore's, `supervisor.restore.fingerprinting`), computed in a thread; only a
fingerprint that differs from the last one is a change, so touching a file, or a
restore putting back what the daemon itself wrote (`quiet`), is not. Without inotify
(no libc symbol, no /proc, out of watches) the unit's paths are polled: the fingerprint
every `POLL_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import os
import posixpath
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from supervisor.errors import SupervisorError
from supervisor.restore.files import _named
from supervisor.restore.fingerprinting import fingerprint
from supervisor.restore.walk import open_dir, open_entry, opened

log = structlog.get_logger("supervisor.restore")

POLL_EVERY = 2.0
"""Seconds between two fingerprints of a unit's paths when inotify cannot watch them."""
COALESCE = 0.01
"""Events within this long of the first make one fingerprint (a write is many events)."""

_IN_MODIFY, _IN_ATTRIB, _IN_CLOSE_WRITE = 0x2, 0x4, 0x8
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF, _IN_Q_OVERFLOW, _IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
_IN_ONLYDIR = 0x01000000
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
    | _IN_ONLYDIR
)
_HEADER = struct.Struct("iIII")

OnChange = Callable[[str, tuple[str, ...]], None]


class _Inotify:
    """One inotify descriptor: add and remove watches, read raw events."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        self._add = libc.inotify_add_watch
        self._add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = (ctypes.c_int, ctypes.c_int)
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), "inotify")
        self.fd: int = fd

    def add(self, dir_fd: int) -> int:
        """Watch the directory open as `dir_fd` (its inode, not a path to it)."""
        wd: int = self._add(self.fd, f"/proc/self/fd/{dir_fd}".encode(), _MASK)
        if wd < 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number), "inotify_add_watch")
        return wd

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL for a watch the kernel dropped already: harmless

    def read(self) -> list[tuple[int, int, str]]:
        """(watch, mask, name) of every event queued now."""
        events: list[tuple[int, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 64 * 1024)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                start = offset + _HEADER.size
                name = data[start : start + length].rstrip(b"\0")
                events.append((wd, mask, os.fsdecode(name)))
                offset = start + length

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class _Watched:
    unit: str
    paths: tuple[str, ...]
    digest: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watches: dict[int, frozenset[str] | None] = field(default_factory=dict)
    """watch -> the names that matter in that directory (None: every name)."""
    pending: asyncio.TimerHandle | None = None
    poller: asyncio.Task[None] | None = None


class ChangeWatcher:
    """The daemon's watcher of restore paths: `watch`, `unwatch`, `quiet`, `close`."""

    def __init__(self, *, poll_every: float = POLL_EVERY, use_inotify: bool = True) -> None:
        self._on_change: OnChange = lambda unit, paths: None
        self._units: dict[str, _Watched] = {}
        self._by_wd: dict[int, set[str]] = {}  # watch -> the units that watch it
        self._poll_every = poll_every
        self._inotify: _Inotify | None = None
        self._use_inotify = use_inotify
        self._tasks: set[asyncio.Task[None]] = set()

    def listen(self, on_change: OnChange) -> None:
        self._on_change = on_change

    async def watch(self, unit: str, paths: Sequence[str]) -> None:
        """Watch `paths` for `unit` (replacing its previous watch). Raises
        SupervisorError (or OSError) when they cannot even be fingerprinted."""
        self.unwatch(unit)
        named = tuple(paths)
        digest = await asyncio.to_thread(fingerprint, named)
        watched = self._units[unit] = _Watched(unit, named, digest)
        inotify = self._start_inotify()
        if inotify is not None:
            try:
                found = await asyncio.to_thread(_find_watches, inotify, named)
                self._merge(watched, found)
                return
            except OSError as exc:
                self._drop_watches(watched)
                log.warning("inotify cannot watch; polling", unit=unit, error=str(exc))
        watched.poller = asyncio.ensure_future(self._poll(watched))

    def unwatch(self, unit: str) -> None:
        watched = self._units.pop(unit, None)
        if watched is None:
            return
        if watched.pending is not None:
            watched.pending.cancel()
        if watched.poller is not None:
            watched.poller.cancel()
        self._drop_watches(watched)

    def method(self, unit: str) -> str:
        """How the unit's paths are watched: inotify, polling, or "" (not watched)."""
        watched = self._units.get(unit)
        if watched is None:
            return ""
        return "polling" if watched.poller is not None else "inotify"

    async def quiet(self, unit: str) -> None:
        """The daemon wrote the paths itself (a restore): what is there now is not a
        change. Waits for a fingerprint in progress, so none reports the write after."""
        watched = self._units.get(unit)
        if watched is None:
            return
        async with watched.lock:
            with contextlib.suppress(SupervisorError, OSError):
                watched.digest = await asyncio.to_thread(fingerprint, watched.paths)

    async def close(self) -> None:
        for unit in list(self._units):
            self.unwatch(unit)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._inotify is not None:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None

    # -- inotify ------------------------------------------------------------------------

    def _start_inotify(self) -> _Inotify | None:
        if self._inotify is None and self._use_inotify:
            try:
                self._inotify = _Inotify()
            except (OSError, AttributeError) as exc:
                self._use_inotify = False
                log.warning("no inotify: restore paths are polled", error=str(exc))
                return None
            asyncio.get_running_loop().add_reader(self._inotify.fd, self._readable)
        return self._inotify

    def _merge(self, watched: _Watched, found: dict[int, frozenset[str] | None]) -> None:
        """Keep the watches `_find_watches` added (in a thread), here on the loop."""
        for wd, names in found.items():
            have = watched.watches.get(wd, frozenset())
            watched.watches[wd] = None if have is None or names is None else have | names
            self._by_wd.setdefault(wd, set()).add(watched.unit)

    def _drop_watches(self, watched: _Watched) -> None:
        for wd in watched.watches:
            units = self._by_wd.get(wd, set())
            units.discard(watched.unit)
            if not units:
                self._by_wd.pop(wd, None)
                if self._inotify is not None:
                    self._inotify.remove(wd)
        watched.watches.clear()

    def _readable(self) -> None:
        inotify = self._inotify
        if inotify is None:
            return
        try:
            events = inotify.read()
        except OSError as exc:
            log.error("cannot read inotify events", error=str(exc))
            return
        for wd, mask, name in events:
            if mask & _IN_Q_OVERFLOW:
                for watched in self._units.values():
                    self._soon(watched)  # events were lost: look at every unit
                continue
            for unit in list(self._by_wd.get(wd, ())):
                watched = self._units[unit]
                names = watched.watches.get(wd, frozenset())
                if mask & _IN_IGNORED:
                    watched.watches.pop(wd, None)  # the directory is gone; its parent says so
                    self._by_wd.pop(wd, None)
                elif names is None or name in names:
                    self._soon(watched)

    def _soon(self, watched: _Watched) -> None:
        if watched.pending is None:
            loop = asyncio.get_running_loop()
            watched.pending = loop.call_later(COALESCE, self._check_later, watched)

    def _check_later(self, watched: _Watched) -> None:
        watched.pending = None
        task = asyncio.ensure_future(self._check(watched, rewatch=True))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, watched: _Watched, *, rewatch: bool = False) -> None:
        async with watched.lock:
            if self._units.get(watched.unit) is not watched:
                return  # unwatched meanwhile
            try:
                digest = await asyncio.to_thread(fingerprint, watched.paths)
                if rewatch and (inotify := self._inotify) is not None:
                    # New subdirectories, a file replaced by a directory: watch them too.
                    found = await asyncio.to_thread(_find_watches, inotify, watched.paths)
                    self._merge(watched, found)
            except (SupervisorError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                    log.warning("out of inotify watches", unit=watched.unit)
                digest = f"unreadable: {exc}"
            if digest == watched.digest:
                return
            watched.digest = digest
            self._on_change(watched.unit, watched.paths)

    # -- polling --------------------------------------------------------------------------

    async def _poll(self, watched: _Watched) -> None:
        while True:
            await asyncio.sleep(self._poll_every)
            await self._check(watched)


Watches = dict[int, frozenset[str] | None]


def _find_watches(inotify: _Inotify, paths: Sequence[str]) -> Watches:
    """Watch each named path's parent (for its name) and every directory at or below a
    named path, all opened by the restore walk, so no symlink is followed; returns
    watch -> the names that matter in it (None: every name). Blocks: call in a thread."""
    found: Watches = {}
    for path in _named(paths):
        parent, name = posixpath.split(path)
        try:
            parent_fd = open_dir(parent)
        except FileNotFoundError:
            continue  # a parent missing now: polling would not see more
        with opened(parent_fd):
            wd = inotify.add(parent_fd)
            names = found.get(wd, frozenset())
            if names is not None:
                found[wd] = names | {name}
            _find_tree(inotify, parent_fd, name, path, found)
    return found


def _find_tree(inotify: _Inotify, dir_fd: int, name: str, shown: str, found: Watches) -> None:
    entry = open_entry(dir_fd, name, shown)
    if entry is None:
        return
    with entry:
        if entry.kind != "dir" or entry.fd is None:
            return  # a file, or a symlink: never followed
        found[inotify.add(entry.fd)] = None
        for child in sorted(os.listdir(entry.fd)):
            _find_tree(inotify, entry.fd, child, f"{shown}/{child}", found)
