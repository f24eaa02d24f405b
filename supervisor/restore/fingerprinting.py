"""The fingerprint of the named paths: a digest of their names, contents, modes, owners
and symlink targets (not times, not special files), so that a snapshot is taken only
when something changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator, Sequence

from supervisor.restore.files import (
    _CHUNK,
    RestoreError,
    _kind,
    _lstat,
    _named,
    _open_regular,
    _os_message,
    _rel,
    _special,
)

__all__ = ["fingerprint"]


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
