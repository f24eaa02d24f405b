"""Opening the state database of :mod:`supervisor.store`: the file (0600), its pragmas,
its schema and migrations, the checks that tell an unusable database, and moving one
aside to `<path>.corrupt-<UTC timestamp>`.

Private to :mod:`supervisor.store`, whose docstring tells when a database is moved aside.
"""

from __future__ import annotations

import os
import sqlite3
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
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as e:
        raise SupervisorError(f"state database {path} cannot be opened: {e}") from e
    return conn


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
            raise Unusable(
                f"schema version {version} is newer than this host-supervisor's ({SCHEMA_VERSION})"
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


def move_aside(path: Path, reason: str | None) -> Path:
    """Rename the database and its side files to `<path>.corrupt-<UTC time>`."""
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
