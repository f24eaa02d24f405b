"""Paths walked from a trusted root by directory descriptor, never following a symlink,
and the copy of one entry with everything that makes it the same file.

**The walk.** Every path a snapshot, backup, restore or rollback reads or writes is
opened from ``open("/", O_PATH|O_DIRECTORY)``, one component at a time, each with
``openat(parent, name, O_PATH|O_DIRECTORY|O_NOFOLLOW)`` (the last one ``O_RDONLY`` so
it can be listed and fsync'd). A component that is a symlink fails (``ELOOP`` or
``ENOTDIR``) and is reported by name; nothing is ever resolved through one. Below the
named paths, every entry is opened relative to its directory's descriptor with
``O_NOFOLLOW`` too, so swapping a directory for a symlink while a copy runs makes that
entry fail or be copied as the symlink it now is, never followed.

Why not ``openat2(RESOLVE_NO_SYMLINKS)``: Python's ``os`` has no wrapper, a raw
``syscall(437, ...)`` through ctypes is per-architecture, and kernels before 5.6 (and
seccomp filters in many containers, which answer ENOSYS) need the per-component walk
anyway. One code path that works everywhere, and that can name the component that is a
symlink, is worth the few extra system calls.

**The copy.** Data is copied extent by extent (``SEEK_DATA``/``SEEK_HOLE``), so a sparse
file stays sparse; then the owner, the extended attributes (``user.*``, ``security.*``
such as SELinux labels and file capabilities, ``trusted.*``, and POSIX ACLs as
``system.posix_acl_*``), the mode and the times, in that order: ``chown`` clears file
capabilities and set-id bits, and the mode must come after an ACL, whose mask it sets.
A symlink's own xattrs are read and written through ``/proc/self/fd/<dir>/<name>`` with
``follow_symlinks=False`` (Python has no ``*xattrat``); without /proc a symlink's xattrs
are not copied.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from supervisor.fsutil import write_all

__all__ = [
    "OPEN_DIR",
    "Entry",
    "copy_data",
    "kind_of",
    "lstat_at",
    "open_below",
    "open_dir",
    "open_entry",
    "read_xattrs",
    "remove_tree",
    "same_data",
    "set_meta",
    "set_xattrs",
]

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_RETRIES = 5
_SYMLINK = "is a symlink, and no symlink is followed on the way to a path read or written as root"
_PROC_FD = "/proc/self/fd"


def kind_of(mode: int) -> str | None:
    """'dir', 'link', 'file', or None for what is never copied (fifo, socket, device)."""
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISREG(mode):
        return "file"
    return None


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW)``, or None when it does not exist."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _not_a_directory(dir_fd: int, name: str, shown: str) -> OSError:
    st = lstat_at(dir_fd, name)
    if st is not None and stat.S_ISLNK(st.st_mode):
        return OSError(errno.ELOOP, _SYMLINK, shown)
    return OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), shown)


def _walk(start_fd: int, parts: Sequence[str], shown: str, create: int | None) -> int:
    """Open the directory ``parts`` below ``start_fd`` (not closed) for reading, one
    component at a time with O_NOFOLLOW; ``create`` is the mode of missing ones, or None
    to fail with FileNotFoundError. Errors name the component as ``shown + /a/b``."""
    fd = os.dup(start_fd)
    try:
        if not parts:
            reopened = os.open(".", OPEN_DIR, dir_fd=fd)
            os.close(fd)
            return reopened
        for index, part in enumerate(parts):
            here = f"{shown.rstrip('/')}/{'/'.join(parts[: index + 1])}"
            if part in ("", ".", "..") or "/" in part:
                raise OSError(errno.EINVAL, "not a plain name", here)
            flags = OPEN_DIR if index == len(parts) - 1 else _PATH_DIR
            try:
                try:
                    next_fd = os.open(part, flags, dir_fd=fd)
                except FileNotFoundError:
                    if create is None:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, create, dir_fd=fd)
                        _fsync_dir_fd(fd)
                    next_fd = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError as exc:
                raise FileNotFoundError(errno.ENOENT, exc.strerror, here) from None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _not_a_directory(fd, part, here) from None
                raise OSError(exc.errno, exc.strerror, here) from None
            os.close(fd)
            fd = next_fd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _fsync_dir_fd(fd: int) -> None:
    """fsync the directory ``fd`` (an O_PATH one is reopened for it) after a mkdir."""
    with opened(os.open(".", OPEN_DIR, dir_fd=fd)) as readable:
        os.fsync(readable)


def _split(path: str) -> list[str]:
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, "not an absolute path", path)
    return [part for part in path.split("/") if part]


def open_dir(path: str | os.PathLike[str], *, create: int | None = None) -> int:
    """Open the absolute directory ``path`` for reading, walked from ``/`` without
    following a symlink in any component (ELOOP naming the component that is one).
    ``create``: the mode for missing components (mkdirat), or None to fail."""
    text = os.fspath(path)
    root = os.open("/", _PATH_DIR)
    try:
        return _walk(root, _split(text), "", create)
    finally:
        os.close(root)


def open_below(dir_fd: int, relative: str, shown: str, *, create: int | None = None) -> int:
    """Open the directory ``relative`` (``a/b``) below ``dir_fd``, without following a
    symlink; errors name it as ``shown/a/b``. ``create`` as for `open_dir`."""
    return _walk(dir_fd, [part for part in relative.split("/") if part], shown, create)


@contextlib.contextmanager
def opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


# -- one entry -------------------------------------------------------------------------------


@dataclass
class Entry:
    """One entry opened without following it: a file or directory with its descriptor, or
    a symlink with its target. ``st`` is the descriptor's own fstat (the link's lstat)."""

    kind: str
    st: os.stat_result
    fd: int | None = None
    target: str = ""
    _xattrs: dict[str, bytes] | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Entry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_entry(dir_fd: int, name: str, shown: str) -> Entry | None:
    """Open ``name`` in ``dir_fd`` as what it is now, never following it: None when it does
    not exist or is a special file (fifo, socket, device: never opened). An entry swapped
    for another kind meanwhile is looked at again; one that keeps changing raises EAGAIN."""
    for _ in range(_RETRIES):
        st = lstat_at(dir_fd, name)
        if st is None:
            return None
        kind = kind_of(st.st_mode)
        if kind is None:
            return None
        try:
            if kind == "link":
                target = os.readlink(name, dir_fd=dir_fd)
                xattrs = _link_xattrs(dir_fd, name)
                again = lstat_at(dir_fd, name)
                if again is None or (again.st_ino, again.st_dev) != (st.st_ino, st.st_dev):
                    continue  # replaced while its xattrs were read
                return Entry("link", st, None, target, xattrs)
            fd = os.open(name, OPEN_DIR if kind == "dir" else _OPEN_FILE, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
                continue  # became another kind between the lstat and the open
            raise OSError(exc.errno, exc.strerror, shown) from None
        have = os.fstat(fd)
        if kind_of(have.st_mode) != kind:  # a file swapped for a fifo or device: never read
            os.close(fd)
            continue
        return Entry(kind, have, fd)
    raise OSError(errno.EAGAIN, "kept changing while it was being read", shown)


def entry_xattrs(entry: Entry) -> dict[str, bytes]:
    if entry._xattrs is None:
        assert entry.fd is not None
        entry._xattrs = read_xattrs(entry.fd)
    return entry._xattrs


# -- extended attributes -------------------------------------------------------------------


def _link_path(dir_fd: int, name: str) -> str | None:
    """A path naming the symlink ``name`` in ``dir_fd`` itself (used with
    follow_symlinks=False), or None without /proc."""
    if not os.path.isdir(_PROC_FD):
        return None
    return f"{_PROC_FD}/{dir_fd}/{name}"


def read_xattrs(target: int | str, *, follow: bool = True) -> dict[str, bytes]:
    """Every extended attribute of a descriptor (or of a path, not followed when
    ``follow`` is False); {} where the file system has none."""
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.ENOENT):
            return {}
        raise
    found: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            found[name] = os.getxattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return found


def _link_xattrs(dir_fd: int, name: str) -> dict[str, bytes]:
    path = _link_path(dir_fd, name)
    return {} if path is None else read_xattrs(path, follow=False)


def set_xattrs(target: int | str, want: dict[str, bytes], *, follow: bool = True) -> bool:
    """Make the extended attributes of ``target`` exactly ``want`` (extra ones, e.g. an
    ACL inherited from a default ACL, are removed); True when something changed."""
    have = read_xattrs(target, follow=follow)
    changed = False
    for name in sorted(set(have) - set(want)):
        os.removexattr(target, name, follow_symlinks=follow)
        changed = True
    for name, value in sorted(want.items()):
        if have.get(name) != value:
            try:
                os.setxattr(target, name, value, follow_symlinks=follow)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot set xattr {name}: {exc.strerror}") from None
            changed = True
    return changed


def set_link_xattrs(dir_fd: int, name: str, want: dict[str, bytes]) -> bool:
    path = _link_path(dir_fd, name)
    if path is None:
        return False
    return set_xattrs(path, want, follow=False)


def link_xattrs(dir_fd: int, name: str) -> dict[str, bytes]:
    return _link_xattrs(dir_fd, name)


# -- data and metadata ---------------------------------------------------------------------


def copy_data(source_fd: int, target_fd: int) -> None:
    """Copy a regular file's data extent by extent (SEEK_DATA/SEEK_HOLE), leaving holes
    as holes, onto the empty ``target_fd``; its size is the source's."""
    size = os.fstat(source_fd).st_size
    offset = 0
    while offset < size:
        try:
            start = os.lseek(source_fd, offset, os.SEEK_DATA)
            end = os.lseek(source_fd, start, os.SEEK_HOLE)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole from here to the end
                break
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                raise
            start, end = offset, size  # no hole support: copy the rest densely
        end = min(end, size)
        position = start
        while position < end:
            chunk = os.pread(source_fd, min(_CHUNK, end - position), position)
            if not chunk:  # shrank meanwhile
                break
            os.lseek(target_fd, position, os.SEEK_SET)
            write_all(target_fd, chunk)
            position += len(chunk)
        offset = max(end, offset + 1)
    os.ftruncate(target_fd, size)


def same_data(first_fd: int, second_fd: int) -> bool:
    if os.fstat(first_fd).st_size != os.fstat(second_fd).st_size:
        return False
    position = 0
    while True:
        one = os.pread(first_fd, _CHUNK, position)
        if one != os.pread(second_fd, len(one) or 1, position):
            return False
        if not one:
            return True
        position += len(one)


def set_meta(fd: int, want: os.stat_result, xattrs: dict[str, bytes]) -> None:
    """Owner, then xattrs (chown clears file capabilities), then mode (after an ACL, whose
    mask it sets), then times, on an open file or directory."""
    have = os.fstat(fd)
    if (have.st_uid, have.st_gid) != (want.st_uid, want.st_gid):
        os.fchown(fd, want.st_uid, want.st_gid)
    set_xattrs(fd, xattrs)
    if stat.S_IMODE(os.fstat(fd).st_mode) != stat.S_IMODE(want.st_mode):
        os.fchmod(fd, stat.S_IMODE(want.st_mode))
    os.utime(fd, ns=(want.st_atime_ns, want.st_mtime_ns))


def set_link_meta(dir_fd: int, name: str, want: os.stat_result, xattrs: dict[str, bytes]) -> None:
    os.chown(name, want.st_uid, want.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    set_link_xattrs(dir_fd, name, xattrs)
    os.utime(name, ns=(want.st_atime_ns, want.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)


def remove_tree(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` and, for a directory, everything in it, by descriptor
    and without following a symlink (shutil.rmtree opens a swapped-in symlink's target)."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, OPEN_DIR, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            remove_tree(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
