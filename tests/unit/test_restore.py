"""Snapshots, backups and restores with real files and real validator processes under tmp_path.

The live "host" is ``tmp_path/live``: ``etc/app/app.conf`` (a file) and ``etc/app/conf.d``
(a directory with files, a subdirectory and a relative symlink) are the named paths.
Owner tests need root (chown to uid/gid 1); elsewhere owners are simply compared.
"""

from __future__ import annotations

import calendar
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.restore import (
    MANIFEST,
    RestoreError,
    check_paths,
    fingerprint,
    latest_snapshot,
    live_problems,
    restore,
    take_snapshot,
)
from supervisor.restore import apply as apply_module
from supervisor.restore import snapshots as snapshots_module
from supervisor.restore import tree_writer as tree_writer_module

NOW = float(calendar.timegm((2026, 11, 23, 3, 45, 1, 0, 0, 0)))
STAMP = "20261123T034501Z"
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="chown to another user needs root")


class Host:
    """A live tree under tmp_path plus the state directories the daemon would pass."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.live = tmp_path / "live"
        self.app = self.live / "etc" / "app"
        self.conf = self.app / "app.conf"
        self.confd = self.app / "conf.d"
        self.snapshots = tmp_path / "state" / "snapshots" / "app.service"
        self.backups = tmp_path / "state" / "backups" / "app.service"
        self.paths = [str(self.conf), str(self.confd)]

    def build_good(self) -> None:
        self.app.mkdir(parents=True)
        self.conf.write_text("listen 80;\n")
        self.conf.chmod(0o640)
        self.confd.mkdir()
        self.confd.chmod(0o750)
        (self.confd / "a.conf").write_text("a = 1\n")
        (self.confd / "b.conf").write_text("b = 2\n")
        (self.confd / "b.conf").chmod(0o600)
        (self.confd / "sub").mkdir()
        (self.confd / "sub" / "c.conf").write_text("c = 3\n")
        (self.confd / "current").symlink_to("a.conf")
        if IS_ROOT:
            os.chown(self.conf, 1, 1)
            os.chown(self.confd / "b.conf", 1, 1)
            os.chown(self.confd / "current", 1, 1, follow_symlinks=False)

    def break_it(self) -> None:
        """What a bad deploy does: a broken file, an extra file, missing ones, a moved link."""
        self.conf.write_text("listen eighty\n")
        self.conf.chmod(0o666)
        (self.confd / "extra.conf").write_text("junk\n")
        (self.confd / "b.conf").unlink()
        (self.confd / "sub" / "c.conf").unlink()
        (self.confd / "current").unlink()
        (self.confd / "current").symlink_to("extra.conf")

    def mirror(self, root: Path, path: Path) -> Path:
        return root / str(path).lstrip("/")

    def script(self, name: str, body: str, mode: int = 0o755) -> str:
        path = self.tmp / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(mode)
        return str(path)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    made = Host(tmp_path)
    made.build_good()
    return made


def _leftovers(*roots: Path) -> list[str]:
    """Temporary names a write or a snapshot could leave behind."""
    found = []
    for root in roots:
        for directory, dirs, files in os.walk(root):
            for name in dirs + files:
                if ".hs-tmp" in name or name.startswith((".tmp-", ".trash-")):
                    found.append(os.path.join(directory, name))
    return found


def _entries(root: Path) -> Iterator[str]:
    for directory, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            yield os.path.relpath(os.path.join(directory, name), root)


# -- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_changes_with_content_mode_new_file_and_symlink_target(host: Host) -> None:
    seen = {fingerprint(host.paths)}
    assert fingerprint(host.paths) in seen  # stable when nothing changes
    assert fingerprint(list(reversed(host.paths))) in seen  # order of the list does not matter
    os.utime(host.conf, (1, 1))
    assert fingerprint(host.paths) in seen  # nor the modification time

    def relink() -> None:
        (host.confd / "current").unlink()
        (host.confd / "current").symlink_to("b.conf")

    changes: list[tuple[str, Callable[[], object]]] = [
        ("content", lambda: host.conf.write_text("listen 81;\n")),
        ("mode", lambda: host.conf.chmod(0o644)),
        ("new file in a directory", lambda: (host.confd / "sub" / "new.conf").write_text("")),
        ("symlink target", relink),
        ("file removed again", lambda: (host.confd / "sub" / "new.conf").unlink()),
    ]
    for what, change in changes:
        change()
        digest = fingerprint(host.paths)
        assert digest not in seen, what
        seen.add(digest)


@needs_root
def test_fingerprint_changes_with_owner(host: Host) -> None:
    before = fingerprint(host.paths)
    os.chown(host.confd / "a.conf", 2, 2)
    assert fingerprint(host.paths) != before


def test_fingerprint_counts_a_missing_path(host: Host) -> None:
    missing = str(host.app / "later.conf")
    without = fingerprint([*host.paths, missing])
    assert without != fingerprint(host.paths)
    Path(missing).write_text("")
    assert fingerprint([*host.paths, missing]) != without


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["etc/app.conf"], "not absolute"),
        (["/etc/app/../shadow"], "not in normal form"),
        (["/etc/app/"], "not in normal form"),
        (["/"], "path / cannot be restored"),
        (["/etc/app", "/etc/app/app.conf"], "lies inside /etc/app"),
        (["/etc/app", "/etc/app"], "named twice"),
        ([], "no paths named"),
    ],
)
def test_bad_named_paths_are_refused(tmp_path: Path, paths: list[str], message: str) -> None:
    with pytest.raises(RestoreError, match=message):
        fingerprint(paths)
    with pytest.raises(RestoreError, match=message):
        check_paths(paths, tmp_path)


# -- snapshots -----------------------------------------------------------------------------


def test_snapshot_is_a_complete_mirror_with_modes_owners_times_and_symlinks(host: Host) -> None:
    made = take_snapshot(host.paths, host.snapshots, NOW, keep=5)

    assert made == host.snapshots / STAMP
    assert latest_snapshot(host.snapshots) == made
    for live in [host.conf, host.confd, *(p for p in host.confd.rglob("*"))]:
        copy = host.mirror(made, live)
        want, have = os.lstat(live), os.lstat(copy)
        assert stat.S_IFMT(have.st_mode) == stat.S_IFMT(want.st_mode), live
        assert stat.S_IMODE(have.st_mode) == stat.S_IMODE(want.st_mode), live
        assert (have.st_uid, have.st_gid) == (want.st_uid, want.st_gid), live
        assert have.st_mtime_ns == want.st_mtime_ns, live
        if live.is_symlink():
            assert os.readlink(copy) == os.readlink(live)
        elif live.is_file():
            assert copy.read_bytes() == live.read_bytes()
    assert sorted(_entries(host.mirror(made, host.confd))) == sorted(_entries(host.confd))
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700  # configs may hold secrets

    manifest = json.loads((made / MANIFEST).read_text())
    assert manifest["paths"] == sorted(host.paths)
    assert manifest["fingerprint"] == fingerprint(host.paths)
    assert manifest["time"] == NOW
    assert manifest["absent"] == []
    assert _leftovers(host.snapshots) == []


@needs_root
def test_snapshot_keeps_owners(host: Host) -> None:
    made = take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    assert made is not None
    copy = host.mirror(made, host.conf)
    assert (copy.stat().st_uid, copy.stat().st_gid) == (1, 1)
    link = host.mirror(made, host.confd / "current")
    assert os.lstat(link).st_uid == 1


def test_snapshot_only_when_changed_and_keeps_the_newest(host: Host) -> None:
    first = take_snapshot(host.paths, host.snapshots, NOW, keep=2)
    assert first is not None
    assert take_snapshot(host.paths, host.snapshots, NOW + 60, keep=2) is None
    assert [p.name for p in host.snapshots.iterdir() if not p.name.startswith(".")] == [STAMP]

    made = []
    for minute in (2, 3, 4):
        host.conf.write_text(f"listen {minute};\n")
        snap = take_snapshot(host.paths, host.snapshots, NOW + 60 * minute, keep=2)
        assert snap is not None
        made.append(snap)

    kept = sorted(p for p in host.snapshots.iterdir() if not p.name.startswith("."))
    assert kept == made[-2:]
    assert latest_snapshot(host.snapshots) == made[-1]
    assert host.mirror(made[-1], host.conf).read_text() == "listen 4;\n"
    assert _leftovers(host.snapshots) == []


def test_two_snapshots_in_one_second_get_distinct_names(host: Host) -> None:
    take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    host.conf.write_text("changed\n")
    second = take_snapshot(host.paths, host.snapshots, NOW + 0.5, keep=5)
    assert second == host.snapshots / f"{STAMP}.1"
    assert latest_snapshot(host.snapshots) == second


def test_a_clock_stepped_back_never_hides_the_newest_snapshot(host: Host) -> None:
    take_snapshot(host.paths, host.snapshots, NOW, keep=2)
    host.conf.write_text("changed\n")
    earlier = take_snapshot(host.paths, host.snapshots, NOW - 86400, keep=2)
    assert earlier == host.snapshots / f"{STAMP}.1"
    assert latest_snapshot(host.snapshots) == earlier
    assert json.loads((earlier / MANIFEST).read_text())["time"] == NOW - 86400


def test_latest_snapshot_ignores_incomplete_directories(tmp_path: Path) -> None:
    assert latest_snapshot(tmp_path / "none") is None
    (tmp_path / "20260101T000000Z").mkdir()
    (tmp_path / "20260101T000000Z" / MANIFEST).write_text("{}")
    (tmp_path / "20270101T000000Z").mkdir()  # no manifest: never finished
    (tmp_path / ".tmp-abc").mkdir()
    (tmp_path / ".tmp-abc" / MANIFEST).write_text("{}")
    assert latest_snapshot(tmp_path) == tmp_path / "20260101T000000Z"


def _fail_after_first_copy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    real = snapshots_module._copy_file
    copied: list[str] = []

    def copy_then_fail(entry: Any, dir_fd: int, name: str) -> None:
        if copied:
            raise OSError(28, "No space left on device", name)
        real(entry, dir_fd, name)
        copied.append(name)

    monkeypatch.setattr(snapshots_module, "_copy_file", copy_then_fail)
    return copied


def test_failed_snapshot_leaves_nothing_and_keeps_the_previous(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    host.conf.write_text("changed\n")
    copied = _fail_after_first_copy(monkeypatch)

    with pytest.raises(RestoreError, match="No space left on device"):
        take_snapshot(host.paths, host.snapshots, NOW + 60, keep=5)

    assert copied  # the failure came after a file had been copied
    assert latest_snapshot(host.snapshots) == good
    assert _leftovers(host.snapshots) == []


def test_crash_mid_snapshot_never_looks_complete(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    host.conf.write_text("changed\n")

    pid = os.fork()
    if pid == 0:  # the child dies abruptly after copying one file: no cleanup runs
        try:
            real = snapshots_module._copy_file

            def copy_then_die(entry: Any, dir_fd: int, name: str) -> None:
                real(entry, dir_fd, name)
                os._exit(3)

            monkeypatch.setattr(snapshots_module, "_copy_file", copy_then_die)
            take_snapshot(host.paths, host.snapshots, NOW + 60, keep=5)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 3

    assert _leftovers(host.snapshots) != []  # the half snapshot is there...
    assert latest_snapshot(host.snapshots) == good  # ...but never taken for one

    made = take_snapshot(host.paths, host.snapshots, NOW + 120, keep=5)
    assert made is not None
    assert latest_snapshot(host.snapshots) == made
    assert _leftovers(host.snapshots) == []  # cleared by the next snapshot


def test_snapshot_refuses_a_directory_inside_the_paths(host: Host) -> None:
    with pytest.raises(RestoreError, match="lies inside the paths"):
        take_snapshot(host.paths, host.confd / "snapshots", NOW, keep=5)
    assert not (host.confd / "snapshots").exists()


# -- restore -------------------------------------------------------------------------------


def _broken(host: Host) -> tuple[Path, str, dict[str, bytes]]:
    """Snapshot the good tree, break it; return the snapshot, the broken fingerprint and
    the broken tree's files."""
    snap = take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    assert snap is not None
    host.break_it()
    files = {
        str(p): p.read_bytes()
        for p in [host.conf, *host.confd.rglob("*")]
        if p.is_file() and not p.is_symlink()
    }
    return snap, fingerprint(host.paths), files


def _assert_good(host: Host, snap: Path) -> None:
    assert fingerprint(host.paths) == json.loads((snap / MANIFEST).read_text())["fingerprint"]
    assert host.conf.read_text() == "listen 80;\n"
    assert stat.S_IMODE(host.conf.stat().st_mode) == 0o640
    assert (host.confd / "b.conf").read_text() == "b = 2\n"
    assert (host.confd / "sub" / "c.conf").read_text() == "c = 3\n"
    assert not (host.confd / "extra.conf").exists()
    assert os.readlink(host.confd / "current") == "a.conf"


def test_restore_from_snapshot_brings_back_file_and_directory(host: Host) -> None:
    snap, broken, files = _broken(host)

    result = restore(host.paths, snap, host.backups, NOW + 3600, None)

    assert result.ok, result.detail
    _assert_good(host, snap)
    assert set(result.written) == {
        str(host.conf),
        str(host.confd / "b.conf"),
        str(host.confd / "current"),
        str(host.confd / "extra.conf"),
        str(host.confd / "sub" / "c.conf"),
    }
    # The backup is the broken state as it was live, modes included.
    assert result.backup == host.backups / "20261123T044501Z"
    assert json.loads((result.backup / MANIFEST).read_text())["fingerprint"] == broken
    for live, content in files.items():
        assert host.mirror(result.backup, Path(live)).read_bytes() == content
    assert stat.S_IMODE(host.mirror(result.backup, host.conf).stat().st_mode) == 0o666
    assert os.readlink(host.mirror(result.backup, host.confd / "current")) == "extra.conf"
    assert str(result.backup) in result.detail
    assert _leftovers(host.live, host.backups) == []


def test_restore_leaves_matching_files_alone(host: Host) -> None:
    snap, _, _ = _broken(host)
    before = os.stat(host.confd / "a.conf").st_ino
    result = restore(host.paths, snap, host.backups, NOW + 60, None)
    assert result.ok
    assert os.stat(host.confd / "a.conf").st_ino == before
    assert str(host.confd / "a.conf") not in result.written


def test_validator_exit_0_keeps_the_restored_files(host: Host) -> None:
    snap, _, _ = _broken(host)
    validator = host.script("ok", f'grep -q "listen 80" "{host.conf}"\n')

    result = restore(host.paths, snap, host.backups, NOW + 60, [validator])

    assert result.ok, result.detail
    assert "validated" in result.detail
    _assert_good(host, snap)
    assert _leftovers(host.live) == []


def test_validator_exit_1_rolls_back_to_the_broken_files(host: Host) -> None:
    snap, broken, files = _broken(host)
    validator = host.script("bad", "echo checking\necho bad config >&2\nexit 1\n")

    result = restore(host.paths, snap, host.backups, NOW + 60, [validator, "-t"])

    assert not result.ok
    assert "bad config" in result.detail
    assert "exited 1" in result.detail
    assert "rolled back" in result.detail
    assert "\n" not in result.detail
    assert fingerprint(host.paths) == broken
    for live, content in files.items():
        assert Path(live).read_bytes() == content
    assert not (host.confd / "b.conf").exists()  # re-created by the restore, removed again
    assert result.backup is not None and result.backup.is_dir()  # kept for the record
    assert _leftovers(host.live, host.backups) == []


def test_validator_output_is_bounded_to_its_tail(host: Host) -> None:
    snap, _, _ = _broken(host)
    validator = host.script(
        "chatty",
        "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done\n"
        "echo the real error\nexit 2\n",
    )

    result = restore(host.paths, snap, host.backups, NOW + 60, [validator])

    assert not result.ok
    assert "the real error" in result.detail
    assert "line 0 " not in result.detail
    assert result.backup is not None
    fixed = len(validator) + len(str(result.backup)) + 100
    assert len(result.detail) < apply_module.OUTPUT_TAIL + fixed


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda host: str(host.tmp / "no-such-validator"), "does not exist"),
        (lambda host: host.script("noexec", "exit 0\n", mode=0o644), "not an executable file"),
    ],
    ids=["missing", "not-executable"],
)
def test_validator_that_cannot_run_rolls_back(
    host: Host, make: Callable[[Host], str], message: str
) -> None:
    snap, broken, _ = _broken(host)
    program = make(host)

    result = restore(host.paths, snap, host.backups, NOW + 60, [program])

    assert not result.ok
    assert program in result.detail
    assert message in result.detail
    assert fingerprint(host.paths) == broken
    assert _leftovers(host.live) == []


def _gone(pid: int, within: float = 3.0) -> bool:
    """True once ``pid`` has exited (a zombie waiting for init to reap it counts)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.02)
    return False


def test_validator_that_hangs_is_killed_with_its_children_and_rolled_back(host: Host) -> None:
    snap, broken, _ = _broken(host)
    pidfile = host.tmp / "child.pid"
    validator = host.script("hang", f"sleep 30 &\necho $! > {pidfile}\necho waiting\nwait\n")

    started = time.monotonic()
    result = restore(host.paths, snap, host.backups, NOW + 60, [validator], validate_timeout=0.3)

    assert time.monotonic() - started < 3
    assert not result.ok
    assert "timed out after 0.3s" in result.detail
    assert "waiting" in result.detail
    assert fingerprint(host.paths) == broken
    assert _gone(int(pidfile.read_text()))


def test_file_absent_before_is_removed_again_on_rollback(host: Host) -> None:
    new = host.app / "new.conf"
    defaults = host.tmp / "defaults"
    host.mirror(defaults, new).parent.mkdir(parents=True)
    host.mirror(defaults, new).write_text("new = yes\n")
    paths = [str(new)]
    failing = host.script("bad", "echo nope >&2\nexit 1\n")

    result = restore(paths, defaults, host.backups, NOW, [failing])

    assert not result.ok
    assert not new.exists()
    assert result.backup is not None
    assert json.loads((result.backup / MANIFEST).read_text())["absent"] == [str(new)]
    assert str(new) in result.written
    assert _leftovers(host.app) == []

    assert restore(paths, defaults, host.backups, NOW + 1, None).ok  # without the validator
    assert new.read_text() == "new = yes\n"


def test_restore_from_a_defaults_directory(host: Host) -> None:
    defaults = host.tmp / "defaults"
    conf = host.mirror(defaults, host.conf)
    confd = host.mirror(defaults, host.confd)
    confd.mkdir(parents=True)
    conf.write_text("listen 8080;\n")
    conf.chmod(0o600)
    (confd / "only.conf").write_text("only = 1\n")
    confd.chmod(0o755)

    result = restore(host.paths, defaults, host.backups, NOW, None)

    assert result.ok, result.detail
    assert host.conf.read_text() == "listen 8080;\n"
    assert stat.S_IMODE(host.conf.stat().st_mode) == 0o600
    assert sorted(_entries(host.confd)) == ["only.conf"]
    assert stat.S_IMODE(host.confd.stat().st_mode) == 0o755
    assert not (defaults / MANIFEST).exists()  # a plain directory, not a snapshot
    assert _leftovers(host.live) == []


@needs_root
def test_restore_sets_the_source_owner(host: Host) -> None:
    defaults = host.tmp / "defaults"
    conf = host.mirror(defaults, host.conf)
    conf.parent.mkdir(parents=True)
    conf.write_text("owned\n")
    os.chown(conf, 1, 1)
    os.chown(host.conf, 0, 0)

    assert restore([str(host.conf)], defaults, host.backups, NOW, None).ok
    assert (host.conf.stat().st_uid, host.conf.stat().st_gid) == (1, 1)


def test_restore_replaces_a_symlinked_directory_instead_of_writing_through_it(
    host: Host,
) -> None:
    snap = take_snapshot(host.paths, host.snapshots, NOW, keep=5)
    assert snap is not None
    elsewhere = host.tmp / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not ours\n")
    for child in host.confd.iterdir():
        if child.is_dir() and not child.is_symlink():
            for grandchild in child.iterdir():
                grandchild.unlink()
            child.rmdir()
        else:
            child.unlink()
    host.confd.rmdir()
    host.confd.symlink_to(elsewhere)

    result = restore(host.paths, snap, host.backups, NOW + 60, None)

    assert result.ok, result.detail
    assert host.confd.is_dir() and not host.confd.is_symlink()
    assert sorted(_entries(elsewhere)) == ["keep.txt"]
    assert (elsewhere / "keep.txt").read_text() == "not ours\n"
    _assert_good(host, snap)


@pytest.mark.parametrize("failing_write", [1, 2])
def test_write_error_rolls_back_names_the_path_and_leaves_no_temp_file(
    host: Host, monkeypatch: pytest.MonkeyPatch, failing_write: int
) -> None:
    snap, broken, _ = _broken(host)
    real = tree_writer_module._replace
    calls: list[str] = []

    def fail_once(dir_fd: int, temp: str, name: str, have: os.stat_result | None) -> None:
        calls.append(name)
        assert temp in os.listdir(dir_fd)  # the temporary file is written, not yet renamed
        if len(calls) == failing_write:
            raise OSError(28, "No space left on device")
        real(dir_fd, temp, name, have)

    monkeypatch.setattr(tree_writer_module, "_replace", fail_once)

    result = restore(host.paths, snap, host.backups, NOW + 60, None)

    assert not result.ok
    assert "No space left on device" in result.detail
    # app.conf is written first (its directory is not a named one), then conf.d/b.conf
    failed = [host.conf, host.confd / "b.conf"][failing_write - 1]
    assert f"failed at {failed}:" in result.detail
    assert result.written == tuple(str(host.conf) for _ in range(failing_write - 1))
    assert "rolled back" in result.detail
    assert fingerprint(host.paths) == broken
    assert _leftovers(host.live) == []


def test_a_failed_rollback_is_reported_not_raised(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap, _, _ = _broken(host)
    real = tree_writer_module._put_file
    calls: list[str] = []

    def fail_after_first(source: str, dir_fd: int, name: str, have: os.stat_result | None) -> None:
        calls.append(name)
        if len(calls) > 1:
            raise OSError(5, "Input/output error")
        real(source, dir_fd, name, have)

    monkeypatch.setattr(tree_writer_module, "_put_file", fail_after_first)

    result = restore(host.paths, snap, host.backups, NOW + 60, None)

    assert not result.ok
    assert "rolling back failed too" in result.detail
    assert result.backup is not None
    assert str(result.backup) in result.detail
    assert _leftovers(host.live) == []


# -- refusals: nothing is written ------------------------------------------------------------


def _defaults_with_link(
    host: Host, target: str, name: str = "evil", directory: str = "defaults"
) -> Path:
    defaults = host.tmp / directory
    confd = host.mirror(defaults, host.confd)
    confd.mkdir(parents=True)
    (confd / "a.conf").write_text("a = 1\n")
    (confd / name).symlink_to(target)
    return defaults


def _assert_refused(host: Host, defaults: Path, message: str) -> None:
    before = fingerprint(host.paths)
    with pytest.raises(RestoreError, match=message):
        restore([str(host.confd)], defaults, host.backups, NOW, None)
    assert fingerprint(host.paths) == before
    assert not host.backups.exists()


@pytest.mark.parametrize(
    "target",
    [
        "/etc/shadow",  # absolute, outside
        "../../../../../../../../etc/shadow",  # relative, climbs out
        "../app.conf",  # another file next to it, but not a named path
        "sub/up/../secret",  # lexically inside conf.d, really conf.d/../secret
        "loop2",  # a loop
    ],
)
def test_a_source_symlink_is_restored_as_a_link_wherever_it_points(host: Host, target: str) -> None:
    """Debian's *-enabled/ links point to ../*-available/ or /usr/share: a link inside the
    named paths is written as a link, never followed, so it cannot write outside them."""
    defaults = _defaults_with_link(host, target)
    (host.mirror(defaults, host.confd) / "sub").mkdir()
    (host.mirror(defaults, host.confd) / "sub" / "up").symlink_to("..")
    (host.mirror(defaults, host.confd) / "loop2").symlink_to("evil")
    shadow_before = Path("/etc/shadow").read_bytes() if IS_ROOT else b""

    result = restore([str(host.confd)], defaults, host.backups, NOW, None)

    assert result.ok, result.detail
    assert os.readlink(host.confd / "evil") == target
    assert os.readlink(host.confd / "sub" / "up") == ".."
    if IS_ROOT:
        assert Path("/etc/shadow").read_bytes() == shadow_before


def test_a_live_symlink_inside_the_paths_is_replaced_not_written_through(host: Host) -> None:
    outside = host.tmp / "outside"
    outside.mkdir()
    snap, _, _ = _broken(host)
    (host.confd / "b.conf").symlink_to(outside / "b.conf")  # b.conf is a file in the snapshot
    (host.confd / "sub").rename(host.tmp / "sub-away")
    (host.confd / "sub").symlink_to(outside)  # sub is a directory in the snapshot

    result = restore(host.paths, snap, host.backups, NOW + 60, None)

    assert result.ok, result.detail
    assert list(outside.iterdir()) == []
    _assert_good(host, snap)


def test_a_symlink_above_a_named_path_is_refused_by_restore_and_snapshot(host: Host) -> None:
    """/etc/alias -> app: root never walks through it (a user who could change it could
    send root's writes anywhere); the policy must name the real path."""
    (host.live / "etc" / "alias").symlink_to("app")
    confd = str(host.live / "etc" / "alias" / "conf.d")
    defaults = host.tmp / "defaults"
    mirrored = defaults / confd.lstrip("/")
    mirrored.mkdir(parents=True)
    (mirrored / "a.conf").write_text("a = 9\n")
    before = fingerprint(host.paths)

    with pytest.raises(RestoreError, match=r"alias: is a symlink.*name the real path .*app/conf.d"):
        restore([confd], defaults, host.backups, NOW, None)
    with pytest.raises(RestoreError, match=r"snapshot refused: .*alias: is a symlink"):
        take_snapshot([confd], host.snapshots, NOW, keep=5)
    assert fingerprint(host.paths) == before
    assert not host.backups.exists()
    assert latest_snapshot(host.snapshots) is None
    assert live_problems([confd]) and "name the real path" in live_problems([confd])[0]
    assert live_problems(host.paths) == []


def test_validator_killed_by_a_signal(host: Host) -> None:
    snap, broken, _ = _broken(host)
    validator = host.script("segv", "kill -SEGV $$\n")
    result = restore(host.paths, snap, host.backups, NOW + 60, [validator])
    assert not result.ok
    assert "killed by SIGSEGV" in result.detail
    assert fingerprint(host.paths) == broken


def test_a_symlinked_directory_in_the_source_is_refused(host: Host) -> None:
    defaults = host.tmp / "defaults"
    real = host.tmp / "real"
    host.mirror(real, host.app).mkdir(parents=True)
    host.mirror(real, host.conf).write_text("x\n")
    host.mirror(defaults, host.live).parent.mkdir(parents=True)
    host.mirror(defaults, host.live).symlink_to(host.mirror(real, host.live))
    before = host.conf.read_text()

    with pytest.raises(RestoreError, match="is a symlink: a restore source must mirror"):
        restore([str(host.conf)], defaults, host.backups, NOW, None)
    assert host.conf.read_text() == before


def test_a_path_missing_from_the_source_is_refused(host: Host) -> None:
    defaults = host.tmp / "defaults"
    host.mirror(defaults, host.conf).parent.mkdir(parents=True)
    host.mirror(defaults, host.conf).write_text("x\n")
    before = fingerprint(host.paths)

    with pytest.raises(RestoreError, match=f"{host.confd} is missing from {defaults}"):
        restore(host.paths, defaults, host.backups, NOW, None)
    assert fingerprint(host.paths) == before
    assert not host.backups.exists()


def test_a_backup_that_cannot_be_written_is_refused_before_writing(host: Host) -> None:
    snap, broken, _ = _broken(host)
    blocker = host.tmp / "not-a-dir"
    blocker.write_text("")

    with pytest.raises(RestoreError, match=r"cannot back up .* nothing restored"):
        restore(host.paths, snap, blocker / "backups", NOW, None)
    assert fingerprint(host.paths) == broken


def test_a_fifo_in_the_source_is_refused(host: Host) -> None:
    defaults = _defaults_with_link(host, "a.conf", name="fine")
    os.mkfifo(host.mirror(defaults, host.confd) / "pipe")
    _assert_refused(host, defaults, "not a regular file, directory or symlink")


def test_a_validator_others_may_write_is_not_run_and_the_restore_rolls_back(host: Host) -> None:
    snap, broken, _ = _broken(host)
    marker = host.tmp / "ran"
    validator = host.script("writable", f"touch {marker}\nexit 0\n", mode=0o777)

    result = restore(host.paths, snap, host.backups, NOW + 60, [validator])

    assert not result.ok
    assert "is not run" in result.detail and "writable" in result.detail
    assert not marker.exists()
    assert fingerprint(host.paths) == broken
