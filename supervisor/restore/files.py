"""Names, paths and low-level file operations shared by the snapshots, the checks and
the tree writer. Names with a leading underscore are internal to `supervisor.restore`.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

from supervisor.errors import SupervisorError

__all__ = ["MANIFEST", "RestoreError"]


MANIFEST = "manifest.json"
"""Name of the manifest at the top of a snapshot or backup (so ``/manifest.json`` cannot
be a named path)."""


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


def _special(path: str, mode: int) -> RestoreError:
    return RestoreError(
        f"{path} is not a regular file, directory or symlink (mode {stat.filemode(mode)}): "
        "only those are snapshotted and restored"
    )


def _physical(path: str) -> str:
    """``path`` with the live host's symlinks in its parent directories resolved."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
