"""The one durable write: temporary file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.fsutil import atomic_write, create_new_at, replace_at


def test_atomic_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")

    atomic_write(target, b"new\n", mode=0o640)

    assert target.read_bytes() == b"new\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["state.json"]


def test_atomic_write_replaces_a_symlink_without_writing_through_it(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not ours")
    target = tmp_path / "link"
    target.symlink_to(elsewhere)

    atomic_write(target, b"ours")

    assert not target.is_symlink() and target.read_bytes() == b"ours"
    assert elsewhere.read_text() == "not ours"


def test_a_failed_replace_removes_its_temporary_file(tmp_path: Path) -> None:
    def fail(fd: int) -> None:
        raise OSError(28, "No space left on device")

    dir_fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(OSError, match="No space"):
            replace_at(dir_fd, "file", fail)
    finally:
        os.close(dir_fd)

    assert os.listdir(tmp_path) == []


def _create_new(directory: Path, name: str, data: bytes) -> None:
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        create_new_at(dir_fd, name, data, 0o644)
    finally:
        os.close(dir_fd)


def test_create_new_writes_a_new_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    _create_new(tmp_path, "p.yaml", b"unit: a.service\n")
    assert (tmp_path / "p.yaml").read_bytes() == b"unit: a.service\n"
    assert os.listdir(tmp_path) == ["p.yaml"]


def test_create_new_never_overwrites_a_file_or_writes_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("mine\n")
    target = tmp_path / "target"
    (tmp_path / "link.yaml").symlink_to(target)
    with pytest.raises(FileExistsError):
        _create_new(tmp_path, "p.yaml", b"theirs\n")
    with pytest.raises(FileExistsError):
        _create_new(tmp_path, "link.yaml", b"theirs\n")
    assert (tmp_path / "p.yaml").read_text() == "mine\n"
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == ["link.yaml", "p.yaml"]
