"""Upgrade helpers: consistent backup against the real MariaDB (order, single transaction) and config checks."""

from __future__ import annotations

import os
import secrets
import subprocess

import pymysql
import pytest

from mailmigrate.model import Secret
from mailmigrate.paths.kopano.backup import KopanoBackup
from mailmigrate.paths.kopano.lob import DbParams
from mailmigrate.paths.kopano.upgrade import check_config, check_config_dir
from samples import zarafa_sample


@pytest.fixture
def db():
    try:
        conn = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    except pymysql.err.OperationalError as e:
        pytest.skip(f"needs MariaDB: {e}")
    name = "mm_test_" + secrets.token_hex(6)
    user = "mm_" + secrets.token_hex(4)
    pw = "pw-" + secrets.token_hex(8)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.lob (instanceid INT, chunkid INT, tag INT, val_binary LONGBLOB,"
                    " PRIMARY KEY (instanceid, tag, chunkid)) ENGINE=InnoDB")
        cur.execute(f"INSERT INTO {name}.lob VALUES (1, 0, 1, 'chunk-one')")
        cur.execute(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{pw}'")
        cur.execute(f"GRANT ALL ON {name}.* TO '{user}'@'127.0.0.1'")
    yield DbParams(name, user=user, password=Secret(pw))
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
    conn.close()


def test_backup_order_database_then_attachments_then_config(db, tmp_path):
    att = tmp_path / "attachments" / "1" / "0"
    att.mkdir(parents=True)
    (att / "1").write_bytes(b"chunk-one")
    etc = tmp_path / "etc-kopano"
    etc.mkdir()
    (etc / "server.cfg").write_text("mysql_password = x\n")
    dest = tmp_path / "backup"
    b = KopanoBackup(db, dest, attachments=tmp_path / "attachments", config=etc)
    assert [o.name for o in b.plan().run(dry_run=True).outcomes] == ["database", "attachments", "configuration"]
    assert not dest.exists()

    seen = []
    real = subprocess.run

    def spy(args, **kw):  # the password must never reach the command line
        seen.append(list(args))
        return real(args, **kw)

    subprocess.run = spy
    try:
        log = tmp_path / "backup.log"
        res = b.plan().run(dry_run=False, log_path=log)
    finally:
        subprocess.run = real
    assert res.ok, res.render()
    sql = (dest / f"{db.database}.sql").read_text()
    assert "CREATE TABLE `lob`" in sql and "chunk-one" in sql
    assert any("--single-transaction" in a for a in seen[0])
    assert db.password.reveal() not in " ".join(seen[0])
    order = [ln.split("] ")[1].split(":")[0] for ln in log.read_text().splitlines() if ln.endswith(": applied")]
    assert order == ["database", "attachments", "configuration"]
    assert (dest / "attachments/1/0/1").read_bytes() == b"chunk-one"
    assert (dest / "config/server.cfg").exists()
    assert (dest / f"{db.database}.sql").stat().st_mode & 0o077 == 0
    assert db.password.reveal() not in log.read_text()
    assert all(o.status == "done" for o in b.plan().run(dry_run=False).outcomes)


def test_backup_with_wrong_password_fails_and_leaves_no_dump(db, tmp_path):
    bad = DbParams(db.database, user=db.user, password=Secret("Zq9-bad-pw-77"))
    res = KopanoBackup(bad, tmp_path / "b", attachments=None, config=tmp_path).plan().run(dry_run=False)
    assert not res.ok and "Zq9-bad-pw-77" not in res.render()
    assert not (tmp_path / "b" / f"{db.database}.sql").exists()
    assert [o.name for o in res.outcomes] == ["database"], "later parts ran after the dump failed"


def test_new_options_against_example_config(tmp_path):
    s = zarafa_sample(tmp_path)
    installed = tmp_path / "server.cfg"
    installed.write_text((s / "kopano-example-config" / "server.cfg").read_text() + "user_safe_mode = yes\n"
                         "license_socket = /x\n")
    r = check_config(installed, s / "kopano-example-config-new" / "server.cfg")
    assert r.new_options == ["kcoidc_issuer_identifier", "shared_reminders", "statsclient_url"]
    assert r.unknown_options == ["license_socket", "user_safe_mode"]
    assert "user_safe_mode is on" in r.render()
    assert [c.file for c in check_config_dir(tmp_path, s / "kopano-example-config-new")] == [str(installed)]


def test_a_stale_backup_is_set_aside_and_made_anew_never_taken_as_done(db, tmp_path):
    """Issue 17: a dump from an earlier upgrade was reported "already done".  Within --max-age a rerun resumes
    (nothing redone); a backup begun longer ago is moved aside whole (kept) and a new one is made."""
    import time as _time

    etc = tmp_path / "etc-kopano"
    etc.mkdir()
    (etc / "server.cfg").write_text("mysql_password = x\n")
    dest = tmp_path / "backup"
    now = [_time.time()]
    b = KopanoBackup(db, dest, attachments=None, config=etc, max_age=12, clock=lambda: now[0])
    assert b.plan().run(dry_run=False).ok
    first = (dest / f"{db.database}.sql").read_text()
    now[0] += 3600  # an hour later: the same upgrade, resumed
    assert all(o.status == "done" for o in b.plan().run(dry_run=False).outcomes)

    conn = pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {db.database}.lob VALUES (2, 0, 1, 'written-since')")
    conn.close()
    now[0] += 30 * 86400  # next month: the old dump no longer is this database
    dry = b.plan().run(dry_run=True)
    assert [o.status for o in dry.outcomes] == ["planned"] * 3 and "already done" not in dry.render()
    res = b.plan().run(dry_run=False)
    assert res.ok and [o.status for o in res.outcomes] == ["applied"] * 3, res.render()
    assert "written-since" in (dest / f"{db.database}.sql").read_text()
    aside = [p for p in dest.iterdir() if p.name.startswith("previous-")]
    assert len(aside) == 1 and (aside[0] / f"{db.database}.sql").read_text() == first
