"""A consistent backup before an upgrade, in the seed's order: database, then attachments, then configuration.

The database is dumped first with ``--single-transaction`` (one consistent snapshot without locking
InnoDB tables), then the attachment directory is copied: an attachment written in between is then an
extra file, never a missing one.  The configuration comes last.  Each part is written under a temporary
name and renamed when complete, so a part that exists is whole and a rerun only does what is missing.
The database password goes to mariadb-dump in a 0600 option file, never on its command line.

A backup belongs to one upgrade: the time it was started is kept in ``mailmigrate-backup.json`` beside it.
A rerun within ``max_age`` hours resumes it (parts that exist are whole); a backup started earlier than that
— last month's, before the database changed — is stale: it is moved aside whole into ``previous-<time>/``
(never deleted) and a new one is made, instead of a rerun reporting an old dump as "already done".
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ...errors import ConfigError, StoreError
from ..plan import Plan, Step
from .lob import DbParams


class BackupError(StoreError):
    """A part of the backup could not be made."""


def dump_command() -> str:
    for name in ("mariadb-dump", "mysqldump"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigError("neither mariadb-dump nor mysqldump is installed")


class KopanoBackup:
    MARKER = "mailmigrate-backup.json"

    def __init__(self, db: DbParams, dest: str | os.PathLike, *, attachments: str | os.PathLike | None,
                 config: str | os.PathLike = "/etc/kopano", max_age: float = 12.0, clock=time.time,
                 runner=None):
        self.db = db
        self.runner = runner  # services.Runner of a runbook (its recorder sees the dump); None: run it here
        self.dest = Path(dest)
        self.attachments = Path(attachments) if attachments else None
        self.config = Path(config)
        self.max_age = max_age  # hours
        self._clock = clock

    def started(self) -> float | None:
        """When the backup in ``dest`` was begun: its marker, else (a backup made before markers existed)
        the oldest part's modification time; None when there is none."""
        try:
            return float(json.loads((self.dest / self.MARKER).read_text())["started"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        times = [p.stat().st_mtime for p in (self.sql, self.dest / "attachments", self.dest / "config") if p.exists()]
        return min(times) if times else None

    def stale(self) -> bool:
        t = self.started()
        return t is not None and self._clock() - t > self.max_age * 3600

    def set_aside(self) -> list[str]:
        t = self.started() or self._clock()
        aside = self.dest / ("previous-" + time.strftime("%Y%m%d-%H%M%S", time.localtime(t)))
        aside.mkdir(mode=0o700, exist_ok=True)
        moved = []
        for e in sorted(self.dest.iterdir()):
            if e.name.startswith("previous-"):
                continue
            os.replace(e, aside / e.name)
            moved.append(e.name)
        return [f"the backup begun {time.strftime('%Y-%m-%d %H:%M', time.localtime(t))} moved to {aside} "
                f"({', '.join(moved) or 'empty'}); a new one follows"]

    def _mark_started(self) -> None:
        m = self.dest / self.MARKER
        if not m.exists():
            m.write_text(json.dumps({"started": self._clock()}) + "\n")

    @property
    def sql(self) -> Path:
        return self.dest / f"{self.db.database}.sql"

    def dump_database(self) -> list[str]:
        self.dest.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dest, 0o700)
        self._mark_started()
        tmp = self.sql.with_name(self.sql.name + ".partial")
        with tempfile.NamedTemporaryFile("w", prefix="mm-my-", suffix=".cnf", delete=False) as opt:
            os.chmod(opt.name, 0o600)
            pw = self.db.password.reveal() if self.db.password else ""
            opt.write("[client]\npassword=\"" + pw.replace("\\", "\\\\").replace('"', '\\"') + "\"\n")
        try:
            args = [dump_command(), f"--defaults-extra-file={opt.name}", "--single-transaction", "--routines",
                    f"--user={self.db.user}"]
            if self.db.unix_socket:
                args.append(f"--socket={self.db.unix_socket}")
            else:
                args += [f"--host={self.db.host}", f"--port={self.db.port}", "--protocol=tcp"]
            if self.runner is not None:
                done = self.runner.run(args + ["--", self.db.database], stdout=tmp, check=False)
                code, err = done.returncode, done.stderr
            else:
                with open(tmp, "wb") as out:
                    os.chmod(tmp, 0o600)
                    p = subprocess.run(args + ["--", self.db.database], stdout=out, stderr=subprocess.PIPE,
                                       timeout=None)
                code, err = p.returncode, p.stderr.decode("utf-8", "replace")
            if code != 0:
                tmp.unlink(missing_ok=True)
                raise BackupError(f"database dump of {self.db.database} failed: {err.strip()[-500:]}")
            os.replace(tmp, self.sql)
        finally:
            os.unlink(opt.name)
        return [f"{self.sql}: {self.sql.stat().st_size} bytes"]

    def _copy(self, src: Path, name: str) -> list[str]:
        final = self.dest / name
        tmp = self.dest / (name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(src, tmp, symlinks=True)
        os.replace(tmp, final)
        return [f"{src} copied to {final}"]

    def plan(self) -> Plan:
        plan = Plan(f"Kopano backup to {self.dest}")
        if self.stale():
            plan.add(Step("earlier backup", f"a backup begun more than {self.max_age:g} h ago belongs to another "
                          "upgrade: kept, moved aside, never taken for this one",
                          changes=lambda: [f"move the backup begun "
                                           f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(self.started()))} "
                                           f"aside into {self.dest}/previous-*/ and make a new one"]
                          if self.stale() else [],
                          apply=self.set_aside))
        plan.add(Step("database", "mariadb-dump --single-transaction --routines, first",
                      changes=lambda: [f"dump database {self.db.database} to {self.sql}"],
                      apply=self.dump_database, done=self.sql.exists))
        if self.attachments is not None:
            plan.add(Step("attachments", "after the database: extra attachments at worst, never missing ones",
                          changes=lambda: [f"copy {self.attachments} to {self.dest / 'attachments'}"],
                          apply=lambda: self._copy(self.attachments, "attachments"),
                          done=(self.dest / "attachments").exists))
        plan.add(Step("configuration", "last",
                      changes=lambda: [f"copy {self.config} to {self.dest / 'config'}"],
                      apply=lambda: self._copy(self.config, "config"), done=(self.dest / "config").exists))
        return plan
