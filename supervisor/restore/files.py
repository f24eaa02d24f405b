"""Names, paths and low-level file operations shared by the snapshots, the checks and
the tree writer. Names with a leading underscore are internal to `supervisor.restore`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

from supervisor.errors import SupervisorError
from supervisor.fsutil import write_all

__all__ = ["MANIFEST", "RestoreError"]


MANIFEST = "manifest.json"
"""Name of the manifest at the top of a snapshot or backup (so ``/manifest.json`` cannot
be a named path)."""


_CHUNK = 1 << 20
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class RestoreError(SupervisorError):
    """A snapshot, backup or restore was refused or could not start; nothing live was
    written. The message names the path and why."""


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


def _lstat(path: str) -> os.stat_result | None:
    """lstat, or None for a path that does not exist (or whose parent is not a directory)."""
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
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


def _open_regular(path: str, dir_fd: int | None = None) -> int:
    """Open a regular file for reading without following a symlink or blocking on a fifo."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", path)
    return fd


def _copy_into(source_fd: int, target_fd: int) -> None:
    """The data of a regular file, then its owner, mode and times, onto a new file."""
    while chunk := os.read(source_fd, _CHUNK):
        write_all(target_fd, chunk)
    _set_meta(target_fd, os.fstat(source_fd))


def _set_meta(fd: int, want: os.stat_result) -> None:
    """Owner, then mode (chown clears set-id bits), then times."""
    have = os.fstat(fd)
    if (have.st_uid, have.st_gid) != (want.st_uid, want.st_gid):
        os.fchown(fd, want.st_uid, want.st_gid)
    os.fchmod(fd, stat.S_IMODE(want.st_mode))
    os.utime(fd, ns=(want.st_atime_ns, want.st_mtime_ns))


def _physical(path: str) -> str:
    """``path`` with the live host's symlinks in its parent directories resolved."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
