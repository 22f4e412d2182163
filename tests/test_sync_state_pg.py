"""The PostgreSQL state: the same behaviour as the SQLite state (same tests, both back ends), plus what
only a shared state needs: one worker per account, durable intents across kill -9, versioned migrations."""

import os
import signal
import subprocess
import sys

import psycopg
import pytest

from mailmigrate.errors import StateCorrupt, StateError
from mailmigrate.sync import state_pg
from mailmigrate.sync.state import DONE, PENDING, MessageRow
from mailmigrate.sync.state_pg import PgStateDB, open_state, upgrade


def row(key, fp="f", floor=None):
    return MessageRow(key, fp, None, 10, frozenset({"\\Seen"}), None, PENDING, floor)


def test_intent_then_complete(state_where):
    db = open_state(state_where)
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", floor=5), row("2", floor=5)])
    assert db.has_pending(f.id)
    db.complete(f.id, [("1", "100")])
    rows = db.messages(f.id)
    assert rows["1"].state == DONE and rows["1"].target_key == "100"
    assert rows["2"].state == PENDING and rows["2"].uid_floor == 5
    assert rows["1"].source_flags == frozenset({"\\Seen"})
    assert db.count(f.id) == 2 and db.all_target_keys(f.id) == {"100"}
    db.close()


def test_intent_survives_kill_9(state_where):
    """An intent committed by a process that is then killed is there for the next run."""
    code = (
        "import os, signal\n"
        "from mailmigrate.sync.state import MessageRow, PENDING\n"
        "from mailmigrate.sync.state_pg import open_state\n"
        f"db = open_state({state_where!r})\n"
        "f = db.ensure_folder('a', ('INBOX',), ('INBOX',))\n"
        "db.record_intents(f.id, [MessageRow('7', 'fp', None, 3, frozenset(), None, PENDING, 42)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    p = subprocess.run([sys.executable, "-c", code])
    assert p.returncode == -9
    db = open_state(state_where)
    f = db.folder("a", ("INBOX",))
    assert db.messages(f.id)["7"].uid_floor == 42
    db.close()


def test_rekey_source_swaps_without_collision(state_where):
    db = open_state(state_where)
    f = db.ensure_folder("a", ("X",), ("X",))
    db.record_intents(f.id, [row("1", "A"), row("2", "B")])
    db.rekey_source(f.id, {"1": "2", "2": "1"})
    rows = db.messages(f.id)
    assert rows["2"].fingerprint == "A" and rows["1"].fingerprint == "B"
    db.close()


def test_rekey_source_leaves_rows_it_does_not_rename_alone(state_where):
    """Keys that look like anything (a Maildir or CommuniGate key may hold ~, %, _ or capitals) keep their
    rows: only the renamed keys move."""
    db = open_state(state_where)
    f = db.ensure_folder("a", ("X",), ("X",))
    odd = ["~rekey~q", "~REKEY~Q", "50%_done", "1"]
    db.record_intents(f.id, [row(k, f"F{i}") for i, k in enumerate(odd)] + [row("2", "B")])
    db.rekey_source(f.id, {"2": "3"})
    rows = db.messages(f.id)
    assert sorted(rows) == sorted(odd + ["3"])
    assert [rows[k].fingerprint for k in odd] == ["F0", "F1", "F2", "F3"] and rows["3"].fingerprint == "B"
    db.close()


def test_lost_intents_replace_their_rows_and_follow_rekeys(state_where):
    """Declaring intents lost drops their rows and keeps them watched, in one step; a source UIDVALIDITY
    re-key renames the watches with the rows; forgetting the account forgets them."""
    db = open_state(state_where)
    f = db.ensure_folder("a", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", "A", floor=3), row("2", "B", floor=3), row("3", "A", floor=3)])
    db.declare_lost(f.id, [db.messages(f.id)["1"], db.messages(f.id)["3"]], uid_floor=9, at=1000.5)
    assert set(db.messages(f.id)) == {"2"} and db.has_pending(f.id)
    lost = db.lost_intents(f.id)
    assert [(w.source_key, w.fingerprint, w.size, w.uid_floor, w.lost_at) for w in lost] == [
        ("1", "A", 10, 9, 1000.5), ("3", "A", 10, 9, 1000.5)]
    db.rekey_source(f.id, {"1": "11", "2": "12", "3": "1"})
    assert sorted(w.source_key for w in db.lost_intents(f.id)) == ["1", "11"]
    db.forget_lost(f.id, [lost[0].id])
    assert [w.source_key for w in db.lost_intents(f.id)] == ["1"] and db.has_lost_intents(f.id)
    db.forget_account("a")
    g = db.ensure_folder("a", ("INBOX",), ("INBOX",))
    assert not db.has_lost_intents(g.id) and db.lost_intents(f.id) == []
    db.close()


def test_folders_marks_flags_forget(state_where):
    db = open_state(state_where)
    f = db.ensure_folder("a", ("INBOX", "a/b"), ("INBOX", "a∕b"))
    g = db.ensure_folder("a", ("Sent",), ("Sent",))
    assert db.ensure_folder("a", ("INBOX", "a/b"), ("INBOX", "a∕b")).id == f.id
    db.set_folder_marks(f.id, source_validity=7, source_uidnext=10, source_modseq=99, source_count=3,
                        target_validity=8)
    got = db.folder("a", ("INBOX", "a/b"))
    assert (got.target_path, got.source_validity, got.source_modseq, got.target_validity) == (("INBOX", "a∕b"), 7, 99, 8)
    db.mark_created(g.id)
    assert db.created_folders("a") == {g.id}
    db.forget_change_marks(f.id)
    assert db.folder("a", ("INBOX", "a/b")).source_uidnext is None
    db.record_intents(f.id, [row("1"), row("2"), row("3")])
    db.set_flags(f.id, [("1", frozenset({"\\Flagged", "$Work"}))])
    db.complete(f.id, [("2", "t2"), ("3", "t3")])
    db.rekey_target(f.id, {"2": "u2", "3": None})
    db.drop(f.id, ["1"])
    rows = db.messages(f.id)
    assert set(rows) == {"2"} and rows["2"].target_key == "u2"
    db.record_intents(f.id, [row("1")])
    db.set_flags(f.id, [("1", frozenset({"\\Flagged", "$Work"}))])
    assert db.messages(f.id)["1"].source_flags == {"\\Flagged", "$Work"}
    db.ensure_folder("b", ("INBOX",), ("INBOX",))
    assert list(db.iter_accounts()) == ["a", "b"]
    db.forget_account("a")
    assert db.folders("a") == [] and list(db.iter_accounts()) == ["b"]
    db.close()


def test_one_worker_per_account(pg_url):
    """A second process cannot take an account another holds; a holder killed with SIGKILL frees it."""
    a = PgStateDB.open(pg_url)
    b = PgStateDB.open(pg_url)
    assert a.lock_account("ann -> ann")
    assert not b.lock_account("ann -> ann", wait=0.5)
    assert b.lock_account("bob -> bob")  # other accounts are free
    a.unlock_account("ann -> ann")
    assert b.lock_account("ann -> ann")
    b.close()
    code = ("import os, signal, sys\n"
            "from mailmigrate.sync.state_pg import PgStateDB\n"
            f"db = PgStateDB.open({pg_url!r})\n"
            "assert db.lock_account('cy -> cy')\n"
            "sys.stdout.write('locked\\n'); sys.stdout.flush()\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout == "locked\n" and p.returncode == -9
    assert a.lock_account("cy -> cy", wait=10)  # the server noticed the dead session
    a.close()


def test_schema_upgrade_keeps_data(pg_url):
    """A database at schema 1 is refused until `mailmigrate state upgrade` ran; the rows stay."""
    conn = psycopg.connect(pg_url, autocommit=True)
    conn.execute("CREATE TABLE mm_state_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL "
                 "DEFAULT now())")
    conn.execute(state_pg.MIGRATIONS[0][1])
    conn.execute("INSERT INTO mm_state_version(version) VALUES (1)")
    conn.execute("INSERT INTO sync_folders(account, source_path, target_path) VALUES ('old', '[\"INBOX\"]', "
                 "'[\"INBOX\"]')")
    with pytest.raises(StateError, match="state upgrade"):
        PgStateDB.open(pg_url)
    from mailmigrate.cli.main import main

    assert main(["state", "upgrade", pg_url]) == 0
    db = PgStateDB.open(pg_url)
    assert list(db.iter_accounts()) == ["old"]
    assert conn.execute("SELECT max(version) FROM mm_state_version").fetchone()[0] == state_pg.SCHEMA_VERSION
    assert upgrade(pg_url) == (state_pg.SCHEMA_VERSION, state_pg.SCHEMA_VERSION)  # idempotent
    conn.execute("INSERT INTO mm_state_version(version) VALUES (%s)", (state_pg.SCHEMA_VERSION + 1,))
    with pytest.raises(StateCorrupt, match="newer mailmigrate"):
        PgStateDB.open(pg_url)
    db.close()
    conn.close()


def test_schema_6_replaces_the_message_indexes_keeping_every_row(pg_url):
    """A database at schema 5, its rows written by the queries of that release, is refused until upgraded; the
    upgrade keeps every row and swaps the indexes of every row's target key and state for indexes of the rows
    their queries ask for, which those queries then use."""
    conn = psycopg.connect(pg_url, autocommit=True)
    conn.execute("CREATE TABLE mm_state_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL "
                 "DEFAULT now())")
    for version, sql in state_pg.MIGRATIONS[:5]:
        conn.execute(sql)
        conn.execute("INSERT INTO mm_state_version(version) VALUES (%s)", (version,))
    old = PgStateDB(state_pg._connect(pg_url), pg_url)  # the schema-5 database as a worker of then had it
    f = old.ensure_folder("acc", ("INBOX",), ("INBOX",))
    old.record_intents(f.id, [row(str(i), f"fp{i}", floor=3) for i in range(1, 6)])
    old.complete(f.id, [("1", "31"), ("2", "32"), ("3", None)])
    old.declare_lost(f.id, [old.messages(f.id)["5"]], uid_floor=9, at=5.5)
    old.close()
    with pytest.raises(StateError, match="state upgrade"):
        PgStateDB.open(pg_url)
    assert upgrade(pg_url) == (5, state_pg.SCHEMA_VERSION)
    db = PgStateDB.open(pg_url)
    rows = db.messages(f.id)
    assert [(k, r.state, r.target_key, r.fingerprint, r.uid_floor) for k, r in sorted(rows.items())] == [
        ("1", DONE, "31", "fp1", 3), ("2", DONE, "32", "fp2", 3), ("3", DONE, None, "fp3", 3),
        ("4", PENDING, None, "fp4", 3)]
    assert [w.source_key for w in db.lost_intents(f.id)] == ["5"]
    indexes = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'sync_messages'"))
    assert not {"sync_messages_target", "sync_messages_state"} & set(indexes)
    assert "WHERE (state = 0)" in indexes["sync_messages_pending"]
    assert "WHERE (target_key IS NOT NULL)" in indexes["sync_messages_target_keys"]

    ran = []
    real = db._conn

    class Recording:
        def execute(self, sql, params=()):
            ran.append((sql, params))
            return real.execute(sql, params)

    db._conn = Recording()
    assert db.has_pending(f.id) and db.all_target_keys(f.id) == {"31", "32"}
    db._conn = real
    with real.transaction():
        real.execute("SET LOCAL enable_seqscan = off")  # a table this small is read whole otherwise
        plans = [" ".join(r[0] for r in real.execute("EXPLAIN " + sql, params)) for sql, params in ran]
    assert "sync_messages_pending" in plans[0] and "sync_messages_target_keys" in plans[1]
    db.close()
    conn.close()


def test_foreign_database_is_refused(pg_url):
    conn = psycopg.connect(pg_url, autocommit=True)
    conn.execute("CREATE TABLE sync_folders (x int)")
    with pytest.raises(StateCorrupt, match="not a mailmigrate state"):
        PgStateDB.open(pg_url)
    conn.close()


def test_password_not_in_messages():
    with pytest.raises(StateError) as e:
        PgStateDB.open("postgresql://postgres:hunter2@127.0.0.1:1/nope")
    assert "hunter2" not in str(e.value) and "***" in str(e.value)


def _maildir_run(tmp_path, pg_url, *extra):
    from servers.fleet import MM

    return MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst", "--accounts",
                 str(tmp_path / "accounts.csv"), "--state", pg_url, "--json", *extra]


def test_local_run_leaves_an_account_a_worker_holds(pg_url, tmp_path):
    """A local run on a PostgreSQL state takes the same per-account lock as a fleet worker: while another
    session holds it the account is not touched (refused, or waited for), and the other accounts go on."""
    import json

    from servers.fleet import make_accounts, read_maildir

    make_accounts(tmp_path, 2, messages=5)
    held = "user000@example.org"
    worker = PgStateDB.open(pg_url)  # stands in for a fleet worker in the middle of this account
    assert worker.lock_account(f"maildir:{tmp_path}/{held}/src -> maildir:{tmp_path}/{held}/dst")
    p = subprocess.run(_maildir_run(tmp_path, pg_url), capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr[-2000:]
    by_user = {a["account"].split("/")[-2]: a for a in json.loads(p.stdout)["accounts"]}
    assert "another process" in by_user[held]["error"] and by_user[held]["copied"] == 0
    assert by_user["user001@example.org"]["error"] is None
    assert not read_maildir(tmp_path / held / "dst")
    other = tmp_path / "user001@example.org"
    assert read_maildir(other / "dst") == read_maildir(other / "src")
    # With --lock-wait the run waits for the holder, then copies the account.
    run = subprocess.Popen(_maildir_run(tmp_path, pg_url, "--lock-wait", "120"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    for line in run.stderr:
        if "waiting up to 120s" in line:
            break
    assert held in line
    assert not read_maildir(tmp_path / held / "dst")
    worker.unlock_account(f"maildir:{tmp_path}/{held}/src -> maildir:{tmp_path}/{held}/dst")
    out, err = run.communicate(timeout=120)
    assert run.returncode == 0, err[-2000:]
    assert read_maildir(tmp_path / held / "dst") == read_maildir(tmp_path / held / "src")
    worker.close()


def test_two_local_runs_never_copy_one_account_at_once(pg_url, tmp_path):
    """Two local runs on one PostgreSQL state and one account: the second waits for the first's account lock,
    so every message arrives once (without the lock both would append the messages neither had finished)."""
    import json

    from servers.fleet import make_accounts, read_maildir, wait_for

    make_accounts(tmp_path, 1, messages=60)
    PgStateDB.open(pg_url).close()  # the schema, so the probe below can look at it
    conn = psycopg.connect(pg_url, autocommit=True)
    # The first run is slowed by a rate limit so that the second starts while it holds the account.
    first = subprocess.Popen(_maildir_run(tmp_path, pg_url, "--max-rate", "40"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    wait_for(lambda: conn.execute("SELECT count(*) FROM sync_messages").fetchone()[0] > 0, timeout=60)
    second = subprocess.run(_maildir_run(tmp_path, pg_url, "--lock-wait", "120"), capture_output=True, text=True,
                            timeout=180)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 0 and second.returncode == 0, (err[-2000:], second.stderr[-2000:])
    copied = json.loads(out)["copied"] + json.loads(second.stdout)["copied"]
    src, dst = (read_maildir(tmp_path / "user000@example.org" / d) for d in ("src", "dst"))
    assert dst == src and copied == sum(len(v) for v in src.values()) == 3 * (60 + 4)
    conn.close()


def test_open_waits_for_the_schema_another_process_is_creating(pg_url):
    """Workers started together on a fresh database: one creates the schema while another looks.  The looker
    may see the tables before the version table (two statements, two snapshots); it must wait for the
    creator (the upgrade lock) and look again, not call the database foreign and exit."""
    import threading
    import time

    creator = psycopg.connect(pg_url, autocommit=True)
    creator.execute("SELECT pg_advisory_lock(%s)", (state_pg._UPGRADE_LOCK,))
    for _, sql in state_pg.MIGRATIONS:
        creator.execute(sql)  # the tables are there, the version table not yet

    def finish():
        time.sleep(0.5)
        creator.execute("CREATE TABLE mm_state_version (version INTEGER PRIMARY KEY, "
                        "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for v, _ in state_pg.MIGRATIONS:
            creator.execute("INSERT INTO mm_state_version(version) VALUES (%s)", (v,))
        creator.execute("SELECT pg_advisory_unlock(%s)", (state_pg._UPGRADE_LOCK,))

    t = threading.Thread(target=finish)
    t.start()
    try:
        db = PgStateDB.open(pg_url)
        db.close()
    finally:
        t.join()
        creator.close()
