"""The safe tree writer: puts a mirrored tree over the live named paths by directory
descriptor with ``O_NOFOLLOW``, each file to a temporary name, fsync'd and renamed
over; entries that already match are left alone.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat

from supervisor.fsutil import removed_on_error, replace_at, temp_name
from supervisor.restore.files import (
    _CHUNK,
    _OPEN_DIR,
    _copy_into,
    _kind,
    _open_regular,
    _reason,
    _rel,
    _special,
)


class _StepFailed(Exception):
    """An OSError while writing one live path, with that path (dir_fd calls name only
    the last component)."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(path, error)
        self.path = path
        self.error = error

    def __str__(self) -> str:
        return f"{self.path}: {_reason(self.error)}"


def _lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _same_data(first_fd: int, second_fd: int) -> bool:
    if os.fstat(first_fd).st_size != os.fstat(second_fd).st_size:
        return False
    while True:
        one = os.read(first_fd, _CHUNK)
        if one != os.read(second_fd, len(one) or 1):
            return False
        if not one:
            return True


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
        temp = temp_name(name)
        os.symlink(target, temp, dir_fd=dir_fd)
        with removed_on_error(temp, dir_fd=dir_fd):
            os.chown(temp, want.st_uid, want.st_gid, dir_fd=dir_fd, follow_symlinks=False)
            os.utime(
                temp, ns=(want.st_atime_ns, want.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False
            )
            _replace(dir_fd, temp, name, have)
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
        replace_at(
            dir_fd,
            name,
            lambda fd: _copy_into(source_fd, fd),
            rename=lambda dir_fd, temp, name: _replace(dir_fd, temp, name, have),
        )
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
