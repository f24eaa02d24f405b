"""The safe tree writer: puts a mirrored tree over the live named paths. Both trees are
walked from ``/`` by directory descriptor with ``O_NOFOLLOW`` in every component (see
`supervisor.restore.walk`); each file is written to a temporary name in its directory,
fsync'd and renamed over; a symlink is written as a symlink, never through; entries that
already match (data, mode, owner, xattrs) are left alone.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat

from supervisor.fsutil import removed_on_error, replace_at, temp_name
from supervisor.restore.files import _reason, _rel, _special
from supervisor.restore.walk import (
    OPEN_DIR,
    Entry,
    copy_data,
    entry_xattrs,
    kind_of,
    link_xattrs,
    lstat_at,
    open_below,
    open_dir,
    open_entry,
    opened,
    read_xattrs,
    remove_tree,
    same_data,
    set_link_meta,
    set_meta,
    set_xattrs,
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


def _install(source_fd: int, source: str, path: str, written: list[str]) -> None:
    """Make the live ``path`` equal ``<source>/<path>`` (``source_fd`` is its root)."""
    parent, name = posixpath.split(path)
    try:
        live_parent = open_dir(parent)
    except OSError as exc:
        raise _StepFailed(parent, exc) from exc
    with opened(live_parent):
        try:
            source_parent = open_below(source_fd, _rel(parent), source)
        except OSError as exc:
            raise _StepFailed(os.path.join(source, _rel(parent)), exc) from exc
        with opened(source_parent):
            _sync(source_parent, name, live_parent, name, path, written)
        try:
            os.fsync(live_parent)
        except OSError as exc:
            raise _StepFailed(parent, exc) from exc


def _uninstall(path: str, written: list[str]) -> None:
    """Remove the live ``path`` (a rollback to "did not exist")."""
    parent, name = posixpath.split(path)
    try:
        parent_fd = open_dir(parent)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise _StepFailed(parent, exc) from exc
    with opened(parent_fd):
        try:
            if lstat_at(parent_fd, name) is not None:
                remove_tree(parent_fd, name)
                written.append(path)
                os.fsync(parent_fd)
        except OSError as exc:
            raise _StepFailed(path, exc) from exc


def _sync(
    source_dir: int, source_name: str, dir_fd: int, name: str, live: str, written: list[str]
) -> None:
    try:
        _sync_entry(source_dir, source_name, dir_fd, name, live, written)
    except OSError as exc:
        raise _StepFailed(live, exc) from exc


def _sync_entry(
    source_dir: int, source_name: str, dir_fd: int, name: str, live: str, written: list[str]
) -> None:
    entry = open_entry(source_dir, source_name, f"(source of {live})")
    if entry is None:
        st = lstat_at(source_dir, source_name)
        if st is not None:
            raise _special(f"the source of {live}", st.st_mode)
        raise OSError(errno.ENOENT, "vanished from the source", live)
    with entry:
        have = lstat_at(dir_fd, name)
        if entry.kind == "dir":
            _sync_dir(entry, dir_fd, name, live, have, written)
        elif entry.kind == "link":
            want = entry_xattrs(entry)
            if (
                have is not None
                and stat.S_ISLNK(have.st_mode)
                and (have.st_uid, have.st_gid) == (entry.st.st_uid, entry.st.st_gid)
                and os.readlink(name, dir_fd=dir_fd) == entry.target
                and link_xattrs(dir_fd, name) == want
            ):
                return
            temp = temp_name(name)
            os.symlink(entry.target, temp, dir_fd=dir_fd)
            with removed_on_error(temp, dir_fd=dir_fd):
                set_link_meta(dir_fd, temp, entry.st, want)
                _replace(dir_fd, temp, name, have)
            written.append(live)
        else:
            if _same_file(entry, dir_fd, name, have):
                return
            _put_file(entry, dir_fd, name, have)
            written.append(live)


def _same_file(entry: Entry, dir_fd: int, name: str, have: os.stat_result | None) -> bool:
    if have is None or not stat.S_ISREG(have.st_mode):
        return False
    want = entry.st
    if (have.st_mode, have.st_uid, have.st_gid) != (want.st_mode, want.st_uid, want.st_gid):
        return False
    live = open_entry(dir_fd, name, name)
    if live is None:
        return False
    with live:
        if live.kind != "file" or entry_xattrs(live) != entry_xattrs(entry):
            return False
        assert live.fd is not None and entry.fd is not None
        return same_data(entry.fd, live.fd)


def _put_file(entry: Entry, dir_fd: int, name: str, have: os.stat_result | None) -> None:
    """Write the source file to a temporary name beside ``name``, fsync it, rename it over."""
    source = entry.fd
    assert source is not None

    def fill(fd: int) -> None:
        copy_data(source, fd)
        set_meta(fd, entry.st, entry_xattrs(entry))

    replace_at(
        dir_fd,
        name,
        fill,
        rename=lambda dir_fd, temp, name: _replace(dir_fd, temp, name, have),
    )


def _replace(dir_fd: int, temp: str, name: str, have: os.stat_result | None) -> None:
    current = lstat_at(dir_fd, name)
    if current is not None and stat.S_ISDIR(current.st_mode):
        remove_tree(dir_fd, name)  # a file or symlink cannot be renamed over it
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _sync_dir(
    entry: Entry,
    dir_fd: int,
    name: str,
    live: str,
    have: os.stat_result | None,
    written: list[str],
) -> None:
    """Make the live directory match: each entry synced, extra entries removed (special
    files are left alone), then its owner, xattrs, mode and (if anything changed) times."""
    assert entry.fd is not None
    want = entry.st
    changed = False
    if have is not None and not stat.S_ISDIR(have.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        have = None
    if have is None:
        os.mkdir(name, 0o700, dir_fd=dir_fd)
        changed = True
    with opened(os.open(name, OPEN_DIR, dir_fd=dir_fd)) as fd:
        before = len(written)
        wanted = sorted(os.listdir(entry.fd))
        for child in wanted:
            _sync(entry.fd, child, fd, child, f"{live}/{child}", written)
        keep = set(wanted)
        for child in sorted(os.listdir(fd)):
            child_st = lstat_at(fd, child)
            if child in keep or child_st is None or kind_of(child_st.st_mode) is None:
                continue
            try:
                remove_tree(fd, child)
            except OSError as exc:
                raise _StepFailed(f"{live}/{child}", exc) from exc
            written.append(f"{live}/{child}")
        changed = changed or len(written) > before
        current = os.fstat(fd)
        if (current.st_uid, current.st_gid) != (want.st_uid, want.st_gid):
            os.fchown(fd, want.st_uid, want.st_gid)
            changed = True
        if read_xattrs(fd) != entry_xattrs(entry):
            set_xattrs(fd, entry_xattrs(entry))
            changed = True
        if stat.S_IMODE(os.fstat(fd).st_mode) != stat.S_IMODE(want.st_mode):
            os.fchmod(fd, stat.S_IMODE(want.st_mode))
            changed = True
        if changed:
            os.utime(fd, ns=(want.st_atime_ns, want.st_mtime_ns))
            if len(written) == before:
                written.append(live)
        os.fsync(fd)
