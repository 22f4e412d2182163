"""What every back end of the sync state must do (SQLite for one machine, PostgreSQL for a fleet), run over
both: rows kept exactly, intents and their completion, the recovery marks, a transaction that fails leaving
nothing, one holder per account, and writers at the same time losing nothing.

Why a contract and not each back end's own tests: the engine is written against one state; a back end that
rounds a size, loses a keyword's case or lets two runs hold one account fails here, by name, instead of
showing up as a duplicated message in a fleet run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mailmigrate.errors import StateLocked
from mailmigrate.sync.state import ADOPTED, DONE, PENDING, MessageRow, RunLock
from mailmigrate.sync.state_pg import PgStateDB, open_state


def row(key, fp="f", *, size=10, flags=("\\Seen",), floor=None, norm=None):
    return MessageRow(key, fp, norm, size, frozenset(flags), None, PENDING, floor)


@pytest.fixture
def db(state_where):
    d = open_state(state_where)
    yield d
    d.close()


# --- rows --------------------------------------------------------------------------------------------------

ODD_KEYS = ["1", "1700000000.M1P2.host,S=12:2,FS", "~rekey~q", "50%_done", "ключ", "a'b\"c", "x" * 300]


def test_rows_come_back_exactly_as_written(db):
    f = db.ensure_folder("acc", ("INBOX", "Projekte 2024", "a/b"), ("INBOX", "Projekte 2024", "a∕b"))
    big = (1 << 31) + 7  # a message over 2 GiB: no 32-bit column
    rows = [row(k, f"fp{i}", size=big if i == 0 else i, flags={"\\Seen", "$Label1", "Ärger", "$work"},
                floor=(1 << 32) - 1 if i == 1 else None, norm=f"n{i}" if i % 2 else None)
            for i, k in enumerate(ODD_KEYS)]
    db.record_intents(f.id, rows)
    got = db.messages(f.id)
    assert set(got) == set(ODD_KEYS)
    for r in rows:
        g = got[r.source_key]
        assert (g.fingerprint, g.norm_fingerprint, g.size, g.source_flags, g.target_key, g.state, g.uid_floor) == \
            (r.fingerprint, r.norm_fingerprint, r.size, r.source_flags, None, PENDING, r.uid_floor)
    assert db.folder("acc", ("INBOX", "Projekte 2024", "a/b")).target_path == ("INBOX", "Projekte 2024", "a∕b")
    assert db.folder("acc", ("INBOX", "projekte 2024", "a/b")) is None  # folder names keep their case


def test_accounts_and_folders_are_apart(db):
    a = db.ensure_folder("a@example.org", ("INBOX",), ("INBOX",))
    b = db.ensure_folder("b@example.org", ("INBOX",), ("INBOX",))
    assert a.id != b.id
    db.record_intents(a.id, [row("1", "A")])
    db.record_intents(b.id, [row("1", "B")])
    assert db.messages(a.id)["1"].fingerprint == "A" and db.messages(b.id)["1"].fingerprint == "B"
    db.forget_account("a@example.org")
    assert db.folders("a@example.org") == [] and db.messages(b.id)["1"].fingerprint == "B"
    assert list(db.iter_accounts()) == ["b@example.org"]


# --- intents -----------------------------------------------------------------------------------------------

def test_an_intent_is_a_fresh_start_and_completion_is_per_key(db):
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", "A", floor=5), row("2", "B", floor=5)])
    db.complete(f.id, [("1", "101")])
    db.record_intents(f.id, [row("3", "C", floor=6)], done=[("2", "102")])  # step 2 rides with the next step 1
    got = db.messages(f.id)
    assert [(k, got[k].state, got[k].target_key) for k in "123"] == [("1", DONE, "101"), ("2", DONE, "102"),
                                                                     ("3", PENDING, None)]
    db.record_intents(f.id, [row("1", "A2", floor=9)])  # copied again: the old completion is gone
    again = db.messages(f.id)["1"]
    assert (again.state, again.target_key, again.fingerprint, again.uid_floor) == (PENDING, None, "A2", 9)
    assert db.all_target_keys(f.id) == {"102"} and db.count(f.id) == 3 and db.has_pending(f.id)
    db.drop(f.id, ["1", "3"])
    assert not db.has_pending(f.id) and set(db.messages(f.id)) == {"2"}


def test_batches_of_any_size_and_keys_given_twice(db):
    """Intents and completions of every batch size a store asks for (one to hundreds) are all kept; a key given
    twice in one call counts as its last, as if the rows had been written one after the other."""
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    written, owed = 0, []
    for n in (1, 2, 3, 50, 64, 100, 127, 300):
        rows = [row(str(written + i), f"fp{written + i}", size=written + i, floor=written) for i in range(n)]
        db.record_intents(f.id, rows, done=owed)
        owed = [(r.source_key, f"t{r.source_key}") for r in rows]
        written += n
    db.complete(f.id, owed)
    got = db.messages(f.id)
    assert len(got) == written == db.count(f.id) and not db.has_pending(f.id)
    assert all((g.state, g.target_key, g.fingerprint, g.size) == (DONE, f"t{k}", f"fp{k}", int(k))
               for k, g in got.items())
    assert db.all_target_keys(f.id) == {f"t{k}" for k in got}
    db.record_intents(f.id, [row("a", "A1", floor=1), row("b", "B"), row("a", "A2", floor=2)],
                      done=[("0", "x"), ("1", "y"), ("0", "z")])
    got = db.messages(f.id)
    assert (got["a"].fingerprint, got["a"].uid_floor, got["a"].state) == ("A2", 2, PENDING)
    assert (got["0"].target_key, got["1"].target_key) == ("z", "y")
    db.complete(f.id, [("a", "ta"), ("b", None), ("a", "ta2")])
    got = db.messages(f.id)
    assert (got["a"].target_key, got["a"].state, got["b"].target_key, got["b"].state) == ("ta2", DONE, None, DONE)
    assert not db.has_pending(f.id)


def test_adoption_never_replaces_a_row(db):
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", "A")])
    adopted = [MessageRow("1", "X", None, 1, frozenset(), "t1", DONE, None),
               MessageRow("2", "B", None, 2, frozenset({"\\Flagged"}), "t2", DONE, None)]
    db.adopt(f.id, adopted)
    got = db.messages(f.id)
    assert got["1"].fingerprint == "A" and got["1"].state == PENDING
    assert (got["2"].state, got["2"].target_key, got["2"].uid_floor) == (DONE, "t2", ADOPTED)


def test_a_failed_transaction_leaves_nothing(db):
    """A batch of intents is all or nothing: one bad row (a key twice with different sizes is fine; a NULL
    fingerprint is not) and none of the batch is there."""
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("0", "Z")])
    with pytest.raises(Exception):
        db.record_intents(f.id, [row("1", "A"), MessageRow("2", None, None, 1, frozenset(), None, PENDING, None)],
                          done=[("0", "t0")])
    got = db.messages(f.id)
    assert set(got) == {"0"} and got["0"].state == PENDING  # the completion in the same transaction too
    db.record_intents(f.id, [row("1", "A")])  # and the connection is usable after it
    assert set(db.messages(f.id)) == {"0", "1"}


# --- recovery marks ----------------------------------------------------------------------------------------

def test_folder_marks_and_their_reset(db):
    f = db.ensure_folder("acc", ("Sent",), ("Sent",))
    moved = db.ensure_folder("acc", ("Sent",), ("Elsewhere",))  # one record per source folder, mapped anew
    assert (moved.id, moved.target_path) == (f.id, ("Elsewhere",))
    db.ensure_folder("acc", ("Sent",), ("Sent",))
    db.set_folder_marks(f.id, source_validity=(1 << 32) - 1, source_uidnext=10, source_modseq=(1 << 63) - 1,
                        source_count=3, target_validity=8)
    g = db.folder("acc", ("Sent",))
    assert (g.target_path, g.source_validity, g.source_uidnext, g.source_modseq, g.source_count,
            g.target_validity) == (("Sent",), (1 << 32) - 1, 10, (1 << 63) - 1, 3, 8)
    db.forget_change_marks(f.id)
    g = db.folder("acc", ("Sent",))
    assert g.source_uidnext is None and g.source_validity == (1 << 32) - 1
    db.mark_created(f.id)
    assert db.created_folders("acc") == {f.id}


def test_many_folders_recorded_and_marked_created_at_once(db):
    """What one transaction writes for an account's folders before its first copy reads back as the one-at-a-time
    calls would have written it: the records in the order asked, a folder already recorded mapped anew."""
    old = db.ensure_folder("acc", ("Sent",), ("Sent",))
    got = db.ensure_folders("acc", [(("INBOX",), ("INBOX",)), (("Sent",), ("Sent", "Old")), (("a", "b"), ("a", "b"))])
    assert [(f.source_path, f.target_path) for f in got] == [(("INBOX",), ("INBOX",)), (("Sent",), ("Sent", "Old")),
                                                             (("a", "b"), ("a", "b"))]
    assert got[1].id == old.id and db.folder("acc", ("a", "b")).id == got[2].id
    db.mark_created(got[0].id, got[2].id)
    db.mark_created()
    assert db.created_folders("acc") == {got[0].id, got[2].id}
    assert db.ensure_folders("acc", []) == []


def test_lost_intents_are_watched_until_forgotten(db):
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", "A", floor=3), row("2", "B", floor=3)])
    db.declare_lost(f.id, [db.messages(f.id)["1"]], uid_floor=7, at=1234.25)
    assert set(db.messages(f.id)) == {"2"}
    (w,) = db.lost_intents(f.id)
    assert (w.source_key, w.fingerprint, w.size, w.uid_floor, w.lost_at) == ("1", "A", 10, 7, 1234.25)
    assert db.has_lost_intents(f.id)
    db.forget_lost(f.id, [w.id])
    assert not db.has_lost_intents(f.id) and db.lost_intents(f.id) == []


def test_rekeys_move_rows_and_watches_together(db):
    f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
    db.record_intents(f.id, [row("1", "A"), row("2", "B"), row("3", "C")])
    db.declare_lost(f.id, [db.messages(f.id)["3"]], uid_floor=1, at=1.0)
    db.complete(f.id, [("1", "t1"), ("2", "t2")])
    db.rekey_source(f.id, {"1": "2", "2": "1", "3": "30"})  # a swap must not collide on the way
    got = db.messages(f.id)
    assert (got["1"].fingerprint, got["2"].fingerprint) == ("B", "A")
    assert [w.source_key for w in db.lost_intents(f.id)] == ["30"]
    db.rekey_target(f.id, {"1": "u2", "2": None})
    assert set(db.messages(f.id)) == {"1"} and db.messages(f.id)["1"].target_key == "u2"
    db.set_flags(f.id, [("1", frozenset({"\\Answered", "$Later"}))])
    assert db.messages(f.id)["1"].source_flags == {"\\Answered", "$Later"}


def test_forgetting_a_folder_takes_its_rows_and_watches(db):
    f = db.ensure_folder("acc", ("Old",), ("Old",))
    g = db.ensure_folder("acc", ("Kept",), ("Kept",))
    db.record_intents(f.id, [row("1"), row("2")])
    db.record_intents(g.id, [row("1")])
    db.declare_lost(f.id, [db.messages(f.id)["2"]], uid_floor=1, at=1.0)
    db.forget_folder(f.id)
    assert db.folder("acc", ("Old",)) is None and db.messages(f.id) == {} and db.lost_intents(f.id) == []
    assert set(db.messages(g.id)) == {"1"}


def test_rows_survive_closing_and_opening_again(state_where):
    d = open_state(state_where)
    f = d.ensure_folder("acc", ("INBOX",), ("INBOX",))
    d.record_intents(f.id, [row("1", "A", floor=4)])
    d.complete(f.id, [("1", "t1")])
    d.close()
    d = open_state(state_where)
    try:
        got = d.messages(d.folder("acc", ("INBOX",)).id)["1"]
        assert (got.state, got.target_key, got.uid_floor) == (DONE, "t1", 4)
    finally:
        d.close()


# --- one holder per account, and writers at the same time -------------------------------------------------

class Holder:
    """An account held for a run by what the back end offers: SQLite's run lock on the state file (one run per
    file, so per account), PostgreSQL's advisory lock per account (many workers, one per account)."""

    def __init__(self, where: str):
        self.where = where
        self.db = open_state(where)
        self._lock: RunLock | None = None

    def take(self, account: str, wait: float = 0.0) -> bool:
        if isinstance(self.db, PgStateDB):
            return self.db.lock_account(account, wait=wait)
        lock = RunLock(Path(self.where))
        try:
            lock.acquire()
        except StateLocked:
            return False
        self._lock = lock
        return True

    def give_back(self, account: str) -> None:
        if isinstance(self.db, PgStateDB):
            self.db.unlock_account(account)
        elif self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self):
        self.give_back("acc")
        self.db.close()


def test_one_holder_per_account_and_the_next_after_it(state_where):
    first, second = Holder(state_where), Holder(state_where)
    try:
        assert first.take("acc")
        assert not second.take("acc")
        first.give_back("acc")
        assert second.take("acc")
        assert not first.take("acc")
    finally:
        first.close()
        second.close()


def test_a_holder_that_dies_frees_the_account(state_where):
    """A killed run's connection or file descriptor goes with it; nobody has to clean up a stale lock."""
    import subprocess
    import sys

    code = ("import os, sys\n"
            "sys.path[:0] = [p for p in os.environ.get('PYTHONPATH', '').split(':') if p]\n"
            "from contract.test_state_contract import Holder\n"
            f"h = Holder({state_where!r})\n"
            "assert h.take('acc')\n"
            "print('held', flush=True)\n"
            "sys.stdin.readline()\n"
            "os._exit(9)\n")
    tests_dir = str(Path(__file__).resolve().parents[1])
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         cwd=tests_dir)
    try:
        assert p.stdout.readline().strip() == "held"
        other = Holder(state_where)
        try:
            assert not other.take("acc")
            p.stdin.write("\n")
            p.stdin.flush()
            p.wait(timeout=30)
            assert other.take("acc", wait=10)  # the server notices the closed connection at once
        finally:
            other.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_writers_at_the_same_time_lose_nothing(state_where):
    """The engine's folder workers share one connection; a fleet's workers (or a dashboard next to a run) each
    have their own.  Both at once, writing intents and completions: every row ends where it was sent."""
    shared = open_state(state_where)
    own = [open_state(state_where) for _ in range(2)]
    folders = {}
    for i, d in enumerate([shared] * 3 + own):
        folders[i] = (d, d.ensure_folder(f"acc{i % 4}", ("F", str(i)), ("F", str(i))).id)
    errors = []
    start = threading.Barrier(len(folders))

    def write(i):
        d, fid = folders[i]
        try:
            start.wait(timeout=30)
            for n in range(40):
                d.record_intents(fid, [row(f"{n}", f"{i}:{n}", floor=n)], done=[(f"{n - 1}", f"t{n - 1}")] if n else ())
            d.complete(fid, [("39", "t39")])
        except BaseException as e:  # handed to the test below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in folders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        check = open_state(state_where)
        try:
            for i, (_, fid) in folders.items():
                got = check.messages(fid)
                assert sorted(got, key=int) == [str(n) for n in range(40)]
                assert all(r.state == DONE and r.target_key == f"t{k}" and r.fingerprint == f"{i}:{k}"
                           for k, r in got.items())
        finally:
            check.close()
    finally:
        shared.close()
        for d in own:
            d.close()
