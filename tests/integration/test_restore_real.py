"""Snapshots and restores of the real configuration trees of Debian packages (nginx,
apache2: their ``*-enabled/`` entries are symlinks to ``../*-available/`` or absolute
paths outside the tree), and the symlink-swap race. They run in-process as root; no lab.

tests/setup-env installs nginx and apache2; without them these tests skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from supervisor.restore import known_good, restore, take_snapshot
from tests.bench.race_restore import run_race

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="owners and trusted.* need root")


def _tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below ``root``, never following a link: kind, mode, owner, xattrs, and
    the content's digest or the link's target."""
    found: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            xattrs = tuple(
                sorted(
                    (key, os.getxattr(path, key, follow_symlinks=False))
                    for key in os.listxattr(path, follow_symlinks=False)
                )
            )
            meta = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid, xattrs)
            if stat.S_ISLNK(st.st_mode):
                found[os.path.relpath(path, root)] = (*meta, os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[os.path.relpath(path, root)] = (*meta, digest, st.st_mtime_ns)
            else:
                found[os.path.relpath(path, root)] = meta
    return found


def _copy(package_dir: Path, tmp_path: Path) -> Path:
    if not package_dir.is_dir():
        pytest.skip(f"{package_dir} is not installed (tests/setup-env installs it)")
    copy = tmp_path / "etc" / package_dir.name
    copy.parent.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--preserve=all", str(package_dir), str(copy)], check=True)
    return copy


def _links(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_symlink())


@needs_root
def test_the_live_nginx_tree_snapshots_read_only_and_identically(tmp_path: Path) -> None:
    live = Path("/etc/nginx")
    if not live.is_dir():
        pytest.skip("nginx is not installed (tests/setup-env installs it)")
    before = _tree(live)
    snap = take_snapshot([str(live)], tmp_path / "snaps", time.time(), 5, applied_at=time.time())
    assert snap is not None
    assert _tree(snap / "etc" / "nginx") == before
    assert _tree(live) == before
    assert os.readlink(snap / "etc/nginx/sites-enabled/default") == (
        "/etc/nginx/sites-available/default"
    )


@needs_root
@pytest.mark.parametrize("package", ["nginx", "apache2"])
def test_a_debian_tree_round_trips_through_snapshot_corruption_and_restore(
    tmp_path: Path, package: str
) -> None:
    conf = _copy(Path("/etc") / package, tmp_path)
    main = conf / f"{package}.conf"
    (conf / "conf.d").mkdir(exist_ok=True)
    sparse = conf / "conf.d" / "zeros.bin"
    with sparse.open("wb") as handle:
        handle.seek(8 << 20)
        handle.write(b"end")
    os.setxattr(main, "user.deployed-by", b"ansible")
    os.setxattr(main, "trusted.checked", b"yes")
    if shutil.which("setfacl"):
        subprocess.run(["setfacl", "-m", "u:1:r,g:1:r", str(main)], check=True)
    os.chown(conf / "conf.d", 0, 1)
    links = _links(conf)
    assert links, f"{package} ships no symlinks?"
    good = _tree(conf)
    applied = time.time()

    snap = take_snapshot([str(conf)], tmp_path / "snaps", applied + 600, 5, applied_at=applied)
    assert snap is not None
    chosen = known_good(tmp_path / "snaps")
    assert chosen is not None and chosen.path == snap and chosen.proven
    assert _tree(snap / str(conf).lstrip("/")) == good

    main.write_text("events {\n broken\n")  # a corrupted file (xattrs gone with it)
    main.chmod(0o666)
    links[0].unlink()
    links[0].symlink_to("/etc/shadow")  # a corrupted link
    links[-1].unlink()  # a missing link
    (conf / "conf.d" / "extra.conf").write_text("junk\n")
    sparse.write_bytes(b"dense")
    assert _tree(conf) != good

    result = restore([str(conf)], snap, tmp_path / "backups", applied + 700, None)

    assert result.ok, result.detail
    assert _tree(conf) == good  # byte-identical, links intact, modes/owners/xattrs/mtimes
    assert sparse.stat().st_blocks * 512 < 1 << 20  # still sparse
    for link in links:
        assert link.is_symlink()


@needs_root
def test_the_symlink_swap_race_never_reads_or_writes_outside_the_paths(tmp_path: Path) -> None:
    counts = run_race(tmp_path / "race", seconds=6.0)
    assert counts.swaps > 1000
    assert counts.snapshots > 0
    assert counts.restores_ok + counts.restores_rolled_back > 0
    assert (counts.leaked_reads, counts.leaked_writes) == (0, 0), counts.lines()
