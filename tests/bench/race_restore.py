"""The symlink-swap race: a thread swaps a subdirectory of a named path with a symlink to
a root-only directory, in a loop, while snapshots and restores run. Nothing may be read
from or written into the root-only directory: its canary's content must never appear in
a snapshot or backup, and it must never gain (or lose) a file.

    tests/bench/run race                      60 s, prints the counts (target: 0 leaks)
    python -m tests.bench.race_restore --seconds 10

The swap is atomic (``renameat2(RENAME_EXCHANGE)``), the worst case for a reader that
walks by path: the name is a directory at one instant and a symlink the next. The
integration test ``tests/integration/test_restore_real.py`` runs the same race briefly.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

from supervisor.restore import RestoreError, attempt_snapshot, latest_snapshot, restore

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


def exchange(first: Path, second: Path) -> None:
    """Swap two names atomically (both must exist)."""
    result = _libc.renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(first))


@dataclass
class RaceCounts:
    swaps: int = 0
    snapshots: int = 0
    snapshots_with_the_link: int = 0
    snapshots_skipped: int = 0
    snapshot_errors: int = 0
    restores_ok: int = 0
    restores_rolled_back: int = 0
    restores_refused: int = 0
    leaked_reads: int = 0
    leaked_writes: int = 0

    def lines(self) -> list[str]:
        return [f"{field.name:24} {getattr(self, field.name)}" for field in fields(self)]


def _scan(root: Path, token: bytes) -> int:
    """Files under ``root`` holding the canary's content or name (never following links)."""
    found = 0
    for directory, dirs, files in os.walk(root):
        for name in files + dirs:
            path = os.path.join(directory, name)
            if name == "canary.txt":
                found += 1
            elif os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as handle:
                    if token in handle.read():
                        found += 1
    return found


def _secret_intact(secret: Path, token: bytes) -> bool:
    return os.listdir(secret) == ["canary.txt"] and (secret / "canary.txt").read_bytes() == token


def run_race(workdir: Path, seconds: float) -> RaceCounts:
    """Run the race for ``seconds`` in ``workdir`` (created, then left for inspection)."""
    token = b"CANARY-" + secrets.token_hex(16).encode()
    named = workdir / "srv" / "conf"
    (named / "sub").mkdir(parents=True)
    (named / "top.conf").write_text("top\n")
    (named / "sub" / "x.conf").write_text("x = 1\n")
    secret = workdir / "secret"
    secret.mkdir(mode=0o700)
    (secret / "canary.txt").write_bytes(token)
    attacker = workdir / "attacker"
    attacker.mkdir()
    (attacker / "alt").symlink_to(secret)
    snaps, backups = workdir / "state" / "snapshots", workdir / "state" / "backups"
    paths = [str(named)]
    counts = RaceCounts()
    stop = threading.Event()

    def repair_pair() -> None:
        """A restore replaces what it finds at sub (a link by a directory, or the reverse):
        make the pair one directory and one link to the secret again."""
        alt = attacker / "alt"
        sub_is_link = os.path.islink(named / "sub")
        if not os.path.lexists(alt) or sub_is_link == os.path.islink(alt):
            if os.path.isdir(alt) and not os.path.islink(alt):
                shutil.rmtree(alt, ignore_errors=True)
            elif os.path.lexists(alt):
                os.unlink(alt)
            if sub_is_link:
                alt.mkdir()
                (alt / "x.conf").write_text("x = 1\n")
            else:
                alt.symlink_to(secret)

    def swapper() -> None:
        while not stop.is_set():
            try:
                exchange(named / "sub", attacker / "alt")
                counts.swaps += 1
                if counts.swaps % 64 == 0:
                    repair_pair()
            except OSError:
                with contextlib.suppress(OSError):
                    repair_pair()
                if not os.path.lexists(named / "sub"):
                    with contextlib.suppress(OSError):
                        os.mkdir(named / "sub")

    thread = threading.Thread(target=swapper, daemon=True)
    thread.start()
    base = time.time()
    deadline = time.monotonic() + seconds
    step = 0
    try:
        while time.monotonic() < deadline:
            step += 1
            now = base + step
            try:
                attempt = attempt_snapshot(paths, snaps, now, 5)
            except RestoreError:
                counts.snapshot_errors += 1
                attempt = None
            if attempt is not None and attempt.path is not None:
                counts.snapshots += 1
                if os.path.islink(attempt.path / str(named / "sub").lstrip("/")):
                    counts.snapshots_with_the_link += 1
                counts.leaked_reads += _scan(attempt.path, token)
            elif attempt is not None:
                counts.snapshots_skipped += 1
            source = latest_snapshot(snaps)
            if source is not None:
                try:
                    result = restore(paths, source, backups, now, None, keep_backups=5)
                except RestoreError:
                    counts.restores_refused += 1
                else:
                    if result.ok:
                        counts.restores_ok += 1
                    else:
                        counts.restores_rolled_back += 1
                    if result.backup is not None and result.backup.exists():
                        counts.leaked_reads += _scan(result.backup, token)
            if not _secret_intact(secret, token):
                counts.leaked_writes += 1
                for name in os.listdir(secret):  # reset, to count each escape once
                    if name != "canary.txt":
                        shutil.rmtree(secret / name, ignore_errors=True)
                        if os.path.lexists(secret / name):
                            os.unlink(secret / name)
                (secret / "canary.txt").write_bytes(token)
    finally:
        stop.set()
        thread.join()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    cache = Path(__file__).resolve().parents[2] / ".cache"
    cache.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="race-restore-", dir=cache))
    started = time.monotonic()
    try:
        counts = run_race(workdir, args.seconds)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    print(f"symlink-swap race against snapshots and restores, {elapsed:.0f} s")
    print("\n".join(counts.lines()))
    leaks = counts.leaked_reads + counts.leaked_writes
    print(f"leaks (reads + writes outside the named paths): {leaks} (target 0)")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
