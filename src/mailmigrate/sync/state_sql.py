"""What the sync state records, and its queries, written once for both back ends.

The meaning of the record (intents, then done; lost intents) is explained in :mod:`.state`.  SQLite
(:mod:`.state`) and PostgreSQL (:mod:`.state_pg`) hold the same tables under different names and speak
slightly different SQL; every query used to be written twice, and each new feature had to be too, with the
risk that the copies drift apart.  Here the queries live once in :class:`SqlStateDB`, written in the SQL
both servers accept (upserts with ``ON CONFLICT``, ``RETURNING``, ``TRUE``, ``CURRENT_TIMESTAMP`` all work in
SQLite 3.35 and later) with ``?`` placeholders and ``{folders}``, ``{messages}``, ``{lost}`` for the tables.
A back end supplies only what genuinely differs: the table names, its placeholder, how one write
transaction is run and how a statement matches a column against a list.  Opening, schema checks and
migrations, locking between runs or workers and durability settings stay in the back ends.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from ..model import FolderPath, remembered

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:
    from typing import Any

PENDING = 0
DONE = 1
#: the uid_floor of a DONE row whose copy was found on the target, not made (engine._adopt): no intent ever had
#: a floor below 1, so the mark cannot be mistaken; abort leaves such copies where they were
ADOPTED = -1


def encode_path(path: FolderPath) -> str:
    return json.dumps(list(path), ensure_ascii=False)


def decode_path(text: str) -> FolderPath:
    return tuple(json.loads(text))


@remembered(frozenset)
def encode_flags(flags: Iterable[str]) -> str:
    return " ".join(sorted(flags))


def decode_flags(text: str) -> frozenset[str]:
    return frozenset(text.split()) if text else frozenset()


@dataclass
class FolderState:
    """A folder's record: where it goes, and the markers with which a rerun skips it when unchanged."""

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
    """A source message's record: its fingerprint, its copy's target key once done, and its flags."""

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


_FOLDER_COLS = ("id, account, source_path, target_path, source_validity, source_uidnext, source_modseq,"
                " source_count, target_validity")
_MESSAGE_COLS = "source_key, fingerprint, norm_fingerprint, size, source_flags, target_key, state, uid_floor"
_LOST_COLS = "id, source_key, fingerprint, norm_fingerprint, size, uid_floor, lost_at"
_REKEY = "\x01rekey\x01"  # prefix of a key while rekey_source moves it
# Step 1 and step 2 of a copy as (head, row, tail) of a multi-row statement (SqlStateDB._execute_rows).  Step 2 is
# an UPDATE joined to a VALUES list, whose columns both servers name column1, column2.
_INTENT = ("INSERT INTO {messages}(folder_id, source_key, fingerprint, norm_fingerprint, size, source_flags,"
           " target_key, state, uid_floor) VALUES ",
           f"(?,?,?,?,?,?,NULL,{PENDING},?)",
           " ON CONFLICT (folder_id, source_key) DO UPDATE SET fingerprint=excluded.fingerprint,"
           " norm_fingerprint=excluded.norm_fingerprint, size=excluded.size, source_flags=excluded.source_flags,"
           " target_key=NULL, state=excluded.state, uid_floor=excluded.uid_floor")
_COMPLETE = (f"UPDATE {{messages}} SET target_key=v.column2, state={DONE} FROM (VALUES ",
             "(?,?)",
             ") AS v WHERE {messages}.folder_id=? AND {messages}.source_key=v.column1")


@functools.lru_cache(maxsize=512)
def _render(template: str, folders: str, messages: str, lost: str, placeholder: str) -> str:
    # A "%" in the text would be read as a placeholder by psycopg; none of the queries has one, and doubling
    # it keeps a future one literal.
    sql = template.format(folders=folders, messages=messages, lost=lost)
    return sql if placeholder == "?" else sql.replace("%", "%%").replace("?", placeholder)


#: the row counts of one multi-row statement: a list of rows goes in as the fewest of these, so that a handful
#: of statements per table is ever compiled (compiling one of 64 rows costs as much as running it ~10 times)
_CHUNKS = (64, 32, 16, 8, 4, 2, 1)


@functools.lru_cache(maxsize=256)
def _render_rows(head: str, row: str, tail: str, n: int, *names: str) -> str:
    return _render(head + ",".join([row] * n) + tail, *names)


def _chunks(flat: list, width: int) -> Iterator[tuple[int, list]]:
    """(row count, its parameters) of ``flat`` (``width`` parameters a row) cut into :data:`_CHUNKS`."""
    rows, start = len(flat) // width, 0
    for n in _CHUNKS:
        while rows >= n:
            yield n, flat[start:start + n * width]
            start += n * width
            rows -= n


class SqlStateDB:
    """The state's queries over one DB-API connection.  Threads share the connection through
    ``self._lock``: both back ends serialise writers anyway and the work per call is tiny compared to the
    network.

    Subclasses set the table names and placeholder and implement :meth:`_transaction` and :meth:`_in`.
    Every write runs in one transaction of its own, so a crash leaves it wholly done or not at all; a write
    given nothing to do returns without opening one.
    """

    FOLDERS: str
    MESSAGES: str
    LOST: str
    PLACEHOLDER: str

    def __init__(self, conn):
        self._conn = conn
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- the dialect ---------------------------------------------------------------------------
    def _transaction(self) -> AbstractContextManager:
        """One write transaction: committed when the block ends, rolled back when it raises."""
        raise NotImplementedError

    def _in(self, column: str, values: Sequence) -> tuple[str, Any]:
        """A condition "column is one of values" with one placeholder, and the parameter for it."""
        raise NotImplementedError

    def _sql(self, template: str) -> str:
        return _render(template, self.FOLDERS, self.MESSAGES, self.LOST, self.PLACEHOLDER)

    def _execute(self, template: str, params: Sequence = ()):
        return self._conn.execute(self._sql(template), params)

    def _execute_rows(self, head: str, row: str, tail: str, flat: list, width: int, *extra) -> None:
        """``head`` + ``row`` once per row + ``tail``, run over ``flat`` (the rows' parameters one after the
        other, ``width`` a row; ``extra`` after each statement's rows).  One statement for many rows instead of
        one per row (executemany): a step, a reset and, in Python's sqlite3, a release and retake of the GIL
        per statement instead of per row; a copy's state writes cost about a fifth less CPU."""
        names = (self.FOLDERS, self.MESSAGES, self.LOST, self.PLACEHOLDER)
        for n, params in _chunks(flat, width):
            if extra:
                params.extend(extra)
            self._conn.execute(_render_rows(head, row, tail, n, *names), params)

    #: the database takes UPDATE ... FROM (PostgreSQL; SQLite from 3.33, 2020): else step 2 is one UPDATE per row
    UPDATE_FROM = True

    def _complete_rows(self, finished: list, folder_id: int) -> None:
        """Step 2 for ``finished`` (source key, target key, one pair after the other) in the open transaction."""
        if self.UPDATE_FROM:
            self._execute_rows(*_COMPLETE, finished, 2, folder_id)
            return
        self._executemany(f"UPDATE {{messages}} SET target_key=?, state={DONE} WHERE folder_id=? AND source_key=?",
                          [(finished[i + 1], folder_id, finished[i]) for i in range(0, len(finished), 2)])

    def _executemany(self, template: str, params: Iterable[Sequence]) -> None:
        cur = self._conn.cursor()
        try:
            cur.executemany(self._sql(template), params)
        finally:
            cur.close()

    # --- folders ------------------------------------------------------------------------------
    def folder(self, account: str, source_path: FolderPath) -> FolderState | None:
        with self._lock:
            r = self._execute(f"SELECT {_FOLDER_COLS} FROM {{folders}} WHERE account=? AND source_path=?",
                              (account, encode_path(source_path))).fetchone()
        return self._folder_row(r) if r else None

    def folders(self, account: str) -> list[FolderState]:
        with self._lock:
            rows = self._execute(f"SELECT {_FOLDER_COLS} FROM {{folders}} WHERE account=? ORDER BY id",
                                 (account,)).fetchall()
        return [self._folder_row(r) for r in rows]

    @staticmethod
    def _folder_row(r) -> FolderState:
        return FolderState(r[0], r[1], decode_path(r[2]), decode_path(r[3]), *r[4:])

    def ensure_folder(self, account: str, source_path: FolderPath, target_path: FolderPath) -> FolderState:
        return self.ensure_folders(account, [(source_path, target_path)])[0]

    def ensure_folders(self, account: str, folders: Sequence[tuple[FolderPath, FolderPath]]) -> list[FolderState]:
        """:meth:`ensure_folder` for each (source path, target path), in one transaction: one commit (an fsync
        on SQLite) for an account's folders before its first copy, not one per folder."""
        out: list[FolderState] = []
        if not folders:
            return out  # (no write transaction, which would wait for another writer's lock for nothing)
        with self._lock, self._transaction():
            for source_path, target_path in folders:
                # fetchall: SQLite cannot commit while an INSERT ... RETURNING is still open.
                rows = self._execute(
                    "INSERT INTO {folders}(account, source_path, target_path) VALUES (?,?,?) "
                    "ON CONFLICT (account, source_path) DO UPDATE SET target_path=excluded.target_path "
                    f"RETURNING {_FOLDER_COLS}",
                    (account, encode_path(source_path), encode_path(target_path)),
                ).fetchall()
                out.append(self._folder_row(rows[0]))
        return out

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
        # CURRENT_TIMESTAMP is UTC text in SQLite (as datetime('now')) and the transaction's time in
        # PostgreSQL (as now()).
        with self._lock, self._transaction():
            self._execute(
                "UPDATE {folders} SET source_validity=?, source_uidnext=?, source_modseq=?, source_count=?,"
                " target_validity=?, synced_at=CURRENT_TIMESTAMP WHERE id=?",
                (source_validity, source_uidnext, source_modseq, source_count, target_validity, folder_id),
            )

    def mark_created(self, *folder_ids: int) -> None:
        """mailmigrate made these target folders: an abort may remove them again (when empty).  One transaction
        for all."""
        if not folder_ids:
            return
        cond, param = self._in("id", folder_ids)
        # TRUE is a BOOLEAN in PostgreSQL and 1 in SQLite, matching each one's column.
        with self._lock, self._transaction():
            self._execute("UPDATE {folders} SET target_created=TRUE WHERE " + cond, (param,))

    def created_folders(self, account: str) -> set[int]:
        with self._lock:
            return {r[0] for r in self._execute(
                "SELECT id FROM {folders} WHERE account=? AND target_created=TRUE", (account,))}

    def forget_account(self, account: str) -> None:
        # The foreign keys cascade on both back ends; deleting the children by name does not depend on it.
        with self._lock, self._transaction():
            for table in ("{messages}", "{lost}"):
                self._execute(f"DELETE FROM {table} WHERE folder_id IN (SELECT id FROM {{folders}} WHERE account=?)",
                              (account,))
            self._execute("DELETE FROM {folders} WHERE account=?", (account,))

    def forget_folder(self, folder_id: int) -> None:
        """A source folder that is gone and whose copies were dealt with: its record goes, children first."""
        with self._lock, self._transaction():
            for table in ("{messages}", "{lost}"):
                self._execute(f"DELETE FROM {table} WHERE folder_id=?", (folder_id,))
            self._execute("DELETE FROM {folders} WHERE id=?", (folder_id,))

    def rename_account(self, old: str, new: str) -> bool:
        """Give an account's record a new name (state files written before account identities named an
        account by host, port and scheme).  Only when the new name holds nothing yet: two records are never
        merged.  True when renamed."""
        with self._lock, self._transaction():
            if self._execute("SELECT 1 FROM {folders} WHERE account=? LIMIT 1", (new,)).fetchone():
                return False
            cur = self._execute("UPDATE {folders} SET account=? WHERE account=?", (new, old))
            return (cur.rowcount or 0) > 0

    def forget_change_marks(self, folder_id: int) -> None:
        """Make the next run list the folder in full (after a partial run)."""
        with self._lock, self._transaction():
            self._execute("UPDATE {folders} SET source_uidnext=NULL, source_modseq=NULL, source_count=NULL"
                          " WHERE id=?", (folder_id,))

    def iter_accounts(self) -> Iterator[str]:
        with self._lock:
            rows = self._execute("SELECT DISTINCT account FROM {folders} ORDER BY account").fetchall()
        for r in rows:
            yield r[0]

    # --- messages -----------------------------------------------------------------------------
    def messages(self, folder_id: int) -> dict[str, MessageRow]:
        with self._lock:
            rows = self._execute(f"SELECT {_MESSAGE_COLS} FROM {{messages}} WHERE folder_id=?",
                                 (folder_id,)).fetchall()
        return {r[0]: MessageRow(r[0], r[1], r[2], r[3], decode_flags(r[4]), r[5], r[6], r[7]) for r in rows}

    def count(self, folder_id: int) -> int:
        with self._lock:
            return self._execute("SELECT count(*) FROM {messages} WHERE folder_id=?", (folder_id,)).fetchone()[0]

    def has_pending(self, folder_id: int) -> bool:
        with self._lock:
            # The state as a literal, not a parameter: only then may the planner use the index of PENDING rows.
            return self._execute(f"SELECT 1 FROM {{messages}} WHERE folder_id=? AND state={PENDING} LIMIT 1",
                                 (folder_id,)).fetchone() is not None

    def record_intents(self, folder_id: int, rows: Iterable[MessageRow],
                       done: Iterable[tuple[str, str | None]] = ()) -> None:
        """Step 1: before the target sees the messages.  Committed durably before returning.

        A row already there for the key is replaced whole: an intent is a fresh start for that message.
        ``done``: the previous batch's step 2 (as :meth:`complete`), in the same transaction, so that a copy
        costs one durable commit per batch and not two.
        """
        # One row per key, the last one given (as one statement per row did): PostgreSQL refuses an upsert
        # that meets the same key twice.
        latest = {r.source_key: r for r in rows}
        if not latest:
            self.complete(folder_id, done)
            return
        params: list = []
        add = params.extend
        for r in latest.values():
            add((folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, encode_flags(r.source_flags),
                 r.uid_floor))
        finished = self._finished(done)
        with self._lock, self._transaction():
            if finished:
                self._complete_rows(finished, folder_id)
            self._execute_rows(*_INTENT, params, 7)

    def adopt(self, folder_id: int, rows: Iterable[MessageRow], mark: int = ADOPTED) -> None:
        """Record target messages found to be copies of source messages as DONE rows marked ADOPTED, in one
        transaction.  Never replaces a row: adoption only happens where the folder has none.  Another
        ``mark`` records DONE rows of another kind the same way (sync.gmail.IN_LABEL: no copy made)."""
        params = [(folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, encode_flags(r.source_flags),
                   r.target_key, DONE, mark) for r in rows]
        if not params:
            return
        with self._lock, self._transaction():
            self._executemany(
                "INSERT INTO {messages}(folder_id, source_key, fingerprint, norm_fingerprint, size,"
                " source_flags, target_key, state, uid_floor) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (folder_id, source_key) DO NOTHING",
                params,
            )

    def complete(self, folder_id: int, done: Iterable[tuple[str, str | None]]) -> None:
        """Step 2: (source_key, target_key) pairs the target confirmed."""
        finished = self._finished(done)
        if not finished:
            return
        with self._lock, self._transaction():
            self._complete_rows(finished, folder_id)

    @staticmethod
    def _finished(done: Iterable[tuple[str, str | None]]) -> list:
        # One pair per key, the last one given: an UPDATE ... FROM that meets a key twice takes either.
        params: list = []
        add = params.extend
        for pair in dict(done).items():
            add(pair)
        return params

    def drop(self, folder_id: int, source_keys: Iterable[str]) -> None:
        keys = list(source_keys)
        if not keys:
            return
        cond, param = self._in("source_key", keys)
        with self._lock, self._transaction():
            self._execute(f"DELETE FROM {{messages}} WHERE folder_id=? AND {cond}", (folder_id, param))

    def declare_lost(self, folder_id: int, rows: Iterable[MessageRow], *, uid_floor: int | None, at: float) -> None:
        """Drop PENDING rows recovery did not find and remember them as lost intents, in one transaction:
        a crash between the two must not leave a dropped intent that nobody watches."""
        rows = list(rows)
        if not rows:
            return
        cond, param = self._in("source_key", [r.source_key for r in rows])
        with self._lock, self._transaction():
            self._execute(f"DELETE FROM {{messages}} WHERE folder_id=? AND {cond}", (folder_id, param))
            self._executemany(
                "INSERT INTO {lost}(folder_id, source_key, fingerprint, norm_fingerprint, size, uid_floor,"
                " lost_at) VALUES (?,?,?,?,?,?,?)",
                [(folder_id, r.source_key, r.fingerprint, r.norm_fingerprint, r.size, uid_floor, at) for r in rows],
            )

    def lost_intents(self, folder_id: int) -> list[LostIntent]:
        with self._lock:
            rows = self._execute(f"SELECT {_LOST_COLS} FROM {{lost}} WHERE folder_id=? ORDER BY id",
                                 (folder_id,)).fetchall()
        return [LostIntent(*r) for r in rows]

    def has_lost_intents(self, folder_id: int) -> bool:
        with self._lock:
            return self._execute("SELECT 1 FROM {lost} WHERE folder_id=? LIMIT 1", (folder_id,)).fetchone() is not None

    def forget_lost(self, folder_id: int, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        cond, param = self._in("id", ids)
        with self._lock, self._transaction():
            self._execute(f"DELETE FROM {{lost}} WHERE folder_id=? AND {cond}", (folder_id, param))

    def set_flags(self, folder_id: int, changes: Iterable[tuple[str, frozenset[str]]]) -> None:
        params = [(encode_flags(f), folder_id, k) for k, f in changes]
        if not params:
            return
        with self._lock, self._transaction():
            self._executemany("UPDATE {messages} SET source_flags=? WHERE folder_id=? AND source_key=?", params)

    def rekey_source(self, folder_id: int, renames: dict[str, str]) -> None:
        """After a source UIDVALIDITY change: old key -> new key, in one transaction.

        Goes through temporary keys so that a new key equal to another row's old key cannot collide, and
        back to exactly the renamed keys: rows not renamed are never touched, whatever their key looks like.
        The temporary prefix holds control characters, which no store's keys (UIDs, file names) contain.
        Lost intents follow their rows: a late copy is recognised through the row of the same key.
        """
        if not renames:
            return
        with self._lock, self._transaction():
            for table in ("{messages}", "{lost}"):
                self._executemany(f"UPDATE {table} SET source_key=? WHERE folder_id=? AND source_key=?",
                                  [(_REKEY + new, folder_id, old) for old, new in renames.items()])
                self._executemany(f"UPDATE {table} SET source_key=? WHERE folder_id=? AND source_key=?",
                                  [(new, folder_id, _REKEY + new) for new in renames.values()])

    def rekey_target(self, folder_id: int, changes: dict[str, str | None]) -> None:
        """After a target UIDVALIDITY change: source key -> new target key, or None to forget the row."""
        if not changes:
            return
        with self._lock, self._transaction():
            for sk, tk in changes.items():
                if tk is None:
                    self._execute("DELETE FROM {messages} WHERE folder_id=? AND source_key=?", (folder_id, sk))
                else:
                    self._execute("UPDATE {messages} SET target_key=? WHERE folder_id=? AND source_key=?",
                                  (tk, folder_id, sk))

    def all_target_keys(self, folder_id: int) -> set[str]:
        with self._lock:
            return {r[0] for r in self._execute(
                "SELECT target_key FROM {messages} WHERE folder_id=? AND target_key IS NOT NULL", (folder_id,))}
