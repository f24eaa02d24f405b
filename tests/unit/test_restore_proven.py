"""What a copy keeps (xattrs, ACLs, holes), pruning of backups, and last-known-good as
"applied and proven": a snapshot only of files unchanged since the unit's last (re)start
or reload, the newest proven one never pruned, and the words status shows about it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.restore import (
    MANIFEST,
    attempt_snapshot,
    describe_last_known_good,
    fingerprint,
    known_good,
    restore,
    take_snapshot,
)

IS_ROOT = os.geteuid() == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    conf = tmp_path / "live" / "conf"
    (conf / "sub").mkdir(parents=True)
    (conf / "a.conf").write_text("a = 1\n")
    (conf / "sub" / "b.conf").write_text("b = 2\n")
    (conf / "link").symlink_to("/usr/share/doc")
    return conf


def _xattrs_supported(path: Path) -> bool:
    try:
        os.setxattr(path, "user.probe", b"1")
    except OSError:
        return False
    os.removexattr(path, "user.probe")
    return True


def test_xattrs_and_acls_are_snapshotted_and_restored(tree: Path, tmp_path: Path) -> None:
    conf = tree / "a.conf"
    if not _xattrs_supported(conf):
        pytest.skip("no user xattrs on this file system")
    os.setxattr(conf, "user.origin", b"deploy-42")
    os.setxattr(tree / "sub", "user.dir", b"d")
    if IS_ROOT:
        os.setxattr(conf, "trusted.note", b"root-only")
    acl = shutil.which("setfacl")
    if acl:
        subprocess.run([acl, "-m", "u:1:r", str(conf)], check=True)
    want = {name: os.getxattr(conf, name) for name in os.listxattr(conf)}
    snaps, backups = tmp_path / "snaps", tmp_path / "backups"
    snap = take_snapshot([str(tree)], snaps, 1000.0, keep=5)
    assert snap is not None
    mirrored = snap / str(conf).lstrip("/")
    assert {n: os.getxattr(mirrored, n) for n in os.listxattr(mirrored)} == want

    before = fingerprint([str(tree)])
    for name in want:
        os.removexattr(conf, name)
    os.setxattr(conf, "user.extra", b"x")
    assert fingerprint([str(tree)]) != before  # xattrs are part of the fingerprint

    result = restore([str(tree)], snap, backups, 1060.0, None)
    assert result.ok, result.detail
    assert {n: os.getxattr(conf, n) for n in os.listxattr(conf)} == want
    assert os.getxattr(tree / "sub", "user.dir") == b"d"
    assert fingerprint([str(tree)]) == before


def test_a_sparse_file_stays_sparse(tree: Path, tmp_path: Path) -> None:
    big = tree / "sparse.db"
    with big.open("wb") as handle:
        handle.write(b"head")
        handle.seek(64 << 20)
        handle.write(b"tail")
    assert big.stat().st_blocks * 512 < 1 << 20
    snap = take_snapshot([str(tree)], tmp_path / "snaps", 1000.0, keep=5)
    assert snap is not None
    copy = snap / str(big).lstrip("/")
    assert copy.stat().st_size == big.stat().st_size
    assert copy.stat().st_blocks * 512 < 1 << 20
    big.write_bytes(b"dense now")
    assert restore([str(tree)], snap, tmp_path / "backups", 1060.0, None).ok
    assert big.stat().st_size == (64 << 20) + 4
    assert big.stat().st_blocks * 512 < 1 << 20
    with big.open("rb") as handle:
        assert handle.read(4) == b"head"
        handle.seek(64 << 20)
        assert handle.read() == b"tail"


def test_backups_are_pruned_to_keep_backups(tree: Path, tmp_path: Path) -> None:
    snap = take_snapshot([str(tree)], tmp_path / "snaps", 1000.0, keep=5)
    assert snap is not None
    backups = tmp_path / "backups"
    for n in range(5):
        (tree / "a.conf").write_text(f"a = {n}\n")
        assert restore([str(tree)], snap, backups, 2000.0 + n, None, keep_backups=3).ok
    kept = sorted(p.name for p in backups.iterdir() if not p.name.startswith("."))
    assert len(kept) == 3
    assert json.loads((backups / kept[-1] / MANIFEST).read_text())["kind"] == "backup"


# -- applied and proven --------------------------------------------------------------------


def test_a_snapshot_of_files_unchanged_since_the_last_start_is_proven(
    tree: Path, tmp_path: Path
) -> None:
    applied = time.time() + 1  # the unit (re)started after the files were written
    attempt = attempt_snapshot(
        [str(tree)],
        tmp_path / "snaps",
        applied + 600,
        5,
        applied_at=applied,
        healthy_since=applied + 5,
    )
    assert attempt.path is not None
    manifest = json.loads((attempt.path / MANIFEST).read_text())
    assert manifest["proven"] is True
    assert manifest["applied_at"] == applied
    assert manifest["healthy_since"] == applied + 5
    assert "unchanged" in manifest["trust"]
    chosen = known_good(tmp_path / "snaps")
    assert chosen is not None and chosen.path == attempt.path and chosen.proven
    text = describe_last_known_good(tmp_path / "snaps")
    assert text.startswith(f"restore would use {attempt.path}")
    assert "the newest proven snapshot" in text


def test_an_edit_not_yet_applied_is_never_saved_as_good(tree: Path, tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"
    applied = time.time()  # the unit's last (re)start, after the files were written
    good = take_snapshot([str(tree)], snaps, applied + 600, 5, applied_at=applied)
    assert good is not None
    time.sleep(0.05)
    (tree / "sub" / "b.conf").write_text("b = broken\n")  # an edit, not reloaded since

    skipped = attempt_snapshot([str(tree)], snaps, applied + 1200, 5, applied_at=applied)

    assert skipped.path is None
    assert "not snapshotted as known-good" in skipped.reason
    assert "b.conf changed at" in skipped.reason
    assert "not applied yet" in skipped.reason
    chosen = known_good(snaps)
    assert chosen is not None and chosen.path == good
    text = describe_last_known_good(snaps)
    assert f"restore would use {good}" in text
    assert "Last snapshot attempt" in text and "b.conf changed at" in text

    # a reload applies the edit: now it is proven, and it becomes last-known-good
    reloaded = time.time()
    newer = take_snapshot([str(tree)], snaps, reloaded + 600, 5, applied_at=reloaded)
    chosen = known_good(snaps)
    assert newer is not None and chosen is not None and chosen.path == newer


def test_a_new_file_after_the_start_is_caught_by_its_directory(tree: Path, tmp_path: Path) -> None:
    applied = time.time()
    time.sleep(0.05)
    (tree / "sub" / "new.conf").write_text("x\n")
    os.utime(tree / "sub", (0, 0))  # times set back: the ctime still tells
    os.utime(tree / "sub" / "new.conf", (0, 0))
    attempt = attempt_snapshot([str(tree)], tmp_path / "snaps", applied + 60, 5, applied_at=applied)
    assert attempt.path is None
    assert "changed at" in attempt.reason


def test_the_newest_proven_snapshot_is_never_pruned(tree: Path, tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"
    applied = time.time() + 1
    proven = take_snapshot([str(tree)], snaps, 10_000.0, 2, applied_at=applied)
    assert proven is not None
    for n in range(4):  # unproven snapshots (a caller that gives no applied_at)
        (tree / "a.conf").write_text(f"a = {n}\n")
        assert take_snapshot([str(tree)], snaps, 10_001.0 + n, 2) is not None
    kept = sorted(p for p in snaps.iterdir() if not p.name.startswith("."))
    assert proven in kept
    assert len(kept) == 3  # keep=2 newest, plus the newest proven one
    chosen = known_good(snaps)
    assert chosen is not None and chosen.path == proven
    assert "newer unproven snapshots not used" in chosen.why


def test_without_applied_at_the_snapshot_is_taken_but_unproven(tree: Path, tmp_path: Path) -> None:
    made = take_snapshot([str(tree)], tmp_path / "snaps", 1000.0, 5)
    assert made is not None
    assert json.loads((made / MANIFEST).read_text())["proven"] is False
    chosen = known_good(tmp_path / "snaps")
    assert chosen is not None and not chosen.proven
    assert chosen.why.startswith("no proven snapshot")
    # an unchanged tree proven later gets a proven snapshot of its own
    applied = time.time() + 1
    assert take_snapshot([str(tree)], tmp_path / "snaps", 1001.0, 5, applied_at=applied)
    assert take_snapshot([str(tree)], tmp_path / "snaps", 1002.0, 5, applied_at=applied) is None


def test_describe_without_snapshots(tmp_path: Path) -> None:
    assert "no known-good snapshot yet" in describe_last_known_good(tmp_path / "none")
