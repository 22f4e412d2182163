"""The sync state: which source message became which target message, and what was about to happen.

Why a database and not a scan of the target: headers do not identify a message (twins, missing or shared
Message-IDs), so only a record made at copy time can say "this target copy is that source message".  The
record is written in two steps around every write to the target:

1. *intent*: before an APPEND, a row per message with its fingerprint (SHA-256 of the exact bytes), its
   size and the target folder's UIDNEXT ("uid floor") at that moment, state PENDING;
2. *done*: after the target confirmed, the row gets the target key and state DONE.

A crash between the two leaves PENDING rows; the next run finds their copies by fingerprint among target
messages above the uid floor that no row claims, and never appends them again blindly.

An intent that recovery could not find is not proof that its copy will never appear: a server may still be
committing an APPEND whose client was killed after sending all of it.  So recovery keeps such intents in
``lost_intents`` (fingerprint, size, the target's UIDNEXT when they were declared lost, time) after
dropping their rows; the engine sweeps for late copies with them (see ``Recovery.sweep`` in
:mod:`.recovery`).

SQLite in WAL mode with ``synchronous=FULL``: a committed intent survives ``kill -9`` and power loss.  One
run at a time per state file, enforced with an exclusive ``flock`` on ``<state>.lock``.

The queries are written once for this back end and PostgreSQL's (:mod:`.state_pg`) in :mod:`.state_sql`;
this module keeps what is SQLite's own: creating and checking the file, the run lock, durability settings
and how a transaction and a list parameter are spelt.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import StateCorrupt, StateLocked
from .state_sql import (ADOPTED, DONE, PENDING, FolderState, LostIntent, MessageRow, SqlStateDB, decode_flags, decode_path,
                        encode_flags, encode_path)

# The records and codecs are defined with the shared queries and named here too, where callers look for them.
__all__ = ["ADOPTED", "DONE", "PENDING", "SCHEMA_VERSION", "FolderState", "LostIntent", "MessageRow", "RunLock", "StateDB",
           "decode_flags", "decode_path", "encode_flags", "encode_path"]

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    source_path TEXT NOT NULL,
    target_path TEXT NOT NULL,
    source_validity INTEGER,
    source_uidnext INTEGER,
    source_modseq INTEGER,
    source_count INTEGER,
    target_validity INTEGER,
    target_created INTEGER NOT NULL DEFAULT 0,
    synced_at TEXT,
    UNIQUE (account, source_path)
);
CREATE TABLE IF NOT EXISTS messages (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size INTEGER NOT NULL,
    source_flags TEXT NOT NULL DEFAULT '',
    target_key TEXT,
    state INTEGER NOT NULL,
    uid_floor INTEGER,
    PRIMARY KEY (folder_id, source_key)
);
CREATE INDEX IF NOT EXISTS messages_target_keys ON messages (folder_id, target_key) WHERE target_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_pending ON messages (folder_id) WHERE state = 0;  -- 0: PENDING
CREATE TABLE IF NOT EXISTS lost_intents (
    id INTEGER PRIMARY KEY,
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size INTEGER NOT NULL,
    uid_floor INTEGER,
    lost_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS lost_intents_folder ON lost_intents (folder_id);
"""

#: (version, SQL): what turns a file of the version before into this one, run before :data:`_SCHEMA` (which
#: then creates what is new) in the transaction that opens the file.
_UPGRADES: list[tuple[int, str]] = [
    # The indexes of the target keys and of the states held every row twice, and every copied message changed
    # both twice (intent, then done).  Indexes of only the rows they are asked for (target keys set, PENDING
    # rows, which are few) answer the same queries and cost a copy a fifth less in the state.
    (2, "DROP INDEX IF EXISTS messages_target;\nDROP INDEX IF EXISTS messages_state;\n"),
]


class RunLock:
    """An exclusive lock on a state file for the length of one run: two runs would race on intents."""

    def __init__(self, path: Path):
        self.path = Path(str(path) + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StateLocked(
                f"state database {self.path.name[:-5]} is in use by another mailmigrate run; "
                "wait for it to finish (two runs on one state would duplicate messages)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class StateDB(SqlStateDB):
    """One connection to a SQLite state file; the queries are :class:`~.state_sql.SqlStateDB`'s."""

    FOLDERS, MESSAGES, LOST = "folders", "messages", "lost_intents"
    PLACEHOLDER = "?"
    # An older SQLite (Ubuntu 20.04 has 3.31, RHEL 8 3.26) has no UPDATE ... FROM: completions one row at a time.
    UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)

    def __init__(self, conn: sqlite3.Connection, path: Path | None, upgraded_from: int | None = None):
        super().__init__(conn)
        self.path = path
        #: The schema the file had when this open upgraded it (``mailmigrate state upgrade`` says so); None
        #: when it was new or already current.
        self.upgraded_from = upgraded_from

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike) -> "StateDB":
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists() and path.stat().st_size > 0
        try:
            # Create the file 0600: it names accounts and folders, which are not for everyone.
            if not path.exists():
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
            version = cls._check(conn, path) if existed else None
            # One transaction for the upgrades, the tables and the version row: a run killed while creating
            # or upgrading the file must leave it as it was or complete and versioned, never in between.
            upgrades = "".join(sql for v, sql in _UPGRADES if version is None or v > version)
            conn.executescript(
                "BEGIN IMMEDIATE;\n" + upgrades + _SCHEMA
                + f"\nINSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
                f"\nUPDATE meta SET value='{SCHEMA_VERSION}' WHERE key='schema_version'"
                f" AND CAST(value AS INTEGER) < {SCHEMA_VERSION};"
                "\nINSERT OR IGNORE INTO meta(key, value) VALUES ('application', 'mailmigrate');\nCOMMIT;"
            )
        except sqlite3.DatabaseError as e:
            if "locked" in str(e).lower():
                raise StateLocked(f"state database {path} is locked by another process: {e}") from None
            raise StateCorrupt(
                f"state database {path} cannot be read ({e}); it was left as it is — restore it from a backup "
                "or move it away to start a fresh mapping (a fresh mapping re-copies everything)"
            ) from None
        return cls(conn, path, version if version is not None and version < SCHEMA_VERSION else None)

    @staticmethod
    def _check(conn: sqlite3.Connection, path: Path) -> int | None:
        """The file's schema version; None when it holds no versioned schema yet (nothing to lose)."""
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            raise StateCorrupt(f"state database {path} is damaged: {e}") from None
        if ok != "ok":
            raise StateCorrupt(f"state database {path} is damaged: {ok}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            # A run killed after SQLite wrote the file's header (journal mode) but before the schema's one
            # transaction committed leaves an empty database: nothing in it to lose, so it is completed.
            return None
        if "meta" not in tables:
            raise StateCorrupt(f"{path} is not a mailmigrate state database (no meta table)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None and not StateDB._holds_mappings(conn, tables):
            # Earlier versions created the tables and the version row in separate steps; a run killed between
            # them left an empty, unversioned file.  It maps nothing, so completing it loses nothing.
            return None
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise StateCorrupt(f"{path} was written by a newer mailmigrate (schema {row and row[0]})")
        return int(row[0])

    @staticmethod
    def _holds_mappings(conn: sqlite3.Connection, tables: set[str]) -> bool:
        for table in ("folders", "messages"):
            if table in tables and conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return True
        return False

    # --- the dialect -------------------------------------------------------------------------
    @contextmanager
    def _transaction(self):
        # IMMEDIATE takes the write lock at the start, so a busy database waits here (busy_timeout) rather
        # than failing half-way through the transaction.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _in(self, column: str, values: Sequence) -> tuple[str, str]:
        # SQLite has no array parameter: the list goes in as one JSON text, unpacked by json_each.
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(list(values), ensure_ascii=False)
