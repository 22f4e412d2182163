"""Attachments from the database (``attachment_storage = database``) to files (``files``, i.e. files_v1).

Kopano reads a files_v1 attachment from ``attachment_path/(id % 10)/((id // 10) % 20)/id`` (``id.gz``
when ``attachment_compression`` is not 0; readers try both names).  The database keeps it in table
``lob(instanceid, chunkid, tag, val_binary)`` as chunks; the file is the chunks of one instance in
``chunkid`` order.

What makes this safe to run again at any point:

* a file is written under a temporary name in its final directory, flushed to disk and then renamed, so
  an interruption leaves no partial file under the final name (stale temporary files are removed by the
  next run);
* an instance whose file already exists and is not empty is skipped, so nothing is written twice;
* before anything is deleted, every file is compared byte for byte with its chunks in the database, and
  the table is emptied (``--delete``) only when all of them match; only instances that were verified are
  deleted, so a row added meanwhile is never lost.

The free space of the target file system is checked against what is still to be written before the first
file is written.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ...errors import ConfigError, StoreError
from ...model import Secret
from ..plan import Plan, Step

log = logging.getLogger("mailmigrate.kopano.lob")

PARTIAL = ".mm-partial"
SHOW = 20  # files listed one by one in a dry run before "... and N more"


class LobError(StoreError):
    """The database could not be read or changed, or the files do not match it."""


@dataclass
class DbParams:
    database: str
    user: str = "root"
    password: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 3306
    unix_socket: str | None = None

    def connect(self):
        import pymysql

        try:
            return pymysql.connect(host=self.host, port=int(self.port), user=self.user,
                                   password=self.password.reveal() if self.password else "",
                                   database=self.database, unix_socket=self.unix_socket, autocommit=False,
                                   connect_timeout=30)
        except pymysql.err.OperationalError as e:
            code = e.args[0] if e.args else None
            if code in (1044, 1045, 1049):
                raise ConfigError(f"database {self.database} on {self.host}: {e.args[1] if len(e.args) > 1 else e}") \
                    from None
            raise LobError(f"database {self.database} on {self.host}: cannot connect: {e}") from None

    def __repr__(self) -> str:
        return f"DbParams({self.user}@{self.host}:{self.port}/{self.database})"


def attachment_file(base: Path, instanceid: int, compressed: bool) -> Path:
    """Where files_v1 keeps an attachment."""
    name = f"{instanceid}.gz" if compressed else str(instanceid)
    return Path(base) / str(instanceid % 10) / str((instanceid // 10) % 20) / name


def existing_file(base: Path, instanceid: int) -> Path | None:
    """The file Kopano would read for the instance, under either name, or None. Files only ever appear
    under their final name whole (written, flushed, renamed), so an empty one is a zero-length attachment
    (one empty chunk in lob), not a partial write: refusing it kept verification failing forever."""
    for compressed in (False, True):
        p = attachment_file(base, instanceid, compressed)
        if p.is_file():
            return p
    return None


@dataclass(frozen=True)
class Instance:
    instanceid: int
    size: int
    chunks: int
    tags: int


@dataclass
class LobStats:
    written: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    verified: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    deleted_rows: int = 0


class LobToFiles:
    def __init__(self, db: DbParams, path: str | os.PathLike, *, compression: bool = False, delete: bool = False,
                 min_free: int = 0, on_written: Callable[[int], None] | None = None):
        self.db = db
        self.path = Path(path)
        self.compression = compression
        self.delete = delete
        self.min_free = min_free
        self.on_written = on_written
        self.stats = LobStats()
        self._conn = None

    # -- database -------------------------------------------------------------------------------------

    def _db(self):
        if self._conn is None:
            self._conn = self.db.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def instances(self) -> list[Instance]:
        conn = self._db()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT instanceid, COALESCE(SUM(LENGTH(val_binary)), 0), COUNT(*), COUNT(DISTINCT tag) "
                            "FROM lob GROUP BY instanceid ORDER BY instanceid")
                rows = cur.fetchall()
            conn.commit()
        except Exception as e:  # pymysql errors: missing table, lost connection
            raise LobError(f"{self.db!r}: reading table lob failed: {e}") from None
        return [Instance(int(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def _chunks(self, instanceid: int) -> Iterator[bytes]:
        import pymysql.cursors

        conn = self._db()
        cur = conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute("SELECT val_binary FROM lob WHERE instanceid = %s ORDER BY chunkid", (instanceid,))
            for (val,) in cur:
                yield bytes(val or b"")
        finally:
            cur.close()
            conn.commit()

    # -- steps ----------------------------------------------------------------------------------------

    def _missing(self, insts: list[Instance]) -> list[Instance]:
        return [i for i in insts if i.tags <= 1 and existing_file(self.path, i.instanceid) is None]

    def _free(self) -> int:
        p = self.path
        while not p.exists():
            p = p.parent
        return shutil.disk_usage(p).free

    def check_space(self) -> list[str]:
        insts = self.instances()
        need = sum(i.size for i in self._missing(insts)) + self.min_free
        free = self._free()
        if need > free:
            raise LobError(f"{self.path}: {need} bytes needed for the attachments still in the database, only "
                           f"{free} bytes free; nothing was written")
        return [f"{need} bytes needed, {free} bytes free on {self.path}"]

    def write_files(self) -> list[str]:
        insts = self.instances()
        out = []
        for i in insts:
            if i.tags > 1:
                out.append(f"instance {i.instanceid}: chunks under {i.tags} tags; not written, left in the database")
                continue
            if existing_file(self.path, i.instanceid) is not None:
                self.stats.skipped.append(i.instanceid)
                continue
            self._write_one(i.instanceid)
            self.stats.written.append(i.instanceid)
            if self.on_written is not None:
                self.on_written(i.instanceid)
        out.append(f"{len(self.stats.written)} files written, {len(self.stats.skipped)} already there")
        return out

    def _owner(self) -> tuple[int, int] | None:
        """Who the files must belong to: the attachment directory's owner (kopano on a real server), so that
        kopano-server can read, write and rename them; None when that is already us."""
        st = self.path.stat()
        return None if (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()) else (st.st_uid, st.st_gid)

    def _mkdirs(self, d: Path) -> None:
        owner = self._owner()
        made = []
        p = d
        while not p.exists():
            made.append(p)
            p = p.parent
        d.mkdir(parents=True, exist_ok=True)
        for q in made:
            if owner:
                os.chown(q, *owner)

    def _write_one(self, instanceid: int) -> None:
        final = attachment_file(self.path, instanceid, self.compression)
        self.path.mkdir(parents=True, exist_ok=True)
        self._mkdirs(final.parent)
        for stale in final.parent.glob(f".{instanceid}*{PARTIAL}"):
            stale.unlink()
        tmp = final.with_name(f".{final.name}{PARTIAL}")
        with open(tmp, "wb") as raw:
            if self.compression:
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                    for chunk in self._chunks(instanceid):
                        gz.write(chunk)
            else:
                for chunk in self._chunks(instanceid):
                    raw.write(chunk)
            raw.flush()
            os.fsync(raw.fileno())
            owner = self._owner()
            if owner:
                os.fchown(raw.fileno(), *owner)
        os.replace(tmp, final)

    def _same(self, instanceid: int, path: Path) -> bool:
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rb") as f:
                for chunk in self._chunks(instanceid):
                    if f.read(len(chunk)) != chunk:
                        return False
                return f.read(1) == b""
        except (OSError, EOFError, gzip.BadGzipFile):
            return False

    def verify(self) -> list[str]:
        self.stats.verified, self.stats.mismatched = [], []
        missing = []
        for i in self.instances():
            p = existing_file(self.path, i.instanceid)
            if p is None:
                missing.append(i.instanceid)
            elif i.tags <= 1 and self._same(i.instanceid, p):
                self.stats.verified.append(i.instanceid)
            else:
                self.stats.mismatched.append(i.instanceid)
        if missing or self.stats.mismatched:
            raise LobError(
                f"{len(self.stats.verified)} attachment files match the database, "
                f"{len(self.stats.mismatched)} differ ({_ids(self.stats.mismatched)}), {len(missing)} are missing "
                f"({_ids(missing)}); the lob table was not touched")
        return [f"{len(self.stats.verified)} attachment files match the database byte for byte"]

    def empty_table(self) -> list[str]:
        """Delete the verified instances' rows; runs only after :meth:`verify` passed in this run."""
        verified = list(self.stats.verified)
        conn = self._db()
        deleted = 0
        try:
            with conn.cursor() as cur:
                for n in range(0, len(verified), 500):
                    batch = verified[n:n + 500]
                    deleted += cur.execute("DELETE FROM lob WHERE instanceid IN (" + ",".join(["%s"] * len(batch))
                                           + ")", batch)
                    conn.commit()
        except Exception as e:
            raise LobError(f"{self.db!r}: deleting from lob failed after {deleted} rows: {e}") from None
        self.stats.deleted_rows += deleted
        left = len(self.instances())
        return [f"{deleted} rows of {len(verified)} attachments deleted from lob"] + (
            [f"{left} instances left in lob (added meanwhile or not verified); run again"] if left else [])

    def plan(self) -> Plan:
        plan = Plan(f"attachments from database {self.db.database} to {self.path}")

        def pending_lines() -> list[str]:
            miss = self._missing(self.instances())
            lines = [f"write {attachment_file(self.path, i.instanceid, self.compression)} ({i.size} bytes, "
                     f"{i.chunks} chunks)" for i in miss[:SHOW]]
            if len(miss) > SHOW:
                lines.append(f"... and {len(miss) - SHOW} more files")
            return lines

        plan.add(Step("check free space", "what is still to write fits on the file system",
                      changes=lambda: [f"check {sum(i.size for i in self._missing(self.instances()))} bytes "
                                       f"against the free space of {self.path}"],
                      apply=self.check_space,
                      done=lambda: not self._missing(self.instances())))
        plan.add(Step("write attachment files", "one file per instance, written then renamed",
                      changes=pending_lines, apply=self.write_files))
        plan.add(Step("verify files against the database", "byte for byte, before anything is deleted",
                      changes=lambda: [f"compare {len(self.instances())} files with their database chunks"],
                      apply=self.verify, done=lambda: not self.instances()))
        if self.delete:
            plan.add(Step("empty the lob table", "only after every file matched",
                          changes=lambda: [f"delete the rows of {len(self.instances())} verified attachments "
                                           "from lob"],
                          apply=self.empty_table, done=lambda: not self.instances()))
        return plan


def _ids(ids: list[int], n: int = 10) -> str:
    return ", ".join(map(str, ids[:n])) + (", ..." if len(ids) > n else "") if ids else "none"
