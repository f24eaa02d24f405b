"""Opening the state database of :mod:`supervisor.store`: the file (0600), its pragmas,
its schema and migrations, the checks that tell an unusable database, and moving one
aside to `<path>.corrupt-<UTC timestamp>`.

Private to :mod:`supervisor.store`, whose docstring tells when a database is moved aside.
"""

from __future__ import annotations

import os
import sqlite3
import struct
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from supervisor.errors import SupervisorError

#: Milliseconds a statement waits for a lock held by another connection.
BUSY_TIMEOUT_MS: Final = 5_000

# Each migration takes the schema from version `i` to `i + 1`; `PRAGMA user_version`
# holds the version. Only ever append to this list.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE units (unit TEXT PRIMARY KEY, state TEXT NOT NULL, updated REAL NOT NULL)",
        "CREATE TABLE docs (key TEXT PRIMARY KEY, doc TEXT NOT NULL, updated REAL NOT NULL)",
        # AUTOINCREMENT: ids are never reused, even after prune empties the table.
        "CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL,"
        " unit TEXT, kind TEXT NOT NULL, message TEXT NOT NULL, data TEXT NOT NULL)",
        "CREATE INDEX history_unit_time ON history (unit, time)",
        "CREATE INDEX history_time ON history (time)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

# Statements that must prepare on a database of the current version: a database
# whose user_version says it is ours but whose tables are not is unusable.
SCHEMA_PROBES: Final = (
    "SELECT unit, state, updated FROM units LIMIT 0",
    "SELECT key, doc, updated FROM docs LIMIT 0",
    "SELECT id, time, unit, kind, message, data FROM history LIMIT 0",
)

# SQLite's primary result codes that say the file's contents are bad.
SQLITE_CORRUPT: Final = 11
SQLITE_NOTADB: Final = 26

SIDE_FILES: Final = ("-wal", "-shm", "-journal")

# A write-ahead log starts with this magic (the last bit: the checksums' byte order)
# and this format version (https://www.sqlite.org/fileformat2.html#walformat).
WAL_MAGIC: Final = (0x377F0682, 0x377F0683)
WAL_VERSION: Final = 3007000
WAL_HEADER: Final = 32
SQLITE_HEADER: Final = b"SQLite format 3\0"


class Unusable(Exception):
    """The database's contents cannot be used: move it aside (internal)."""


def is_corruption(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the database file, created empty (0600) if missing."""
    if not path.exists():
        try:  # created here so that it (and its -wal/-shm, which copy it) is 0600
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        except OSError as e:
            raise SupervisorError(
                f"state database {path} cannot be created: {e.strerror or e}"
            ) from e
    try:
        # Not tied to the opening thread: `AsyncStore` hands it to its writer thread,
        # which is from then on its only user.
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise SupervisorError(f"state database {path} cannot be opened: {e}") from e
    # Text that is not UTF-8 (a flipped bit) reads with U+FFFD instead of failing the
    # whole query; the state documents are read as bytes and checked strictly.
    conn.text_factory = _lenient_text
    return conn


def _lenient_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def empty_file(path: Path) -> str | None:
    """Why the existing database file at `path` must not be opened as it is, or None.

    SQLite takes a 0-byte file for a new database (and deletes a -wal beside it): an
    emptied state database would be lost without a word.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SupervisorError(f"state database {path} cannot be read: {e.strerror or e}") from e
    return "state database was empty (0 bytes): starting afresh" if size == 0 else None


def bad_wal(path: Path) -> str | None:
    """Why the -wal beside `path` is not a write-ahead log, or None (none or a good one).

    SQLite ignores, then overwrites, a -wal whose header is not valid: its contents are
    lost either way, but moved aside they can still be looked at.
    """
    wal = Path(f"{path}-wal")
    try:
        with path.open("rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                return None  # not a database: it goes aside whole, with its -wal
        with wal.open("rb") as f:
            header = f.read(WAL_HEADER)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SupervisorError(f"state database {wal} cannot be read: {e.strerror or e}") from e
    if not header:
        return None  # an empty -wal is what a clean close leaves
    if len(header) < WAL_HEADER:
        return f"its write-ahead log {wal.name} is cut short ({len(header)} bytes)"
    magic, version = struct.unpack(">II", header[:8])
    if magic not in WAL_MAGIC or version != WAL_VERSION:
        return f"its write-ahead log {wal.name} is not a write-ahead log (bad header)"
    if _wal_checksum(header[:24], big_endian=magic & 1 == 1) != struct.unpack(">II", header[24:]):
        return f"its write-ahead log {wal.name} has a damaged header (checksum)"
    return None


def _wal_checksum(data: bytes, *, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum of `data` (a multiple of 8 bytes)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0 = s1 = 0
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def prepare(conn: sqlite3.Connection, path: Path) -> None:
    """Set the pragmas, check and migrate; `Unusable` if the contents are bad."""
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        problems = [" ".join(str(row[0]).split()) for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise Unusable("quick_check: " + "; ".join(problems[:3]))
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            # Moved aside, not refused: a host supervised from fresh state is safer
            # than one not supervised at all, and the file is kept for a newer
            # version (reinstall it and move the file back).
            raise Unusable(
                f"schema version {version} is newer than this host-supervisor's"
                f" ({SCHEMA_VERSION}): written by a newer version, which can read it again"
            )
        if version == 0:
            (objects,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            if objects:
                raise Unusable("it holds tables but no host-supervisor schema version")
        if version < SCHEMA_VERSION:
            migrate(conn, version)
        for probe in SCHEMA_PROBES:
            try:
                conn.execute(probe)
            except sqlite3.OperationalError as e:
                raise Unusable(f"schema version {version} but {e}") from e
    except sqlite3.Error as e:
        if is_corruption(e):
            raise Unusable(str(e)) from e
        raise SupervisorError(f"state database {path} cannot be opened: {e}") from e


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Take the schema from `version` to SCHEMA_VERSION in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statements in MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


def move_aside(path: Path, reason: str | None, *, main: bool = True) -> Path:
    """Rename the database and its side files to `<path>.corrupt-<UTC time>`.

    With `main` False only the side files (-wal, -shm, -journal) move: a write-ahead
    log that is not one, beside a good database. Returns the new name of the main file
    (which, then, does not exist: its side files are that name plus their suffix).
    """
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{target}{s}").exists() for s in ("", *SIDE_FILES)):
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}.{n}")
    try:
        # Side files keep their suffix, so the set still opens together.
        for suffix in SIDE_FILES:
            side = Path(f"{path}{suffix}")
            if side.exists():
                side.rename(f"{target}{suffix}")
        if main:
            path.rename(target)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        raise SupervisorError(
            f"state database {path} is unusable ({reason})"
            f" and cannot be moved aside to {target}: {e.strerror or e}"
        ) from e
    return target
