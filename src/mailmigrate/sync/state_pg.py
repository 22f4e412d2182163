"""The sync state on PostgreSQL: the same record as :mod:`.state` (intents, then done), shared by many
worker processes on many machines.

Same interface, meaning and queries as :class:`~mailmigrate.sync.state.StateDB` (both are
:class:`~mailmigrate.sync.state_sql.SqlStateDB`, under other table names); what differs:

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

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import ConfigError, StateCorrupt, StateError, StateUnreachable
from .state import StateDB
from .state_sql import SqlStateDB

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
    # What a fleet run asked (its job description, never a password) and each account's job arguments, so
    # that a job the fleet lost (a broker restarted without its data, a worker frozen) can be put back by
    # the command following the run or by `mailmigrate fleet requeue`, which never saw the original.
    (5, """
CREATE TABLE fleet_runs (
    run_id TEXT PRIMARY KEY,
    description JSONB NOT NULL,
    broker TEXT,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
ALTER TABLE fleet_jobs ADD COLUMN job JSONB;
"""),
    # Indexes of only the rows their queries ask for (target keys set, PENDING rows): the full ones held every
    # row, and every copied message changed both twice (intent, then done).  As state.py's schema 2.
    (6, """
DROP INDEX sync_messages_target;
DROP INDEX sync_messages_state;
CREATE INDEX sync_messages_target_keys ON sync_messages (folder_id, target_key) WHERE target_key IS NOT NULL;
CREATE INDEX sync_messages_pending ON sync_messages (folder_id) WHERE state = 0;
"""),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
_UPGRADE_LOCK = 0x6D6D_7374_6174_6501  # "mmstate" + 1: serialises concurrent upgrades


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
        raise ConfigError("PostgreSQL state needs psycopg (pip install 'mailmigrate[postgres]')") from None
    try:
        conn = psycopg.connect(url, autocommit=True, application_name="mailmigrate", connect_timeout=15)
    except psycopg.Error as e:
        raise StateUnreachable(f"state database {redact_url(url)} cannot be reached: {e}") from None
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
    import hashlib  # here: a SQLite run imports this module for is_pg_url (see model.fingerprint_bytes)

    return int.from_bytes(hashlib.sha256(b"mailmigrate-account\0" + account.encode()).digest()[:8], "big",
                          signed=True)


class PgStateDB(SqlStateDB):
    """One connection to the PostgreSQL state.  Threads of one account share it through a lock, like
    StateDB; processes each open their own."""

    FOLDERS, MESSAGES, LOST = "sync_folders", "sync_messages", "sync_lost_intents"
    PLACEHOLDER = "%s"

    def __init__(self, conn, url: str):
        super().__init__(conn)
        self.url = url
        self.path = redact_url(url)  # what a report shows as "state"
        self._held: set[str] = set()

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str) -> "PgStateDB":
        conn = _connect(url)
        try:
            try:
                version = schema_version(conn)
            except StateCorrupt:
                # Workers started together on a fresh database: another one may be creating the schema
                # right now, its tables appearing between our two looks.  Look again once it is done.
                conn.execute("SELECT pg_advisory_lock(%s)", (_UPGRADE_LOCK,))
                try:
                    version = schema_version(conn)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (_UPGRADE_LOCK,))
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

    # --- the dialect -------------------------------------------------------------------------
    def _transaction(self):
        return self._conn.transaction()

    def _in(self, column: str, values: Sequence) -> tuple[str, list]:
        return f"{column} = ANY(?)", list(values)


def open_state(where: str | os.PathLike):
    """A state database by path (SQLite) or ``postgresql://`` URL."""
    if is_pg_url(where):
        return PgStateDB.open(str(where))
    return StateDB.open(Path(where))
