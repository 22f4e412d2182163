"""The sync engine driven through random histories: mail arriving, flags changing on both sides, expunges,
folders made and renamed, a user's own mail on the target, runs with and without --delete, crashes and lost
replies mid-run, a lost state database.  The model is vdirsyncer's sync state machine: random changes, a sync,
then what must hold whatever came before.

The engine runs as the command line runs it (``sync_account`` with a real SQLite state file) over two
in-memory stores (stores/memory.py: an IMAP server's promises, held to the same contract suite as the real
servers), so a history of twenty steps costs milliseconds and a failure shrinks to a short story.

What a user relies on, checked after every completed sync:
  * every source message has its own copy in the target folder of the same name, byte for byte, and no two
    source messages share a copy (twins need twin copies; the same bytes in two folders are two messages);
  * no copy is made twice: a target message no state row claims was there before the run (the user's, or
    a copy a lost state left behind); and after a lost state the copies already there are adopted, not
    copied again;
  * nothing is deleted on the target without --delete, and with it only copies mailmigrate made, never
    the user's own mail;
  * flags follow the documented rule (docs/ARCHITECTURE.md, "Work out what to do"): a new copy carries the
    source's flags; afterwards the source's changes since the last run are applied as additions and
    removals, so a flag the user changed on the target stays changed unless the source changed the same
    flag; an adopted copy keeps the flags it had;
  * the report's counts say what happened to the target;
  * nothing on the source changes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from mailmigrate.errors import ConnectionLost
from mailmigrate.stores.memory import MemoryMailbox, MemoryStore
from mailmigrate.sync.engine import SyncOptions, sync_account
from mailmigrate.sync.folders import display
from mailmigrate.sync.state import DONE, StateDB

ACCOUNT = "ann@source -> ann@target"

#: Folder names without a special use, so that each lands under its own name (a "Sent" would be mapped onto
#: the target's sent folder, which is folders.py's business and tested there).
NAMES = [("INBOX",), ("Work",), ("Work", "Deep"), ("Lists",), ("Old",)]

#: A few fixed bodies, so that identical messages (twins in one folder, the same bytes in two folders) are
#: common; random bytes besides.  Bare LF, NUL and the empty message are bytes some stores rewrite.
POOL = [
    b"Subject: twin\r\n\r\nthe same bytes\r\n",
    b"Subject: bare\n\nbare LF body\n",
    b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    b"",
    b"From: a@example.org\r\nSubject: other\r\n\r\nanother body\r\n",
]
BODIES = st.one_of(st.sampled_from(POOL), st.binary(max_size=48))
FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "$Later"]),
                      max_size=3)


class Crash(BaseException):
    """A process killed mid-run: not an error the engine may catch and report, like SIGKILL."""


def _snapshot(mb: MemoryMailbox) -> dict:
    return {p: {k: (d, fl) for k, d, fl in mb.contents(p)} for p in mb.paths()}


def _rows(state: StateDB) -> dict:
    """source folder -> (target folder, {source key: row}) as the state holds them now."""
    return {f.source_path: (f.target_path, state.messages(f.id)) for f in state.folders(ACCOUNT)}


class EngineMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mm-machine-"))
        self.src = MemoryMailbox()
        self.tgt = MemoryMailbox()
        self.state_path = self.dir / "state.db"
        self.state = StateDB.open(self.state_path)
        self.user_mail: dict[bytes, tuple] = {}  # the user's own target mail: bytes -> folder
        self.users = 0

    def teardown(self):
        self.state.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @initialize(body=BODIES, flags=FLAGS, uidplus=st.booleans())
    def first_mail(self, body, flags, uidplus):
        """``uidplus``: whether the target says which keys its appends made (without, the engine finds its
        copies by content)."""
        self.uidplus = uidplus
        self.src.deliver(("INBOX",), body, flags)

    # --- the people around a migration ------------------------------------------------------------
    @rule(folder=st.sampled_from(NAMES), body=BODIES, flags=FLAGS)
    def mail_arrives(self, folder, body, flags):
        self.src.deliver(folder, body, flags)  # makes the folder when it is new

    @rule(a=st.sampled_from(NAMES), b=st.sampled_from(NAMES), body=BODIES)
    def same_bytes_in_two_folders(self, a, b, body):
        self.src.deliver(a, body)
        self.src.deliver(b, body)

    @rule(folder=st.sampled_from(NAMES), body=BODIES, n=st.integers(2, 3))
    def twins(self, folder, body, n):
        for _ in range(n):
            self.src.deliver(folder, body)

    def _pick(self, mb: MemoryMailbox, i: int):
        every = [(p, k) for p in mb.paths() for k, _, _ in mb.contents(p)]
        return every[i % len(every)] if every else None

    @rule(i=st.integers(0, 1000), flags=FLAGS)
    def source_flags_change(self, i, flags):
        if (picked := self._pick(self.src, i)) is not None:
            self.src.change_flags(*picked, flags)

    @rule(i=st.integers(0, 1000))
    def source_expunge(self, i):
        if (picked := self._pick(self.src, i)) is not None:
            self.src.expunge(*picked)

    @rule(old=st.sampled_from(NAMES[1:]), new=st.sampled_from(NAMES[1:]))
    def source_folder_renamed(self, old, new):
        paths = self.src.paths()
        if old in paths and new not in paths and new[:len(old)] != old:
            self.src.rename_folder(old, new)

    @rule(folder=st.sampled_from(NAMES))
    def source_folder_reindexed(self, folder):
        """A new UIDVALIDITY on the source (an index rebuilt, a restore): the same mail under new keys."""
        if folder in self.src.paths():
            self.src.renumber(folder)

    @rule(i=st.integers(0, 1000), flags=FLAGS)
    def user_changes_flags_on_target(self, i, flags):
        if (picked := self._pick(self.tgt, i)) is not None:
            self.tgt.change_flags(*picked, flags)

    @rule(folder=st.sampled_from(NAMES + [("Private",)]))
    def user_adds_mail_on_target(self, folder):
        self.users += 1
        body = b"Subject: my own %d\r\n\r\nwritten on the new server\r\n" % self.users
        self.tgt.deliver(folder, body)
        self.user_mail[body] = folder

    @rule()
    def state_lost(self):
        """The state file deleted (or a trial run's state thrown away): the next run starts from nothing."""
        self.state.close()
        for p in self.dir.glob("state.db*"):
            p.unlink()
        self.state = StateDB.open(self.state_path)

    # --- runs -------------------------------------------------------------------------------------
    def _sync(self, delete: bool, *, force: bool = True, connections: int = 1):
        """One run as the command line makes it, with retries at once instead of after a backoff.  Faults
        are armed on the target only with one connection, so that "the n-th write" is one write."""
        opts = SyncOptions(delete=delete, force_delete=force, connections=connections, backoff_base=0.0,
                           backoff_max=0.0, late_commit_grace=0.0, max_attempts=4)
        return sync_account(MemoryStore(self.src, batch=(3, 1 << 20)),
                            MemoryStore(self.tgt, batch=(3, 1 << 20), uidplus=self.uidplus),
                            account_name=ACCOUNT, state=self.state, options=opts)

    @rule(delete=st.booleans(), force=st.booleans(), connections=st.sampled_from([1, 3]))
    def sync(self, delete, force, connections):
        """``force``: past the emptied-source guard; without it the guard may withhold deletes, and says so.
        With three connections folders are synced in parallel on clones of both stores."""
        before = self._before()
        result = self._sync(delete, force=force, connections=connections)
        self._check(before, result, delete, exact_counts=True, force=force)

    @rule(i=st.integers(0, 1000), delete=st.booleans())
    def target_refuses_a_message(self, i, delete):
        """The target refuses one content (too big, malformed for it): every source message with those bytes
        that has no copy yet is reported, named, and left for the next run; the rest is copied."""
        if (picked := self._pick(self.src, i)) is None:
            return
        refused = dict((k, d) for k, d, _ in self.src.contents(picked[0]))[picked[1]]
        before = self._before()
        self.tgt.faults.refuse(lambda data: data == refused)
        try:
            result = self._sync(delete)
        finally:
            self.tgt.faults.clear()
        self._check(before, result, delete, refused=refused)

    @rule(delete=st.booleans(), n=st.integers(1, 8), applied=st.booleans(), times=st.integers(1, 2))
    def crash_then_rerun(self, delete, n, applied, times):
        """Killed at the n-th write to the target (before it, or after it with the reply lost), maybe twice,
        then the same command again on the same state."""
        before = self._before()
        for _ in range(times):
            self.tgt.faults.fail_write(n, Crash, applied=applied)
            try:
                self._sync(delete)
            except Crash:
                pass
            self.tgt.faults.clear()
        result = self._sync(delete)
        self._check(before, result, delete)

    @rule(delete=st.booleans(), n=st.integers(1, 8), applied=st.booleans())
    def connection_lost_mid_run(self, delete, n, applied):
        """The target drops the connection at the n-th write: the engine retries on a fresh one by itself."""
        def lost():
            self.tgt.drop_connections()
            return ConnectionLost("connection reset by the test")

        before = self._before()
        self.tgt.faults.fail_write(n, lost, applied=applied)
        result = self._sync(delete)
        self.tgt.faults.clear()
        self._check(before, result, delete)

    @precondition(lambda self: self.state_path.exists())
    @rule()
    def dry_run_changes_nothing(self):
        before = self._before()
        opts = SyncOptions(dry_run=True, connections=1)
        result = sync_account(MemoryStore(self.src), MemoryStore(self.tgt), account_name=ACCOUNT, state=self.state,
                              options=opts)
        assert result.error is None, result.error
        assert _snapshot(self.tgt) == before["target"]
        assert _rows(self.state) == before["rows"]
        assert _snapshot(self.src) == before["source"]

    # --- what must hold ---------------------------------------------------------------------------
    def _before(self) -> dict:
        rows = _rows(self.state)
        return {"source": _snapshot(self.src), "target": _snapshot(self.tgt), "rows": rows,
                "known": set(rows), "src_writes": self.src.faults.writes}

    def _check(self, before: dict, result, delete: bool, exact_counts: bool = False, force: bool = True,
               refused: bytes | None = None) -> None:
        assert result.error is None, result.error
        # Refused messages are reported one by one, naming folder and source key; withheld deletes (no
        # --force-delete) once; nothing else goes wrong.
        reported = {(p.folder, p.message) for p in result.problems if p.kind == "message"}
        withheld = [p for p in result.problems if p.kind == "delete"]
        assert [p for p in result.problems if p.kind not in ("warning", "message", "delete")] == []
        assert not withheld or (delete and not force)
        assert result.counters.failed == len(reported)
        assert not reported or refused is not None

        # Nothing on the source changes.
        assert _snapshot(self.src) == before["source"]
        assert self.src.faults.writes == before["src_writes"]

        source = before["source"]
        target = _snapshot(self.tgt)
        rows = _rows(self.state)
        user = set(self.user_mail)

        # Every source message has its own copy in the target folder of the same name, byte for byte.
        claimed: dict[tuple, tuple] = {}
        for (tp, folder_rows) in rows.values():
            for r in folder_rows.values():
                if r.state == DONE and r.target_key is not None:
                    assert (tp, r.target_key) not in claimed, f"two rows claim one copy {tp} {r.target_key}"
                    claimed[(tp, r.target_key)] = r
        for path, msgs in source.items():
            assert path in rows, f"source folder {path} has no state record"
            tp, folder_rows = rows[path]
            assert tp == path
            for key, (data, flags) in msgs.items():
                r = folder_rows.get(key)
                if data == refused and (r is None or r.state != DONE):
                    assert (display(path), key) in reported, f"refused {path} {key} not reported"
                    reported.discard((display(path), key))
                    continue
                assert r is not None and r.state == DONE and r.target_key is not None, (path, key)
                assert target[tp][r.target_key][0] == data, (path, key)
                assert r.source_flags == flags

        assert reported == set(), f"reported as refused but copied: {reported}"

        # The user's own mail stays, in its folder, once.
        for data, folder in self.user_mail.items():
            assert [k for k, (d, _) in target.get(folder, {}).items() if d == data], f"user's mail gone from {folder}"

        # No copy twice: whatever no row claims was there before (the user's, or left by a lost state).
        for tp, msgs in target.items():
            for key, (data, _) in msgs.items():
                if (tp, key) not in claimed and data not in user:
                    assert key in before["target"].get(tp, {}), f"unclaimed new copy {tp} {key} {data!r}"

        # Deleted only with --delete, and only copies a row claimed before the run.
        pre_claims = {}
        for tp, folder_rows in before["rows"].values():
            for r in folder_rows.values():
                if r.target_key is not None:
                    pre_claims[(tp, r.target_key)] = r
        removed = [(tp, k) for tp, msgs in before["target"].items() for k in msgs if k not in target.get(tp, {})]
        if not delete:
            assert removed == []
        for tp, k in removed:
            assert (tp, k) in pre_claims, f"deleted {tp} {k}, which no row claimed"
            assert before["target"][tp][k][0] not in user

        if delete and not withheld:
            # With --delete (and no deletes withheld by the guard) the state and the target hold no copy of a
            # message that left the source.
            assert set(rows) == set(source)
            for path, (tp, folder_rows) in rows.items():
                assert set(folder_rows) <= set(source[path])

        # After a lost state (or for a folder new to the state) the copies already there are adopted, not
        # copied again: per content, the target holds what it held or what the source holds, whichever is more.
        for path in source:
            if path in before["known"]:
                continue
            pre = Counter(d for d, _ in before["target"].get(path, {}).values() if d not in user)
            post = Counter(d for d, _ in target.get(path, {}).values() if d not in user)
            want = Counter(d for d, _ in source[path].values() if d != refused)
            assert post == pre | want, f"folder {path}: {post} after, {pre} before, source {want}"

        # Flags: new copies carry the source's; older ones get the source's changes since the last run;
        # adopted ones keep theirs.
        for (tp, key), r in claimed.items():
            got = target[tp][key][1]
            src_flags = r.source_flags
            if key not in before["target"].get(tp, {}):
                assert got == src_flags, (tp, key)
                continue
            had = before["target"][tp][key][1]
            old = pre_claims.get((tp, key))
            if old is None:
                assert got == had, f"adopted copy {tp} {key} changed flags"
            else:
                assert got == (had | (src_flags - old.source_flags)) - (old.source_flags - src_flags), (tp, key)

        if exact_counts:
            new = sum(1 for tp, msgs in target.items() for k in msgs if k not in before["target"].get(tp, {}))
            assert result.counters.copied == new
            assert result.counters.deleted == len(removed)


_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TestEngineMachine = EngineMachine.TestCase
TestEngineMachine.settings = settings(max_examples=40, stateful_step_count=20, **_SETTINGS)


class LongEngineMachine(EngineMachine):
    """More and longer histories: `pytest -m slow tests/test_engine_machine.py`."""


TestEngineMachineLong = pytest.mark.slow(LongEngineMachine.TestCase)
TestEngineMachineLong.settings = settings(max_examples=400, stateful_step_count=40, **_SETTINGS)
