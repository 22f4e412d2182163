"""The sync state on PostgreSQL: the same record as :mod:`.state` (intents, then done), shared by many
worker processes on many machines.

Same interface and meaning as :class:`~mailmigrate.sync.state.StateDB`; what differs:

* **durability**: every write is one transaction, committed with ``synchronous_commit=on`` (the server
  flushed its WAL before the commit returns), so a committed intent survives ``kill -9`` of the worker and
  a crash of the server, like SQLite's ``synchronous=FULL``;
* **one worker per account**: instead of one run per state file, an account is synced by one process at a
  time, held by a session advisory lock (:meth:`PgStateDB.lock_account`, ``pg_try_advisory_lock``).  The
  server releases it when the holder's connection ends, so a worker killed with SIGKILL frees its accounts;
* **schema by versioned migrations** (:data:`MIGRATIONS`, table ``mm_state_version``): a fresh database is
  set up on first open; an older schema is refused until ``mailmigrate state upgrade URL`` ran.  A small
  list of SQL steps rather than Alembic: the project talks to PostgreSQL through psycopg only, and Alembic
  would bring SQLAlchemy and Mako for a handful of DDL statements.  Upgrades run in one transaction under
  an advisory lock, so two processes upgrading at once apply each step once.

:func:`open_state` picks SQLite or PostgreSQL from a path or URL.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import ConfigError, StateCorrupt, StateError
from ..model import FolderPath
from .state import DONE, PENDING, FolderState, LostIntent, MessageRow, StateDB, decode_flags, decode_path, \
    encode_flags, encode_path

#: (version, SQL): applied in order, each once; never edit a released step, add a new one.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE sync_folders (
    id BIGSERIAL PRIMARY KEY,
    account TEXT NOT NULL,
    source_path TEXT NOT NULL,
    target_path TEXT NOT NULL,
    source_validity BIGINT,
    source_uidnext BIGINT,
    source_modseq BIGINT,
    source_count BIGINT,
    target_validity BIGINT,
    target_created BOOLEAN NOT NULL DEFAULT FALSE,
    synced_at TIMESTAMPTZ,
    UNIQUE (account, source_path)
);
CREATE TABLE sync_messages (
    folder_id BIGINT NOT NULL REFERENCES sync_folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size BIGINT NOT NULL,
    source_flags TEXT NOT NULL DEFAULT '',
    target_key TEXT,
    state SMALLINT NOT NULL,
    uid_floor BIGINT,
    PRIMARY KEY (folder_id, source_key)
);
CREATE INDEX sync_messages_target ON sync_messages (folder_id, target_key);
CREATE INDEX sync_messages_state ON sync_messages (folder_id, state);
"""),
    # The fleet's job table (mailmigrate.fleet): one row per run and account, written by the worker that
    # ran it, read by the command that enqueued the run to show progress and the summary.
    (2, """
CREATE TABLE fleet_jobs (
    run_id TEXT NOT NULL,
    account TEXT NOT NULL,
    status TEXT NOT NULL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    copied BIGINT NOT NULL DEFAULT 0,
    bytes_copied BIGINT NOT NULL DEFAULT 0,
    result JSONB,
    updated TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, account)
);
CREATE INDEX fleet_jobs_status ON fleet_jobs (run_id, status);
"""),
    # What an account's job found to copy, so a project's units show done/total as they do locally.
    (3, """
ALTER TABLE fleet_jobs ADD COLUMN to_copy BIGINT NOT NULL DEFAULT 0;
"""),
    # Intents recovery declared lost, watched for a late commit of their copy (see state.LostIntent).
    (4, """
CREATE TABLE sync_lost_intents (
    id BIGSERIAL PRIMARY KEY,
    folder_id BIGINT NOT NULL REFERENCES sync_folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size BIGINT NOT NULL,
    uid_floor BIGINT,
    lost_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX sync_lost_intents_folder ON sync_lost_intents (folder_id);
"""),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
_UPGRADE_LOCK = 0x6D6D_7374_6174_6501  # "mmstate" + 1: serialises concurrent upgrades

_FOLDER_COLS = ("id, account, source_path, target_path, source_validity, source_uidnext, source_modseq,"
                " source_count, target_validity")


def is_pg_url(text: str | os.PathLike | None) -> bool:
    return isinstance(text, str) and text.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    if u.password is None:
        return url
    netloc = u.netloc.rpartition("@")
    user = (u.username or "") + ":***"
    return urlunsplit((u.scheme, f"{user}@{netloc[2]}", u.path, u.query, u.fragment))


def _connect(url: str):
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        raise ConfigError("PostgreSQL state needs psycopg (pip install 'psycopg[binary]')") from None
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="mailmigrate", connect_timeout=15)
    except psycopg.Error as e:
        raise StateError(f"state database {redact_url(url)} cannot be reached: {e}") from None
    conn.execute("SET synchronous_commit = on")
    return conn


def schema_version(conn) -> int:
    exists = conn.execute("SELECT to_regclass('mm_state_version') IS NOT NULL").fetchone()[0]
    if not exists:
        if conn.execute("SELECT to_regclass('sync_folders') IS NOT NULL").fetchone()[0]:
            raise StateCorrupt("the database has a sync_folders table but no mm_state_version: not a "
                               "mailmigrate state database, left as it is")
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM mm_state_version").fetchone()[0]


def upgrade(url: str) -> tuple[int, int]:
    """Apply every missing migration; returns (version before, version after)."""
    conn = _connect(url)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_UPGRADE_LOCK,))
            before = schema_version(conn)
            if before > SCHEMA_VERSION:
                raise StateCorrupt(f"state database {redact_url(url)} has schema {before}, newer than this "
                                   f"mailmigrate ({SCHEMA_VERSION}); upgrade mailmigrate")
            conn.execute("CREATE TABLE IF NOT EXISTS mm_state_version ("
                         "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            for version, sql in MIGRATIONS:
                if version > before:
                    conn.execute(sql)
                    conn.execute("INSERT INTO mm_state_version(version) VALUES (%s)", (version,))
        return before, SCHEMA_VERSION
    finally:
        conn.close()


def account_lock_key(account: str) -> int:
    """The advisory lock number of an account: 63 bits of its SHA-256 (signed bigint)."""
    return int.from_bytes(hashlib.sha256(b"mailmigrate-account\0" + account.encode()).digest()[:8], "big",
                          signed=True)


class PgStateDB:
    """One connection to the PostgreSQL state.  Threads of one account share it through a lock, like
    StateDB; processes each open their own."""

    def __init__(self, conn, url: str):
        self._conn = conn
        self.url = url
        self.path = redact_url(url)  # what a report shows as "state"
        self._lock = threading.RLock()
        self._held: set[str] = set()

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str) -> "PgStateDB":
        conn = _connect(url)
        try:
            version = schema_version(conn)
        except Exception:
            conn.close()
            raise
        if version == 0:
            conn.close()
            upgrade(url)  # a fresh database: create the schema
            conn = _connect(url)
        elif version < SCHEMA_VERSION:
            conn.close()
            raise StateError(f"state database {redact_url(url)} has schema {version}, this mailmigrate needs "
                             f"{SCHEMA_VERSION}: run `mailmigrate state upgrade URL` first (stop the workers)")
        elif version > SCHEMA_VERSION:
            conn.close()
            raise StateCorrupt(f"state database {redact_url(url)} was written by a newer mailmigrate "
                               f"(schema {version})")
        return cls(conn, url)

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()  # also releases every advisory lock this session holds
            finally:
                self._held.clear()

    @property
    def connection(self):
        """The session (for the fleet's job table); use under :attr:`lock`."""
        return self._conn

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    # --- one worker per account ---------------------------------------------------------------
    def lock_account(self, account: str, wait: float = 0.0, poll: float = 0.25) -> bool:
        """Take the account's advisory lock; wait up to ``wait`` seconds for another holder to finish.
        False when it is still held elsewhere."""
        deadline = time.monotonic() + wait
        key = account_lock_key(account)
        while True:
            with self._lock:
                if account in self._held:
                    return True
                got = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]
                if got:
                    self._held.add(account)
                    return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)

    def unlock_account(self, account: str) -> None:
        with self._lock:
            if account in self._held:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (account_lock_key(account),))
                self._held.discard(account)

    # --- folders ------------------------------------------------------------------------------
    def folder(self, account: str, source_path: FolderPath) -> FolderState | None:
        with self._lock:
            r = self._conn.execute(
                f"SELECT {_FOLDER_COLS} FROM sync_folders WHERE account=%s AND source_path=%s",
                (account, encode_path(source_path)),
            ).fetchone()
        return self._folder_row(r) if r else None

    def folders(self, account: str) -> list[FolderState]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_FOLDER_COLS} FROM sync_folders WHERE account=%s ORDER BY id", (account,)
            ).fetchall()
        return [self._folder_row(r) for r in rows]

    @staticmethod
    def _folder_row(r) -> FolderState:
        return FolderState(r[0], r[1], decode_path(r[2]), decode_path(r[3]), *r[4:])

    def ensure_folder(self, account: str, source_path: FolderPath, target_path: FolderPath) -> FolderState:
        with self._lock, self._conn.transaction():
            r = self._conn.execute(
                "INSERT INTO sync_folders(account, source_path, target_path) VALUES (%s,%s,%s) "
                "ON CONFLICT (account, source_path) DO UPDATE SET target_path=excluded.target_path "
                f"RETURNING {_FOLDER_COLS}",
                (account, encode_path(source_path), encode_path(target_path)),
            ).fetchone()
        return self._folder_row(r)

    def set_folder_marks(self, folder_id: int, *, source_validity: int | None, source_uidnext: int | None,
                         source_modseq: int | None, source_count: int | None,
                         target_validity: int | None) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "UPDATE sync_folders SET source_validity=%s, source_uidnext=%s, source_modseq=%s, source_count=%s,"
                " target_validity=%s, synced_at=now() WHERE id=%s",
                (source_validity, source_uidnext, source_modseq, source_count, target_validity, folder_id),
            )

    def mark_created(self, folder_id: int) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute("UPDATE sync_folders SET target_created=TRUE WHERE id=%s", (folder_id,))

    def created_folders(self, account: str) -> set[int]:
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT id FROM sync_folders WHERE account=%s AND target_created", (account,))}

    def forget_account(self, account: str) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute("DELETE FROM sync_folders WHERE account=%s", (account,))  # messages cascade

    def forget_change_marks(self, folder_id: int) -> None:
        with self._lock, self._conn.transaction():
            self._conn.execute(
                "UPDATE sync_folders SET source_uidnext=NULL, source_modseq=NULL, source_count=NULL WHERE id=%s",
                (folder_id,),
            )

    # --- messages -----------------------------------------------------------------------------
    def messages(self, folder_id: int) -> dict[str, MessageRow]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT source_key, fingerprint, norm_fingerprint, size, source_flags, target_key, state, uid_floor"
                " FROM sync_messages WHERE folder_id=%s", (folder_id,),
            ).fetchall()
        return {r[0]: MessageRow(r[0], r[1], r[2], r[3], decode_flags(r[4]), r[5], r[6], r[7]) for r in rows}

    def count(self, folder_id: int) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM sync_messages WHERE folder_id=%s",
                                      (folder_id,)).fetchone()[0]

    def has_pending(self, folder_id: int) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM sync_messages WHERE folder_id=%s AND state=%s LIMIT 1",
                                      (folder_id, PENDING)).fetchone() is not None

    def record_intents(self, folder_id: int, rows: Iterable[MessageRow]) -> None:
        """Step 1: before the target sees the messages.  Committed (WAL flushed) before returning."""
        params = [(folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, encode_flags(r.source_flags),
                   PENDING, r.uid_floor) for r in rows]
        if not params:
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sync_messages(folder_id, source_key, fingerprint, norm_fingerprint, size,"
                " source_flags, target_key, state, uid_floor) VALUES (%s,%s,%s,%s,%s,%s,NULL,%s,%s) "
                "ON CONFLICT (folder_id, source_key) DO UPDATE SET fingerprint=excluded.fingerprint,"
                " norm_fingerprint=excluded.norm_fingerprint, size=excluded.size,"
                " source_flags=excluded.source_flags, target_key=NULL, state=excluded.state,"
                " uid_floor=excluded.uid_floor",
                params,
            )

    def complete(self, folder_id: int, done: Iterable[tuple[str, str]]) -> None:
        params = [(tk, DONE, folder_id, sk) for sk, tk in done]
        if not params:
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany("UPDATE sync_messages SET target_key=%s, state=%s WHERE folder_id=%s AND source_key=%s",
                            params)

    def drop(self, folder_id: int, source_keys: Iterable[str]) -> None:
        keys = list(source_keys)
        if not keys:
            return
        with self._lock, self._conn.transaction():
            self._conn.execute("DELETE FROM sync_messages WHERE folder_id=%s AND source_key = ANY(%s)",
                               (folder_id, keys))

    def declare_lost(self, folder_id: int, rows: Iterable[MessageRow], *, uid_floor: int | None, at: float) -> None:
        """Drop the rows and remember them as lost intents in one transaction (see StateDB.declare_lost)."""
        rows = list(rows)
        if not rows:
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute("DELETE FROM sync_messages WHERE folder_id=%s AND source_key = ANY(%s)",
                        (folder_id, [r.source_key for r in rows]))
            cur.executemany(
                "INSERT INTO sync_lost_intents(folder_id, source_key, fingerprint, norm_fingerprint, size, uid_floor,"
                " lost_at) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                [(folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, uid_floor, at) for r in rows],
            )

    def lost_intents(self, folder_id: int) -> list[LostIntent]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, source_key, fingerprint, norm_fingerprint, size, uid_floor, lost_at FROM sync_lost_intents"
                " WHERE folder_id=%s ORDER BY id", (folder_id,),
            ).fetchall()
        return [LostIntent(*r) for r in rows]

    def has_lost_intents(self, folder_id: int) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM sync_lost_intents WHERE folder_id=%s LIMIT 1",
                                      (folder_id,)).fetchone() is not None

    def forget_lost(self, folder_id: int, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._lock, self._conn.transaction():
            self._conn.execute("DELETE FROM sync_lost_intents WHERE folder_id=%s AND id = ANY(%s)", (folder_id, ids))

    def set_flags(self, folder_id: int, changes: Iterable[tuple[str, frozenset[str]]]) -> None:
        params = [(encode_flags(f), folder_id, k) for k, f in changes]
        if not params:
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.executemany("UPDATE sync_messages SET source_flags=%s WHERE folder_id=%s AND source_key=%s", params)

    def rekey_source(self, folder_id: int, renames: dict[str, str]) -> None:
        """Old key -> new key in one transaction, through temporary keys so swaps cannot collide."""
        if not renames:
            return
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            for table in ("sync_messages", "sync_lost_intents"):
                cur.executemany(f"UPDATE {table} SET source_key=%s WHERE folder_id=%s AND source_key=%s",
                                [("~rekey~" + new, folder_id, old) for old, new in renames.items()])
                cur.execute(f"UPDATE {table} SET source_key=substr(source_key, 8) "
                            "WHERE folder_id=%s AND source_key LIKE %s", (folder_id, "~rekey~%"))

    def rekey_target(self, folder_id: int, changes: dict[str, str | None]) -> None:
        if not changes:
            return
        with self._lock, self._conn.transaction():
            for sk, tk in changes.items():
                if tk is None:
                    self._conn.execute("DELETE FROM sync_messages WHERE folder_id=%s AND source_key=%s",
                                       (folder_id, sk))
                else:
                    self._conn.execute("UPDATE sync_messages SET target_key=%s WHERE folder_id=%s AND source_key=%s",
                                       (tk, folder_id, sk))

    def all_target_keys(self, folder_id: int) -> set[str]:
        with self._lock:
            return {r[0] for r in self._conn.execute(
                "SELECT target_key FROM sync_messages WHERE folder_id=%s AND target_key IS NOT NULL", (folder_id,))}

    def iter_accounts(self) -> Iterator[str]:
        with self._lock:
            rows = self._conn.execute("SELECT DISTINCT account FROM sync_folders ORDER BY account").fetchall()
        for r in rows:
            yield r[0]


def open_state(where: str | os.PathLike):
    """A state database by path (SQLite) or ``postgresql://`` URL."""
    if is_pg_url(where):
        return PgStateDB.open(str(where))
    return StateDB.open(Path(where))
