"""Where a project keeps its units' states, their history and its logs: SQLite by default, PostgreSQL by URL.

Every action goes through ``begin`` (check the transition and take the unit into its busy state, in one
transaction, so two people pressing "sync" at once get one sync and one refusal) and ``end`` (record the
outcome).  History rows are never updated or deleted: they are the project's audit trail.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, StateCorrupt
from .states import BUSY, FAILED, NOT_STARTED, IllegalTransition, Transition, plan

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS wf_units (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        bound INTEGER NOT NULL DEFAULT 0,
        lock_owner TEXT,
        last_error TEXT,
        meta TEXT NOT NULL DEFAULT '{}',
        updated TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS wf_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        unit TEXT NOT NULL,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        before TEXT NOT NULL,
        after TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    )""",
    """CREATE TABLE IF NOT EXISTS wf_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        unit TEXT,
        at TEXT NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
    )""",
    # Messages and bytes copied per minute, over all units: the dashboard's throughput chart, rate and ETA.
    """CREATE TABLE IF NOT EXISTS wf_rate (
        minute TEXT PRIMARY KEY,
        messages INTEGER NOT NULL DEFAULT 0,
        bytes INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS wf_progress (
        unit TEXT PRIMARY KEY,
        total INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        folder TEXT NOT NULL DEFAULT '',
        updated TEXT NOT NULL
    )""",
]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _owner() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    pid, _, host = owner.partition("@")
    if host != socket.gethostname():
        return True  # another machine's process: we cannot tell, so we must assume it runs
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Unit:
    name: str
    kind: str
    state: str
    bound: bool
    lock_owner: str | None
    last_error: str | None
    meta: dict
    updated: str


class WorkflowStore:
    def __init__(self, conn, dialect: str, where: str):
        self._conn = conn
        self._dialect = dialect
        self.where = where
        self._lock = threading.RLock()

    @classmethod
    def open(cls, url: str | os.PathLike) -> "WorkflowStore":
        text = str(url)
        if text.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError:
                raise ConfigError("a PostgreSQL workflow store needs the psycopg package "
                                  "(pip install 'mailmigrate[postgres]')") from None

            conn = psycopg.connect(text, autocommit=True)
            store = cls(conn, "postgresql", text.split("@")[-1])
        else:
            path = Path(text)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            try:
                conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA busy_timeout=30000")
            except sqlite3.DatabaseError as e:
                raise StateCorrupt(f"workflow database {path} cannot be read: {e}") from None
            store = cls(conn, "sqlite", str(path))
        store._init()
        return store

    def _init(self) -> None:
        for stmt in _SCHEMA:
            if self._dialect == "postgresql":
                stmt = stmt.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
            self._exec(stmt)

    # --- low level ------------------------------------------------------------------------------
    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self._dialect == "postgresql" else q

    def _exec(self, q: str, args=()):
        with self._lock:
            cur = self._conn.cursor()
            cur.execute(self._sql(q), args)
            return cur

    def _begin(self):
        self._exec("BEGIN IMMEDIATE" if self._dialect == "sqlite" else "BEGIN")

    def close(self) -> None:
        self._conn.close()

    # --- units ----------------------------------------------------------------------------------
    def add_unit(self, name: str, kind: str = "account", meta: dict | None = None) -> bool:
        """Register a unit; an existing one is left as it is (init is idempotent)."""
        with self._lock:
            if self.get(name) is not None:
                return False
            self._exec(
                "INSERT INTO wf_units(name, kind, state, bound, meta, updated) VALUES (?,?,?,?,?,?)",
                (name, kind, NOT_STARTED, 0, json.dumps(meta or {}), _now()),
            )
            self._history(name, "system", "add", NOT_STARTED, NOT_STARTED, "")
            return True

    def adopt(self, name: str, kind: str, state: str, bound: bool, meta: dict, detail: str) -> bool:
        """Register a unit whose state an older record kept (``detail`` says which); an existing unit is
        left as it is."""
        with self._lock:
            if self.get(name) is not None:
                return False
            self._exec(
                "INSERT INTO wf_units(name, kind, state, bound, meta, updated) VALUES (?,?,?,?,?,?)",
                (name, kind, state, int(bound), json.dumps(meta), _now()),
            )
            self._history(name, "system", "adopt", NOT_STARTED, state, detail)
            return True

    def get(self, name: str) -> Unit | None:
        row = self._exec(
            "SELECT name, kind, state, bound, lock_owner, last_error, meta, updated FROM wf_units WHERE name=?",
            (name,),
        ).fetchone()
        return self._unit(row) if row else None

    def units(self) -> list[Unit]:
        rows = self._exec(
            "SELECT name, kind, state, bound, lock_owner, last_error, meta, updated FROM wf_units ORDER BY name"
        ).fetchall()
        return [self._unit(r) for r in rows]

    @staticmethod
    def _unit(r) -> Unit:
        return Unit(r[0], r[1], r[2], bool(r[3]), r[4], r[5], json.loads(r[6] or "{}"), r[7])

    # --- actions --------------------------------------------------------------------------------
    def begin(self, name: str, action: str, actor: str) -> Transition:
        """Check and take the unit, atomically; IllegalTransition explains a refusal."""
        with self._lock:
            self._begin()
            try:
                # Lock the unit's row for this transaction: two people pressing "sync" at once get one
                # sync and one refusal (SQLite's BEGIN IMMEDIATE already serialises writers).
                row = self._exec(
                    "SELECT name, kind, state, bound, lock_owner, last_error, meta, updated FROM wf_units WHERE name=?"
                    + (" FOR UPDATE" if self._dialect == "postgresql" else ""), (name,)).fetchone()
                u = self._unit(row) if row else None
                if u is None:
                    raise IllegalTransition(f"no unit named {name!r} in this project")
                state = u.state
                if state in BUSY and not _owner_alive(u.lock_owner):
                    # The process that held it died (kill -9, reboot): the unit is failed, not stuck.
                    self._history(name, "system", "recover", state, FAILED, f"stale lock {u.lock_owner}")
                    state = FAILED
                t = plan(action, state, bound=u.bound)
                new_state = t.busy or t.after
                self._exec(
                    "UPDATE wf_units SET state=?, lock_owner=?, updated=? WHERE name=?",
                    (new_state, _owner() if t.busy else None, _now(), name),
                )
                self._history(name, actor, action, state, new_state, "started" if t.busy else "")
                self._exec("COMMIT")
            except BaseException:
                self._exec("ROLLBACK")
                raise
            return t

    def end(self, name: str, t: Transition, actor: str, *, ok: bool, detail: str = "",
            bound: bool | None = None) -> str:
        after = t.after if ok else FAILED
        with self._lock:
            u = self.get(name)
            if bound is None:
                bound = u.bound if u else False
                if ok and t.action in ("start", "sync", "finish"):
                    bound = True
                if ok and t.action == "abort":
                    bound = False
            self._exec(
                "UPDATE wf_units SET state=?, lock_owner=NULL, last_error=?, bound=?, updated=? WHERE name=?",
                (after, None if ok else detail, int(bound), _now(), name),
            )
            self._history(name, actor, t.action, t.busy or t.before, after, detail)
        return after

    def _history(self, unit, actor, action, before, after, detail) -> None:
        self._exec(
            "INSERT INTO wf_history(unit, at, actor, action, before, after, detail) VALUES (?,?,?,?,?,?,?)",
            (unit, _now(), actor, action, before, after, detail),
        )

    def history(self, unit: str | None = None) -> list[dict]:
        q = "SELECT unit, at, actor, action, before, after, detail FROM wf_history"
        args: tuple = ()
        if unit:
            q += " WHERE unit=?"
            args = (unit,)
        rows = self._exec(q + " ORDER BY id", args).fetchall()
        keys = ("unit", "at", "actor", "action", "before", "after", "detail")
        return [dict(zip(keys, r)) for r in rows]

    # --- logs and progress ----------------------------------------------------------------------
    def log(self, unit: str | None, level: str, message: str) -> None:
        self._exec("INSERT INTO wf_log(unit, at, level, message) VALUES (?,?,?,?)", (unit, _now(), level, message))

    def logs(self, *, unit: str | None = None, search: str | None = None, level: str | None = None,
             limit: int = 500) -> list[dict]:
        q = "SELECT unit, at, level, message FROM wf_log WHERE 1=1"
        args: list = []
        if unit:
            q += " AND unit=?"
            args.append(unit)
        if level:
            q += " AND level=?"
            args.append(level)
        if search:
            q += " AND message LIKE ?"
            args.append(f"%{search}%")
        q += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self._exec(q, tuple(args)).fetchall()
        return [dict(zip(("unit", "at", "level", "message"), r)) for r in reversed(rows)]

    def set_progress(self, unit: str, *, total: int | None = None, done: int | None = None,
                     bytes_done: int | None = None, folder: str | None = None) -> None:
        with self._lock:
            row = self._exec("SELECT total, done, bytes_done, folder FROM wf_progress WHERE unit=?", (unit,)).fetchone()
            cur = list(row) if row else [0, 0, 0, ""]
            before = list(cur)
            for i, v in enumerate((total, done, bytes_done, folder)):
                if v is not None:
                    cur[i] = v
            now = _now()
            if row:
                self._exec("UPDATE wf_progress SET total=?, done=?, bytes_done=?, folder=?, updated=? WHERE unit=?",
                           (*cur, now, unit))
            else:
                self._exec("INSERT INTO wf_progress(unit, total, done, bytes_done, folder, updated) VALUES (?,?,?,?,?,?)",
                           (unit, *cur, now))
            # A unit's counters restart with each action, so only growth counts as throughput.
            msgs, nbytes = max(0, cur[1] - before[1]), max(0, cur[2] - before[2])
            if msgs or nbytes:
                minute = now[:16]  # YYYY-MM-DDTHH:MM
                self._exec("INSERT INTO wf_rate(minute, messages, bytes) VALUES (?,?,?) ON CONFLICT(minute) DO UPDATE "
                           "SET messages=wf_rate.messages+excluded.messages, bytes=wf_rate.bytes+excluded.bytes",
                           (minute, msgs, nbytes))

    def rate(self, minutes: int = 120) -> list[dict]:
        """Messages and bytes copied per minute over the last ``minutes`` minutes that saw any copying."""
        rows = self._exec("SELECT minute, messages, bytes FROM wf_rate ORDER BY minute DESC LIMIT ?",
                          (minutes,)).fetchall()
        return [{"minute": r[0], "messages": r[1], "bytes": r[2]} for r in reversed(rows)]

    def copied(self) -> tuple[int, int]:
        """Messages and bytes copied by every action of the project so far."""
        row = self._exec("SELECT COALESCE(SUM(messages), 0), COALESCE(SUM(bytes), 0) FROM wf_rate").fetchone()
        return int(row[0]), int(row[1])

    def update_meta(self, name: str, changes: dict) -> dict:
        """Set some keys of a unit's metadata in one transaction: the dashboard's worker and a command line
        may record a verification and a sync result for one unit at once, and neither may undo the other."""
        with self._lock:
            self._begin()
            try:
                row = self._exec("SELECT meta FROM wf_units WHERE name=?"
                                 + (" FOR UPDATE" if self._dialect == "postgresql" else ""), (name,)).fetchone()
                if row is None:
                    raise IllegalTransition(f"no unit named {name!r} in this project")
                meta = {**json.loads(row[0] or "{}"), **changes}
                self._exec("UPDATE wf_units SET meta=? WHERE name=?", (json.dumps(meta), name))
                self._exec("COMMIT")
            except BaseException:
                self._exec("ROLLBACK")
                raise
        return meta

    def progress(self) -> dict[str, dict]:
        rows = self._exec("SELECT unit, total, done, bytes_done, folder, updated FROM wf_progress").fetchall()
        return {r[0]: {"total": r[1], "done": r[2], "bytes_done": r[3], "folder": r[4], "updated": r[5]} for r in rows}
