"""The checks before a restore (and, for the live side, before a snapshot): no symlink on
the way to a named path or to the source, a source that mirrors the named paths with real
directories and holds no special files.

A symlink *inside* the named paths is fine wherever it points (Debian's ``*-enabled/``
entries point into ``../*-available/`` or ``/usr/share``): it is copied and restored as a
link, and never followed.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Sequence
from pathlib import Path

from supervisor.restore.files import (
    RestoreError,
    _named,
    _os_message,
    _physical,
    _refuse_inside,
    _rel,
    _special,
)
from supervisor.restore.walk import kind_of, lstat_at, open_below, open_dir, opened

__all__ = ["check_paths", "live_problems", "refuse_live"]


def _hint(path: str) -> str:
    real = _physical(path)
    if real != path:
        return f"name the real path {real} in the policy"
    return "name the real path in the policy"


def live_problems(paths: Sequence[str]) -> list[str]:
    """What a snapshot and a restore of ``paths`` on this host would refuse, one line
    each with a hint (empty when none): a symlink in a parent directory of a named path,
    a named path that is a fifo, socket or device, or a directory on the way that cannot
    be opened."""
    named = _named(paths)
    problems: list[str] = []
    for path in named:
        parent, name = posixpath.split(path)
        try:
            parent_fd = open_dir(parent)
        except (FileNotFoundError, NotADirectoryError):
            continue  # absent: snapshotted as absent, removed again by a restore
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                problems.append(
                    f"{path}: {_os_message(exc)} (a user who can change it could make root "
                    f"write elsewhere); {_hint(path)}"
                )
            else:
                problems.append(f"{path}: {_os_message(exc)}")
            continue
        with opened(parent_fd):
            st = lstat_at(parent_fd, name)
        if st is not None and kind_of(st.st_mode) is None:
            problems.append(str(_special(path, st.st_mode)))
    return problems


def refuse_live(named: Sequence[str], what: str) -> None:
    """Raise RestoreError (``what: ...``) for the first of `live_problems`."""
    problems = live_problems(named)
    if problems:
        raise RestoreError(f"{what}: {problems[0]}")


def check_paths(paths: Sequence[str], source: Path) -> None:
    """Refuse (RestoreError) what a restore must never do.

    - a named path that is not absolute and normalized, is ``/``, or is named twice or
      inside another named path;
    - a symlink in a parent directory of a named path on the live host (`live_problems`);
    - a source that is not a directory, is reached through a symlink, or lies inside a
      named path;
    - a source entry reached through a symlinked directory of the source;
    - a fifo, socket or device in the source.

    A named path missing from the source is not checked here; ``restore`` refuses it.
    """
    named = _named(paths)
    root = os.fspath(source)
    try:
        source_fd = open_dir(root)
    except NotADirectoryError as exc:
        if exc.filename == root:
            raise RestoreError(f"restore source {root} is not a directory") from exc
        raise RestoreError(f"restore source {root}: {_os_message(exc)}") from exc
    except FileNotFoundError as exc:
        raise RestoreError(f"restore source {root} is not a directory") from exc
    except OSError as exc:
        raise RestoreError(f"restore source {root}: {_os_message(exc)}") from exc
    with opened(source_fd):
        _refuse_inside(source, named, "restore source")
        refuse_live(named, "restore refused")
        for path in named:
            parent, name = posixpath.split(_rel(path))
            try:
                parent_fd = open_below(source_fd, parent, root)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RestoreError(
                        f"{exc.filename} is a symlink: a restore source must mirror {path} "
                        "with real directories"
                    ) from exc
                raise RestoreError(f"restore source: {_os_message(exc)}") from exc
            with opened(parent_fd):
                _check_tree(parent_fd, name, os.path.join(root, _rel(path)))


def _check_tree(dir_fd: int, name: str, shown: str) -> None:
    """Refuse a special file at or below the source entry ``name`` of ``dir_fd``."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    kind = kind_of(st.st_mode)
    if kind is None:
        raise _special(shown, st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = open_below(dir_fd, name, posixpath.dirname(shown))
        except OSError as exc:
            raise RestoreError(f"restore source: {_os_message(exc)}") from exc
        with opened(fd):
            for child in sorted(os.listdir(fd)):
                _check_tree(fd, child, f"{shown}/{child}")
