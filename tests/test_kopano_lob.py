"""Attachments from a real MariaDB ``lob`` table to files_v1 files: multi-chunk, verified, rerun, --delete."""

from __future__ import annotations

import gzip
import os
import secrets

import pymysql
import pytest

from mailmigrate.paths.kopano.lob import DbParams, LobError, LobToFiles, attachment_file


def _root():
    try:
        return pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    except pymysql.err.OperationalError as e:
        pytest.skip(f"needs MariaDB on 127.0.0.1:3306 as root: {e}")


@pytest.fixture
def db():
    conn = _root()
    name = "mm_test_" + secrets.token_hex(6)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        cur.execute(f"CREATE TABLE {name}.lob (instanceid INT UNSIGNED NOT NULL, chunkid SMALLINT UNSIGNED NOT NULL,"
                    " tag INT UNSIGNED NOT NULL, val_binary LONGBLOB, PRIMARY KEY (instanceid, tag, chunkid))"
                    " ENGINE=InnoDB")
    yield conn, name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


def _fill(conn, name, count=12, chunk=40_000):
    """Instances of 1 to 4 chunks, inserted in shuffled chunk order; returns {instanceid: bytes}."""
    want = {}
    with conn.cursor() as cur:
        for n in range(count):
            iid = 7 + n * 37  # spread over the 10 x 20 directories
            parts = [secrets.token_bytes(chunk if c < n % 4 else 1 + n * 13) for c in range(n % 4 + 1)]
            want[iid] = b"".join(parts)
            for c in reversed(range(len(parts))):
                cur.execute(f"INSERT INTO {name}.lob VALUES (%s, %s, %s, %s)", (iid, c, 0x37010102, parts[c]))
    return want


def _rows(conn, name) -> int:
    with conn.cursor() as cur:
        cur.execute(f"SELECT COUNT(*) FROM {name}.lob")
        return cur.fetchone()[0]


def test_convert_verify_rerun_then_delete(db, tmp_path):
    conn, name = db
    want = _fill(conn, name)
    rows = _rows(conn, name)
    att = tmp_path / "attachments"
    job = LobToFiles(DbParams(name), att)
    dry = job.plan().run(dry_run=True)
    assert not att.exists(), "the dry run wrote something"
    assert f"write {attachment_file(att, 44, False)}" in dry.render()

    res = job.plan().run(dry_run=False, log_path=tmp_path / "lob.log")
    assert res.ok, res.render()
    for iid, data in want.items():
        p = att / str(iid % 10) / str((iid // 10) % 20) / str(iid)
        assert p.read_bytes() == data
    assert sorted(job.stats.written) == sorted(want)
    assert _rows(conn, name) == rows, "without --delete the table is kept"

    again = LobToFiles(DbParams(name), att)
    r2 = again.plan().run(dry_run=False)
    assert r2.ok and again.stats.written == []
    assert [o.status for o in r2.outcomes] == ["done", "done", "applied"]  # verify always runs

    final = LobToFiles(DbParams(name), att, delete=True)
    r3 = final.plan().run(dry_run=False)
    assert r3.ok, r3.render()
    assert _rows(conn, name) == 0
    assert all((att / str(i % 10) / str((i // 10) % 20) / str(i)).read_bytes() == d for i, d in want.items())
    assert [o.status for o in LobToFiles(DbParams(name), att, delete=True).plan().run(dry_run=False).outcomes] \
        == ["done"] * 4


def test_interrupted_run_resumes_without_duplicates_or_losses(db, tmp_path):
    conn, name = db
    want = _fill(conn, name)
    att = tmp_path / "att"

    class Crash(Exception):
        pass

    def crash_after_5(iid, seen=[]):
        seen.append(iid)
        if len(seen) == 5:
            raise Crash()

    with pytest.raises(Crash):
        LobToFiles(DbParams(name), att, on_written=crash_after_5).write_files()
    # a crash in the middle of a file: only a temporary name exists
    victim = sorted(want)[7]
    final = attachment_file(att, victim, False)
    final.parent.mkdir(parents=True, exist_ok=True)
    (final.parent / f".{victim}.mm-partial").write_bytes(want[victim][:10])
    assert len([p for p in att.rglob("*") if p.is_file() and not p.name.startswith(".")]) == 5

    job = LobToFiles(DbParams(name), att, delete=True)
    res = job.plan().run(dry_run=False)
    assert res.ok, res.render()
    assert len(job.stats.written) == len(want) - 5 and len(job.stats.skipped) == 5
    files = sorted(p for p in att.rglob("*") if p.is_file())
    assert len(files) == len(want), files  # no temporary leftovers, no duplicates
    assert {int(p.name): p.read_bytes() for p in files} == want
    assert _rows(conn, name) == 0


def test_compressed_files_and_mismatch_blocks_delete(db, tmp_path):
    conn, name = db
    want = _fill(conn, name, count=4)
    att = tmp_path / "att"
    wrong = sorted(want)[2]
    p = attachment_file(att, wrong, False)
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not the attachment")  # an existing non-empty file is never overwritten

    job = LobToFiles(DbParams(name), att, compression=True, delete=True)
    res = job.plan().run(dry_run=False)
    assert not res.ok and "differ" in res.render() and str(wrong) in res.render()
    assert _rows(conn, name) > 0, "delete ran although a file differs"
    assert p.read_bytes() == b"not the attachment"
    for iid, data in want.items():
        if iid != wrong:
            assert gzip.decompress(attachment_file(att, iid, True).read_bytes()) == data

    p.unlink()
    res = LobToFiles(DbParams(name), att, compression=True, delete=True).plan().run(dry_run=False)
    assert res.ok and _rows(conn, name) == 0


def test_free_space_is_checked_before_writing(db, tmp_path):
    conn, name = db
    _fill(conn, name, count=3)
    att = tmp_path / "att"
    res = LobToFiles(DbParams(name), att, min_free=1 << 62).plan().run(dry_run=False)
    assert not res.ok and "bytes free" in res.render()
    assert not att.exists() or not any(att.rglob("*"))


def test_wrong_database_is_a_config_error(tmp_path):
    _root().close()
    from mailmigrate.errors import ConfigError
    with pytest.raises(ConfigError):
        LobToFiles(DbParams("mm_test_does_not_exist"), tmp_path).instances()


def test_zero_length_attachment_verifies_and_files_belong_to_the_attachment_directory_owner(db, tmp_path):
    """A zero-length attachment is one empty chunk in lob: its empty file used to count as missing, so
    verification never passed and --delete never ran. Files and directories were root's, so kopano-server
    (running as kopano) could not write or rename there: they now belong to the attachment directory's owner."""
    import pwd

    conn, name = db
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {name}.lob VALUES (%s, %s, %s, %s)", (123, 0, 0x37010102, b""))
        cur.execute(f"INSERT INTO {name}.lob VALUES (%s, %s, %s, %s)", (124, 0, 0x37010102, b"abc"))
    att = tmp_path / "attachments"
    att.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(att, nobody.pw_uid, nobody.pw_gid)  # "nobody" plays kopano
    res = LobToFiles(DbParams(name), att, delete=True).plan().run(dry_run=False)
    assert res.ok, res.render()
    empty = attachment_file(att, 123, False)
    assert empty.read_bytes() == b"" and attachment_file(att, 124, False).read_bytes() == b"abc"
    assert _rows(conn, name) == 0  # verified, then deleted
    for p in (empty, empty.parent, empty.parent.parent, attachment_file(att, 124, False)):
        assert (p.stat().st_uid, p.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid), p
