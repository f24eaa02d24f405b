"""Hostile config files, and how to judge what the loader made of them.

Shared by the property test (tests/unit/test_config_fuzz.py, through hypothesis) and the
fuzz runner (tests/bench/fuzz_config.py, through `random`): both describe a file as a
seed document and a list of mutations, each a tuple of small ints, so a failure found
by either can be replayed by the other.

The oracle (`violations`) walks an accepted model and reports what no setting may hold:
NaN, infinities, NUL characters, and numbers outside the documented bounds (durations
0..365d, positive ones from 1ms, sizes up to 2^50 bytes, percentages 0..100, counts up
to 1,000,000). It reads each field's kind from its annotations, not from the parsers it
is checking.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from supervisor.config import ConfigIssue, LoadedConfig, load_config
from supervisor.config.values import (
    MAX_COUNT,
    MAX_DURATION,
    MAX_SIZE,
    MIN_POSITIVE_DURATION,
    parse_duration,
    parse_percent,
    parse_positive_duration,
    parse_size,
)

ETC = Path(__file__).parents[1] / "etc" / "host-supervisor"
MAIN = "host-supervisor.yaml"
POLICY = "policy.yaml"

# --- seeds ---------------------------------------------------------------------------------

_EXTRA_POLICY = """\
unit: worker@1.service
checks:
  - name: proc
    process: {name: worker, max_cpu: 80%, max_threads: 500, max_fds: 4096}
    interval: 1m30s
    start_period: 30s
  - name: disk
    disk: {path: /var, max_used: 85%, min_free: 2GiB, max_inodes_used: 90%}
  - name: cmd
    command: {argv: [/bin/true, -q], env: {A: b}}
    timeout: 500ms
  - name: unit
    unit: {expect: active}
recovery:
  ladder: [restart]
  cooldown: 1m
  backoff: 2
  max_cooldown: 1h
  reset_after: 2h
  preconditions: {disk_below: 90%, disk_paths: [/, /var], units_active: [network.target]}
failover:
  backup: [b1.service, b2.service]
  after_failures: 2
  can_recover: [/bin/true]
  failback: manual
alerts: []
allow_automatic: true
"""


def seeds() -> list[tuple[str, bytes]]:
    """(file name, text) of every valid document we ship or show: the fuzz's start."""
    found = [(MAIN, (ETC / MAIN).read_bytes())]
    found += [(POLICY, p.read_bytes()) for p in sorted((ETC / "policies.d").glob("*.example"))]
    found.append((POLICY, _EXTRA_POLICY.encode()))
    return found


# --- hostile values ------------------------------------------------------------------------

HOSTILE: tuple[str, ...] = (
    ".nan",
    ".NaN",
    ".inf",
    "-.inf",
    "1.0e+309",
    "-1.0e+309",
    "1e309",
    "9" * 5000,
    "-" + "9" * 4400,
    "0x" + "f" * 4000,
    "0o" + "7" * 5000,
    "9223372036854775808",
    "18446744073709551616",
    "1000001",
    "-1",
    "0",
    "0.0",
    "1e-400",
    "0.0000001ms",
    "366d",
    "99999999999999999999999d",
    "1" + "0" * 400 + "s",
    "1025TiB",
    "9" * 400 + "TiB",
    "101%",
    "100.0000001",
    "!!float abc",
    "!!float .nan",
    "!!bool maybe",
    "!!timestamp 5",
    "!!int x",
    "!!int 0x" + "f" * 5000,
    "!!binary AAAA",
    "!!binary YQBi",
    "!!set {a}",
    "!!omap [a]",
    "!!pairs [a]",
    "!!map [a]",
    "!!seq {a: 1}",
    "!!null x",
    "!!str",
    "!!python/object:os.system x",
    "!!python/name:os.system",
    "!<tag:yaml.org,2002:float> 1e999",
    '"a\\0b"',
    '"\\x00"',
    '"\\ud800"',
    '"\\U0010ffff"',
    '"\\e\\a\\b"',
    "'\t'",
    "~",
    "null",
    "[]",
    "{}",
    "[" * 900 + "]" * 900,
    "[" * 2000 + "]" * 2000,
    "*undefined",
    "&a x",
    "<<: 5",
    "2001-12-14",
    "2001-12-14t21:59:43.10-05:00",
    "1:30:5",
    "190:20:30.15",
    "yes",
    "off",
    "|\n  multi\n  line",
    ">-\n  folded",
    "a" * 10000,
    "/usr/bin/../../tmp/x",
    "/nonexistent/program",
    "/etc/shadow",
    "/dev/zero",
    "/proc/self/exe",
    "?",
    "- x",
    "!",
    "%TAG",
    "@",
    "`",
    "{a: 1, a: 2}",
    "[1, {b: [c, {d: .nan}]}]",
)

JUNK: tuple[bytes, ...] = (
    b"\x00",
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xf4\x90\x80\x80",  # past U+10FFFF
    b"\xef\xbb\xbf",  # a BOM, mid-file
    b"\x01",
    b"\x1b[31m",
    b"\x7f",
    b"\xc2\x85",  # NEL
    b"\xe2\x80\xa8",  # LINE SEPARATOR
    b"\r",
    b"\t",
    b": ",
    b"- ",
    b"&a ",
    b"*a ",
    b"\n---\n",
    b"\n...\n",
    b"%YAML 1.1\n",
    b"? ",
    b"#",
    b"'",
    b'"',
    b"{",
    b"[",
    b"}",
    b"]",
)

TAGS: tuple[str, ...] = (
    "!!float",
    "!!int",
    "!!bool",
    "!!timestamp",
    "!!binary",
    "!!set",
    "!!str",
    "!!null",
    "!!map",
    "!!seq",
    "!!omap",
    "!custom",
)

KEYS: tuple[str, ...] = (
    "unit",
    "checks",
    "interval",
    "timeout",
    "failures",
    "successes",
    "start_period",
    "max_rss",
    "host_max_used",
    "max_cpu",
    "recovery",
    "cooldown",
    "backoff",
    "max_attempts",
    "settle",
    "window",
    "repair_budget",
    "failback",
    "delay",
    "keep",
    "spool_max",
    "<<",
    "intervall",
    "",
    "9" * 5000,
)

# Where a scalar value starts (after `key: ` or in a flow list) and where it ends.
_VALUE = re.compile(rb"(?:(?<=: )|(?<=\[)|(?<=, ))[^\s{}\[\],#&*!|>'\"][^,}\]\n#]*")
_KEY = re.compile(rb"(?m)(?:^\s*(?:- )?|(?<=\{)|(?<=, ))([A-Za-z_][\w]*)(?=:)")

Op = tuple[int, int, int]
"""One mutation: (kind, where, what), each a small int taken modulo what it picks from."""
OP_KINDS = 9


def mutate(text: bytes, ops: Sequence[Op]) -> bytes:
    """Apply each mutation in turn; the same ops always give the same bytes."""
    for kind, where, what in ops:
        text = _MUTATIONS[kind % OP_KINDS](text, where, what)
    return text


def _pick(matches: list[re.Match[bytes]], where: int) -> re.Match[bytes] | None:
    return matches[where % len(matches)] if matches else None


def _replace_value(text: bytes, where: int, what: int) -> bytes:
    match = _pick(list(_VALUE.finditer(text)), where)
    if match is None:
        return text
    return text[: match.start()] + HOSTILE[what % len(HOSTILE)].encode() + text[match.end() :]


def _tag_value(text: bytes, where: int, what: int) -> bytes:
    match = _pick(list(_VALUE.finditer(text)), where)
    if match is None:
        return text
    return text[: match.start()] + TAGS[what % len(TAGS)].encode() + b" " + text[match.start() :]


def _insert_junk(text: bytes, where: int, what: int) -> bytes:
    at = where % (len(text) + 1)
    return text[:at] + JUNK[what % len(JUNK)] + text[at:]


def _delete(text: bytes, where: int, what: int) -> bytes:
    at = where % (len(text) + 1)
    return text[:at] + text[at + what % 40 :]


def _duplicate_line(text: bytes, where: int, what: int) -> bytes:
    lines = text.splitlines(keepends=True)
    if not lines:
        return text
    at = where % len(lines)
    return b"".join([*lines[: at + 1], *[lines[at]] * (1 + what % 3), *lines[at + 1 :]])


def _nest(text: bytes, where: int, what: int) -> bytes:
    match = _pick(list(_VALUE.finditer(text)), where)
    if match is None:
        return text
    depth = (50, 500, 999, 1001, 5000)[what % 5]
    value = b"[" * depth + match.group() + b"]" * depth
    return text[: match.start()] + value + text[match.end() :]


def _rename_key(text: bytes, where: int, what: int) -> bytes:
    match = _pick(list(_KEY.finditer(text)), where)
    if match is None:
        return text
    key = KEYS[what % len(KEYS)].encode()
    return text[: match.start(1)] + key + text[match.end(1) :]


def _truncate(text: bytes, where: int, what: int) -> bytes:
    del what
    return text[: where % (len(text) + 1)]


def _add_key(text: bytes, where: int, what: int) -> bytes:
    key = KEYS[where % len(KEYS)]
    value = HOSTILE[what % len(HOSTILE)]
    return text + f"\n{key}: {value}\n".encode()


_MUTATIONS = (
    _replace_value,
    _tag_value,
    _insert_junk,
    _delete,
    _duplicate_line,
    _nest,
    _rename_key,
    _truncate,
    _add_key,
)
assert len(_MUTATIONS) == OP_KINDS


# --- generated documents -------------------------------------------------------------------

_VALUES: tuple[Any, ...] = (
    math.nan,
    math.inf,
    -math.inf,
    10**30,
    2**63,
    -(2**63) - 1,
    1e308,
    5e-324,
    0,
    -1,
    True,
    None,
    "",
    "\0",
    "a\0b",
    "5s",
    "0ms",
    "365d",
    "366d",
    "512MiB",
    "90%",
    "x" * 300,
    [],
    {},
    [[[]]],
    {"a": {"b": {"c": math.nan}}},
)

_SHAPES: tuple[tuple[str, ...], ...] = (
    ("checks", "0", "interval"),
    ("checks", "0", "timeout"),
    ("checks", "0", "failures"),
    ("checks", "0", "successes"),
    ("checks", "0", "start_period"),
    ("checks", "0", "memory", "max_rss"),
    ("checks", "0", "memory", "host_max_used"),
    ("checks", "0", "name"),
    ("recovery", "cooldown"),
    ("recovery", "backoff"),
    ("recovery", "max_cooldown"),
    ("recovery", "max_attempts"),
    ("recovery", "settle"),
    ("recovery", "reset_after"),
    ("recovery", "preconditions", "disk_below"),
    ("failover", "settle"),
    ("failover", "after_failures"),
    ("failover", "failback", "delay"),
    ("failover", "failback", "successes"),
    ("alerts",),
    ("unit",),
    ("guard", "repair_budget", "window"),
    ("guard", "repair_budget", "max"),
    ("guard", "breaker", "open_for"),
    ("guard", "flapping", "high"),
    ("alerts", "repeat_interval"),
    ("alerts", "spool_max"),
    ("checks", "max_concurrent_commands"),
)


def generate(picks: Sequence[tuple[int, int]]) -> tuple[str, bytes]:
    """A document built from data (then dumped by PyYAML): each pick sets one key path
    (from `_SHAPES`) to one hostile Python value (from `_VALUES`)."""
    main = bool(picks) and picks[0][0] % 2 == 1
    data: dict[str, Any] = {} if main else {"unit": "gen.service"}
    if not main:
        data["checks"] = [{"name": "u", "memory": {"max_rss": "1GiB"}}]
        data["failover"] = {"backup": "b.service", "failback": {}}
    for shape, value in picks:
        keys = _SHAPES[shape % len(_SHAPES)]
        _set(data, keys, _VALUES[value % len(_VALUES)])
    return (MAIN if main else POLICY), yaml.safe_dump(data, allow_unicode=False).encode()


def _set(data: Any, keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        index: Any = int(key) if key.isdigit() else key
        if isinstance(data, list) and isinstance(index, int) and index < len(data):
            data = data[index]
        elif isinstance(data, dict):
            data = data.setdefault(index, {})
        else:
            return
        if not isinstance(data, dict | list):
            return
    if isinstance(data, dict):
        data[keys[-1]] = value


# --- judging the loader --------------------------------------------------------------------


@dataclass
class Verdict:
    loaded: LoadedConfig | None
    crash: BaseException | None
    bad_positions: list[str]
    violations: list[str]
    internal: list[str] = dataclasses.field(default_factory=list)
    """Errors the loader's last resort made of an exception: no crash, but a bug."""

    @property
    def accepted(self) -> bool:
        return self.loaded is not None and not self.loaded.errors


def load_one(config_dir: Path, name: str, text: bytes) -> Verdict:
    """Write `text` as the only file of `config_dir` (a policy or the main config) and
    load the directory, judging what came back."""
    policies = config_dir / "policies.d"
    policies.mkdir(parents=True, exist_ok=True)
    for old in (config_dir / MAIN, policies / POLICY):
        old.unlink(missing_ok=True)
    path = config_dir / MAIN if name == MAIN else policies / POLICY
    path.write_bytes(text)
    path.chmod(0o644)
    try:
        loaded = load_config(config_dir)
    except Exception as exc:
        return Verdict(None, exc, [], [])
    internal = [str(e) for e in loaded.errors if "an internal error" in e.message]
    return Verdict(
        loaded,
        None,
        bad_positions(loaded.errors, {path}),
        accepted_violations(loaded),
        internal,
    )


def bad_positions(issues: Sequence[ConfigIssue], files: set[Path]) -> list[str]:
    """Errors that do not name one of `files` at a line and column of at least 1."""
    return [
        str(issue)
        for issue in issues
        if issue.path not in files or issue.line < 1 or issue.col < 1 or not issue.message
    ]


def accepted_violations(loaded: LoadedConfig) -> list[str]:
    found = [f"{unit}: {v}" for unit, p in loaded.policies.items() for v in violations(p)]
    if loaded.main_ok:
        found += [f"main: {v}" for v in violations(loaded.main)]
    return found


_KINDS = {
    parse_duration: "duration",
    parse_positive_duration: "positive duration",
    parse_size: "size",
    parse_percent: "percent",
}


def _kinds(annotation: Any, metadata: Sequence[Any] = ()) -> set[str]:
    """The value kinds (duration, size, ...) named by the validators in an annotation."""
    found = {_KINDS[m.func] for m in metadata if getattr(m, "func", None) in _KINDS}
    if typing.get_origin(annotation) is typing.Annotated:
        found |= _kinds(typing.get_args(annotation)[0], typing.get_args(annotation)[1:])
    else:
        for arg in typing.get_args(annotation):
            found |= _kinds(arg)
    return found


def violations(model: BaseModel, prefix: str = "") -> list[str]:
    """What no accepted setting may hold, anywhere in `model`."""
    found: list[str] = []
    for name, field in type(model).model_fields.items():
        kinds = _kinds(field.annotation, field.metadata)
        for where, value in _leaves(getattr(model, name), f"{prefix}{name}"):
            if isinstance(value, BaseModel):
                found += violations(value, f"{where}.")
            else:
                found += [f"{where}: {why}" for why in _wrong(value, kinds)]
    return found


def _leaves(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, tuple | list):
        for index, item in enumerate(value):
            yield from _leaves(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where} key", key
            yield from _leaves(item, f"{where}.{key}")
    else:
        yield where, value


def _wrong(value: Any, kinds: set[str]) -> Iterator[str]:
    if isinstance(value, str | bytes) and ("\0" in value if isinstance(value, str) else True):
        yield f"holds a NUL or bytes: {value!r:.60}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    if isinstance(value, float) and not math.isfinite(value):
        yield f"{value} is not finite"
        return
    if "duration" in kinds and not 0 <= value <= MAX_DURATION:
        yield f"duration {value} outside 0..365d"
    if "positive duration" in kinds and not MIN_POSITIVE_DURATION <= value <= MAX_DURATION:
        yield f"duration {value} outside 1ms..365d"
    if "size" in kinds and not 0 <= value <= MAX_SIZE:
        yield f"size {value} outside 0..2^50"
    if "percent" in kinds and not 0 <= value <= 100:
        yield f"percentage {value} outside 0..100"
    if not kinds and isinstance(value, int) and not 0 <= value <= MAX_COUNT:
        yield f"count {value} outside 0..{MAX_COUNT}"
    if not kinds and isinstance(value, float) and not 0 <= value <= MAX_DURATION:
        yield f"number {value} outside 0..{MAX_DURATION:g}"
