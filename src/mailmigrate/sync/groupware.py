"""The groupware engine: calendars, address books and task lists, with the mail engine's promises.

Nothing lost, nothing twice, nothing of anyone else's touched:
  * **intent before each PUT**: a row (source item, its SHA-256, its UID, the target name chosen) is
    committed PENDING before the write and marked DONE with the target's ETag after it; a run killed in
    between finds the item at the name it chose, with the UID it wrote, and adopts it instead of writing
    again;
  * **never a second copy by UID**: items are created with If-None-Match ``*`` under the source's name; a
    name or UID the target already holds is compared by UID and adopted, never duplicated;
  * **incremental**: a collection whose CTag/sync-token did not move is skipped whole; one that moved is read
    by its changes since the last run's sync-token where the server keeps them (RFC 6578 sync-collection),
    else listed whole; only items whose ETag moved are fetched; an unchanged item's bytes are not fetched;
  * **conditional writes**: an update is If-Match the ETag recorded at copy time, a delete too: what a user
    changed on the target since is reported, not overwritten or deleted; ``--delete`` removes only our
    copies, and not at all from a source collection that suddenly lists nothing;
  * **bytes end to end**: an item is PUT as the source served it; where the target stores something else
    (servers that normalise), the item is counted and reported as normalised.

State lives in the same database as the mail state (tables ``gw_*``), so one file or PostgreSQL database
holds a whole project.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from dataclasses import dataclass, field
from typing import Callable

from ..errors import MailmigrateError
from ..formats.ical import item_info
from ..model import Problem
from ..stores.groupware import Collection, GroupwareStore, ItemChanged, ItemExists, ItemRefused, TokenInvalid

log = logging.getLogger("mailmigrate.groupware")

PENDING, DONE = 0, 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS gw_collections (
    account TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    created INTEGER NOT NULL DEFAULT 0,
    source_version TEXT,
    source_sync_token TEXT,
    PRIMARY KEY (account, source)
);
CREATE TABLE IF NOT EXISTS gw_items (
    account TEXT NOT NULL,
    collection TEXT NOT NULL,
    source_name TEXT NOT NULL,
    uid TEXT,
    source_etag TEXT,
    fingerprint TEXT NOT NULL,
    target_name TEXT NOT NULL,
    target_etag TEXT,
    state INTEGER NOT NULL,
    PRIMARY KEY (account, collection, source_name)
);
"""


#: advisory lock number taken while a PostgreSQL state creates the gw_* tables (two workers at once)
_PG_SCHEMA_LOCK = 0x6D6D_6777  # "mmgw"


class GroupwareState:
    """The gw_* tables, on the connection of a mail state database: a SQLite StateDB's, or a PostgreSQL
    PgStateDB's (an autocommit psycopg session, ``%s`` placeholders), so a project keeps mail and groupware
    in one database whichever it uses.  Every write commits on its own: the intent row must be durable before
    the PUT it announces."""

    def __init__(self, conn):
        self.conn = conn
        self.pg = not isinstance(conn, sqlite3.Connection)
        if self.pg:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
                for stmt in filter(None, (x.strip() for x in _SCHEMA.split(";"))):
                    conn.execute(stmt)
                # a state written before sync-tokens were kept (RFC 6578): the column is added, empty
                conn.execute("ALTER TABLE gw_collections ADD COLUMN IF NOT EXISTS source_sync_token TEXT")
        else:
            conn.executescript("BEGIN IMMEDIATE;\n" + _SCHEMA + "\nCOMMIT;")
            cols = {r[1] for r in conn.execute("PRAGMA table_info(gw_collections)")}
            if "source_sync_token" not in cols:
                self._write("ALTER TABLE gw_collections ADD COLUMN source_sync_token TEXT")

    def _q(self, q: str) -> str:
        return q.replace("?", "%s") if self.pg else q

    def _read(self, q: str, args=()):
        return self.conn.execute(self._q(q), args)

    def _write(self, q: str, args=()) -> None:
        if self.pg:  # autocommit: one statement is its own transaction
            self.conn.execute(self._q(q), args)
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.execute(q, args)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def collection(self, account: str, source: str) -> dict | None:
        r = self._read("SELECT target, kind, created, source_version, source_sync_token FROM gw_collections "
                       "WHERE account=? AND source=?", (account, source)).fetchone()
        return None if r is None else {"target": r[0], "kind": r[1], "created": bool(r[2]), "version": r[3],
                                       "sync_token": r[4]}

    def collections(self, account: str) -> dict[str, dict]:
        rows = self._read("SELECT source, target, kind, created FROM gw_collections WHERE account=?",
                                 (account,)).fetchall()
        return {r[0]: {"target": r[1], "kind": r[2], "created": bool(r[3])} for r in rows}

    def map_collection(self, account: str, source: str, target: str, kind: str, created: bool) -> None:
        self._write("INSERT INTO gw_collections(account, source, target, kind, created) VALUES (?,?,?,?,?) "
                    "ON CONFLICT(account, source) DO UPDATE SET target=excluded.target",
                    (account, source, target, kind, int(created)))

    def set_version(self, account: str, source: str, version: str | None, sync_token: str | None = None) -> None:
        """Recorded only after a collection was copied without a failure, so that a failed item is listed
        again next time (by the older CTag, or among the changes since the older sync-token)."""
        self._write("UPDATE gw_collections SET source_version=?, source_sync_token=? WHERE account=? AND source=?",
                    (version, sync_token, account, source))

    def items(self, account: str, collection: str) -> dict[str, dict]:
        rows = self._read(
            "SELECT source_name, uid, source_etag, fingerprint, target_name, target_etag, state FROM gw_items "
            "WHERE account=? AND collection=?", (account, collection)).fetchall()
        keys = ("source_name", "uid", "source_etag", "fingerprint", "target_name", "target_etag", "state")
        return {r[0]: dict(zip(keys, r)) for r in rows}

    def intent(self, account, collection, name, uid, source_etag, fp, target_name) -> None:
        self._write("INSERT INTO gw_items(account, collection, source_name, uid, source_etag, fingerprint, "
                    "target_name, target_etag, state) VALUES (?,?,?,?,?,?,?,NULL,?) ON CONFLICT(account, "
                    "collection, source_name) DO UPDATE SET uid=excluded.uid, fingerprint=excluded.fingerprint, "
                    "target_name=excluded.target_name, state=excluded.state",
                    (account, collection, name, uid, source_etag, fp, target_name, PENDING))

    def done(self, account, collection, name, *, source_etag, target_name, target_etag, fp=None) -> None:
        self._write("UPDATE gw_items SET source_etag=?, target_name=?, target_etag=?, state=?, "
                    "fingerprint=COALESCE(?, fingerprint) WHERE account=? AND collection=? AND source_name=?",
                    (source_etag, target_name, target_etag, DONE, fp, account, collection, name))

    def adopt(self, account, collection, name, *, uid, source_etag, fp, target_name, target_etag) -> None:
        self.intent(account, collection, name, uid, source_etag, fp, target_name)
        self.done(account, collection, name, source_etag=source_etag, target_name=target_name,
                  target_etag=target_etag)

    def forget(self, account, collection, name) -> None:
        self._write("DELETE FROM gw_items WHERE account=? AND collection=? AND source_name=?",
                    (account, collection, name))

    def forget_collection(self, account: str, source: str) -> None:
        self._write("DELETE FROM gw_items WHERE account=? AND collection=?", (account, source))
        self._write("DELETE FROM gw_collections WHERE account=? AND source=?", (account, source))


@dataclass
class GroupwareCounters:
    collections: int = 0
    collections_created: int = 0
    copied: int = 0
    updated: int = 0
    unchanged: int = 0
    adopted: int = 0
    recovered: int = 0
    deleted: int = 0
    normalised: int = 0
    failed: int = 0
    #: collections read by their changes since the last run (RFC 6578 sync-collection), not listed whole
    listed_by_changes: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class GroupwareResult:
    account: str
    counters: GroupwareCounters = field(default_factory=GroupwareCounters)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.counters.failed == 0

    def as_dict(self) -> dict:
        return {"account": self.account, "error": self.error, **self.counters.as_dict(),
                "problems": [p.__dict__ for p in self.problems]}


def _fp(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _free_name(wanted: str, taken: set[str]) -> str:
    """``wanted``, or ``stem-2.ext``, ``stem-3.ext`` … when another item holds that name."""
    if wanted not in taken:
        return wanted
    m = re.match(r"^(.*?)(\.[A-Za-z0-9]+)?$", wanted)
    stem, ext = m.group(1), m.group(2) or ""
    n = 2
    while f"{stem}-{n}{ext}" in taken:
        n += 1
    return f"{stem}-{n}{ext}"


class _Run:
    def __init__(self, source: GroupwareStore, target: GroupwareStore, state: GroupwareState, account: str, *,
                 delete: bool, dry_run: bool, checkpoint: Callable[[str], None] | None):
        self.src, self.tgt, self.state, self.account = source, target, state, account
        self.delete, self.dry_run, self.checkpoint = delete, dry_run, checkpoint or (lambda where: None)
        self.result = GroupwareResult(account)
        self.c = self.result.counters
        self._tgt_names: set[str] = set()  # collections the target has (a dry run creates none)
        self._fresh = False

    def problem(self, coll: str, item: str | None, reason: str, kind: str = "message") -> None:
        self.result.problems.append(Problem(self.account, coll, item, reason, kind))
        log.warning("%s: %s%s: %s", self.account, coll, f"/{item}" if item else "", reason)

    # --- collections ---------------------------------------------------------------------------------
    def target_collection(self, src: Collection, tgt_by_name: dict[str, Collection]) -> Collection | None:
        row = self.state.collection(self.account, src.name)
        if row is not None:
            found = tgt_by_name.get(row["target"])
            if found is not None:
                return found
            if self.dry_run:
                return Collection(row["target"], src.kind)
            made = self.tgt.create_collection(Collection(row["target"], src.kind, src.displayname, src.color,
                                                         src.description, src.components))
            tgt_by_name[made.name] = made
            self.c.collections_created += 1
            return made
        name = src.name
        existing = tgt_by_name.get(name)
        if existing is not None and existing.kind == src.kind:
            # The target already has a collection of that name and kind (a default "calendar", or an
            # earlier run whose state is gone): use it; its items are compared by UID before anything is put.
            if not self.dry_run:
                self.state.map_collection(self.account, src.name, existing.name, src.kind, created=False)
            return existing
        name = _free_name(name, set(tgt_by_name))
        if self.dry_run:
            self.c.collections_created += 1
            return Collection(name, src.kind)
        # recorded first: a run killed after the MKCALENDAR finds the collection and knows it is ours
        self.state.map_collection(self.account, src.name, name, src.kind, created=True)
        made = self.tgt.create_collection(Collection(name, src.kind, src.displayname, src.color, src.description,
                                                     src.components))
        tgt_by_name[made.name] = made
        self.c.collections_created += 1
        return made

    # --- one collection ------------------------------------------------------------------------------
    def sync_collection(self, src: Collection, tgt: Collection) -> None:
        rows = self.state.items(self.account, src.name)
        row_meta = self.state.collection(self.account, src.name) or {}
        pending = any(r["state"] == PENDING for r in rows.values())
        if (src.version and row_meta.get("version") == src.version and not pending and not self.dry_run):
            self.c.unchanged += sum(1 for _ in rows)
            return
        src_items, new_token = self._source_items(src, rows, row_meta, pending)
        # (a dry run does not create the collection it would create: nothing to list there)
        tgt_items = self.tgt.list_items(tgt) if tgt.name in self._tgt_names else {}
        failures_before = self.c.failed
        # Into a collection we never copied to (a first run, or a lost state) whose target is not empty, any
        # item may already be there under another name: compare UIDs. Otherwise the name is ours to take.
        self._fresh = not rows
        uid_of_target: dict[str, str] | None = None  # target name -> UID, read only when needed

        def target_uids() -> dict[str, str]:
            nonlocal uid_of_target
            if uid_of_target is None:
                uid_of_target = {}
                for n in tgt_items:
                    try:
                        uid_of_target[n] = item_info(self.tgt.get(tgt, n).data).uid or ""
                    except MailmigrateError as e:
                        self.problem(tgt.name, n, f"cannot read the target's item: {e}", "warning")
            return uid_of_target

        # 1. recovery: intents of a run that died between recording and confirming a PUT
        for name, row in list(rows.items()):
            if row["state"] != PENDING:
                continue
            there = tgt_items.get(row["target_name"])
            if there is not None:
                got = self.tgt.get(tgt, row["target_name"])
                if item_info(got.data).uid == row["uid"]:
                    if not self.dry_run:
                        self.state.done(self.account, src.name, name, source_etag=row["source_etag"],
                                        target_name=row["target_name"], target_etag=got.etag or there)
                        row.update(state=DONE, target_etag=got.etag or there)
                    self.c.recovered += 1
                    continue
            if not self.dry_run:
                self.state.forget(self.account, src.name, name)
            rows.pop(name)

        # 2. new and changed items
        for name, etag in src_items.items():
            row = rows.get(name)
            if row is not None and row["state"] == DONE and row["source_etag"] == etag:
                self.c.unchanged += 1
                continue
            try:
                self._copy_item(src, tgt, name, etag, row, tgt_items, target_uids)
            except ItemRefused as e:
                self.c.failed += 1
                self.problem(src.name, name, str(e))
            except MailmigrateError as e:
                if e.scope in ("account", "run") and not isinstance(e, ItemRefused):
                    raise
                self.c.failed += 1
                self.problem(src.name, name, str(e))

        # 3. deletions: only our copies, only with --delete, never from a collection that suddenly looks empty
        gone = [n for n, r in rows.items() if n not in src_items and r["state"] == DONE]
        if gone and self.delete:
            if not src_items:
                self.c.failed += 1
                self.problem(src.name, None, f"the source collection lists no items while {len(gone)} were copied "
                                             f"from it: no deletes (check the source; --force-delete overrides)",
                             "folder")
            else:
                for n in gone:
                    self._delete(src, tgt, n, rows[n], tgt_items)
        if not self.dry_run and self.c.failed == failures_before:
            self.state.set_version(self.account, src.name, src.version, new_token)

    def _source_items(self, src: Collection, rows: dict, row_meta: dict, pending: bool) -> tuple[dict, str | None]:
        """name -> ETag of the source collection's items: from the changes since the last run's sync-token
        where the server keeps them (the recorded ETags of what was copied, then the changes on top), else
        the whole listing.  A collection with interrupted writes, or never copied, is always listed whole:
        recovery and adoption need every name."""
        token = row_meta.get("sync_token")
        if token and rows and not pending:
            try:
                changes = self.src.changes_since(src, token)
            except TokenInvalid as e:
                log.info("%s: %s: %s; listing it whole", self.account, src.name, e)
                changes = None
            if changes is not None and any(rows.get(n, {}).get("source_etag") == e and rows[n]["state"] == DONE
                                           for n, e in changes.changed.items()):
                # "changed" items that did not change: the server answered something other than the changes
                # since our token (DAViCal answers a token it does not know with every item it holds, without
                # the removed ones, where RFC 6578 asks for valid-sync-token): list the collection whole
                log.info("%s: %s: the changes since the sync-token name unchanged items; listing it whole",
                         self.account, src.name)
                changes = None
            if changes is not None:
                items = {n: r["source_etag"] for n, r in rows.items() if r["state"] == DONE}
                for n in changes.removed:
                    items.pop(n, None)
                items.update(changes.changed)
                self.c.listed_by_changes += 1
                return items, changes.token
        # the token read before the listing: whatever changes after it is among the next run's changes
        return self.src.list_items(src), src.sync_token

    def _copy_item(self, src, tgt, name, etag, row, tgt_items, target_uids) -> None:
        item = self.src.get(src, name)
        data = item.data
        info = item_info(data)
        fp = _fp(data)
        ctype = item.content_type or info.content_type
        if row is not None and row["state"] == DONE:
            # changed on the source since it was copied
            if row["fingerprint"] == fp:
                if not self.dry_run:
                    self.state.done(self.account, src.name, name, source_etag=etag, target_name=row["target_name"],
                                    target_etag=row["target_etag"])
                self.c.unchanged += 1
                return
            if self.dry_run:
                self.c.updated += 1
                return
            self.checkpoint("update")
            try:
                new = self.tgt.put(tgt, row["target_name"], data, ctype, etag=row["target_etag"])
            except ItemChanged:
                self.c.failed += 1
                self.problem(src.name, name, "changed on the source and on the target since it was copied: the "
                                             "target's version is kept", "warning")
                return
            self.state.done(self.account, src.name, name, source_etag=etag, target_name=row["target_name"],
                            target_etag=new or tgt_items.get(row["target_name"]), fp=fp)
            self.c.updated += 1
            self._check_stored(tgt, row["target_name"], data, src.name, name)
            return
        # new to us: is it already on the target (same name and UID, or same UID elsewhere)?
        if name in tgt_items or (self._fresh and tgt_items and info.uid):
            uids = target_uids()
            same = name if name in tgt_items and uids.get(name) == info.uid and info.uid else \
                next((n for n, u in uids.items() if info.uid and u == info.uid), None)
            if same is not None:
                if not self.dry_run:
                    self.state.adopt(self.account, src.name, name, uid=info.uid, source_etag=etag, fp=fp,
                                     target_name=same, target_etag=tgt_items[same])
                self.c.adopted += 1
                return
        target_name = _free_name(name, set(tgt_items))
        if self.dry_run:
            self.c.copied += 1
            return
        self.state.intent(self.account, src.name, name, info.uid, etag, fp, target_name)
        self.checkpoint("put")
        try:
            new = self.tgt.put(tgt, target_name, data, ctype)
        except ItemExists as e:
            # a UID the listing did not show (another client added it meanwhile): adopt that item
            other = e.name or next((n for n, u in target_uids().items() if u == info.uid), None)
            if other is None:
                self.state.forget(self.account, src.name, name)
                raise ItemRefused(f"the target holds this UID ({info.uid}) and would not say where") from None
            got = self.tgt.get(tgt, other)
            self.state.done(self.account, src.name, name, source_etag=etag, target_name=other, target_etag=got.etag)
            self.c.adopted += 1
            return
        except ItemRefused:
            self.state.forget(self.account, src.name, name)
            raise
        tgt_items[target_name] = new
        self.state.done(self.account, src.name, name, source_etag=etag, target_name=target_name, target_etag=new)
        self.c.copied += 1
        stored_etag = self._check_stored(tgt, target_name, data, src.name, name)
        if not new and stored_etag:
            self.state.done(self.account, src.name, name, source_etag=etag, target_name=target_name,
                            target_etag=stored_etag)

    def _check_stored(self, tgt, target_name, data, coll, name) -> str:
        """What the target now serves for an item we put: counted and reported when it is not our bytes."""
        got = self.tgt.get(tgt, target_name)
        if got.data != data:
            self.c.normalised += 1
            self.problem(coll, name, f"the target stores this item rewritten ({len(data)} bytes sent, "
                                     f"{len(got.data)} served back); its UID and content are kept", "warning")
        return got.etag

    def _delete(self, src, tgt, name, row, tgt_items) -> None:
        there = tgt_items.get(row["target_name"])
        if there is None:
            if not self.dry_run:
                self.state.forget(self.account, src.name, name)
            return
        if row["target_etag"] and there != row["target_etag"]:
            self.problem(src.name, name, "deleted on the source but changed on the target since it was copied: "
                                         "kept on the target", "warning")
            return
        if self.dry_run:
            self.c.deleted += 1
            return
        try:
            self.tgt.delete(tgt, row["target_name"], there)
        except ItemChanged:
            self.problem(src.name, name, "changed on the target just now: kept", "warning")
            return
        self.state.forget(self.account, src.name, name)
        self.c.deleted += 1

    # --- the account ---------------------------------------------------------------------------------
    def run(self) -> GroupwareResult:
        src_colls = self.src.collections()
        tgt_by_name = {c.name: c for c in self.tgt.collections()}
        for src in src_colls:
            self.c.collections += 1
            try:
                tgt = self.target_collection(src, tgt_by_name)
                self._tgt_names = set(tgt_by_name)
                self.sync_collection(src, tgt)
            except MailmigrateError as e:
                if e.scope == "run" or type(e).__name__ in ("AuthenticationFailed",):
                    raise
                self.c.failed += 1
                self.problem(src.name, None, str(e), "folder")
        # a source collection that is gone: with --delete our copies in it go, the collection stays
        present = {c.name for c in src_colls}
        for source_name, row in self.state.collections(self.account).items():
            if source_name in present or not self.delete:
                continue
            tgt = tgt_by_name.get(row["target"])
            rows = self.state.items(self.account, source_name)
            if tgt is None or not rows:
                continue
            tgt_items = self.tgt.list_items(tgt)
            for n, r in rows.items():
                if r["state"] == DONE:
                    self._delete(Collection(source_name, row["kind"]), tgt, n, r, tgt_items)
        return self.result


def sync_groupware(source: GroupwareStore, target: GroupwareStore, state: GroupwareState, account: str, *,
                   delete: bool = False, dry_run: bool = False,
                   checkpoint: Callable[[str], None] | None = None) -> GroupwareResult:
    """Copy one account's collections and items from ``source`` to ``target`` (see the module docstring)."""
    run = _Run(source, target, state, account, delete=delete, dry_run=dry_run, checkpoint=checkpoint)
    try:
        return run.run()
    except MailmigrateError as e:
        run.result.error = str(e)
        return run.result


def verify_copy(source: GroupwareStore, target: GroupwareStore, state: GroupwareState, account: str) -> dict:
    """Every source item's UID in the target collection it maps to (by the state's mapping, else by name):
    the proof a finish gives before the source is retired.  Both stores open."""
    mapping = state.collections(account)
    tcols = {c.name: c for c in target.collections()}
    out = {"collections": 0, "source_items": 0, "target_items": 0, "missing": []}
    for c in source.collections():
        out["collections"] += 1
        want = {item_info(source.get(c, n).data).uid or n for n in source.list_items(c)}
        out["source_items"] += len(want)
        t = tcols.get((mapping.get(c.name) or {}).get("target", c.name))
        have = {item_info(target.get(t, n).data).uid or n for n in target.list_items(t)} if t else set()
        out["target_items"] += len(want & have)
        out["missing"] += [f"{c.name}: {u}" for u in sorted(want - have)]
    return out


def remove_copies(target: GroupwareStore, state: GroupwareState, account: str) -> tuple[int, list[str]]:
    """Take back what the engine wrote for ``account`` (an abort): each copy deleted If-Match the ETag it
    had when copied, then each collection the engine created, if nothing else is in it.  What someone
    changed or added on the target since is kept and named.  Returns (items removed, what was kept)."""
    removed, kept = 0, []
    tcols = {c.name: c for c in target.collections()}
    for source_name, row in state.collections(account).items():
        t = tcols.get(row["target"])
        if t is not None:
            for name, r in state.items(account, source_name).items():
                if r["state"] != DONE:
                    continue
                try:
                    target.delete(t, r["target_name"], r["target_etag"] or "")
                    removed += 1
                except ItemChanged:
                    kept.append(f"{t.name}/{r['target_name']}: changed on the target since it was copied")
                    continue
                state.forget(account, source_name, name)
            if row["created"] and not target.delete_collection(t):
                kept.append(f"{t.name}: created by the migration but holds items it did not copy")
                continue
        state.forget_collection(account, source_name)
    return removed, kept


@dataclass
class GroupwareRun:
    accounts: list[GroupwareResult]
    state_path: str
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.accounts)

    def totals(self) -> GroupwareCounters:
        t = GroupwareCounters()
        for a in self.accounts:
            for k, v in a.counters.as_dict().items():
                setattr(t, k, getattr(t, k) + v)
        return t

    def as_dict(self) -> dict:
        return {"kind": "groupware", "dry_run": self.dry_run, "state": self.state_path, "ok": self.ok,
                **self.totals().as_dict(), "failed_accounts": sum(1 for a in self.accounts if a.error),
                "accounts": [a.as_dict() for a in self.accounts]}


def run_groupware(source_url: str, target_url: str, accounts, state_path, *, source_password=None,
                  target_password=None, delete: bool = False, dry_run: bool = False, insecure: bool = False,
                  allow_plaintext: bool = False, checkpoint: Callable[[str], None] | None = None) -> GroupwareRun:
    """Every account's groupware, one after another, on one state: a SQLite file (locked for the run) or a
    postgresql:// URL (shared: each account's advisory lock, as the mail's)."""
    from ..errors import StateLocked
    from ..stores.groupware_urls import open_groupware_store
    from .state import RunLock, StateDB
    from .state_pg import PgStateDB, is_pg_url

    pg = is_pg_url(state_path)
    lock = None if pg else RunLock(state_path)
    if lock:
        lock.acquire()
    results = []
    try:
        db = PgStateDB.open(str(state_path)) if pg else StateDB.open(state_path)
        try:
            state = GroupwareState(db._conn)  # the same database as the mail state, tables of its own
            for acc in accounts:
                src = open_groupware_store(source_url, user=acc.source_user,
                                           password=acc.source_password or source_password, insecure=insecure,
                                           allow_plaintext=allow_plaintext)
                tgt = open_groupware_store(target_url, user=acc.target_user,
                                           password=acc.target_password or target_password, insecure=insecure,
                                           allow_plaintext=allow_plaintext, target=True)
                key = f"{src.describe()} -> {tgt.describe()}"
                if pg and not db.lock_account("groupware " + key, wait=30):
                    results.append(GroupwareResult(key, error=str(StateLocked(
                        f"{key} is being synced by another process on this state; run again when it finished"))))
                    continue
                try:
                    try:
                        src.open()
                        tgt.open()
                    except MailmigrateError as e:
                        results.append(GroupwareResult(key, error=str(e)))
                        continue
                    try:
                        results.append(sync_groupware(src, tgt, state, key, delete=delete, dry_run=dry_run,
                                                      checkpoint=checkpoint))
                    finally:
                        src.close()
                        tgt.close()
                finally:
                    if pg:
                        db.unlock_account("groupware " + key)
        finally:
            db.close()
    finally:
        if lock:
            lock.release()
    return GroupwareRun(results, db.path if pg else str(state_path), dry_run)
