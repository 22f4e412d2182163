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
dropping their rows; the engine sweeps for late copies with them (see ``_AccountRun._sweep`` in
:mod:`.engine`).

SQLite in WAL mode with ``synchronous=FULL``: a committed intent survives ``kill -9`` and power loss.  One
run at a time per state file, enforced with an exclusive ``flock`` on ``<state>.lock``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import StateCorrupt, StateLocked
from ..model import FolderPath

SCHEMA_VERSION = 1
PENDING = 0
DONE = 1

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
CREATE INDEX IF NOT EXISTS messages_target ON messages (folder_id, target_key);
CREATE INDEX IF NOT EXISTS messages_state ON messages (folder_id, state);
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


def encode_path(path: FolderPath) -> str:
    return json.dumps(list(path), ensure_ascii=False)


def decode_path(text: str) -> FolderPath:
    return tuple(json.loads(text))


def encode_flags(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def decode_flags(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


@dataclass
class FolderState:
    id: int
    account: str
    source_path: FolderPath
    target_path: FolderPath
    source_validity: int | None
    source_uidnext: int | None
    source_modseq: int | None
    source_count: int | None
    target_validity: int | None


@dataclass
class MessageRow:
    source_key: str
    fingerprint: str
    norm_fingerprint: str | None
    size: int
    source_flags: frozenset[str]
    target_key: str | None
    state: int
    uid_floor: int | None


@dataclass
class LostIntent:
    """An intent recovery declared lost, kept so that a late commit of its copy can still be recognised.

    ``uid_floor`` is the target's UIDNEXT when the intent was declared lost: a copy committed afterwards
    can only have a UID at or above it.  ``lost_at`` is a Unix time.
    """

    id: int
    source_key: str
    fingerprint: str
    norm_fingerprint: str | None
    size: int
    uid_floor: int | None
    lost_at: float


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


class StateDB:
    """One connection to the state database.  Threads share it through an internal lock: SQLite
    serialises writers anyway and the work per call is tiny compared to the network."""

    def __init__(self, conn: sqlite3.Connection, path: Path | None):
        self._conn = conn
        self.path = path
        self._lock = threading.RLock()

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
            if existed:
                cls._check(conn, path)
            # One transaction for the tables and the version row: a run killed while creating the file must
            # leave either nothing or a complete, versioned database, never tables without a version.
            conn.executescript(
                "BEGIN IMMEDIATE;\n" + _SCHEMA
                + f"\nINSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');"
                "\nINSERT OR IGNORE INTO meta(key, value) VALUES ('application', 'mailmigrate');\nCOMMIT;"
            )
        except sqlite3.DatabaseError as e:
            if "locked" in str(e).lower():
                raise StateLocked(f"state database {path} is locked by another process: {e}") from None
            raise StateCorrupt(
                f"state database {path} cannot be read ({e}); it was left as it is — restore it from a backup "
                "or move it away to start a fresh mapping (a fresh mapping re-copies everything)"
            ) from None
        return cls(conn, path)

    @staticmethod
    def _check(conn: sqlite3.Connection, path: Path) -> None:
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
            return
        if "meta" not in tables:
            raise StateCorrupt(f"{path} is not a mailmigrate state database (no meta table)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None and not StateDB._holds_mappings(conn, tables):
            # Earlier versions created the tables and the version row in separate steps; a run killed between
            # them left an empty, unversioned file.  It maps nothing, so completing it loses nothing.
            return
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise StateCorrupt(f"{path} was written by a newer mailmigrate (schema {row and row[0]})")

    @staticmethod
    def _holds_mappings(conn: sqlite3.Connection, tables: set[str]) -> bool:
        for table in ("folders", "messages"):
            if table in tables and conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone():
                return True
        return False

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- transactions -------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self)

    # --- folders ------------------------------------------------------------------------------
    def folder(self, account: str, source_path: FolderPath) -> FolderState | None:
        with self._lock:
            r = self._conn.execute(
                "SELECT id, account, source_path, target_path, source_validity, source_uidnext, source_modseq,"
                " source_count, target_validity FROM folders WHERE account=? AND source_path=?",
                (account, encode_path(source_path)),
            ).fetchone()
        return self._folder_row(r) if r else None

    def folders(self, account: str) -> list[FolderState]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, account, source_path, target_path, source_validity, source_uidnext, source_modseq,"
                " source_count, target_validity FROM folders WHERE account=? ORDER BY id",
                (account,),
            ).fetchall()
        return [self._folder_row(r) for r in rows]

    @staticmethod
    def _folder_row(r) -> FolderState:
        return FolderState(r[0], r[1], decode_path(r[2]), decode_path(r[3]), *r[4:])

    def ensure_folder(self, account: str, source_path: FolderPath, target_path: FolderPath) -> FolderState:
        with self._lock, self._tx():
            self._conn.execute(
                "INSERT INTO folders(account, source_path, target_path) VALUES (?,?,?) "
                "ON CONFLICT(account, source_path) DO UPDATE SET target_path=excluded.target_path",
                (account, encode_path(source_path), encode_path(target_path)),
            )
        f = self.folder(account, source_path)
        assert f is not None
        return f

    def set_folder_marks(
        self,
        folder_id: int,
        *,
        source_validity: int | None,
        source_uidnext: int | None,
        source_modseq: int | None,
        source_count: int | None,
        target_validity: int | None,
    ) -> None:
        with self._lock, self._tx():
            self._conn.execute(
                "UPDATE folders SET source_validity=?, source_uidnext=?, source_modseq=?, source_count=?,"
                " target_validity=?, synced_at=datetime('now') WHERE id=?",
                (source_validity, source_uidnext, source_modseq, source_count, target_validity, folder_id),
            )

    def mark_created(self, folder_id: int) -> None:
        """mailmigrate made this target folder: an abort may remove it again (when empty)."""
        with self._lock, self._tx():
            self._conn.execute("UPDATE folders SET target_created=1 WHERE id=?", (folder_id,))

    def created_folders(self, account: str) -> set[int]:
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT id FROM folders WHERE account=? AND target_created=1", (account,))}

    def forget_account(self, account: str) -> None:
        with self._lock, self._tx():
            for table in ("messages", "lost_intents"):
                self._conn.execute(
                    f"DELETE FROM {table} WHERE folder_id IN (SELECT id FROM folders WHERE account=?)", (account,))
            self._conn.execute("DELETE FROM folders WHERE account=?", (account,))

    def forget_change_marks(self, folder_id: int) -> None:
        """Make the next run list the folder in full (after a partial run)."""
        with self._lock, self._tx():
            self._conn.execute(
                "UPDATE folders SET source_uidnext=NULL, source_modseq=NULL, source_count=NULL WHERE id=?",
                (folder_id,),
            )

    # --- messages -----------------------------------------------------------------------------
    def messages(self, folder_id: int) -> dict[str, MessageRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT source_key, fingerprint, norm_fingerprint, size, source_flags, target_key, state, uid_floor"
                " FROM messages WHERE folder_id=?",
                (folder_id,),
            ).fetchall()
        return {
            r[0]: MessageRow(r[0], r[1], r[2], r[3], decode_flags(r[4]), r[5], r[6], r[7]) for r in rows
        }

    def count(self, folder_id: int) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM messages WHERE folder_id=?", (folder_id,)).fetchone()[0]

    def has_pending(self, folder_id: int) -> bool:
        with self._lock:
            return (
                self._conn.execute(
                    "SELECT 1 FROM messages WHERE folder_id=? AND state=? LIMIT 1", (folder_id, PENDING)
                ).fetchone()
                is not None
            )

    def record_intents(self, folder_id: int, rows: Iterable[MessageRow]) -> None:
        """Step 1: before the target sees the messages.  Committed (fsynced) before returning."""
        with self._lock, self._tx():
            self._conn.executemany(
                "INSERT OR REPLACE INTO messages(folder_id, source_key, fingerprint, norm_fingerprint, size,"
                " source_flags, target_key, state, uid_floor) VALUES (?,?,?,?,?,?,NULL,?,?)",
                [
                    (folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size,
                     encode_flags(r.source_flags), PENDING, r.uid_floor)
                    for r in rows
                ],
            )

    def complete(self, folder_id: int, done: Iterable[tuple[str, str]]) -> None:
        """Step 2: (source_key, target_key) pairs the target confirmed."""
        with self._lock, self._tx():
            self._conn.executemany(
                "UPDATE messages SET target_key=?, state=? WHERE folder_id=? AND source_key=?",
                [(tk, DONE, folder_id, sk) for sk, tk in done],
            )

    def drop(self, folder_id: int, source_keys: Iterable[str]) -> None:
        with self._lock, self._tx():
            self._conn.executemany(
                "DELETE FROM messages WHERE folder_id=? AND source_key=?", [(folder_id, k) for k in source_keys]
            )

    def declare_lost(self, folder_id: int, rows: Iterable[MessageRow], *, uid_floor: int | None, at: float) -> None:
        """Drop PENDING rows recovery did not find and remember them as lost intents, in one transaction:
        a crash between the two must not leave a dropped intent that nobody watches."""
        rows = list(rows)
        with self._lock, self._tx():
            self._conn.executemany(
                "DELETE FROM messages WHERE folder_id=? AND source_key=?", [(folder_id, r.source_key) for r in rows])
            self._conn.executemany(
                "INSERT INTO lost_intents(folder_id, source_key, fingerprint, norm_fingerprint, size, uid_floor,"
                " lost_at) VALUES (?,?,?,?,?,?,?)",
                [(folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, uid_floor, at) for r in rows],
            )

    def lost_intents(self, folder_id: int) -> list[LostIntent]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, source_key, fingerprint, norm_fingerprint, size, uid_floor, lost_at FROM lost_intents"
                " WHERE folder_id=? ORDER BY id", (folder_id,),
            ).fetchall()
        return [LostIntent(*r) for r in rows]

    def has_lost_intents(self, folder_id: int) -> bool:
        with self._lock:
            return self._conn.execute(
                "SELECT 1 FROM lost_intents WHERE folder_id=? LIMIT 1", (folder_id,)).fetchone() is not None

    def forget_lost(self, folder_id: int, ids: Iterable[int]) -> None:
        with self._lock, self._tx():
            self._conn.executemany(
                "DELETE FROM lost_intents WHERE folder_id=? AND id=?", [(folder_id, i) for i in ids])

    def set_flags(self, folder_id: int, changes: Iterable[tuple[str, frozenset[str]]]) -> None:
        with self._lock, self._tx():
            self._conn.executemany(
                "UPDATE messages SET source_flags=? WHERE folder_id=? AND source_key=?",
                [(encode_flags(f), folder_id, k) for k, f in changes],
            )

    def rekey_source(self, folder_id: int, renames: dict[str, str]) -> None:
        """After a source UIDVALIDITY change: old key -> new key, in one transaction.

        Goes through temporary keys so that a new key equal to another row's old key cannot collide.  Lost
        intents follow their rows: a late copy is recognised through the row of the same key.
        """
        with self._lock, self._tx():
            for table in ("messages", "lost_intents"):
                self._conn.executemany(
                    f"UPDATE {table} SET source_key=? WHERE folder_id=? AND source_key=?",
                    [("~rekey~" + new, folder_id, old) for old, new in renames.items()],
                )
                self._conn.execute(
                    f"UPDATE {table} SET source_key=substr(source_key, 8) WHERE folder_id=? AND source_key LIKE ?",
                    (folder_id, "~rekey~%"),
                )

    def rekey_target(self, folder_id: int, changes: dict[str, str | None]) -> None:
        """After a target UIDVALIDITY change: source key -> new target key, or None to forget the row."""
        with self._lock, self._tx():
            for sk, tk in changes.items():
                if tk is None:
                    self._conn.execute(
                        "DELETE FROM messages WHERE folder_id=? AND source_key=?", (folder_id, sk)
                    )
                else:
                    self._conn.execute(
                        "UPDATE messages SET target_key=? WHERE folder_id=? AND source_key=?", (tk, folder_id, sk)
                    )

    def all_target_keys(self, folder_id: int) -> set[str]:
        with self._lock:
            return {
                r[0]
                for r in self._conn.execute(
                    "SELECT target_key FROM messages WHERE folder_id=? AND target_key IS NOT NULL", (folder_id,)
                )
            }

    def iter_accounts(self) -> Iterator[str]:
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT account FROM folders ORDER BY account").fetchall()
        for r in rows:
            yield r[0]


class _Tx:
    def __init__(self, db: StateDB):
        self.db = db

    def __enter__(self):
        self.db._conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db._conn.execute("COMMIT")
        else:
            self.db._conn.execute("ROLLBACK")
        return False
