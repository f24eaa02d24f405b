"""What a snapshot directory holds, read without changing it: the complete snapshots
(``<UTC time>[.N]`` directories with a manifest), their manifests, the record of the
last snapshot attempt, and which snapshot is the last known good one and why.

Taking snapshots and backups (and what makes one proven) is
`supervisor.restore.snapshots`.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.restore.files import MANIFEST, RestoreError, _os_message
from supervisor.restore.walk import OPEN_DIR, kind_of, lstat_at, open_dir, opened

__all__ = ["KnownGood", "describe_last_known_good", "known_good", "latest_snapshot"]

#: The name of a complete snapshot or backup: its UTC time, then ``.N`` if not the first.
SNAPSHOT_NAME = re.compile(r"(\d{8}T\d{6}Z)(?:\.(\d+))?")
#: What the last snapshot attempt did, beside the snapshots.
LAST_ATTEMPT = ".last-attempt.json"


@dataclass(frozen=True)
class KnownGood:
    """The snapshot a restore from last-known-good would use, and why it is trusted."""

    path: Path
    proven: bool
    taken_at: float
    applied_at: float | None
    healthy_since: float | None
    why: str


def utc_time(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(moment))


def open_existing(directory: Path) -> int | None:
    """The snapshot directory's fd, or None when it does not exist. A symlink on the way
    raises RestoreError: it is never followed."""
    try:
        return open_dir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise RestoreError(f"cannot read {directory}: {_os_message(exc)}") from exc


def complete_mirrors(dir_fd: int) -> list[str]:
    """The names of the complete snapshots (or backups) in ``dir_fd``, oldest first."""
    found: list[tuple[tuple[str, int], str]] = []
    for name in os.listdir(dir_fd):
        match = SNAPSHOT_NAME.fullmatch(name)
        if match is None:
            continue
        st = lstat_at(dir_fd, name)
        if st is None or kind_of(st.st_mode) != "dir":
            continue
        try:
            with opened(os.open(name, OPEN_DIR, dir_fd=dir_fd)) as fd:
                manifest = lstat_at(fd, MANIFEST)
        except OSError:
            continue
        if manifest is None or kind_of(manifest.st_mode) != "file":
            continue
        found.append(((match[1], int(match[2] or 0)), name))
    return [name for _, name in sorted(found)]


def read_json(dir_fd: int, name: str) -> dict[str, Any]:
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return {}
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        data = json.loads(b"".join(chunks).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return data if isinstance(data, dict) else {}


def read_manifest(dir_fd: int, name: str) -> dict[str, Any]:
    try:
        with opened(os.open(name, OPEN_DIR, dir_fd=dir_fd)) as fd:
            return read_json(fd, MANIFEST)
    except OSError:
        return {}


def latest_snapshot(snapshots_dir: Path) -> Path | None:
    """The newest complete snapshot in ``snapshots_dir``, proven or not, or None (also when
    it does not exist). Only ``<UTC time>[.N]`` directories with a manifest count: a
    ``.tmp-*`` left by a crash never does. A restore uses `known_good` instead."""
    dir_fd = open_existing(snapshots_dir)
    if dir_fd is None:
        return None
    with opened(dir_fd):
        found = complete_mirrors(dir_fd)
    return snapshots_dir / found[-1] if found else None


def _trust(manifest: dict[str, Any]) -> str:
    if manifest.get("trust"):
        return str(manifest["trust"])
    return "taken while the unit was healthy, by a version that did not prove it"


def known_good(snapshots_dir: Path) -> KnownGood | None:
    """The snapshot a restore from last-known-good uses: the newest proven one; without
    any, the newest snapshot (taken while healthy, but without the time the unit last
    applied its configuration). None when there is none."""
    dir_fd = open_existing(snapshots_dir)
    if dir_fd is None:
        return None
    with opened(dir_fd):
        names = complete_mirrors(dir_fd)
        manifests = {name: read_manifest(dir_fd, name) for name in names}
    if not names:
        return None
    proven = [name for name in names if manifests[name].get("proven") is True]
    chosen = proven[-1] if proven else names[-1]
    manifest = manifests[chosen]
    newer = len(names) - 1 - names.index(chosen)
    if proven:
        why = f"the newest proven snapshot: {_trust(manifest)}"
        if newer:
            why += f" ({newer} newer unproven snapshot{'s' if newer > 1 else ''} not used)"
    else:
        why = f"no proven snapshot; the newest one: {_trust(manifest)}"

    def number(key: str) -> float | None:
        value = manifest.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    return KnownGood(
        path=snapshots_dir / chosen,
        proven=bool(proven),
        taken_at=number("time") or 0.0,
        applied_at=number("applied_at"),
        healthy_since=number("healthy_since"),
        why=why,
    )


def describe_last_known_good(snapshots_dir: Path) -> str:
    """One paragraph for `status` and `history`: which snapshot a restore would use and
    why, and what the last snapshot attempt did."""
    try:
        chosen = known_good(snapshots_dir)
    except RestoreError as exc:
        return f"no usable snapshot: {exc}"
    if chosen is None:
        text = "no known-good snapshot yet: a restore from last-known-good would be skipped"
    else:
        taken = (
            f"taken {utc_time(chosen.taken_at)}" if chosen.taken_at else "taken at an unknown time"
        )
        text = f"restore would use {chosen.path} ({taken}), {chosen.why}"
    dir_fd = open_existing(snapshots_dir)
    if dir_fd is not None:
        with opened(dir_fd):
            last = read_json(dir_fd, LAST_ATTEMPT)
        if last and isinstance(last.get("time"), (int, float)):
            text += f". Last snapshot attempt {utc_time(last['time'])}: {last.get('reason', '')}"
    return text
