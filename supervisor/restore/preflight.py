"""The checks before a restore: the source mirrors the named paths, holds no special
files, and its symlinks resolve inside the named paths (Linux's hop limit for loops).
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

from supervisor.restore.files import (
    RestoreError,
    _inside,
    _kind,
    _lstat,
    _named,
    _physical,
    _refuse_inside,
    _rel,
    _special,
)

__all__ = ["MAX_SYMLINK_HOPS", "check_paths"]


MAX_SYMLINK_HOPS = 40
"""Symlinks followed while resolving one target before it counts as a loop (Linux's limit)."""


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
