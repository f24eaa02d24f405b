"""Durable file writes, shared by the alert spool and the snapshots and restores.

A file is replaced by writing a new one at a temporary name in the same directory,
fsync'ing it and renaming it over, then fsync'ing the directory, so after a crash the
name holds either the old content or the new, never a part. Everything is done relative
to a descriptor of the directory: the temporary file is created exclusively and never
through a symlink (``O_EXCL | O_NOFOLLOW``), and it is removed again when anything fails.
The directory itself is opened as it is named, its symlinks followed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator

__all__ = [
    "CREATE",
    "TEMP_SUFFIX",
    "atomic_write",
    "create_new_at",
    "create_synced",
    "fsync_dir",
    "removed_on_error",
    "replace_at",
    "temp_name",
    "write_all",
]

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
"""Flags to create a new file: never an existing one, never through a symlink."""
TEMP_SUFFIX = ".hs-tmp"
"""How the name of a temporary file ends (``.<name>.<random>.hs-tmp``)."""

_OPEN_PARENT = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def temp_name(name: str) -> str:
    """A fresh hidden name beside ``name`` for a file that is renamed over it."""
    return f".{name[:200]}.{secrets.token_hex(6)}{TEMP_SUFFIX}"


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so the names created, renamed or removed in it are on disk."""
    fd = os.open(path, _OPEN_PARENT)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def removed_on_error(name: str | os.PathLike[str], *, dir_fd: int | None = None) -> Iterator[None]:
    """Remove the new entry ``name`` (relative to ``dir_fd``) when the block raises."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        raise


def create_synced(
    name: str | os.PathLike[str],
    fill: Callable[[int], None],
    mode: int = 0o600,
    *,
    dir_fd: int | None = None,
) -> None:
    """Create the new file ``name`` (relative to ``dir_fd``), let ``fill`` write it through
    its descriptor, and fsync it; it is removed again when that fails. Raises
    FileExistsError when ``name`` exists."""
    fd = os.open(name, CREATE, mode, dir_fd=dir_fd)
    with removed_on_error(name, dir_fd=dir_fd):
        try:
            fill(fd)
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename(dir_fd: int, temp: str, name: str) -> None:
    os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def replace_at(
    dir_fd: int,
    name: str,
    fill: Callable[[int], None],
    mode: int = 0o600,
    *,
    rename: Callable[[int, str, str], None] = _rename,
) -> None:
    """Replace ``name`` in the directory ``dir_fd`` by a file ``fill`` writes: a temporary
    file created beside it, fsync'd, then ``rename(dir_fd, temp, name)``; the temporary
    file is removed when anything fails. The caller fsyncs the directory."""
    temp = temp_name(name)
    create_synced(temp, fill, mode, dir_fd=dir_fd)
    with removed_on_error(temp, dir_fd=dir_fd):
        rename(dir_fd, temp, name)


def atomic_write(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Replace the file ``path`` by ``data`` durably: temporary file, fsync, rename, and
    fsync of the directory."""
    parent, name = os.path.split(os.fspath(path))
    dir_fd = os.open(parent or ".", _OPEN_PARENT)
    try:
        replace_at(dir_fd, name, lambda fd: write_all(fd, data), mode)
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def create_new_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """Create ``name`` in the directory ``dir_fd`` with ``data``, whole or not at all, and
    never over an existing entry (a file or a symlink: FileExistsError): a temporary
    file beside it, fsync'd, then hard-linked to ``name`` (link() never replaces and
    never follows a symlink at ``name``) and unlinked. The caller fsyncs the directory."""
    temp = temp_name(name)
    create_synced(temp, lambda fd: write_all(fd, data), mode, dir_fd=dir_fd)
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
