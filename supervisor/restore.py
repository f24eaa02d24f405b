"""Snapshots of a unit's configuration, and the restore of a known-good one.

A snapshot, and the backup a restore takes before it writes, is a directory that
mirrors the policy's paths: ``DIR/<UTC time>/<path without the leading />`` plus a
``manifest.json`` (paths, fingerprint, time, paths that were absent). Files keep
their modes, owners and modification times; symlinks stay symlinks; special files
(fifos, sockets, devices) are neither copied nor fingerprinted nor removed. Each one
is built in a ``.tmp-*`` directory beside it, fsync'd, and renamed into place, so a
directory with a timestamp name is always complete; leftovers of a crash are removed
the next time, under a lock on ``DIR/.lock``.

A restore never writes outside the named paths and never through a symlink inside
them: it walks the live tree by directory descriptor with ``O_NOFOLLOW``, writes each
file to a temporary name in its own directory, fsyncs it, renames it over and fsyncs
the directory. An entry whose content, mode and owner already match is left alone.
The parent directories of a named path are the host's: they are followed as they are
and never created.

Everything here is synchronous and blocks on disk and on the validator: the daemon
calls it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import posixpath
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.checks.command import MINIMAL_PATH
from supervisor.errors import SupervisorError

__all__ = [
    "MANIFEST",
    "OUTPUT_TAIL",
    "RestoreError",
    "RestoreResult",
    "check_paths",
    "fingerprint",
    "latest_snapshot",
    "restore",
    "take_snapshot",
]

MANIFEST = "manifest.json"
"""Name of the manifest at the top of a snapshot or backup (so ``/manifest.json`` cannot
be a named path)."""
OUTPUT_TAIL = 2048
"""Characters of a failed validator's output (its end, stdout and stderr merged, lines
joined with " / ") kept in the detail."""
MAX_SYMLINK_HOPS = 40
"""Symlinks followed while resolving one target before it counts as a loop (Linux's limit)."""

_NAME = re.compile(r"(\d{8}T\d{6}Z)(?:\.(\d+))?")
_LOCK = ".lock"
_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_KILL_WAIT = 5.0


class RestoreError(SupervisorError):
    """A snapshot, backup or restore was refused or could not start; nothing live was
    written. The message names the path and why."""


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did. After ``ok=False`` the live files are as they were before
    (rolled back from ``backup``), unless ``detail`` says the rollback failed too."""

    ok: bool
    detail: str
    """One line for a person; after a failed validation it holds the validator's output."""
    backup: Path | None
    """Where the live files were copied before anything was written."""
    written: tuple[str, ...]
    """The live paths the restore created, replaced or removed (before any rollback)."""


class _StepFailed(Exception):
    """An OSError while writing one live path, with that path (dir_fd calls name only
    the last component)."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(path, error)
        self.path = path
        self.error = error

    def __str__(self) -> str:
        return f"{self.path}: {_reason(self.error)}"


# -- names and paths ---------------------------------------------------------------------


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _os_message(exc: OSError) -> str:
    where = exc.filename
    return f"{os.fsdecode(where)}: {_reason(exc)}" if where is not None else _reason(exc)


def _rel(path: str) -> str:
    return path.lstrip("/")


def _inside(path: str, named: Sequence[str]) -> bool:
    return any(path == name or path.startswith(name + "/") for name in named)


def _named(paths: Sequence[str]) -> tuple[str, ...]:
    """The named paths, sorted, after refusing what cannot be mirrored safely."""
    if isinstance(paths, str):
        raise RestoreError(f"paths must be a list of paths, not the string {paths!r}")
    if not paths:
        raise RestoreError("no paths named: nothing to snapshot or restore")
    for path in paths:
        if "\0" in path:
            raise RestoreError(f"path {path!r} contains a NUL byte")
        if not path.startswith("/"):
            raise RestoreError(f"path {path!r} is not absolute; start it with /")
        if posixpath.normpath(path) != path or path.startswith("//"):
            raise RestoreError(
                f"path {path} is not in normal form ('..', '.', '//' or a trailing /); "
                f"name the path itself, e.g. {posixpath.normpath('/' + path.lstrip('/'))}"
            )
        if path == "/":
            raise RestoreError("path / cannot be restored: name the files and directories")
        if path == "/" + MANIFEST:
            raise RestoreError(f"path {path} is reserved for the snapshot's manifest")
    named = tuple(sorted(paths))
    for twice in sorted({path for path in named if named.count(path) > 1}):
        raise RestoreError(f"path {twice} is named twice")
    for outer in named:
        for inner in named:
            if inner.startswith(outer + "/"):
                raise RestoreError(f"path {inner} lies inside {outer}: name only {outer}")
    return named


def _refuse_inside(directory: Path, named: Sequence[str], what: str) -> None:
    real = os.path.realpath(directory)
    places = [*named, *(_physical(name) for name in named)]
    if _inside(real, places) or _inside(os.path.abspath(directory), places):
        raise RestoreError(f"{what} {directory} lies inside the paths it would copy ({real})")


def _stamp(now: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def _lstat(path: str) -> os.stat_result | None:
    """lstat, or None for a path that does not exist (or whose parent is not a directory)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _kind(mode: int) -> str | None:
    """'dir', 'link', 'file', or None for what is never copied (fifo, socket, device)."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISREG(mode):
        return "file"
    return None


def _special(path: str, mode: int) -> RestoreError:
    return RestoreError(
        f"{path} is not a regular file, directory or symlink (mode {stat.filemode(mode)}): "
        "only those are snapshotted and restored"
    )


# -- low-level file operations -----------------------------------------------------------


def _open_regular(path: str, dir_fd: int | None = None) -> int:
    """Open a regular file for reading without following a symlink or blocking on a fifo."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _copy_data(source_fd: int, target_fd: int) -> None:
    while chunk := os.read(source_fd, _CHUNK):
        _write_all(target_fd, chunk)


def _same_data(first_fd: int, second_fd: int) -> bool:
    if os.fstat(first_fd).st_size != os.fstat(second_fd).st_size:
        return False
    while True:
        one = os.read(first_fd, _CHUNK)
        if one != os.read(second_fd, len(one) or 1):
            return False
        if not one:
            return True


def _set_meta(fd: int, want: os.stat_result) -> None:
    """Owner, then mode (chown clears set-id bits), then times; and fsync."""
    have = os.fstat(fd)
    if (have.st_uid, have.st_gid) != (want.st_uid, want.st_gid):
        os.fchown(fd, want.st_uid, want.st_gid)
    os.fchmod(fd, stat.S_IMODE(want.st_mode))
    os.utime(fd, ns=(want.st_atime_ns, want.st_mtime_ns))
    os.fsync(fd)


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(name: str) -> str:
    return f".{name[:200]}.{secrets.token_hex(6)}.hs-tmp"


# -- fingerprint ---------------------------------------------------------------------------


def fingerprint(paths: Sequence[str]) -> str:
    """A digest of the named files and directory trees: relative names, contents, modes,
    owners, symlink targets; a missing path is part of the digest too. Modification times
    are not, nor special files. Used to snapshot only when something changed.

    Raises RestoreError for a bad path list or a file that cannot be read.
    """
    named = _named(paths)
    try:
        return _fingerprint_under("/", named)
    except OSError as exc:
        raise RestoreError(f"cannot fingerprint {_os_message(exc)}") from exc


def _fingerprint_under(root: str, named: Sequence[str]) -> str:
    """The fingerprint of ``named`` as mirrored under ``root`` ("/" for the live tree)."""
    digest = hashlib.sha256()
    for path in named:
        for record in _records(os.path.join(root, _rel(path)), path, top=True):
            digest.update(json.dumps(record).encode("ascii") + b"\n")
    return "sha256:" + digest.hexdigest()


def _records(real: str, name: str, *, top: bool) -> Iterator[list[object]]:
    st = _lstat(real)
    if st is None:
        yield [name, "missing"]
        return
    kind = _kind(st.st_mode)
    if kind is None:
        if top:
            raise _special(name, st.st_mode)
        return
    meta: list[object] = [name, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
    if kind == "link":
        yield [*meta, os.readlink(real)]
    elif kind == "file":
        yield [*meta, _file_digest(real)]
    else:
        yield meta
        for child in sorted(os.listdir(real)):
            yield from _records(os.path.join(real, child), f"{name}/{child}", top=False)


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    fd = _open_regular(path)
    try:
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()


# -- snapshots and backups -------------------------------------------------------------------


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
        _fsync_dir(directory)


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
        fd = os.open(temp / MANIFEST, _CREATE, 0o600)
        try:
            _write_all(fd, json.dumps(manifest, indent=2).encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(temp)
        final = directory / _next_name(directory, stamp)
        os.rename(temp, final)
        _fsync_dir(directory)
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
            _fsync_dir(parent)
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
        finally:
            os.close(fd)


def _copy_file(source: str, target: str) -> None:
    """Copy one regular file with its mode, owner and times, fsync'd; ``target`` is new."""
    source_fd = _open_regular(source)
    try:
        target_fd = os.open(target, _CREATE, 0o600)
        try:
            _copy_data(source_fd, target_fd)
            _set_meta(target_fd, os.fstat(source_fd))
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


# -- checks before a restore ---------------------------------------------------------------


def check_paths(paths: Sequence[str], source: Path) -> None:
    """Refuse (RestoreError) what a restore must never do.

    - a named path that is not absolute and normalized, is ``/``, or is named twice or
      inside another named path;
    - a source that is not a directory, or that lies inside a named path;
    - a source entry reached through a symlinked directory of the source (it would read,
      and then write, something other than the mirror);
    - a source entry that would write outside the named paths (a name such as ``..``);
    - a fifo, socket or device in the source;
    - a symlink in the source whose target resolves outside the named paths, either in the
      source (read as if it were /) or in the live tree once restored (following the live
      host's symlinks outside the named paths, and the source's inside them); a target
      that climbs above / or loops is refused too.

    A named path missing from the source is not checked here; ``restore`` refuses it.
    """
    named = _named(paths)
    root = os.fspath(source)
    if not os.path.isdir(root):
        raise RestoreError(f"restore source {root} is not a directory")
    _refuse_inside(source, named, "restore source")
    for path in named:
        entry = _source_entry(root, path)
        if entry is not None:
            _check_tree(root, named, entry, path, "")


def _source_entry(root: str, path: str) -> str | None:
    """``root/<path>`` if it exists, after checking that no directory on the way is a symlink."""
    here = root
    for part in _rel(path).split("/")[:-1]:
        here = os.path.join(here, part)
        st = _lstat(here)
        if st is None:
            return None
        if stat.S_ISLNK(st.st_mode):
            raise RestoreError(
                f"{here} is a symlink: a restore source must mirror {path} with real directories"
            )
        if not stat.S_ISDIR(st.st_mode):
            return None
    entry = os.path.join(root, _rel(path))
    return entry if _lstat(entry) is not None else None


def _check_tree(root: str, named: Sequence[str], real: str, top: str, below: str) -> None:
    """Check the source entry ``real``, which mirrors the live ``top + below``."""
    st = os.lstat(real)
    kind = _kind(st.st_mode)
    if kind is None:
        raise _special(real, st.st_mode)
    if kind == "link":
        _check_link(root, named, real, top, below, os.readlink(real))
    elif kind == "dir":
        for child in sorted(os.listdir(real)):
            if child in ("", ".", "..") or "/" in child:  # pragma: no cover - never from listdir
                raise RestoreError(f"{real} holds an entry {child!r} that would write outside it")
            _check_tree(root, named, os.path.join(real, child), top, f"{below}/{child}")


def _physical(path: str) -> str:
    """``path`` with the live host's symlinks in its parent directories resolved."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def _check_link(
    root: str, named: Sequence[str], real: str, top: str, below: str, target: str
) -> None:
    """Refuse the source symlink ``real`` (restored at ``top + below``) unless ``target``
    resolves inside the named paths both in the source and in the live tree.

    In the source the named paths are where the mirror has them, and every component is
    looked up in the source. In the live tree they are where the host's own symlinks put
    them; a component inside them is looked up in the source (that is what the restore
    leaves there), any other on the live host.
    """

    def in_source(path: str) -> str | None:
        return _readlink_or_none(os.path.join(root, _rel(path)))

    views: tuple[tuple[str, dict[str, str], Callable[[str], str | None]], ...] = (
        ("in the source", {name: name for name in named}, in_source),
        ("in the live tree", {_physical(name): name for name in named}, _readlink_or_none),
    )
    for where, places, outside in views:
        link = next(place for place, name in places.items() if name == top) + below
        resolved = _resolve(link, target, _lookup(root, places, outside))
        if resolved is None or not _inside(resolved, list(places)):
            how = "does not resolve (a loop, or it climbs above /)"
            if resolved is not None:
                how = f"resolves to {resolved}"
            raise RestoreError(
                f"{real} is a symlink to {target!r}, which {how} {where}: outside "
                f"{', '.join(named)}; refused (name the target's path in the policy too)"
            )


def _lookup(
    root: str, places: dict[str, str], outside: Callable[[str], str | None]
) -> Callable[[str], str | None]:
    """A symlink lookup that reads the source for a path inside ``places`` (where each named
    path is, to its name), and calls ``outside`` for any other."""

    def lookup(path: str) -> str | None:
        for place, name in places.items():
            if path == place or path.startswith(place + "/"):
                return _readlink_or_none(os.path.join(root, _rel(name)) + path[len(place) :])
        return outside(path)

    return lookup


def _readlink_or_none(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # not a symlink, missing, or unreadable: not followed
        return None


def _resolve(link: str, target: str, lookup: Callable[[str], str | None]) -> str | None:
    """Where the symlink at absolute ``link`` with ``target`` leads, resolving every
    component with ``lookup`` (a path's symlink target, or None: a directory, a file, or
    nothing, kept as it is). None for a loop or a ``..`` above /."""
    parts = [*posixpath.dirname(link).split("/"), *target.split("/")]
    if target.startswith("/"):
        parts = target.split("/")
    pending = list(reversed(parts))
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        here = "/" + "/".join([*resolved, part])
        next_target = lookup(here)
        if next_target is None:
            resolved.append(part)
            continue
        hops += 1
        if hops > MAX_SYMLINK_HOPS:
            return None
        if next_target.startswith("/"):
            resolved = []
        pending.extend(reversed(next_target.split("/")))
    return "/" + "/".join(resolved)


# -- writing the live tree -------------------------------------------------------------------


def _install(root: str, path: str, written: list[str]) -> None:
    """Make the live ``path`` equal ``root/<path>``."""
    parent, name = posixpath.split(path)
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _StepFailed(parent, exc) from exc
    try:
        _sync(os.path.join(root, _rel(path)), parent_fd, name, path, written)
        try:
            os.fsync(parent_fd)
        except OSError as exc:
            raise _StepFailed(parent, exc) from exc
    finally:
        os.close(parent_fd)


def _uninstall(path: str, written: list[str]) -> None:
    """Remove the live ``path`` (a rollback to "did not exist")."""
    parent, name = posixpath.split(path)
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _StepFailed(parent, exc) from exc
    try:
        have = _lstat_at(parent_fd, name)
        if have is not None:
            _remove(parent_fd, name, have)
            written.append(path)
            os.fsync(parent_fd)
    except OSError as exc:
        raise _StepFailed(path, exc) from exc
    finally:
        os.close(parent_fd)


def _remove(dir_fd: int, name: str, have: os.stat_result) -> None:
    if stat.S_ISDIR(have.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _sync(source: str, dir_fd: int, name: str, live: str, written: list[str]) -> None:
    try:
        _sync_entry(source, dir_fd, name, live, written)
    except OSError as exc:
        raise _StepFailed(live, exc) from exc


def _sync_entry(source: str, dir_fd: int, name: str, live: str, written: list[str]) -> None:
    want = os.lstat(source)
    have = _lstat_at(dir_fd, name)
    kind = _kind(want.st_mode)
    if kind == "dir":
        _sync_dir(source, dir_fd, name, live, want, have, written)
    elif kind == "link":
        target = os.readlink(source)
        if (
            have is not None
            and stat.S_ISLNK(have.st_mode)
            and (have.st_uid, have.st_gid) == (want.st_uid, want.st_gid)
            and os.readlink(name, dir_fd=dir_fd) == target
        ):
            return
        temp = _temp_name(name)
        os.symlink(target, temp, dir_fd=dir_fd)
        try:
            os.chown(temp, want.st_uid, want.st_gid, dir_fd=dir_fd, follow_symlinks=False)
            os.utime(
                temp, ns=(want.st_atime_ns, want.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False
            )
            _replace(dir_fd, temp, name, have)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
        written.append(live)
    elif kind == "file":
        if _same_file(source, want, dir_fd, name, have):
            return
        _put_file(source, dir_fd, name, have)
        written.append(live)
    else:
        raise _special(source, want.st_mode)


def _same_file(
    source: str, want: os.stat_result, dir_fd: int, name: str, have: os.stat_result | None
) -> bool:
    if have is None or not stat.S_ISREG(have.st_mode):
        return False
    if (have.st_mode, have.st_uid, have.st_gid) != (want.st_mode, want.st_uid, want.st_gid):
        return False
    first = _open_regular(source)
    try:
        second = _open_regular(name, dir_fd=dir_fd)
        try:
            return _same_data(first, second)
        finally:
            os.close(second)
    finally:
        os.close(first)


def _put_file(source: str, dir_fd: int, name: str, have: os.stat_result | None) -> None:
    """Write ``source`` to a temporary name beside ``name``, fsync it, rename it over."""
    source_fd = _open_regular(source)
    try:
        temp = _temp_name(name)
        temp_fd = os.open(temp, _CREATE, 0o600, dir_fd=dir_fd)
        try:
            try:
                _copy_data(source_fd, temp_fd)
                _set_meta(temp_fd, os.fstat(source_fd))
            finally:
                os.close(temp_fd)
            _replace(dir_fd, temp, name, have)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
            raise
    finally:
        os.close(source_fd)


def _replace(dir_fd: int, temp: str, name: str, have: os.stat_result | None) -> None:
    if have is not None and stat.S_ISDIR(have.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # a file or symlink cannot be renamed over it
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _sync_dir(
    source: str,
    dir_fd: int,
    name: str,
    live: str,
    want: os.stat_result,
    have: os.stat_result | None,
    written: list[str],
) -> None:
    """Make the live directory match: each entry synced, extra entries removed (special
    files are left alone), then its mode, owner and (if anything changed) times."""
    changed = False
    if have is not None and not stat.S_ISDIR(have.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        have = None
    if have is None:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        changed = True
    fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    try:
        before = len(written)
        wanted = sorted(os.listdir(source))
        for child in wanted:
            mode = os.lstat(os.path.join(source, child)).st_mode
            if _kind(mode) is None:
                raise _special(os.path.join(source, child), mode)
            _sync(os.path.join(source, child), fd, child, f"{live}/{child}", written)
        keep = set(wanted)
        for child in sorted(os.listdir(fd)):
            child_st = _lstat_at(fd, child)
            if child in keep or child_st is None or _kind(child_st.st_mode) is None:
                continue
            try:
                _remove(fd, child, child_st)
            except OSError as exc:
                raise _StepFailed(f"{live}/{child}", exc) from exc
            written.append(f"{live}/{child}")
        changed = changed or len(written) > before
        current = os.fstat(fd)
        if (current.st_uid, current.st_gid) != (want.st_uid, want.st_gid):
            os.fchown(fd, want.st_uid, want.st_gid)
            changed = True
        if stat.S_IMODE(current.st_mode) != stat.S_IMODE(want.st_mode):
            os.fchmod(fd, stat.S_IMODE(want.st_mode))
            changed = True
        if changed:
            os.utime(fd, ns=(want.st_atime_ns, want.st_mtime_ns))
            if len(written) == before:
                written.append(live)
        os.fsync(fd)
    finally:
        os.close(fd)


# -- validation ---------------------------------------------------------------------------


def _validate(argv: Sequence[str], timeout: float) -> str | None:
    """Run the validator; None when it exits 0, else why not, with its output's tail."""
    command = shlex.join(argv)
    program = argv[0]
    with tempfile.TemporaryFile() as output:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd="/",
                env={"PATH": MINIMAL_PATH},
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            if os.path.lexists(program):
                return f"validator {command} could not start: {_reason(exc)} (its interpreter?)"
            return f"validator {program} does not exist"
        except PermissionError:
            return f"validator {program} is not an executable file"
        except OSError as exc:
            return f"validator {command} could not start: {_reason(exc)}"
        timed_out = not _wait_exit(process.pid, timeout)
        # The leader is still unreaped here, so its process group id cannot have been reused.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(_KILL_WAIT)
        text = _tail(output)
    code = process.returncode
    if timed_out:
        why = f"validator {command} timed out after {timeout:g}s"
    elif code == 0:
        return None
    elif code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = f"validator {command} was killed by {name}"
    else:
        why = f"validator {command} exited {code}"
    return f"{why}: {text}" if text else f"{why} with no output"


def _wait_exit(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to exit without reaping it; False on timeout."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.05)
    return True


def _tail(output: Any) -> str:
    """The end of what was written to ``output``, on one line of at most OUTPUT_TAIL characters."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_TAIL))
    text = output.read().decode("utf-8", "replace")
    line = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    if size > OUTPUT_TAIL or len(line) > OUTPUT_TAIL:
        line = "..." + line[-(OUTPUT_TAIL - 3) :]
    return line


# -- restore -------------------------------------------------------------------------------


def restore(
    paths: Sequence[str],
    source: Path,
    backups_dir: Path,
    now: float,
    validate_argv: Sequence[str] | None,
    validate_timeout: float = 60.0,
) -> RestoreResult:
    """Put the named paths back from ``source`` (a snapshot, or a directory of defaults
    mirroring them), after copying the live ones to ``backups_dir/<UTC time>/``.

    Raises RestoreError, having written nothing live, when ``check_paths`` refuses, a named
    path is missing from the source, or the backup cannot be made. After the backup
    exists it never raises: a failure to write, or a validator (run without a shell,
    stdin /dev/null, ``validate_timeout``) that does not exit 0, puts the backup back and
    returns ``ok=False``. The caller restarts the unit after ``ok=True``.
    """
    check_paths(paths, source)
    named = _named(paths)
    root = os.fspath(source)
    if validate_argv is not None and not validate_argv:
        raise RestoreError("the validate command is empty: nothing restored")
    for path in named:
        if _lstat(os.path.join(root, _rel(path))) is None:
            raise RestoreError(f"{path} is missing from {root}: nothing restored")
    _refuse_inside(backups_dir, named, "backup directory")
    try:
        with _locked(backups_dir):
            backup, absent = _publish(named, backups_dir, now)
    except OSError as exc:
        raise RestoreError(
            f"cannot back up {', '.join(named)} into {backups_dir}: {_os_message(exc)}; "
            "nothing restored"
        ) from exc

    written: list[str] = []
    what = f"{', '.join(named)} from {root}"
    try:
        for path in named:
            _install(root, path, written)
    except _StepFailed as exc:
        return _roll_back(named, backup, absent, written, f"restore of {what} failed at {exc}")
    except Exception as exc:  # never raise once the backup exists: roll back and say why
        why = f"{type(exc).__name__}: {exc}"
        return _roll_back(named, backup, absent, written, f"restore of {what} failed: {why}")
    if validate_argv is not None:
        try:
            failure = _validate(validate_argv, validate_timeout)
        except Exception as exc:  # e.g. no temporary file for its output: still roll back
            failure = f"validator {validate_argv[0]} could not run: {type(exc).__name__}: {exc}"
        if failure is not None:
            return _roll_back(named, backup, absent, written, f"validation failed: {failure}")
    changed = f"{len(written)} entries written" if written else "nothing differed"
    checked = f", validated by {validate_argv[0]}" if validate_argv is not None else ""
    return RestoreResult(
        ok=True,
        detail=f"restored {what} ({changed}{checked}); backup in {backup}",
        backup=backup,
        written=tuple(written),
    )


def _roll_back(
    named: Sequence[str], backup: Path, absent: frozenset[str], written: list[str], why: str
) -> RestoreResult:
    """Put the backup back (removing what did not exist) and report ``why``."""
    undone: list[str] = []
    try:
        for path in named:
            if path in absent:
                _uninstall(path, undone)
            else:
                _install(str(backup), path, undone)
    except Exception as exc:  # report, never raise: the live files need a person now
        detail = (
            f"{why}; rolling back failed too ({exc}): "
            f"the files as they were are in {backup}, put them back by hand"
        )
    else:
        detail = f"{why}; rolled back from {backup}"
    return RestoreResult(ok=False, detail=detail, backup=backup, written=tuple(written))
