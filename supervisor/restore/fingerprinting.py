"""The fingerprint of the named paths: a digest of their names, contents, modes, owners,
extended attributes and symlink targets (not times, not holes, not special files), so
that a snapshot is taken only when something changed. It is read the way a snapshot is:
from a trusted root, by descriptor, following no symlink.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence

from supervisor.restore.files import RestoreError, _named, _os_message, _rel, _special
from supervisor.restore.walk import (
    Entry,
    entry_xattrs,
    lstat_at,
    open_below,
    open_dir,
    open_entry,
    opened,
)

__all__ = ["fingerprint"]

_CHUNK = 1 << 20


def fingerprint(paths: Sequence[str]) -> str:
    """A digest of the named files and directory trees: relative names, contents, modes,
    owners, xattrs, symlink targets; a missing path is part of the digest too.
    Modification times are not, nor special files. Used to snapshot only when something
    changed.

    Raises RestoreError for a bad path list, a symlink on the way to a named path, or a
    file that cannot be read.
    """
    named = _named(paths)
    try:
        with opened(open_dir("/")) as root:
            return _fingerprint_under(root, "", named)
    except OSError as exc:
        raise RestoreError(f"cannot fingerprint {_os_message(exc)}") from exc


def _fingerprint_under(root_fd: int, shown: str, named: Sequence[str]) -> str:
    """The fingerprint of ``named`` as mirrored below the directory ``root_fd`` (the
    live ``/``, or a snapshot shown as ``shown``)."""
    digest = hashlib.sha256()
    for path in named:
        for record in _named_records(root_fd, shown, path):
            digest.update(json.dumps(record).encode("ascii") + b"\n")
    return "sha256:" + digest.hexdigest()


def _named_records(root_fd: int, shown: str, path: str) -> Iterator[list[object]]:
    parent, name = posixpath.split(_rel(path))
    try:
        parent_fd = open_below(root_fd, parent, shown or "/")
    except (FileNotFoundError, NotADirectoryError):
        yield [path, "missing"]
        return
    with opened(parent_fd):
        st = lstat_at(parent_fd, name)
        if st is not None and _kind_none(st):
            raise _special(path, st.st_mode)
        yield from _records(parent_fd, name, path, shown + path)


def _kind_none(st: os.stat_result) -> bool:
    mode = st.st_mode
    return not (stat.S_ISDIR(mode) or stat.S_ISREG(mode) or stat.S_ISLNK(mode))


def _records(dir_fd: int, name: str, label: str, shown: str) -> Iterator[list[object]]:
    entry = open_entry(dir_fd, name, shown)
    if entry is None:
        yield [label, "missing"]
        return
    with entry:
        st = entry.st
        xattrs = [[key, hashlib.sha256(value).hexdigest()] for key, value in _xattrs(entry)]
        meta: list[object] = [label, entry.kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
        if xattrs:
            meta.append(xattrs)
        if entry.kind == "link":
            yield [*meta, entry.target]
        elif entry.kind == "file":
            assert entry.fd is not None
            yield [*meta, _file_digest(entry.fd)]
        else:
            assert entry.fd is not None
            yield meta
            for child in sorted(os.listdir(entry.fd)):
                child_st = lstat_at(entry.fd, child)
                if child_st is None or _kind_none(child_st):
                    continue  # gone meanwhile, or a special file: never part of it
                yield from _records(entry.fd, child, f"{label}/{child}", f"{shown}/{child}")


def _xattrs(entry: Entry) -> list[tuple[str, bytes]]:
    return sorted(entry_xattrs(entry).items())


def _file_digest(fd: int) -> str:
    digest = hashlib.sha256()
    position = 0
    while chunk := os.pread(fd, _CHUNK, position):
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()
