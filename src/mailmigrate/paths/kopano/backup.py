"""A consistent backup before an upgrade, in the seed's order: database, then attachments, then configuration.

The database is dumped first with ``--single-transaction`` (one consistent snapshot without locking
InnoDB tables), then the attachment directory is copied: an attachment written in between is then an
extra file, never a missing one.  The configuration comes last.  Each part is written under a temporary
name and renamed when complete, so a part that exists is whole and a rerun only does what is missing.
The database password goes to mariadb-dump in a 0600 option file, never on its command line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
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
    def __init__(self, db: DbParams, dest: str | os.PathLike, *, attachments: str | os.PathLike | None,
                 config: str | os.PathLike = "/etc/kopano"):
        self.db = db
        self.dest = Path(dest)
        self.attachments = Path(attachments) if attachments else None
        self.config = Path(config)

    @property
    def sql(self) -> Path:
        return self.dest / f"{self.db.database}.sql"

    def dump_database(self) -> list[str]:
        self.dest.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dest, 0o700)
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
            with open(tmp, "wb") as out:
                os.chmod(tmp, 0o600)
                p = subprocess.run(args + ["--", self.db.database], stdout=out, stderr=subprocess.PIPE, timeout=None)
            if p.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise BackupError(f"database dump of {self.db.database} failed: "
                                  f"{p.stderr.decode('utf-8', 'replace').strip()[-500:]}")
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
