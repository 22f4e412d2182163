"""DAViCal (Debian's ``davical`` package), a third CalDAV/CardDAV server for the groupware tests, beside
Radicale and Xandikos: a PHP application over PostgreSQL, so it stores what it parses in SQL rather than
files, and answers as a different code base does.

Started the way its packaging documents, on loopback and without Apache: a PostgreSQL cluster of the test's
own (tests/servers/own_services.py), the package's ``dba/create-database.sh DBNAME ADMINPW`` building the
schema and its ``admin`` principal, and PHP's built-in web server serving ``/usr/share/davical/htdocs``
(DAViCal's URLs are ``/caldav.php/PRINCIPAL/COLLECTION/``; the built-in server passes the rest of the path
as PATH_INFO, as Apache does).  The package's ``/etc/davical/config.php`` connects with
``dbname=davical user=davical_app``; libpq takes host and port from PGHOST/PGPORT in the server's
environment, so nothing under /etc is written."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .dav import DavServer, _wait
from .dovecot import free_port
from .own_services import OwnPostgres

HTDOCS = Path("/usr/share/davical/htdocs")
CREATE_DB = Path("/usr/share/davical/dba/create-database.sh")


def available() -> bool:
    return HTDOCS.is_dir() and CREATE_DB.is_file() and shutil.which("php") is not None


class DAViCal(DavServer):
    kind = "davical"
    user = "admin"  # the principal create-database.sh makes

    def __init__(self, root: Path, password: str = "admin-pw"):
        super().__init__(root)
        self.password = password
        self.pg: OwnPostgres | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/caldav.php"

    def start(self) -> "DAViCal":
        if not available():
            pytest.skip("DAViCal (Debian davical, php-cli, php-pgsql) is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        self.pg = OwnPostgres()
        env = {**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port), "PGUSER": "postgres"}
        r = subprocess.run(["sh", str(CREATE_DB), "davical", self.password], env=env, capture_output=True, text=True,
                           timeout=300)
        if r.returncode:
            raise RuntimeError(f"davical create-database.sh: {r.stdout[-1500:]}{r.stderr[-1500:]}")
        self.port = free_port()
        self.proc = subprocess.Popen(["php", "-S", f"127.0.0.1:{self.port}", "-t", str(HTDOCS)],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port)})
        _wait(self.base + "/", self.proc, self.log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        if self.pg is not None:
            self.pg.stop()
            self.pg = None
