"""Change-aware rollback, the shell's part on real files: the masked diff of what a
rollback changes, and the watcher of restore paths (inotify, and polling)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from supervisor.config.recovery import DEFAULT_DIFF_MASK
from supervisor.errors import SupervisorError
from supervisor.restore.diffing import DIFF_CAP, FILE_CAP, mask_lines, rollback_diff
from supervisor.restore.watcher import ChangeWatcher


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    """A live tree and a snapshot mirroring it (``SNAP/<path without />``)."""
    live = tmp_path / "live" / "nginx"
    (live / "sites").mkdir(parents=True)
    (live / "nginx.conf").write_text("worker_processes 1;\nevents {}\n")
    (live / "sites" / "default").write_text("server { listen 80; }\n")
    snapshot = tmp_path / "snap"
    mirror = snapshot / str(live).lstrip("/")
    (mirror / "sites").mkdir(parents=True)
    (mirror / "nginx.conf").write_text("worker_processes 1;\nevents {}\n")
    (mirror / "sites" / "default").write_text("server { listen 80; }\n")
    return live, snapshot


def test_the_diff_shows_what_the_restore_changes_with_secrets_masked(
    trees: tuple[Path, Path],
) -> None:
    live, snapshot = trees
    (live / "nginx.conf").write_text(
        "worker_processes 1;\nevents {\n  password = hunter2-live;\n}\nbroken here\n"
    )
    (live / "sites" / "extra").write_text("api_key: sk-abc123\n")
    (live / "blob.bin").write_bytes(b"\0\1\2")
    diff = rollback_diff([str(live)], snapshot, DEFAULT_DIFF_MASK)
    assert f"--- {live}/nginx.conf (found)" in diff
    assert f"+++ {live}/nginx.conf (restored)" in diff
    assert "-broken here" in diff and "-events {\n" in diff and "+events {}" in diff
    assert "password = ****;" in diff and "hunter2" not in diff
    assert "sk-abc123" not in diff and "api_key: ****" in diff
    assert f"{live}/blob.bin: removed by the restore" in diff
    assert "default" not in diff  # unchanged files are not shown


def test_a_binary_or_oversized_file_is_named_not_shown(trees: tuple[Path, Path]) -> None:
    live, snapshot = trees
    mirror = snapshot / str(live).lstrip("/")
    (live / "cert.der").write_bytes(b"\x30\x82\0\xff")
    (mirror / "cert.der").write_bytes(b"\x30\x82\0\xfe")
    (live / "huge.conf").write_text("a\n" * FILE_CAP)
    (mirror / "huge.conf").write_text("b\n" * FILE_CAP)
    diff = rollback_diff([str(live)], snapshot, ())
    assert f"{live}/cert.der: differs (binary or too big: not shown)" in diff
    assert f"{live}/huge.conf: differs (binary or too big: not shown)" in diff
    assert "\x30\x82" not in diff and "\na\n" not in diff


def test_the_diff_is_capped_and_empty_when_nothing_changes(trees: tuple[Path, Path]) -> None:
    live, snapshot = trees
    assert rollback_diff([str(live)], snapshot, ()) == ""
    (live / "nginx.conf").write_text("".join(f"line {n}\n" for n in range(20_000)))
    diff = rollback_diff([str(live)], snapshot, ())
    assert len(diff) < DIFF_CAP + 100 and diff.endswith(
        f"[... diff cut at {DIFF_CAP} characters]\n"
    )


def test_mask_patterns_are_the_policys() -> None:
    text = "+ssl_pass_phrase topsecret;\n+listen 80;\n"
    assert mask_lines(text, (r"ssl_pass_phrase",)) == "+ssl_pass_phrase ****;\n+listen 80;\n"
    assert "topsecret" in mask_lines(text, (r"nothing-matches",))


# -- the watcher ---------------------------------------------------------------------------


async def _changes(watcher: ChangeWatcher) -> asyncio.Queue[tuple[str, tuple[str, ...]]]:
    queue: asyncio.Queue[tuple[str, tuple[str, ...]]] = asyncio.Queue()
    watcher.listen(lambda unit, paths: queue.put_nowait((unit, paths)))
    return queue


@pytest.mark.parametrize("use_inotify", [True, False], ids=["inotify", "polling"])
async def test_a_content_change_is_reported_a_touch_is_not(
    trees: tuple[Path, Path], use_inotify: bool
) -> None:
    live, _ = trees
    watcher = ChangeWatcher(poll_every=0.05, use_inotify=use_inotify)
    queue = await _changes(watcher)
    await watcher.watch("web.service", (str(live),))
    try:
        os.utime(live / "nginx.conf")  # a touch: same fingerprint
        await asyncio.sleep(0.3)
        assert queue.empty()
        (live / "sites" / "default").write_text("server { listen 81; }\n")
        assert await asyncio.wait_for(queue.get(), 5) == ("web.service", (str(live),))
        assert watcher.method("web.service") == ("inotify" if use_inotify else "polling")
        (live / "new").mkdir()
        await asyncio.sleep(0.2)
        while not queue.empty():
            queue.get_nowait()
        (live / "new" / "x.conf").write_text("x\n")  # inside a directory made after watch
        assert (await asyncio.wait_for(queue.get(), 5))[0] == "web.service"
    finally:
        await watcher.close()


async def test_quiet_takes_the_daemons_own_write_as_no_change(trees: tuple[Path, Path]) -> None:
    live, _ = trees
    watcher = ChangeWatcher()
    queue = await _changes(watcher)
    conf = live / "nginx.conf"
    await watcher.watch("web.service", (str(conf),))
    try:
        temp = live / ".nginx.conf.tmp"
        temp.write_text("restored\n")
        temp.rename(conf)  # renamed over: seen through the parent's watch
        await watcher.quiet("web.service")
        await asyncio.sleep(0.3)
        assert queue.empty()
        temp.write_text("edited\n")
        temp.rename(conf)
        assert (await asyncio.wait_for(queue.get(), 5))[0] == "web.service"
        watcher.unwatch("web.service")
        conf.write_text("after unwatch\n")
        await asyncio.sleep(0.3)
        assert queue.empty()
    finally:
        await watcher.close()


async def test_a_symlink_on_the_way_is_refused_and_never_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "app.conf").write_text("a\n")
    (tmp_path / "link").symlink_to(real)
    watcher = ChangeWatcher()
    try:
        with pytest.raises(SupervisorError, match="symlink"):
            await watcher.watch("web.service", (str(tmp_path / "link" / "app.conf"),))
    finally:
        await watcher.close()


async def test_units_sharing_a_directory_each_hear_of_their_own_files(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("a\n")
    (tmp_path / "b.conf").write_text("b\n")
    watcher = ChangeWatcher()
    queue = await _changes(watcher)
    await watcher.watch("a.service", (str(tmp_path / "a.conf"),))
    await watcher.watch("b.service", (str(tmp_path / "b.conf"),))
    try:
        (tmp_path / "b.conf").write_text("b2\n")
        assert (await asyncio.wait_for(queue.get(), 5))[0] == "b.service"
        watcher.unwatch("b.service")  # the shared directory stays watched for a
        (tmp_path / "a.conf").write_text("a2\n")
        assert (await asyncio.wait_for(queue.get(), 5))[0] == "a.service"
        await asyncio.sleep(0.2)
        assert queue.empty()
    finally:
        await watcher.close()
