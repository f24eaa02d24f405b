"""The state database: real SQLite files in tmp_path, a real SIGKILL, real corruption."""

from __future__ import annotations

import math
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import store as store_module
from supervisor.errors import SupervisorError
from supervisor.store import SCHEMA_VERSION, HistoryEntry, Store

REPO = Path(__file__).resolve().parents[2]
CORRUPT_NAME = re.compile(r"^state\.db\.corrupt-\d{8}T\d{6}Z(\.\d+)?$")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()


def on_disk(path: Path, sql: str = "SELECT count(*) FROM history") -> int:
    """A scalar read through a connection of its own: what is committed, not buffered."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def messages(entries: list[HistoryEntry]) -> list[str]:
    return [e.message for e in entries]


# -- opening -------------------------------------------------------------------------------


def test_fresh_database_is_wal_versioned_and_private(store: Store, db_path: Path) -> None:
    assert store.moved_aside is None
    assert store.moved_aside_reason is None
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    finally:
        conn.close()
    assert {"history_unit_time", "history_time"} <= indexes
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_the_connection_is_durable_and_waits_for_locks(store: Store) -> None:
    conn = store._db()  # the pragmas are per connection: only the store's own tells
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == store_module.BUSY_TIMEOUT_MS


def test_reopening_a_good_database_moves_nothing(db_path: Path) -> None:
    Store(db_path).close()
    with Store(db_path) as again:
        assert again.moved_aside is None
    assert sorted(p.name for p in db_path.parent.iterdir() if "corrupt" in p.name) == []


# -- per-unit state and documents ----------------------------------------------------------


def test_unit_state_round_trips_and_save_overwrites(store: Store) -> None:
    assert store.load_units() == {}
    store.save_unit("nginx.service", {"rung": 0, "attempts": 1, "deadline": 12.5, "x": [1, "a"]})
    store.save_unit("redis.service", {"paused": True})
    store.save_unit("nginx.service", {"rung": 1, "attempts": 2})
    assert store.load_units() == {
        "nginx.service": {"rung": 1, "attempts": 2},
        "redis.service": {"paused": True},
    }


def test_delete_unit_forgets_it_and_absent_is_fine(store: Store) -> None:
    store.save_unit("a.service", {"n": 1})
    store.save_unit("b.service", {"n": 2})
    store.delete_unit("a.service")
    store.delete_unit("never-saved.service")
    assert store.load_units() == {"b.service": {"n": 2}}


def test_save_unit_commits_at_once(store: Store, db_path: Path) -> None:
    store.save_unit("a.service", {"n": 1})
    assert on_disk(db_path, "SELECT count(*) FROM units") == 1


def test_docs_round_trip_overwrite_and_missing(store: Store, db_path: Path) -> None:
    assert store.load_doc("guard") is None
    store.save_doc("guard", {"window": [1.0, 2.0], "frozen_until": None})
    store.save_doc("paused_all", {"paused": False})
    store.save_doc("guard", {"window": [], "frozen_until": 99.0})
    assert store.load_doc("guard") == {"window": [], "frozen_until": 99.0}
    assert store.load_doc("paused_all") == {"paused": False}
    assert on_disk(db_path, "SELECT count(*) FROM docs") == 2


@pytest.mark.parametrize("bad", [{"o": object()}, {"nan": math.nan}, {"s": {1, 2}}, ["a"]])
def test_state_that_is_not_json_raises_type_error_and_writes_nothing(
    store: Store, db_path: Path, bad: object
) -> None:
    with pytest.raises(TypeError, match=r"a\.service"):
        store.save_unit("a.service", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="guard"):
        store.save_doc("guard", bad)  # type: ignore[arg-type]
    assert store.load_units() == {}
    assert store.load_doc("guard") is None


# -- history -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{"o": object()}, {"inf": math.inf}, {"b": b"bytes"}, "text"])
def test_append_rejects_what_is_not_json_at_once(store: Store, bad: object) -> None:
    with pytest.raises(TypeError, match=r"not JSON|expected a dict"):
        store.append("a.service", "action", "restart", bad)  # type: ignore[arg-type]
    assert store.history() == []


def test_append_rejects_a_cycle_as_type_error(store: Store) -> None:
    cyclic: dict[str, object] = {}
    cyclic["self"] = cyclic
    with pytest.raises(TypeError, match="not JSON"):
        store.append(None, "daemon", "x", cyclic)


def test_entries_round_trip_with_their_fields(store: Store) -> None:
    store.append("nginx.service", "action", "restart", {"rung": "restart", "n": 1}, time=100.0)
    store.append(None, "guard", "automation frozen", time=101.0)
    first, second = store.history()
    assert first == HistoryEntry(
        id=first.id,
        time=100.0,
        unit="nginx.service",
        kind="action",
        message="restart",
        data={"n": 1, "rung": "restart"},
    )
    assert (second.unit, second.kind, second.data) == (None, "guard", {})
    assert second.id > first.id


def test_time_defaults_to_the_wall_clock_at_append(store: Store) -> None:
    import time

    before = time.time()
    store.append(None, "daemon", "started")
    after = time.time()
    (entry,) = store.history()
    assert before <= entry.time <= after


def test_history_is_in_time_order_then_append_order(store: Store) -> None:
    store.append("a", "check", "t30", time=30.0)
    store.append("a", "check", "t10", time=10.0)
    store.append("a", "check", "t20-first", time=20.0)
    store.append("a", "check", "t20-second", time=20.0)
    assert messages(store.history()) == ["t10", "t20-first", "t20-second", "t30"]


def test_history_filters_by_unit_since_and_kinds(store: Store) -> None:
    store.append("a.service", "check", "a check", time=1.0)
    store.append("b.service", "action", "b restart", time=2.0)
    store.append(None, "guard", "frozen", time=3.0)
    store.append("a.service", "action", "a restart", time=4.0)
    store.append("a.service", "result", "a done", time=5.0)
    assert messages(store.history(unit="a.service")) == ["a check", "a restart", "a done"]
    assert messages(store.history(since=3.0)) == ["frozen", "a restart", "a done"]
    assert messages(store.history(kinds=["action", "guard"])) == [
        "b restart",
        "frozen",
        "a restart",
    ]
    assert messages(store.history(unit="a.service", since=2.0, kinds=["action"])) == ["a restart"]
    assert messages(store.history(unit="c.service")) == []
    assert store.history(kinds=[]) == []
    with pytest.raises(TypeError, match="one string"):
        store.history(kinds="action")


def test_limit_keeps_the_last_entries_in_time_order(store: Store) -> None:
    for n in range(10):
        store.append("a", "check", f"m{n}", time=float(n))
    store.append("b", "check", "other unit", time=4.5)
    assert messages(store.history(unit="a", limit=3)) == ["m7", "m8", "m9"]
    assert messages(store.history(limit=4)) == ["m6", "m7", "m8", "m9"]
    assert messages(store.history(since=3.0, limit=2)) == ["m8", "m9"]
    assert store.history(limit=0) == []
    assert len(store.history(limit=100)) == 11
    with pytest.raises(ValueError, match="limit"):
        store.history(limit=-1)


def test_buffered_entries_are_not_on_disk_until_flush_but_history_sees_them(
    store: Store, db_path: Path
) -> None:
    store.append("a", "check", "one")
    store.append("a", "check", "two")
    assert on_disk(db_path) == 0
    assert messages(store.history()) == ["one", "two"]
    assert on_disk(db_path) == 2


def test_flush_writes_everything_buffered(store: Store, db_path: Path) -> None:
    for n in range(7):
        store.append(None, "check", str(n))
    store.flush()
    assert on_disk(db_path) == 7
    store.flush()  # nothing left: no duplicate
    assert on_disk(db_path) == 7


def test_a_full_buffer_flushes_itself(store: Store, db_path: Path) -> None:
    for n in range(store_module.FLUSH_AT - 1):
        store.append(None, "check", str(n))
    assert on_disk(db_path) == 0
    store.append(None, "check", "last")
    assert on_disk(db_path) == store_module.FLUSH_AT


@pytest.mark.parametrize("write", ["save_unit", "save_doc", "delete_unit"])
def test_every_write_takes_the_buffered_history_with_it(
    store: Store, db_path: Path, write: str
) -> None:
    store.append("a.service", "action", "about to restart")
    if write == "save_unit":
        store.save_unit("a.service", {"rung": 0})
    elif write == "save_doc":
        store.save_doc("guard", {"window": [1.0]})
    else:
        store.delete_unit("a.service")
    assert on_disk(db_path) == 1


def _refuse_history_inserts(db_path: Path, refuse: bool) -> None:
    """Make every history INSERT fail (a real SQLite error, as a full disk would be)."""
    conn = sqlite3.connect(db_path)
    try:
        if refuse:
            conn.execute(
                "CREATE TRIGGER no_history BEFORE INSERT ON history"
                " BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
            )
        else:
            conn.execute("DROP TRIGGER no_history")
        conn.commit()
    finally:
        conn.close()


def test_a_failed_write_keeps_the_buffer_and_the_old_state(store: Store, db_path: Path) -> None:
    store.save_unit("a.service", {"rung": 0})
    store.append("a.service", "action", "restart")
    _refuse_history_inserts(db_path, True)
    with pytest.raises(SupervisorError, match=r"state\.db.*refused by test"):
        store.save_unit("a.service", {"rung": 1})
    with pytest.raises(SupervisorError, match="refused by test"):
        store.flush()
    # One transaction: the state did not change without its history.
    assert store.load_units() == {"a.service": {"rung": 0}}
    _refuse_history_inserts(db_path, False)
    store.save_unit("a.service", {"rung": 1})
    assert store.load_units() == {"a.service": {"rung": 1}}
    assert messages(store.history()) == ["restart"]


def test_failing_auto_flush_retries_later_then_drops_the_oldest_and_says_so(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "FLUSH_AT", 3)
    monkeypatch.setattr(store_module, "MAX_BUFFER", 7)
    with Store(db_path) as s:
        _refuse_history_inserts(db_path, True)
        s.append(None, "check", "0")
        s.append(None, "check", "1")
        with pytest.raises(SupervisorError):
            s.append(None, "check", "2")  # reaches FLUSH_AT: the flush fails
        s.append(None, "check", "3")  # no retry at every append
        s.append(None, "check", "4")
        with pytest.raises(SupervisorError):
            s.append(None, "check", "5")  # FLUSH_AT later: tried again
        for n in range(6, 10):  # past MAX_BUFFER the oldest go
            with pytest.raises(SupervisorError):
                s.append(None, "check", str(n))
        _refuse_history_inserts(db_path, False)
        entries = s.history()
    kept = [e.message for e in entries if e.kind == "check"]
    assert kept == [str(n) for n in range(3, 10)]
    (lost,) = [e for e in entries if e.kind == "daemon"]
    assert lost.data == {"lost": 3}
    assert "3 history entries were lost" in lost.message


# -- prune ---------------------------------------------------------------------------------


def test_prune_by_age(store: Store) -> None:
    day = 86_400.0
    now = 1_000 * day
    for age_days in (100, 91, 89, 1):
        store.append(None, "check", f"{age_days}d", time=now - age_days * day)
    assert store.prune(keep_days=90, now=now) == 2
    assert messages(store.history()) == ["89d", "1d"]


def test_prune_by_count_keeps_the_newest(store: Store) -> None:
    for n in range(10):
        store.append(None, "check", f"m{n}", time=1e9 + n)
    assert store.prune(keep_days=1e6, keep_max=4, now=1e9 + 10) == 6
    assert messages(store.history()) == ["m6", "m7", "m8", "m9"]
    assert store.prune(keep_days=1e6, keep_max=4, now=1e9 + 10) == 0


def test_prune_counts_both_bounds_once_and_ids_are_never_reused(store: Store) -> None:
    for n in range(6):
        store.append(None, "check", f"m{n}", time=float(n))
    last_id = store.history()[-1].id
    # m0..m2 are too old; of m3..m5, keep_max=2 removes m3 too.
    assert store.prune(keep_days=0, keep_max=2, now=3.0) == 4
    assert messages(store.history()) == ["m4", "m5"]
    assert store.prune(keep_days=0, keep_max=0, now=100.0) == 2
    store.append(None, "check", "after")
    assert store.history()[0].id > last_id
    with pytest.raises(ValueError, match="keep_max"):
        store.prune(keep_max=-1)


# -- persistence ---------------------------------------------------------------------------


def test_everything_survives_close_and_reopen(db_path: Path) -> None:
    with Store(db_path) as s:
        s.save_unit("a.service", {"rung": 2, "cooldown_until": 1234.5})
        s.save_doc("guard", {"frozen": True})
        s.append("a.service", "action", "reload", {"ok": False}, time=5.0)  # flushed by close
        first_id = s.history()[0].id
    assert not Path(f"{db_path}-wal").exists() or Path(f"{db_path}-wal").stat().st_size == 0
    with Store(db_path) as s:
        assert s.load_units() == {"a.service": {"rung": 2, "cooldown_until": 1234.5}}
        assert s.load_doc("guard") == {"frozen": True}
        (entry,) = s.history()
        assert (entry.id, entry.message, entry.data) == (first_id, "reload", {"ok": False})
        s.append(None, "daemon", "started again")
        assert s.history()[-1].id > first_id


def test_close_twice_is_fine_and_use_after_close_is_an_error(db_path: Path) -> None:
    s = Store(db_path)
    s.close()
    s.close()
    with pytest.raises(SupervisorError, match="closed"):
        s.load_units()
    with pytest.raises(SupervisorError, match="closed"):
        s.save_unit("a", {})


def test_committed_data_survives_sigkill(db_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from supervisor.store import Store

        s = Store(Path(sys.argv[1]))
        s.append("a.service", "action", "restart", {"rung": "restart"})
        s.save_unit("a.service", {"rung": 1, "attempts": 2, "cooldown_until": 99.5})
        s.save_doc("guard", {"budget": [1.0, 2.0]})
        s.append(None, "guard", "flushed")
        s.flush()
        s.append(None, "daemon", "still buffered")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(db_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert Path(f"{db_path}-wal").stat().st_size > 0  # never checkpointed: recovered from WAL
    with Store(db_path) as s:
        assert s.moved_aside is None
        assert s.load_units() == {"a.service": {"rung": 1, "attempts": 2, "cooldown_until": 99.5}}
        assert s.load_doc("guard") == {"budget": [1.0, 2.0]}
        assert messages(s.history()) == ["restart", "flushed"]


# -- unusable databases ----------------------------------------------------------------------


def assert_moved_aside(s: Store, db_path: Path, content: bytes | None = None) -> Path:
    aside = s.moved_aside
    assert aside is not None
    assert aside.parent == db_path.parent
    assert CORRUPT_NAME.match(aside.name), aside.name
    assert aside.exists()
    if content is not None:
        assert aside.read_bytes() == content
    assert s.moved_aside_reason
    # Said once, naming both files, in the log (`discarded`) and in the history ...
    (said,) = s.discarded
    assert str(db_path) in said and str(aside) in said and s.moved_aside_reason in said
    # ... and the fresh database works.
    s.save_unit("a.service", {"n": 1})
    s.append(None, "daemon", "fresh")
    assert s.load_units() == {"a.service": {"n": 1}}
    first, fresh = s.history()
    assert (first.kind, first.message) == ("daemon", "state database moved aside")
    assert first.data == {"detail": said}
    assert fresh.message == "fresh"
    return aside


def test_garbage_is_moved_aside_with_its_side_files(db_path: Path) -> None:
    db_path.parent.mkdir()
    garbage = b"this is not an SQLite database\n" * 200
    db_path.write_bytes(garbage)
    Path(f"{db_path}-wal").write_bytes(b"wal garbage")
    with Store(db_path) as s:
        aside = assert_moved_aside(s, db_path, garbage)
        assert "not a database" in (s.moved_aside_reason or "")
        assert Path(f"{aside}-wal").read_bytes() == b"wal garbage"


def _real_database(db_path: Path, entries: int = 3000) -> bytes:
    with Store(db_path) as s:
        s.save_unit("a.service", {"rung": 1})
        for n in range(entries):
            s.append("a.service", "check", f"transition {n} " + "x" * 80, time=float(n))
    return db_path.read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.95, 60 / 4096])
def test_a_truncated_database_is_moved_aside(db_path: Path, keep: float) -> None:
    whole = _real_database(db_path)
    assert len(whole) > 100_000
    cut = whole[: int(len(whole) * keep)]
    db_path.write_bytes(cut)
    with Store(db_path) as s:
        assert_moved_aside(s, db_path, cut)


@pytest.mark.parametrize("where", ["middle", "index root"])
def test_a_damaged_page_found_by_quick_check_is_moved_aside(db_path: Path, where: str) -> None:
    whole = bytearray(_real_database(db_path))
    page = on_disk(db_path, "PRAGMA page_size")
    if where == "middle":  # a page of history rows: quick_check fails with an error
        number = len(whole) // page // 2
    else:  # a page nothing reads at open but quick_check, which reports it in rows
        number = on_disk(
            db_path, "SELECT rootpage FROM sqlite_master WHERE tbl_name='docs' AND type='index'"
        )
    start = (number - 1) * page
    whole[start : start + page] = b"\xa5" * page  # the header (page 1) stays intact
    db_path.write_bytes(bytes(whole))
    with Store(db_path) as s:
        assert_moved_aside(s, db_path, bytes(whole))
        if where == "index root":
            assert f"Page {number}" in (s.moved_aside_reason or "")


def test_a_schema_from_the_future_is_moved_aside(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with Store(db_path) as s:
        aside = assert_moved_aside(s, db_path)
        assert "newer" in (s.moved_aside_reason or "")
    assert on_disk(aside, "PRAGMA user_version") == SCHEMA_VERSION + 1


def test_a_database_that_is_not_ours_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir()
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE something_else (x)")
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        aside = assert_moved_aside(s, db_path)
    assert on_disk(aside, "SELECT count(*) FROM sqlite_master WHERE name='something_else'") == 1


def test_our_version_without_our_tables_is_moved_aside(db_path: Path) -> None:
    Store(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TABLE docs")
    conn.commit()
    conn.close()
    with Store(db_path) as s:
        assert_moved_aside(s, db_path)
        assert "docs" in (s.moved_aside_reason or "")


def test_two_corruptions_in_one_second_get_distinct_names(db_path: Path) -> None:
    db_path.parent.mkdir()
    asides = []
    for n in range(2):
        db_path.write_bytes(f"garbage {n}".encode() * 100)
        with Store(db_path) as s:
            assert s.moved_aside is not None
            asides.append(s.moved_aside)
    assert asides[0] != asides[1]
    assert [a.read_bytes()[:9] for a in asides] == [b"garbage 0", b"garbage 1"]


def test_a_parent_that_is_a_file_raises_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file")
    with pytest.raises(SupervisorError, match=re.escape(str(blocker))):
        Store(blocker / "state.db")
    with pytest.raises(SupervisorError, match=re.escape(str(blocker))):
        Store(blocker / "deeper" / "state.db")
    assert blocker.read_text() == "a file"


def test_a_directory_at_the_path_raises_and_is_left_alone(db_path: Path) -> None:
    db_path.mkdir(parents=True)
    (db_path / "keep").write_text("x")
    with pytest.raises(SupervisorError, match=re.escape(str(db_path))):
        Store(db_path)
    assert (db_path / "keep").read_text() == "x"
    assert [p.name for p in db_path.parent.iterdir()] == ["state.db"]
