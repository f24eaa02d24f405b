"""Restore and rollback: back up the live paths, write the source over them, run the
validator, and put the backup back when anything fails.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.config.trust import path_refusal
from supervisor.procs import MINIMAL_PATH, run_program, signal_name
from supervisor.restore.files import (
    RestoreError,
    _named,
    _os_message,
    _reason,
    _refuse_inside,
    _rel,
)
from supervisor.restore.preflight import check_paths
from supervisor.restore.snapshots import _locked, _prune, _publish
from supervisor.restore.tree_writer import _install, _StepFailed, _uninstall
from supervisor.restore.walk import lstat_at, open_below, open_dir, opened

__all__ = ["OUTPUT_TAIL", "RestoreResult", "restore"]


KEEP_BACKUPS = 10
"""Backups kept per unit when the caller does not say (policy ``recovery.restore.keep_backups``)."""

OUTPUT_TAIL = 2048
"""Characters of a failed validator's output (its end, stdout and stderr merged, lines
joined with " / ") kept in the detail."""


_KILL_WAIT = 5.0


@dataclass(frozen=True)
class RestoreResult:
    """What a restore did. After ``ok=False`` the live files are as they were before
    (rolled back from ``backup``), unless ``detail`` says the rollback failed too."""

    ok: bool
    detail: str
    """One line for a person; after a failed validation it holds the validator's output."""
    backup: Path | None
    """Where the live files were copied before anything was written."""
    written: tuple[str, ...]
    """The live paths the restore created, replaced or removed (before any rollback)."""


def _validate(argv: Sequence[str], timeout: float) -> str | None:
    """Run the validator; None when it exits 0, else why not, with its output's tail."""
    command = shlex.join(argv)
    program = argv[0]
    if os.path.lexists(program) and (refusal := path_refusal(program, name="it")) is not None:
        # Checked at load too; again now: root is about to run it.
        return f"validator {program} is not run: {refusal}"
    try:
        done = asyncio.run(
            run_program(
                argv,
                timeout,
                env={"PATH": MINIMAL_PATH},
                cwd="/",
                merge_stderr=True,
                keep=OUTPUT_TAIL,
                tail=True,
                kill_wait=_KILL_WAIT,
            )
        )
    except FileNotFoundError as exc:
        if os.path.lexists(program):
            return f"validator {command} could not start: {_reason(exc)} (its interpreter?)"
        return f"validator {program} does not exist"
    except PermissionError:
        return f"validator {program} is not an executable file"
    except OSError as exc:
        return f"validator {command} could not start: {_reason(exc)}"
    text = _tail(done.stdout, done.stdout_size)
    code = done.returncode
    if done.timed_out:
        why = f"validator {command} timed out after {timeout:g}s"
    elif code == 0:
        return None
    elif code is not None and code < 0:
        why = f"validator {command} was killed by {signal_name(code)}"
    else:
        why = f"validator {command} exited {code}"
    return f"{why}: {text}" if text else f"{why} with no output"


def _tail(kept: bytes, size: int) -> str:
    """The end of the output (``kept``, its last OUTPUT_TAIL bytes, of ``size`` in all) on
    one line of at most OUTPUT_TAIL characters."""
    text = kept.decode("utf-8", "replace")
    line = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    if size > OUTPUT_TAIL or len(line) > OUTPUT_TAIL:
        line = "..." + line[-(OUTPUT_TAIL - 3) :]
    return line


def restore(
    paths: Sequence[str],
    source: Path,
    backups_dir: Path,
    now: float,
    validate_argv: Sequence[str] | None,
    validate_timeout: float = 60.0,
    *,
    keep_backups: int = KEEP_BACKUPS,
) -> RestoreResult:
    """Put the named paths back from ``source`` (a snapshot, or a directory of defaults
    mirroring them), after copying the live ones to ``backups_dir/<UTC time>/``.

    Raises RestoreError, having written nothing live, when ``check_paths`` refuses, a named
    path is missing from the source, or the backup cannot be made. After the backup
    exists it never raises: a failure to write, or a validator (run without a shell,
    stdin /dev/null, ``validate_timeout``) that does not exit 0, puts the backup back and
    returns ``ok=False``. The caller restarts the unit after ``ok=True``. Only the newest
    ``keep_backups`` backups are kept (the new one among them).

    Every path (the live one, the source, the backup) is walked from ``/`` by descriptor
    without following a symlink in any component; a symlink inside the named paths is
    restored as a symlink, wherever it points, and never written through.
    """
    if keep_backups < 1:
        raise ValueError(f"keep_backups must be at least 1, not {keep_backups}")
    check_paths(paths, source)
    named = _named(paths)
    root = os.fspath(source)
    if validate_argv is not None and not validate_argv:
        raise RestoreError("the validate command is empty: nothing restored")
    try:
        source_fd = open_dir(root)
    except OSError as exc:
        raise RestoreError(f"restore source {_os_message(exc)}: nothing restored") from exc
    with opened(source_fd):
        for path in named:
            if not _in_source(source_fd, root, path):
                raise RestoreError(f"{path} is missing from {root}: nothing restored")
        _refuse_inside(backups_dir, named, "backup directory")
        try:
            with _locked(backups_dir) as backups_fd:
                backup, absent = _publish(named, backups_fd, backups_dir, now, {"kind": "backup"})
                _prune(backups_fd, keep_backups)
        except OSError as exc:
            raise RestoreError(
                f"cannot back up {', '.join(named)} into {backups_dir}: {_os_message(exc)}; "
                "nothing restored"
            ) from exc
        return _write(named, source_fd, root, backup, absent, validate_argv, validate_timeout)


def _in_source(source_fd: int, root: str, path: str) -> bool:
    parent, name = os.path.split(_rel(path))
    try:
        with opened(open_below(source_fd, parent, root)) as parent_fd:
            return lstat_at(parent_fd, name) is not None
    except (FileNotFoundError, NotADirectoryError):
        return False


def _write(
    named: Sequence[str],
    source_fd: int,
    root: str,
    backup: Path,
    absent: frozenset[str],
    validate_argv: Sequence[str] | None,
    validate_timeout: float,
) -> RestoreResult:
    written: list[str] = []
    what = f"{', '.join(named)} from {root}"
    try:
        for path in named:
            _install(source_fd, root, path, written)
    except _StepFailed as exc:
        return _roll_back(named, backup, absent, written, f"restore of {what} failed at {exc}")
    except Exception as exc:  # never raise once the backup exists: roll back and say why
        why = f"{type(exc).__name__}: {exc}"
        return _roll_back(named, backup, absent, written, f"restore of {what} failed: {why}")
    if validate_argv is not None:
        try:
            failure = _validate(validate_argv, validate_timeout)
        except Exception as exc:  # e.g. no pipe or event loop for it: still roll back
            failure = f"validator {validate_argv[0]} could not run: {type(exc).__name__}: {exc}"
        if failure is not None:
            return _roll_back(named, backup, absent, written, f"validation failed: {failure}")
    changed = f"{len(written)} entries written" if written else "nothing differed"
    checked = f", validated by {validate_argv[0]}" if validate_argv is not None else ""
    return RestoreResult(
        ok=True,
        detail=f"restored {what} ({changed}{checked}); backup in {backup}",
        backup=backup,
        written=tuple(written),
    )


def _roll_back(
    named: Sequence[str], backup: Path, absent: frozenset[str], written: list[str], why: str
) -> RestoreResult:
    """Put the backup back (removing what did not exist) and report ``why``."""
    undone: list[str] = []
    try:
        with opened(open_dir(backup)) as backup_fd:
            for path in named:
                if path in absent:
                    _uninstall(path, undone)
                else:
                    _install(backup_fd, str(backup), path, undone)
    except Exception as exc:  # report, never raise: the live files need a person now
        detail = (
            f"{why}; rolling back failed too ({exc}): "
            f"the files as they were are in {backup}, put them back by hand"
        )
    else:
        detail = f"{why}; rolled back from {backup}"
    return RestoreResult(ok=False, detail=detail, backup=backup, written=tuple(written))
