"""Snapshots and backups: mirrors of the named paths built in a ``.tmp-*`` directory,
fsync'd and renamed into place under a lock, the oldest pruned.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from supervisor.fsutil import create_synced, fsync_dir, write_all
from supervisor.restore.files import (
    _OPEN_DIR,
    MANIFEST,
    RestoreError,
    _copy_into,
    _kind,
    _lstat,
    _named,
    _open_regular,
    _os_message,
    _refuse_inside,
    _rel,
    _set_meta,
    _special,
)
from supervisor.restore.fingerprinting import _fingerprint_under

__all__ = ["latest_snapshot", "take_snapshot"]


_NAME = re.compile(r"(\d{8}T\d{6}Z)(?:\.(\d+))?")
_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold ``directory/.lock`` (creating the directory, mode 0700) and clear leftovers."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name in os.listdir(directory):
            if name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
                shutil.rmtree(directory / name, ignore_errors=True)
        yield
    finally:
        os.close(fd)


def _mirrors(directory: Path) -> list[Path]:
    """The complete snapshots (or backups) in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[tuple[tuple[str, int], Path]] = []
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None:
            continue
        path = directory / name
        if path.is_symlink() or not path.is_dir() or not (path / MANIFEST).is_file():
            continue
        found.append(((match[1], int(match[2] or 0)), path))
    return [path for _, path in sorted(found)]


def _manifest(mirror: Path) -> dict[str, Any]:
    try:
        data = json.loads((mirror / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def latest_snapshot(snapshots_dir: Path) -> Path | None:
    """The newest complete snapshot in ``snapshots_dir``, or None (also when it does not exist).

    Only ``<UTC time>[.N]`` directories with a manifest count: a ``.tmp-*`` left by a
    crash never does.
    """
    found = _mirrors(snapshots_dir)
    return found[-1] if found else None


def take_snapshot(paths: Sequence[str], snapshots_dir: Path, now: float, keep: int) -> Path | None:
    """Copy the named paths into ``snapshots_dir/<UTC time of now>/`` with a manifest, and
    keep only the newest ``keep`` snapshots. Return None, writing nothing, when the
    fingerprint equals the latest snapshot's.

    A second snapshot within the same second is named ``<UTC time>.1`` (then ``.2`` ...);
    so is one taken after the clock stepped back, after the newest existing name.
    Raises RestoreError naming the path when a file cannot be read or written.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    named = _named(paths)
    _refuse_inside(snapshots_dir, named, "snapshot directory")
    try:
        with _locked(snapshots_dir):
            current = _fingerprint_under("/", named)
            latest = latest_snapshot(snapshots_dir)
            if latest is not None and _manifest(latest).get("fingerprint") == current:
                return None
            made, _ = _publish(named, snapshots_dir, now)
            _prune(snapshots_dir, keep)
            return made
    except OSError as exc:
        raise RestoreError(
            f"cannot snapshot {', '.join(named)} into {snapshots_dir}: {_os_message(exc)}"
        ) from exc


def _prune(directory: Path, keep: int) -> None:
    old = _mirrors(directory)[:-keep]
    for path in old:
        trash = directory / f"{_TRASH_PREFIX}{path.name}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if old:
        fsync_dir(directory)


def _publish(named: Sequence[str], directory: Path, now: float) -> tuple[Path, frozenset[str]]:
    """Mirror the live ``named`` into a new complete ``directory/<UTC time>``; return it and
    the named paths that did not exist. The caller holds the directory's lock."""
    stamp = _stamp(now)
    temp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=directory))
    try:
        absent = _mirror(named, temp)
        manifest = {
            "version": 1,
            "time": now,
            "utc": stamp,
            "paths": list(named),
            "absent": sorted(absent),
            "fingerprint": _fingerprint_under(str(temp), named),
        }
        data = json.dumps(manifest, indent=2).encode("ascii") + b"\n"
        create_synced(temp / MANIFEST, lambda fd: write_all(fd, data))
        fsync_dir(temp)
        final = directory / _next_name(directory, stamp)
        os.rename(temp, final)
        fsync_dir(directory)
        return final, frozenset(absent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _next_name(directory: Path, stamp: str) -> str:
    """``stamp``, or ``<stamp>.N`` after one of the same second: a name that sorts after
    every existing one, so the newest stays last even when the clock stepped back."""
    taken = [(m[1], int(m[2] or 0)) for m in map(_NAME.fullmatch, os.listdir(directory)) if m]
    if not taken or stamp > max(taken)[0]:
        return stamp
    last, number = max(taken)
    return f"{last}.{number + 1}"


def _mirror(named: Sequence[str], root: Path) -> list[str]:
    """Copy each live named path to ``root/<path>``; return the paths that do not exist."""
    absent: list[str] = []
    for path in named:
        st = _lstat(path)
        if st is None:
            absent.append(path)
            continue
        if _kind(st.st_mode) is None:
            raise _special(path, st.st_mode)
        target = root / _rel(path)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _copy_entry(path, str(target), st)
        parent = target.parent
        while True:
            fsync_dir(parent)
            if parent == root:
                break
            parent = parent.parent
    return absent


def _copy_entry(source: str, target: str, st: os.stat_result) -> None:
    kind = _kind(st.st_mode)
    if kind == "file":
        _copy_file(source, target)
    elif kind == "link":
        os.symlink(os.readlink(source), target)
        os.chown(target, st.st_uid, st.st_gid, follow_symlinks=False)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    elif kind == "dir":
        os.mkdir(target, 0o700)
        for child in sorted(os.listdir(source)):
            child_st = _lstat(os.path.join(source, child))
            if child_st is not None and _kind(child_st.st_mode) is not None:
                _copy_entry(os.path.join(source, child), os.path.join(target, child), child_st)
        fd = os.open(target, _OPEN_DIR)
        try:
            _set_meta(fd, st)
            os.fsync(fd)
        finally:
            os.close(fd)


def _copy_file(source: str, target: str) -> None:
    """Copy one regular file with its mode, owner and times, fsync'd; ``target`` is new."""
    source_fd = _open_regular(source)
    try:
        create_synced(target, lambda fd: _copy_into(source_fd, fd))
    finally:
        os.close(source_fd)
