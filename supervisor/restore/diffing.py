"""What a rollback changes, for its alert: a unified diff of the live files against the
snapshot about to be restored, with secrets masked.

Both trees are read the way a restore reads them: from a trusted root, by descriptor,
following no symlink (a symlink shows as its target text). Only text files are shown
line by line, each read up to `FILE_CAP` bytes; a binary file (a NUL byte, or not
UTF-8) or a longer one is only named. The whole diff is cut at `DIFF_CAP` characters.
Each line of it is masked: after a match of any of the policy's `diff_mask` patterns
the rest of the line becomes ``****``, and `supervisor.secrets.mask` runs over all.
Synchronous and reading the disk: call it in a thread.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from supervisor.restore.files import _named, _rel
from supervisor.restore.walk import open_below, open_dir, open_entry, opened
from supervisor.secrets import MASK, mask

__all__ = ["DIFF_CAP", "FILE_CAP", "mask_lines", "rollback_diff"]

FILE_CAP = 256 * 1024
DIFF_CAP = 16 * 1024

Content = str | bytes  # text, or bytes standing for a file not shown line by line
_BINARY = b"binary"
_TOO_BIG = b"too big"


def rollback_diff(paths: Sequence[str], snapshot: Path, patterns: Sequence[str]) -> str:
    """The masked unified diff from the live `paths` (``-``) to their copies in
    `snapshot` (``+``); "" when they are the same."""
    live = _read_tree(open_dir("/"), _named(paths))
    restored = _read_tree(open_dir(snapshot), _named(paths))
    chunks: list[str] = []
    for name in sorted(set(live) | set(restored)):
        before, after = live.get(name), restored.get(name)
        if before == after:
            continue
        chunks.extend(_diff_one(name, before, after))
    text = mask_lines("".join(chunks), patterns)
    if len(text) > DIFF_CAP:
        text = text[:DIFF_CAP].rsplit("\n", 1)[0] + f"\n[... diff cut at {DIFF_CAP} characters]\n"
    return text


def mask_lines(text: str, patterns: Sequence[str]) -> str:
    """Each line with the rest after the first match of a pattern shown as ``****``
    (keeping a trailing ``;``), then `mask` over the whole."""
    compiled = [re.compile(pattern) for pattern in patterns]
    lines = []
    for line in text.splitlines(keepends=True):
        lines.append(_mask_line(line, compiled))
    return mask("".join(lines))


def _mask_line(line: str, compiled: Sequence[re.Pattern[str]]) -> str:
    if line.startswith(("---", "+++", "@@")):
        return line
    ends = [found.end() for pattern in compiled if (found := pattern.search(line))]
    if not ends:
        return line
    cut = min(ends)
    body = line.rstrip("\n")
    rest = body[cut:]
    gap = re.match(r"[\s\"':=]*", rest)
    start = cut + (gap.end() if gap else 0)
    value = body[start:]
    if not value.strip() or value.strip() in (";", MASK):
        return line
    tail = ";" if value.rstrip().endswith(";") else ""
    return body[:start] + MASK + tail + line[len(body) :]


def _diff_one(name: str, before: Content | None, after: Content | None) -> Iterator[str]:
    if isinstance(before, bytes) or isinstance(after, bytes):
        if before is None:
            yield f"{name}: created by the restore (binary or too big: not shown)\n"
        elif after is None:
            yield f"{name}: removed by the restore\n"
        else:
            yield f"{name}: differs (binary or too big: not shown)\n"
        return
    old = (before or "").splitlines(keepends=True)
    new = (after or "").splitlines(keepends=True)
    fromfile = name if before is not None else "/dev/null"
    tofile = name if after is not None else "/dev/null"
    for line in difflib.unified_diff(old, new, f"{fromfile} (found)", f"{tofile} (restored)"):
        yield line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"


def _read_tree(root_fd: int, named: Sequence[str]) -> dict[str, Content]:
    """Every file and symlink at or below the named paths, by its absolute name."""
    found: dict[str, Content] = {}
    with opened(root_fd):
        for path in named:
            parent, name = posixpath.split(_rel(path))
            try:
                parent_fd = open_below(root_fd, parent, "/")
            except (FileNotFoundError, NotADirectoryError):
                continue
            with opened(parent_fd):
                _read_entry(parent_fd, name, path, found)
    return found


def _read_entry(dir_fd: int, name: str, shown: str, found: dict[str, Content]) -> None:
    entry = open_entry(dir_fd, name, shown)
    if entry is None:
        return
    with entry:
        if entry.kind == "link":
            found[shown] = f"symlink to {entry.target}\n"
        elif entry.kind == "file":
            assert entry.fd is not None
            found[shown] = _read_text(entry.fd)
        else:
            assert entry.fd is not None
            for child in sorted(os.listdir(entry.fd)):
                _read_entry(entry.fd, child, f"{shown}/{child}", found)


def _read_text(fd: int) -> Content:
    data = os.pread(fd, FILE_CAP + 1, 0)
    if len(data) > FILE_CAP:
        return _TOO_BIG + str(hash(data)).encode()
    if b"\0" in data:
        return _BINARY + str(hash(data)).encode()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _BINARY + str(hash(data)).encode()
