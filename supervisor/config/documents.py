"""One YAML file read as a document: its node tree, which keeps FILE:LINE:COL marks,
and its plain data; or the issues that stopped it (unsafe permissions, too large, not
UTF-8, not YAML, a value YAML cannot construct, a NUL character, duplicate keys, not a
mapping), each at the position of the byte or node at fault. Also finding the node a
key path names.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from supervisor.config.trust import file_refusal
from supervisor.config.values import describe
from supervisor.secrets import mask

__all__ = [
    "MAX_FILE_SIZE",
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
    refused: bool = field(default=False, compare=False)
    """A refusal of an untrusted file or directory (its owner or mode), not a mistake in it."""

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


MAX_FILE_SIZE = 1024 * 1024
"""The largest file read: a policy is a few KiB; a bigger one is a mistake or an attack."""

# libyaml's loader is ten times faster (1,000 policies load in 0.2 s, not 2 s) and
# keeps the node marks our FILE:LINE:COL errors need; PyYAML falls back without it.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BYTE_POSITIONS = _Base is not yaml.SafeLoader  # libyaml's reader counts bytes, PyYAML's characters


class _Loader(_Base):  # type: ignore[misc]
    """The safe loader, with every failure to construct a value turned into a YAML error at
    the value's own position (PyYAML lets ValueError, KeyError and more escape for
    `!!float abc`, `!!bool maybe`, `!!timestamp 5` or an int of over 4,300 digits), and
    NUL characters refused in any string (a `"\\0"` escape or a `!!binary` value)."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            value = super().construct_object(node, deep)
        except yaml.MarkedYAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(
                None, None, _construct_problem(node, exc), node.start_mark
            ) from None
        if (isinstance(value, str) and "\0" in value) or (
            isinstance(value, bytes) and b"\0" in value
        ):
            raise yaml.constructor.ConstructorError(
                None, None, "a NUL character (\\0) is not allowed in a value", node.start_mark
            )
        return value


def _construct_problem(node: yaml.Node, exc: Exception) -> str:
    tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
    if isinstance(exc, ValueError) and "limit" in str(exc) and "digits" in str(exc):
        return "a number of more than 4,300 digits"
    if isinstance(node, yaml.ScalarNode):
        return f"{describe(node.value)} is not a valid {tag} value"
    return f"cannot read this as {tag} ({type(exc).__name__})"


def read_document(path: Path, *, policy: bool) -> Document:
    """Read and compose one file, refusing unsafe permissions and non-mappings."""
    doc = Document(path)
    try:
        with path.open("rb") as handle:
            refusal = file_refusal(os.fstat(handle.fileno()))
            if refusal:
                doc.issues.append(ConfigIssue(path, 1, 1, f"refused: {refusal}", refused=True))
                return doc
            data = handle.read(MAX_FILE_SIZE + 1)
    except OSError as exc:
        doc.issues.append(ConfigIssue(path, 1, 1, f"cannot read the file: {exc.strerror}"))
        return doc
    if len(data) > MAX_FILE_SIZE:
        message = "the file is larger than 1MiB; a policy takes a few KiB"
        doc.issues.append(ConfigIssue(path, 1, 1, message))
        return doc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        bad = data[exc.start : exc.end].hex(" ")
        doc.issues.append(ConfigIssue(path, line, col, f"not UTF-8 text: {exc.reason} ({bad})"))
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
    except yaml.reader.ReaderError as exc:
        offset = exc.position
        if not _BYTE_POSITIONS:
            offset = len(text[:offset].encode("utf-8"))
        line, col = _line_col(data, offset)
        problem = f"{exc.reason} (character #x{exc.character:04x})"
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


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column (in characters) of the byte at `offset`."""
    offset = max(0, min(offset, len(data)))
    start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[start:offset].decode("utf-8", "replace"))
    return data.count(b"\n", 0, offset) + 1, column + 1


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
