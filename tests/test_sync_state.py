"""The state database: intents survive, runs exclude each other, damage is reported, not reset."""

import os
import sqlite3
import stat
import subprocess
import sys

import pytest

from mailmigrate.errors import StateCorrupt, StateLocked
from mailmigrate.sync.state import DONE, PENDING, MessageRow, RunLock, StateDB


def row(key, fp="f", floor=None):
    return MessageRow(key, fp, None, 10, frozenset({"\\Seen"}), None, PENDING, floor)


def test_intent_then_complete(tmp_path):
    db = StateDB.open(tmp_path / "s.db")
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", floor=5), row("2", floor=5)])
    assert db.has_pending(f.id)
    db.complete(f.id, [("1", "100")])
    rows = db.messages(f.id)
    assert rows["1"].state == DONE and rows["1"].target_key == "100"
    assert rows["2"].state == PENDING and rows["2"].uid_floor == 5
    assert rows["1"].source_flags == frozenset({"\\Seen"})


def test_intent_survives_kill_9(tmp_path):
    """An intent committed by a process that is then killed is there for the next run."""
    path = tmp_path / "s.db"
    code = (
        "import os, signal\n"
        "from mailmigrate.sync.state import StateDB, MessageRow, PENDING\n"
        f"db = StateDB.open({str(path)!r})\n"
        "f = db.ensure_folder('a', ('INBOX',), ('INBOX',))\n"
        "db.record_intents(f.id, [MessageRow('7', 'fp', None, 3, frozenset(), None, PENDING, 42)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    db = StateDB.open(path)
    f = db.folder("a", ("INBOX",))
    assert db.messages(f.id)["7"].uid_floor == 42


def test_second_run_is_refused(tmp_path):
    a = RunLock(tmp_path / "s.db")
    a.acquire()
    with pytest.raises(StateLocked, match="in use by another mailmigrate run"):
        RunLock(tmp_path / "s.db").acquire()
    a.release()
    RunLock(tmp_path / "s.db").acquire()


def test_corrupt_database_is_not_reset(tmp_path):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not sqlite" * 100)
    before = path.read_bytes()
    with pytest.raises(StateCorrupt, match="cannot be read|damaged"):
        StateDB.open(path)
    assert path.read_bytes() == before


def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    c = sqlite3.connect(path)
    c.execute("create table t(x)")
    c.commit()
    c.close()
    with pytest.raises(StateCorrupt, match="not a mailmigrate state"):
        StateDB.open(path)


def test_state_left_unversioned_by_a_killed_run_is_completed(tmp_path):
    """Earlier versions created the tables before the version row; a run killed in between left this file,
    and the next run refused it as 'written by a newer mailmigrate' (seen in the kill soak)."""
    path = tmp_path / "s.db"
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    c.commit()
    c.close()
    db = StateDB.open(path)
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    assert db.messages(f.id) == {}
    db.close()
    StateDB.open(path).close()


def test_state_of_an_earlier_release_gains_the_lost_intents_table(tmp_path):
    """A state file written before lost intents were watched opens as it is, keeps its rows, and can
    record lost intents from then on (the table is added, the schema version stays)."""
    path = tmp_path / "s.db"
    db = StateDB.open(path)
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", floor=5), row("2", floor=5)])
    db.close()
    c = sqlite3.connect(path)
    c.execute("DROP TABLE lost_intents")
    c.commit()
    c.close()
    db = StateDB.open(path)
    assert set(db.messages(f.id)) == {"1", "2"}
    db.declare_lost(f.id, [db.messages(f.id)["1"]], uid_floor=7, at=5.0)
    assert set(db.messages(f.id)) == {"2"} and [w.source_key for w in db.lost_intents(f.id)] == ["1"]
    db.close()


def test_unversioned_state_holding_mappings_is_refused(tmp_path):
    path = tmp_path / "s.db"
    StateDB.open(path).ensure_folder("acc", ("INBOX",), ("INBOX",))
    c = sqlite3.connect(path)
    c.execute("DELETE FROM meta WHERE key='schema_version'")
    c.commit()
    c.close()
    with pytest.raises(StateCorrupt, match="schema None"):
        StateDB.open(path)


def test_runs_killed_while_creating_the_state_leave_it_usable(tmp_path):
    import random
    import signal
    import time

    rng = random.Random(7)
    code = "import sys; from mailmigrate.sync.state import StateDB; StateDB.open(sys.argv[1])"
    for i in range(20):
        path = tmp_path / f"s{i}.db"
        p = subprocess.Popen([sys.executable, "-c", code, str(path)])
        time.sleep(rng.uniform(0.05, 0.4))
        p.send_signal(signal.SIGKILL)
        p.wait()
        StateDB.open(path).close()


def test_state_file_is_private(tmp_path):
    StateDB.open(tmp_path / "s.db")
    assert stat.S_IMODE(os.stat(tmp_path / "s.db").st_mode) == 0o600


def test_rekey_source_swaps_without_collision(tmp_path):
    """After a UIDVALIDITY change new UIDs reuse old numbers: 1->2 and 2->1 must both land."""
    db = StateDB.open(tmp_path / "s.db")
    f = db.ensure_folder("a", ("X",), ("X",))
    db.record_intents(f.id, [row("1", "A"), row("2", "B")])
    db.rekey_source(f.id, {"1": "2", "2": "1"})
    rows = db.messages(f.id)
    assert rows["2"].fingerprint == "A" and rows["1"].fingerprint == "B"


def test_state_left_empty_by_a_killed_run_is_completed(tmp_path):
    """Killed after SQLite wrote the header (journal mode) but before the schema committed: an empty
    database, which the next run completes instead of calling it foreign (seen in CI)."""
    path = tmp_path / "s.db"
    c = sqlite3.connect(path)
    c.execute("PRAGMA journal_mode=WAL")
    c.close()
    assert path.stat().st_size > 0
    db = StateDB.open(path)
    assert db.messages(db.ensure_folder("acc", ("INBOX",), ("INBOX",)).id) == {}


# A state file written by mailmigrate at schema 1 (the release before the partial indexes, commit c8809cf), as
# sqlite3's iterdump gave it back: folders with marks and a created one, rows PENDING, DONE and ADOPTED, a lost
# intent.
STATE_V1 = r"""
BEGIN TRANSACTION;
CREATE TABLE folders (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    source_path TEXT NOT NULL,
    target_path TEXT NOT NULL,
    source_validity INTEGER,
    source_uidnext INTEGER,
    source_modseq INTEGER,
    source_count INTEGER,
    target_validity INTEGER,
    target_created INTEGER NOT NULL DEFAULT 0,
    synced_at TEXT,
    UNIQUE (account, source_path)
);
INSERT INTO "folders" VALUES(1,'user@example.org','["INBOX"]','["INBOX"]',7,9,30,6,11,0,'2026-12-04 11:38:52');
INSERT INTO "folders" VALUES(2,'user@example.org','["Archiv", "2024"]','["Archive", "2024"]',
    NULL,NULL,NULL,NULL,NULL,1,NULL);
CREATE TABLE lost_intents (
    id INTEGER PRIMARY KEY,
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size INTEGER NOT NULL,
    uid_floor INTEGER,
    lost_at REAL NOT NULL
);
INSERT INTO "lost_intents" VALUES(1,2,'11',
    '000000000000000000000000000000000000000000000006cc623af8783354e7',NULL,2001,6,1764806400.0);
CREATE TABLE messages (
    folder_id INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    source_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    norm_fingerprint TEXT,
    size INTEGER NOT NULL,
    source_flags TEXT NOT NULL DEFAULT '',
    target_key TEXT,
    state INTEGER NOT NULL,
    uid_floor INTEGER,
    PRIMARY KEY (folder_id, source_key)
);
INSERT INTO "messages" VALUES(1,'1',
    '0000000000000000000000000000000000000000000000009e3779b97f4a7c15',NULL,1001,'\Seen','5',1,5);
INSERT INTO "messages" VALUES(1,'2',
    '0000000000000000000000000000000000000000000000013c6ef372fe94f82a',NULL,1002,'','6',1,5);
INSERT INTO "messages" VALUES(1,'3',
    '000000000000000000000000000000000000000000000001daa66d2c7ddf743f',
    '00000000000000000000000000000000000000000000003fa851f9a236f7ec73',1003,'\Seen','7',1,5);
INSERT INTO "messages" VALUES(1,'4',
    '00000000000000000000000000000000000000000000000278dde6e5fd29f054',NULL,1004,'',NULL,0,5);
INSERT INTO "messages" VALUES(1,'5',
    '0000000000000000000000000000000000000000000000031715609f7c746c69',NULL,1005,'\Seen',NULL,0,5);
INSERT INTO "messages" VALUES(1,'6',
    '000000000000000000000000000000000000000000000003b54cda58fbbee87e',NULL,1006,'',NULL,0,5);
INSERT INTO "messages" VALUES(2,'10',
    '0000000000000000000000000000000000000000000000062e2ac13ef8e8d8d2',NULL,2000,'$Label1','3',1,-1);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','1');
INSERT INTO "meta" VALUES('application','mailmigrate');
CREATE INDEX messages_target ON messages (folder_id, target_key);
CREATE INDEX messages_state ON messages (folder_id, state);
CREATE INDEX lost_intents_folder ON lost_intents (folder_id);
COMMIT;
"""


def _indexes(path):
    c = sqlite3.connect(path)
    try:
        return dict(c.execute("SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"))
    finally:
        c.close()


def test_state_of_schema_1_is_upgraded_in_place_keeping_every_row(tmp_path):
    """A file written before the partial indexes opens as it is, its rows untouched, and is version 2 from then
    on: the indexes of every row's target key and state give way to ones of the rows their queries ask for."""
    path = tmp_path / "s.db"
    c = sqlite3.connect(path)
    c.executescript(STATE_V1)
    c.close()
    assert {"messages_target", "messages_state"} <= set(_indexes(path))
    db = StateDB.open(path)
    a, b = db.folder("user@example.org", ("INBOX",)), db.folder("user@example.org", ("Archiv", "2024"))
    marks = (a.source_validity, a.source_uidnext, a.source_modseq, a.source_count, a.target_validity)
    assert marks == (7, 9, 30, 6, 11)
    assert b.target_path == ("Archive", "2024") and db.created_folders("user@example.org") == {b.id}
    rows = db.messages(a.id)
    assert [(k, r.state, r.target_key) for k, r in sorted(rows.items())] == [
        ("1", DONE, "5"), ("2", DONE, "6"), ("3", DONE, "7"), ("4", PENDING, None), ("5", PENDING, None),
        ("6", PENDING, None)]
    assert rows["3"].norm_fingerprint.endswith("3fa851f9a236f7ec73") and rows["1"].source_flags == {"\\Seen"}
    assert db.has_pending(a.id) and not db.has_pending(b.id)
    assert db.all_target_keys(a.id) == {"5", "6", "7"} and db.all_target_keys(b.id) == {"3"}
    assert db.messages(b.id)["10"].uid_floor == -1
    (lost,) = db.lost_intents(b.id)
    assert (lost.source_key, lost.size, lost.uid_floor, lost.lost_at) == ("11", 2001, 6, 1764806400.0)
    db.complete(a.id, [("4", "8")])
    db.record_intents(a.id, [row("7", floor=9)], done=[("5", "9"), ("6", "10")])
    assert db.all_target_keys(a.id) == {"5", "6", "7", "8", "9", "10"} and set(db.messages(a.id)) == set("1234567")
    db.close()
    indexes = _indexes(path)
    assert not {"messages_target", "messages_state"} & set(indexes)
    assert "WHERE state = 0" in indexes["messages_pending"]
    assert "WHERE target_key IS NOT NULL" in indexes["messages_target_keys"]
    c = sqlite3.connect(path)
    assert c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    c.close()
    StateDB.open(path).close()  # and it opens again as it is


def test_state_upgrade_says_which_schema_a_sqlite_file_came_from(tmp_path, capsys):
    """`mailmigrate state upgrade` on a schema-1 file names both schemas, as it does for PostgreSQL; run again, it
    says the file is up to date. (It used to say "up to date" the first time too, after upgrading.)"""
    from mailmigrate.cli.main import main

    path = tmp_path / "s.db"
    c = sqlite3.connect(path)
    c.executescript(STATE_V1)
    c.close()
    assert main(["state", "upgrade", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"state {path}: schema 1 -> 2"
    assert main(["state", "upgrade", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"state {path}: schema 2, up to date"


def test_the_state_queries_of_recovery_use_the_indexes(tmp_path):
    """Whether a folder has PENDING rows is asked of every folder on every run, the target keys of a folder on
    every recovery: both are read from an index of just those rows, never from all of a folder's rows (100,000
    in a big one)."""
    db = StateDB.open(tmp_path / "s.db")
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row(str(i), floor=1) for i in range(300)])
    db.complete(f.id, [(str(i), str(i)) for i in range(290)])
    ran = []
    db._conn.set_trace_callback(ran.append)
    assert db.has_pending(f.id) and len(db.all_target_keys(f.id)) == 290
    db._conn.set_trace_callback(None)
    has_pending, target_keys = ran

    def plan(sql):
        return " ".join(r[-1] for r in db._conn.execute("EXPLAIN QUERY PLAN " + sql))

    assert "USING INDEX messages_pending" in plan(has_pending)
    assert "USING COVERING INDEX messages_target_keys" in plan(target_keys)
    db.close()


def test_completions_without_update_from_as_on_an_older_sqlite(tmp_path, monkeypatch):
    """SQLite before 3.33 (Ubuntu 20.04, RHEL 8) has no UPDATE ... FROM: the completions go one row at a time
    and leave the same rows, the last target key given for a key winning as in the multi-row statement."""
    def run(update_from: bool, path):
        monkeypatch.setattr(StateDB, "UPDATE_FROM", update_from)
        db = StateDB.open(path)
        f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
        rows = [MessageRow(str(i), f"fp{i}", None, 10 + i, frozenset({"\\Seen"}), None, PENDING, 5) for i in range(150)]
        db.record_intents(f.id, rows[:100])
        db.record_intents(f.id, rows[100:], [(str(i), str(1000 + i)) for i in range(100)] + [("7", "77")])
        db.complete(f.id, [(str(i), None if i == 120 else str(1000 + i)) for i in range(100, 150)])
        out = {k: (r.target_key, r.state) for k, r in db.messages(f.id).items()}
        db.close()
        return out

    old, new = run(False, tmp_path / "old.db"), run(True, tmp_path / "new.db")
    assert old == new
    assert new["7"] == ("77", DONE) and new["120"] == (None, DONE) and new["149"] == ("1149", DONE)
