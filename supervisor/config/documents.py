"""One YAML file read as a document: its node tree, which keeps FILE:LINE:COL marks,
and its plain data; or the issues that stopped it (unsafe permissions, not UTF-8, not
YAML, duplicate keys, not a mapping). Also finding the node a key path names.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supervisor.config.values import describe
from supervisor.secrets import mask

__all__ = [
    "ConfigIssue",
    "Document",
    "Loc",
    "find_node",
    "format_path",
    "locate",
    "position",
    "read_document",
]

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one file, at a 1-based line and column, under a key path."""

    path: Path
    line: int
    col: int
    message: str
    key_path: str = ""

    def __post_init__(self) -> None:
        # A message may quote what the user wrote: a channel's URL, a check's password.
        object.__setattr__(self, "message", mask(self.message))

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.col}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


@dataclass
class Document:
    """One parsed file: its node tree and plain data, or the issues that stopped it."""

    path: Path
    node: yaml.Node | None = None
    data: Any = None
    issues: list[ConfigIssue] = field(default_factory=list)


# libyaml's loader is ten times faster (1,000 policies load in 0.2 s, not 2 s) and
# keeps the node marks our FILE:LINE:COL errors need; PyYAML falls back without it.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_document(path: Path, *, policy: bool) -> Document:
    """Read and compose one file, refusing unsafe permissions and non-mappings."""
    doc = Document(path)
    try:
        with path.open("rb") as handle:
            refusal = _unsafe_permissions(os.fstat(handle.fileno()))
            if refusal:
                doc.issues.append(ConfigIssue(path, 1, 1, f"refused: {refusal}"))
                return doc
            text = handle.read().decode("utf-8")
    except OSError as exc:
        doc.issues.append(ConfigIssue(path, 1, 1, f"cannot read the file: {exc.strerror}"))
        return doc
    except UnicodeDecodeError as exc:
        doc.issues.append(ConfigIssue(path, 1, 1, f"not UTF-8 text: {exc.reason}"))
        return doc

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.issues.extend(_duplicate_keys(path, node))
            if not doc.issues:
                doc.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "cannot be parsed"
        doc.issues.append(ConfigIssue(path, line, col, f"not valid YAML: {problem}"))
        return doc
    except yaml.YAMLError as exc:
        doc.issues.append(ConfigIssue(path, 1, 1, f"not valid YAML: {exc}"))
        return doc
    finally:
        loader.dispose()

    if node is None and not policy:
        doc.data = {}  # a main config that is all comments means every default
    elif node is None:
        doc.issues.append(ConfigIssue(path, 1, 1, "the file is empty; a policy needs 'unit:'"))
    elif not isinstance(node, yaml.MappingNode):
        line, col = position(node)
        doc.issues.append(
            ConfigIssue(
                path, line, col, f"expected a mapping of keys at the top, got {describe(doc.data)}"
            )
        )
    doc.node = node
    return doc


def _unsafe_permissions(info: os.stat_result) -> str | None:
    """Why a file may not be trusted: the daemon runs as root and acts on what it says."""
    writable = [
        who
        for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
        if info.st_mode & bit
    ]
    if writable:
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"the file is writable by {' and '.join(writable)} (mode {mode:04o}); "
            "run chmod go-w on it"
        )
    if os.geteuid() == 0 and info.st_uid != 0:
        return f"the file is owned by uid {info.st_uid}, not root; run chown root on it"
    return None


def _duplicate_keys(path: Path, root: yaml.Node) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for node in _walk(root):
        seen: set[str] = set()
        for key, _value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            if key.value in seen:
                line, col = position(key)
                message = f"duplicate key {key.value!r}; the later value would silently win"
                issues.append(ConfigIssue(path, line, col, message))
            seen.add(key.value)
    return issues


def _walk(root: yaml.Node) -> Iterator[yaml.MappingNode]:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield node
            stack.extend(value for pair in node.value for value in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def locate(root: yaml.Node | None, loc: Loc, *, at_key: bool) -> tuple[yaml.Node | None, Loc]:
    """The node an error at `loc` is about, and the part of `loc` that names YAML keys.

    Elements that are not keys (pydantic's union tags) are skipped. A last key that is
    missing points at the mapping that lacks it.
    """
    node = root
    key_node: yaml.Node | None = None
    found: list[str | int] = []
    for index, element in enumerate(loc):
        last = index == len(loc) - 1
        if element == "[key]":
            node = key_node or node
            break
        if isinstance(node, yaml.MappingNode) and isinstance(element, str):
            pair = next((p for p in node.value if _key_text(p[0]) == element), None)
            if pair is None:
                if last:
                    found.append(element)
                continue
            found.append(element)
            key_node = pair[0]
            node = pair[0] if last and at_key else pair[1]
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(element, int)
            and 0 <= element < len(node.value)
        ):
            found.append(element)
            node = node.value[element]
    return node, tuple(found)


def _key_text(node: yaml.Node) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def find_node(root: yaml.Node | None, loc: Loc) -> yaml.Node | None:
    return locate(root, loc, at_key=False)[0]


def position(node: yaml.Node | None) -> tuple[int, int]:
    if node is None:
        return 1, 1
    return node.start_mark.line + 1, node.start_mark.column + 1


def format_path(loc: Loc) -> str:
    text = ""
    for element in loc:
        text += f"[{element}]" if isinstance(element, int) else (f".{element}" if text else element)
    return text
