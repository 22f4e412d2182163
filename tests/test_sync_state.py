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
