"""Snapshots and backups: mirrors of the named paths built in a ``.tmp-*`` directory,
fsync'd and renamed into place under a lock, the oldest pruned; and what makes a new
snapshot proven. Reading them back (complete snapshots, manifests, which one is last
known good) is `supervisor.restore.manifests`, whose public names are re-exported here.

**Proven, not just healthy.** A snapshot is last-known-good only if the files it holds
are the ones the unit is running with. The caller passes ``applied_at``, the wall-clock
time the unit's last start or reload began (see `attempt_snapshot`); every entry copied
(and the directory of a named path that is absent) must have its ctime and mtime at or
before it: ctime moves on every change of content, mode, owner, xattrs or, for a
directory, its entries, and no one can set it back. The content is then read again and
must equal the copy. A tree changed after ``applied_at`` (an edit not yet applied) is
*not* snapshotted: there is no older content on disk to record, and the previous proven
snapshot stays the one restore uses. Such a snapshot is skipped with its reason, kept in
``.last-attempt.json`` beside the snapshots for `describe_last_known_good`. The newest
proven snapshot is never pruned, however many snapshots follow it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import posixpath
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.fsutil import create_synced, replace_at, write_all
from supervisor.restore.files import (
    MANIFEST,
    RestoreError,
    _named,
    _os_message,
    _refuse_inside,
    _rel,
    _special,
)
from supervisor.restore.fingerprinting import _fingerprint_under
from supervisor.restore.manifests import (
    LAST_ATTEMPT,
    SNAPSHOT_NAME,
    KnownGood,
    complete_mirrors,
    describe_last_known_good,
    known_good,
    latest_snapshot,
    read_manifest,
    utc_time,
)
from supervisor.restore.walk import (
    OPEN_DIR,
    Entry,
    copy_data,
    entry_xattrs,
    lstat_at,
    open_below,
    open_dir,
    open_entry,
    opened,
    remove_tree,
    set_link_meta,
    set_meta,
)

__all__ = [
    "KnownGood",
    "SnapshotAttempt",
    "attempt_snapshot",
    "describe_last_known_good",
    "known_good",
    "latest_snapshot",
    "take_snapshot",
]


_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_MANIFEST_VERSION = 2

Check = Callable[[str, os.stat_result], None]


class _NotProven(Exception):
    """The live files are not (or no longer) the ones the unit was started with."""


@dataclass(frozen=True)
class SnapshotAttempt:
    """What one snapshot attempt did: the new snapshot, or None and why not."""

    path: Path | None
    reason: str


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[int]:
    """Hold ``directory/.lock`` (creating the directory and its missing parents, mode
    0700, without following a symlink) and clear leftovers; yield the directory's fd."""
    dir_fd = open_dir(directory, create=0o700)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        lock = os.open(_LOCK, flags, 0o600, dir_fd=dir_fd)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for name in os.listdir(dir_fd):
                if name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                    with contextlib.suppress(OSError):
                        remove_tree(dir_fd, name)
            yield dir_fd
        finally:
            os.close(lock)
    finally:
        os.close(dir_fd)


def take_snapshot(
    paths: Sequence[str],
    snapshots_dir: Path,
    now: float,
    keep: int,
    *,
    applied_at: float | None = None,
    healthy_since: float | None = None,
) -> Path | None:
    """`attempt_snapshot`, returning only the new snapshot (None when none was taken)."""
    return attempt_snapshot(
        paths, snapshots_dir, now, keep, applied_at=applied_at, healthy_since=healthy_since
    ).path


def attempt_snapshot(
    paths: Sequence[str],
    snapshots_dir: Path,
    now: float,
    keep: int,
    *,
    applied_at: float | None = None,
    healthy_since: float | None = None,
) -> SnapshotAttempt:
    """Copy the named paths into ``snapshots_dir/<UTC time of now>/`` with a manifest, and
    keep the newest ``keep`` snapshots (and always the newest proven one).

    ``applied_at``: the wall-clock time (seconds since the epoch) the unit's last
    successful start or reload *began* (systemd's ``InactiveExitTimestamp`` for a start;
    for a reload, the time it was asked or seen ``reloading``). With it the snapshot is
    *proven*: taken only if no copied entry changed after it (ctime and mtime), else
    skipped with the reason. Without it (None) the snapshot is taken as before and
    recorded as unproven. ``healthy_since``: when the unit last became healthy, recorded
    in the manifest.

    Returns the new snapshot, or None and why not: the fingerprint equals the newest
    snapshot's (and that one is proven, or no proof was asked), the files changed after
    ``applied_at``, or they changed while being copied. A second snapshot within the same
    second is named ``<UTC time>.1`` (then ``.2`` ...); so is one taken after the clock
    stepped back. Raises RestoreError for what a restore would refuse (a symlink on the
    way to a named path, a special file named) and when a file cannot be read or written.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    from supervisor.restore.preflight import refuse_live

    named = _named(paths)
    _refuse_inside(snapshots_dir, named, "snapshot directory")
    refuse_live(named, "snapshot refused")
    try:
        with _locked(snapshots_dir) as dir_fd:
            attempt = _attempt(named, dir_fd, snapshots_dir, now, keep, applied_at, healthy_since)
            record = {"time": now, "snapshot": attempt.path and str(attempt.path)}
            data = json.dumps({**record, "reason": attempt.reason}, indent=2).encode() + b"\n"
            replace_at(dir_fd, LAST_ATTEMPT, lambda fd: write_all(fd, data))
            os.fsync(dir_fd)
            return attempt
    except OSError as exc:
        raise RestoreError(
            f"cannot snapshot {', '.join(named)} into {snapshots_dir}: {_os_message(exc)}"
        ) from exc


def _live_fingerprint(named: Sequence[str]) -> str:
    with opened(open_dir("/")) as root:
        return _fingerprint_under(root, "", named)


def _attempt(
    named: Sequence[str],
    dir_fd: int,
    directory: Path,
    now: float,
    keep: int,
    applied_at: float | None,
    healthy_since: float | None,
) -> SnapshotAttempt:
    current = _live_fingerprint(named)
    names = complete_mirrors(dir_fd)
    if names:
        newest = read_manifest(dir_fd, names[-1])
        if newest.get("fingerprint") == current and (applied_at is None or newest.get("proven")):
            return SnapshotAttempt(None, f"unchanged since {directory / names[-1]}")
    check: Check | None = None
    if applied_at is not None:
        trust = (
            "its files were unchanged (ctime and mtime, then content read twice) since the "
            f"unit's last (re)start or reload at {utc_time(applied_at)}"
        )
        if healthy_since is not None:
            trust += f", and it was healthy from {utc_time(healthy_since)} to {utc_time(now)}"
        check = _prover(applied_at)
    else:
        trust = (
            "taken while the unit was healthy, but not proven: no time of the unit's last "
            "(re)start or reload was given"
        )

    def verify(copied: str) -> None:
        if copied != current or _live_fingerprint(named) != current:
            raise _NotProven("the files changed while they were being copied")

    extra = {
        "kind": "snapshot",
        "applied_at": applied_at,
        "healthy_since": healthy_since,
        "proven": applied_at is not None,
        "trust": trust,
    }
    try:
        made, _ = _publish(named, dir_fd, directory, now, extra, check, verify)
    except _NotProven as exc:
        return SnapshotAttempt(None, f"not snapshotted as known-good: {exc}")
    _prune(dir_fd, keep, protect_proven=True)
    return SnapshotAttempt(made, trust)


def _prover(applied_at: float) -> Check:
    def check(shown: str, st: os.stat_result) -> None:
        changed = max(st.st_ctime, st.st_mtime)
        if changed > applied_at:
            raise _NotProven(
                f"{shown} changed at {utc_time(changed)}, after the unit's last (re)start or "
                f"reload at {utc_time(applied_at)}: not applied yet (reload or restart it)"
            )

    return check


def _prune(dir_fd: int, keep: int, *, protect_proven: bool = False) -> None:
    names = complete_mirrors(dir_fd)
    old = names[:-keep]
    if protect_proven:
        proven = [name for name in names if read_manifest(dir_fd, name).get("proven") is True]
        if proven and proven[-1] in old:
            old.remove(proven[-1])
    for name in old:
        trash = f"{_TRASH_PREFIX}{name}"
        os.rename(name, trash, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        with contextlib.suppress(OSError):
            remove_tree(dir_fd, trash)
    if old:
        os.fsync(dir_fd)


def _publish(
    named: Sequence[str],
    dir_fd: int,
    directory: Path,
    now: float,
    extra: dict[str, Any],
    check: Check | None = None,
    verify: Callable[[str], None] | None = None,
) -> tuple[Path, frozenset[str]]:
    """Mirror the live ``named`` into a new complete ``directory/<UTC time>`` (``dir_fd``);
    return it and the named paths that did not exist. ``check`` sees each live entry's
    stat, ``verify`` the copy's fingerprint before it is published; either may raise.
    The caller holds the directory's lock."""
    stamp = _stamp(now)
    temp = f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    os.mkdir(temp, 0o700, dir_fd=dir_fd)
    try:
        with opened(os.open(temp, OPEN_DIR, dir_fd=dir_fd)) as temp_fd:
            with opened(open_dir("/")) as live:
                absent = _mirror(named, live, temp_fd, check)
            copied = _fingerprint_under(temp_fd, f"{directory}/{temp}", named)
            if verify is not None:
                verify(copied)
            manifest = {
                "version": _MANIFEST_VERSION,
                "time": now,
                "utc": stamp,
                "paths": list(named),
                "absent": sorted(absent),
                "fingerprint": copied,
                **extra,
            }
            data = json.dumps(manifest, indent=2).encode("ascii") + b"\n"
            create_synced(MANIFEST, lambda fd: write_all(fd, data), dir_fd=temp_fd)
            os.fsync(temp_fd)
        final = _next_name(dir_fd, stamp)
        os.rename(temp, final, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        os.fsync(dir_fd)
        return directory / final, frozenset(absent)
    except BaseException:
        with contextlib.suppress(OSError):
            remove_tree(dir_fd, temp)
        raise


def _next_name(dir_fd: int, stamp: str) -> str:
    """``stamp``, or ``<stamp>.N`` after one of the same second: a name that sorts after
    every existing one, so the newest stays last even when the clock stepped back."""
    taken = [(m[1], int(m[2] or 0)) for m in map(SNAPSHOT_NAME.fullmatch, os.listdir(dir_fd)) if m]
    if not taken or stamp > max(taken)[0]:
        return stamp
    last, number = max(taken)
    return f"{last}.{number + 1}"


def _mirror(named: Sequence[str], live: int, root_fd: int, check: Check | None) -> list[str]:
    """Copy each live named path (below the descriptor ``live`` of /) into the mirror
    ``root_fd``; return the paths that do not exist."""
    absent: list[str] = []
    for path in named:
        parent, name = posixpath.split(_rel(path))
        try:
            parent_fd = open_below(live, parent, "/")
        except (FileNotFoundError, NotADirectoryError):
            absent.append(path)
            continue
        with opened(parent_fd):
            entry = open_entry(parent_fd, name, path)
            if entry is None:
                st = lstat_at(parent_fd, name)
                if st is not None:
                    raise _special(path, st.st_mode)
                if check is not None:  # a removal shows in its directory's ctime
                    check(
                        f"{posixpath.dirname(path)} (where {path} is absent)", os.fstat(parent_fd)
                    )
                absent.append(path)
                continue
            with opened(open_below(root_fd, parent, "", create=0o755)) as target:
                _copy_entry(entry, target, name, path, check)
                os.fsync(target)
    return absent


def _copy_entry(entry: Entry, dir_fd: int, name: str, shown: str, check: Check | None) -> None:
    """Copy the open live ``entry`` to the new ``name`` in ``dir_fd``, with its owner,
    xattrs, mode and times; a directory with every entry that is not a special file."""
    with entry:
        if check is not None:
            check(shown, entry.st)
        if entry.kind == "file":
            _copy_file(entry, dir_fd, name)
        elif entry.kind == "link":
            os.symlink(entry.target, name, dir_fd=dir_fd)
            set_link_meta(dir_fd, name, entry.st, entry_xattrs(entry))
        else:
            assert entry.fd is not None
            os.mkdir(name, 0o700, dir_fd=dir_fd)
            with opened(os.open(name, OPEN_DIR, dir_fd=dir_fd)) as target:
                for child in sorted(os.listdir(entry.fd)):
                    found = open_entry(entry.fd, child, f"{shown}/{child}")
                    if found is not None:
                        _copy_entry(found, target, child, f"{shown}/{child}", check)
                set_meta(target, entry.st, entry_xattrs(entry))
                os.fsync(target)


def _copy_file(entry: Entry, dir_fd: int, name: str) -> None:
    """Copy one open regular file (sparse stays sparse) with its metadata, fsync'd."""
    source = entry.fd
    assert source is not None

    def fill(fd: int) -> None:
        copy_data(source, fd)
        set_meta(fd, entry.st, entry_xattrs(entry))

    create_synced(name, fill, dir_fd=dir_fd)
