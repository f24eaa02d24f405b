"""The state database survives its own contents: every corruption variant opens.

Each test damages a real database file the way a flipped byte, a bad copy or an
operator's shell would, then asserts that the store opens, what it dropped or moved
aside, and that the message names it.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from supervisor.core.failover import FailoverState
from supervisor.core.guard_state import GuardState
from supervisor.core.recovery import RecoveryState
from supervisor.store import SCHEMA_VERSION, Store

CORRUPT = re.compile(r"^state\.db\.corrupt-\d{8}T\d{6}Z(\.\d+)?$")
GOOD = {"recovery": {"phase": "cooldown", "attempts": 2, "deadline": 1234.5}}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


def seeded(db_path: Path) -> None:
    """A database with two good units and a guard document, closed cleanly."""
    with Store(db_path) as s:
        s.save_unit("good.service", GOOD)
        s.save_unit("bad.service", {"recovery": {"phase": "idle"}})
        s.save_doc("guard", {"actions": [1.0], "paused_all": False})


def poke(db_path: Path, sql: str, *params: object) -> None:
    """Write behind the store's back, as an operator's sqlite3 shell would."""
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def quick_check(db_path: Path) -> str:
    conn = sqlite3.connect(db_path)
    try:
        return str(conn.execute("PRAGMA quick_check").fetchone()[0])
    finally:
        conn.close()


def rows(db_path: Path, table: str = "units") -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def recovery(unit: str, doc: dict[str, Any]) -> RecoveryState:
    """The parse the daemon applies to a unit's document (as core.host does)."""
    return RecoveryState.from_dict(doc["recovery"])


def failover(unit: str, doc: dict[str, Any]) -> FailoverState | None:
    return FailoverState.from_dict(doc["failover"]) if "failover" in doc else None


def assert_dropped(s: Store, unit: str, reason: str, said: list[str]) -> None:
    """`unit`'s row was dropped: one message naming it and why, logged, in the history
    with what was stored, and deleted (the next opening says nothing)."""
    (message,) = said
    assert message in s.discarded
    assert message.startswith(f"state of {unit} unreadable (")
    assert message.endswith("); starting it fresh")
    assert reason in message
    (entry,) = [e for e in s.history() if e.kind == "daemon"]
    assert entry.unit == unit
    assert entry.message == f"state of {unit} unreadable; starting it fresh"
    assert reason in entry.data["reason"]
    assert "stored" in entry.data


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ('{"recovery": {"phase": "cooldown"', "not JSON"),  # cut short
        ('{"recovery": {"phase" "cooldown"}}', "not JSON"),  # a flipped ':'
        ('["recovery", "cooldown"]', "a JSON list where a JSON object was expected"),
        ("42", "a JSON int where"),
        ('"just a string"', "a JSON str where"),
        ('{"recovery": NaN}', "NaN is not a JSON value"),
        ('{"recovery": {"phase": "idle"}}\x00', "a NUL byte at offset 31"),
        ('{"recovery":\x00{}}', "a NUL byte at offset 12"),
        ("", "not JSON"),
    ],
)
def test_a_unit_row_that_is_not_a_json_object_is_dropped(
    db_path: Path, stored: str, reason: str
) -> None:
    seeded(db_path)
    poke(db_path, "UPDATE units SET state = ? WHERE unit = 'bad.service'", stored)
    assert quick_check(db_path) == "ok"  # invisible to SQLite: only we can tell
    with Store(db_path) as s:
        assert s.moved_aside is None
        units, said = s.load_units_checked(recovery)
        assert set(units) == {"good.service"}
        assert units["good.service"].attempts == 2
        assert_dropped(s, "bad.service", reason, said)
        assert s.load_doc("guard") == {"actions": [1.0], "paused_all": False}
    assert rows(db_path) == 1
    with Store(db_path) as again:
        assert again.load_units_checked(recovery) == (
            {"good.service": RecoveryState.from_dict(GOOD["recovery"])},
            [],
        )
        assert again.discarded == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'{"recovery": {"phase": "cool\xffdown"}}', "not UTF-8 (invalid start byte at offset 28)"),
        (7, "a JSON int where"),  # the column's type changed: stored as an integer
        (2.5, "a JSON float where"),
        (None, "it is NULL"),  # NOT NULL is not checked when reading
    ],
)
def test_a_unit_row_of_the_wrong_sqlite_type_or_not_utf8_is_dropped(
    db_path: Path, value: object, reason: str
) -> None:
    seeded(db_path)
    if value is None:
        conn = sqlite3.connect(db_path)
        conn.execute("PRAGMA writable_schema = 1")
        conn.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'state TEXT NOT NULL', 'state TEXT')"
            " WHERE name = 'units'"
        )
        conn.commit()
        conn.close()
        poke(db_path, "UPDATE units SET state = NULL WHERE unit = 'bad.service'")
    elif isinstance(value, bytes):
        poke(db_path, "UPDATE units SET state = CAST(? AS TEXT) WHERE unit = 'bad.service'", value)
    else:
        poke(db_path, "UPDATE units SET state = ? WHERE unit = 'bad.service'", value)
    with Store(db_path) as s:
        units, said = s.load_units_checked(recovery)
        assert set(units) == {"good.service"}
        assert_dropped(s, "bad.service", reason, said)


def test_a_flipped_byte_in_the_file_passes_quick_check_and_drops_that_unit(
    db_path: Path,
) -> None:
    seeded(db_path)  # closed: checkpointed, every row is in the main file
    data = bytearray(db_path.read_bytes())
    at = data.index(b'{"recovery":{"phase":"idle"}}')
    data[at + len('{"recovery":{"phase":"idle"}')] = ord("]")  # '}' -> ']'
    db_path.write_bytes(bytes(data))
    assert quick_check(db_path) == "ok"
    with Store(db_path) as s:
        assert s.moved_aside is None
        units, said = s.load_units_checked(recovery)
        assert set(units) == {"good.service"}
        assert_dropped(s, "bad.service", "not JSON", said)
        (entry,) = [e for e in s.history() if e.kind == "daemon"]
        assert entry.data["stored"] == '{"recovery":{"phase":"idle"}]'


def test_an_unknown_phase_is_dropped_by_the_checked_load(db_path: Path) -> None:
    seeded(db_path)
    poke(
        db_path,
        "UPDATE units SET state = ? WHERE unit = 'bad.service'",
        '{"recovery": {"phase": "sleeping", "attempts": 1}}',
    )
    with Store(db_path) as s:
        # Unchecked, the document is a JSON object: loaded as it is.
        assert "bad.service" in s.load_units()
        units, said = s.load_units_checked(recovery)
        assert set(units) == {"good.service"}
        assert_dropped(s, "bad.service", "ValueError: 'sleeping' is not a valid Phase", said)


@pytest.mark.parametrize(
    ("doc", "parse", "reason"),
    [
        ({"recovery": []}, recovery, "AttributeError"),  # a list where a mapping was
        ({"recovery": {"attempts": 1, "bogus": 2}}, recovery, None),  # unknown keys: fine
        ({"failover": {"primary": "a", "tried": 5}}, failover, "TypeError"),
        ({"failover": {"primary": "a", "in_flight": 3}}, failover, "ValueError"),
        ({"no_recovery": {}}, recovery, "KeyError: 'recovery'"),
    ],
)
def test_wrong_types_are_dropped_when_the_parser_rejects_them(
    db_path: Path,
    doc: dict[str, Any],
    parse: Callable[[str, dict[str, Any]], object],
    reason: str | None,
) -> None:
    seeded(db_path)
    with Store(db_path) as s:
        s.save_unit("bad.service", doc)
    with Store(db_path) as s:
        units, said = s.load_units_checked(parse)
        if reason is None:
            assert "bad.service" in units and said == []
        else:
            assert "bad.service" not in units
            assert_dropped(s, "bad.service", reason, said)


def test_a_parser_that_raises_something_else_is_a_bug_and_propagates(db_path: Path) -> None:
    seeded(db_path)

    def broken(unit: str, doc: dict[str, Any]) -> None:
        raise RuntimeError("bug in the parser")

    with Store(db_path) as s, pytest.raises(RuntimeError, match="bug"):
        s.load_units_checked(broken)
    assert rows(db_path) == 2  # nothing dropped for it


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ('{"actions": [1.0], "paused_all": fal', "not JSON"),
        ("[1.0]", "a JSON list where"),
        ('{"actions": "1.0"}', "ValueError: guard state: actions must be a list"),
        ('{"actions": [true]}', "ValueError: guard state: actions must hold numbers"),
        ('{"paused_all":\x00}', "a NUL byte"),
    ],
)
def test_a_bad_document_is_dropped_naming_its_key(db_path: Path, stored: str, reason: str) -> None:
    seeded(db_path)
    poke(db_path, "UPDATE docs SET doc = ? WHERE key = 'guard'", stored)
    with Store(db_path) as s:
        guard, said = s.load_doc_checked("guard", GuardState.from_dict)
        assert guard is None
        (message,) = said
        assert message.startswith("stored document guard unreadable (")
        assert reason in message
        assert s.discarded == [message]
        (entry,) = [e for e in s.history() if e.kind == "daemon"]
        assert (entry.unit, entry.message) == (
            None,
            "stored document guard unreadable; starting it fresh",
        )
        assert entry.data["stored"] == stored
        assert set(s.load_units()) == {"good.service", "bad.service"}  # untouched
    assert rows(db_path, "docs") == 0


def test_load_doc_returns_none_for_an_unreadable_document(db_path: Path) -> None:
    seeded(db_path)
    poke(db_path, "UPDATE docs SET doc = 'not json' WHERE key = 'guard'")
    with Store(db_path) as s:
        assert s.load_doc("guard") is None
        assert s.load_doc("missing") is None
        assert len(s.discarded) == 1


def test_history_with_unreadable_data_or_text_still_reads(db_path: Path) -> None:
    with Store(db_path) as s:
        s.append("a.service", "action", "restart", {"n": 1}, time=1.0)
        s.append("a.service", "action", "reload", {"n": 2}, time=2.0)
        s.append("a.service", "action", "plain", time=3.0)
    poke(db_path, "UPDATE history SET data = '{\"n\": 2' WHERE message = 'reload'")
    poke(
        db_path,
        "UPDATE history SET message = CAST(? AS TEXT) WHERE message = 'restart'",
        b"rest\xffart",
    )
    with Store(db_path) as s:
        first, second, third = s.history()
    assert (first.message, first.data) == ("rest\ufffdart", {"n": 1})
    assert (second.message, second.data) == ("reload", {"unreadable": '{"n": 2'})
    assert third.data == {}


# -- whole files ----------------------------------------------------------------------------


def moved(s: Store, db_path: Path, words: str) -> Path:
    """The database went aside whole: named in the one message, with `words`."""
    aside = s.moved_aside
    assert aside is not None and CORRUPT.match(aside.name), aside
    assert aside.exists()
    (said,) = s.discarded
    assert str(db_path) in said and str(aside) in said and words in said
    assert s.load_units() == {}
    s.save_unit("a.service", {"n": 1})
    assert s.load_units() == {"a.service": {"n": 1}}
    return aside


def test_a_zero_byte_database_is_moved_aside_and_kept(
    db_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_path.parent.mkdir()
    db_path.write_bytes(b"")
    with Store(db_path) as s:
        aside = moved(s, db_path, "state database was empty (0 bytes): starting afresh")
    assert aside.read_bytes() == b""
    assert "state database was empty (0 bytes)" in capsys.readouterr().out


def test_a_zero_byte_database_with_a_wal_keeps_the_wal_beside_it(db_path: Path) -> None:
    """SQLite would delete the -wal of a 0-byte file: moved aside, it is kept."""
    seeded(db_path)
    wal = b"\x37\x7f\x06\x82" + b"\0" * 100
    db_path.write_bytes(b"")
    Path(f"{db_path}-wal").write_bytes(wal)
    with Store(db_path) as s:
        aside = moved(s, db_path, "empty (0 bytes)")
    assert Path(f"{aside}-wal").read_bytes() == wal


@pytest.mark.parametrize("size", [100, 4096, 4096 * 3 + 17])
def test_a_truncated_database_is_moved_aside(db_path: Path, size: int) -> None:
    seeded(db_path)
    with Store(db_path) as s:
        for n in range(400):
            s.append("a", "check", "x" * 100, time=float(n))
    db_path.write_bytes(db_path.read_bytes()[:size])
    with Store(db_path) as s:
        moved(s, db_path, "")


def test_random_garbage_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir()
    garbage = bytes(range(256)) * 64
    db_path.write_bytes(garbage)
    with Store(db_path) as s:
        aside = moved(s, db_path, "not a database")
    assert aside.read_bytes() == garbage


def test_a_missing_table_is_moved_aside_naming_it(db_path: Path) -> None:
    seeded(db_path)
    poke(db_path, "DROP TABLE units")
    with Store(db_path) as s:
        aside = moved(s, db_path, "no such table: units")
    assert rows(aside, "docs") == 1  # the rest is kept for the operator


def test_a_schema_from_the_future_is_moved_aside_and_says_a_newer_version_reads_it(
    db_path: Path,
) -> None:
    """Decision: moved aside, not refused; a host supervised from fresh state beats one
    not supervised; the newer version that wrote it can read it again."""
    seeded(db_path)
    poke(db_path, f"PRAGMA user_version = {SCHEMA_VERSION + 3}")
    with Store(db_path) as s:
        aside = moved(
            s,
            db_path,
            f"schema version {SCHEMA_VERSION + 3} is newer than this host-supervisor's"
            f" ({SCHEMA_VERSION}): written by a newer version",
        )
    assert rows(aside) == 2


def wal_header(*, magic: int = 0x377F0682, version: int = 3007000, good_sum: bool = True) -> bytes:
    """A WAL header (the checksum as SQLite computes it, or a wrong one), one frame
    of garbage after it."""
    head = struct.pack(">IIIIII", magic, version, 4096, 0, 0x1234, 0x5678)
    s0 = s1 = 0
    big = magic & 1 == 1
    words = struct.unpack(("<" if not big else ">") + "6I", head)
    for i in range(0, 6, 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    if not good_sum:
        s0 ^= 1
    return head + struct.pack(">II", s0, s1) + b"\xa5" * 4120


@pytest.mark.parametrize(
    ("wal", "words"),
    [
        (b"this is not a write-ahead log" * 100, "is not a write-ahead log (bad header)"),
        (b"\x37\x7f\x06\x82\0\0", "is cut short (6 bytes)"),
        (wal_header(version=3007001), "is not a write-ahead log (bad header)"),
        (wal_header(good_sum=False), "has a damaged header (checksum)"),
    ],
)
def test_a_leftover_wal_that_is_not_one_is_moved_aside_alone(
    db_path: Path, wal: bytes, words: str
) -> None:
    seeded(db_path)
    Path(f"{db_path}-wal").write_bytes(wal)
    Path(f"{db_path}-shm").write_bytes(b"\0" * 32768)
    with Store(db_path) as s:
        assert s.moved_aside is None
        (said,) = s.discarded
        assert words in said and "state.db-wal" in said
        kept = Path(said.split("moved it aside to ")[1].split(" and opened")[0])
        assert kept.read_bytes() == wal
        assert CORRUPT.match(kept.name.removesuffix("-wal"))
        assert set(s.load_units()) == {"good.service", "bad.service"}  # the database is whole
        (entry,) = [e for e in s.history() if e.kind == "daemon"]
        assert entry.message == "write-ahead log moved aside"


@pytest.mark.parametrize("big_endian", [False, True])
def test_a_valid_wal_header_is_left_for_sqlite_to_recover(db_path: Path, big_endian: bool) -> None:
    seeded(db_path)
    header = wal_header(magic=0x377F0683 if big_endian else 0x377F0682)
    Path(f"{db_path}-wal").write_bytes(header)  # frames with a bad checksum: ignored
    with Store(db_path) as s:
        assert s.discarded == []
        assert set(s.load_units()) == {"good.service", "bad.service"}


def test_a_leftover_wal_of_committed_writes_is_recovered(db_path: Path, tmp_path: Path) -> None:
    """What a SIGKILL leaves: a -wal never checkpointed. Its commits are kept."""
    seeded(db_path)
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE units SET state = '{\"n\": 2}' WHERE unit = 'bad.service'")
    crashed = tmp_path / "crashed" / "state.db"  # the files as a crash leaves them
    crashed.parent.mkdir()
    crashed.write_bytes(db_path.read_bytes())
    Path(f"{crashed}-wal").write_bytes(Path(f"{db_path}-wal").read_bytes())
    writer.close()
    assert Path(f"{crashed}-wal").stat().st_size > 0
    with Store(crashed) as s:
        assert s.discarded == [] and s.moved_aside is None
        assert s.load_units()["bad.service"] == {"n": 2}
