"""A dry run says what the run after it does: per folder, the messages it copies, the flags it updates and
the copies it deletes.

Why a property: the dry run once made its own decisions and counted differently from the run (a delete for
every row with a target key where the run checks the copy first, every flag difference where the run keeps
only what survives the target's PERMANENTFLAGS, a full listing where the run reads the change log).  Both
now make one plan (sync/plan.py) from one reading of the folder; this test holds them to it over random
histories: the hostile corpus (folder names and messages of tests/test_sync_imap.py and
tests/test_reliability_input.py), new mail, flag changes on both sides, expunges, a folder renumbered (on
either side) or renamed, copies deleted on the target behind the state's back, runs killed mid-way, and
``--delete`` with and without the emptied-source guard.  The random part runs over the in-memory stores
(stores/memory.py); one fixed history runs against real Dovecot servers through the command line.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mailmigrate.model import PermanentFlags
from mailmigrate.stores.memory import MemoryMailbox, MemoryStore
from mailmigrate.sync.engine import SyncOptions, sync_account
from mailmigrate.sync.selection import Selection
from mailmigrate.sync.state import StateDB

ACCOUNT = "ann"

#: tests/test_sync_imap.py's HOSTILE names and tests/test_reliability_input.py's FOLDERS, as folder paths
NAMES = [("INBOX",), ("Café ☕ Übersicht",), ("a&b",), ("c+d",), ("with space",), ('quo"te',), ("dot.name",),
         ("Sent Items",), ("L1", "L2", "L3"), ("amp&er",), ("日本語のフォルダ",), ("tab\there",), ("CaseFold",)]

#: tests/test_reliability_input.py's MALFORMED messages (the 150 KB line shortened: size is not the point)
HOSTILE_BODIES = [
    b"Subject: bare\n\nonly LF line ends\n",
    b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    b"Subject: \xe4\xf6\xfc \xff\r\nFrom: \xc3\xa9@x\r\n\r\nbody\r\n",
    b"Subject: long\r\n\r\n" + b"y" * 3000 + b"\r\n",
    b"Content-Type: multipart/mixed; boundary=\"never\"\r\n\r\n--other\r\nno end\r\n",
    b"just a body, no header block at all\r\n",
    b"",
    b"Subject: cr\rno LF at all\r",
    b"Subject: twin\r\n\r\nthe same bytes\r\n",
]
BODIES = st.one_of(st.sampled_from(HOSTILE_BODIES), st.binary(max_size=64))
FLAGS = st.frozensets(st.sampled_from(["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Label1", "Junk"]),
                      max_size=3)

#: what is compared: what the run does to the target
COUNTS = ("copied", "bytes_copied", "flags_updated", "deleted", "deletes_withheld", "skipped_too_large",
          "folders_created")


class Crash(BaseException):
    """A process killed mid-run (not an error the engine may catch)."""


class Target(MemoryStore):
    """A memory target that keeps no keywords (as a server whose PERMANENTFLAGS has no ``\\*``) and takes
    messages up to a size, when told: flag changes that cannot survive and messages too large to send must
    count the same in a dry run."""

    def __init__(self, mailbox, *, keywords: bool, max_size: int | None, **kw):
        super().__init__(mailbox, **kw)
        self.keywords = keywords
        if max_size is not None:
            self.max_message_size = max_size

    def clone(self):
        return Target(self.mailbox, keywords=self.keywords, max_size=getattr(self, "max_message_size", None),
                      batch=self.batch, name=self.name, uidplus=self.uidplus)

    def permanent_flags(self, path):
        return PermanentFlags(any_keyword=self.keywords)


OPS = st.one_of(
    st.tuples(st.just("mail"), st.sampled_from(NAMES), BODIES, FLAGS),
    st.tuples(st.just("flags"), st.integers(0, 999), FLAGS),
    st.tuples(st.just("expunge"), st.integers(0, 999)),
    st.tuples(st.just("target_flags"), st.integers(0, 999), FLAGS),
    st.tuples(st.just("target_expunge"), st.integers(0, 999)),
    st.tuples(st.just("renumber"), st.sampled_from(NAMES)),
    st.tuples(st.just("target_renumber"), st.sampled_from(NAMES)),
    st.tuples(st.just("rename"), st.sampled_from(NAMES[1:]), st.sampled_from(NAMES[1:])),
    st.tuples(st.just("killed"), st.integers(1, 6), st.booleans(), st.booleans()),
    st.tuples(st.just("sync"), st.booleans()),
)


def _pick(mb: MemoryMailbox, i: int):
    every = [(p, k) for p in mb.paths() for k, _, _ in mb.contents(p)]
    return every[i % len(every)] if every else None


class History:
    def __init__(self, state: StateDB, keywords: bool, max_size: int | None, uidplus: bool):
        self.src, self.tgt = MemoryMailbox(), MemoryMailbox()
        self.state = state
        self.target = dict(keywords=keywords, max_size=max_size, uidplus=uidplus, batch=(3, 1 << 20))

    def run(self, *, folder=None, **kw):
        sel = Selection(folders=("/".join(folder),)) if folder is not None else Selection()
        opts = SyncOptions(connections=1, late_commit_grace=0.0, backoff_base=0.0, backoff_max=0.0,
                           selection=sel, **kw)
        return sync_account(MemoryStore(self.src, batch=(3, 1 << 20)), Target(self.tgt, **self.target),
                            account_name=ACCOUNT, state=self.state, options=opts)

    def apply(self, op) -> None:
        kind, *args = op
        if kind == "mail":
            self.src.deliver(args[0], args[1], args[2])
        elif kind == "flags" and (p := _pick(self.src, args[0])):
            self.src.change_flags(*p, args[1])
        elif kind == "expunge" and (p := _pick(self.src, args[0])):
            self.src.expunge(*p)
        elif kind == "target_flags" and (p := _pick(self.tgt, args[0])):
            self.tgt.change_flags(*p, args[1])
        elif kind == "target_expunge" and (p := _pick(self.tgt, args[0])):
            self.tgt.expunge(*p)  # a copy gone behind the state's back: the row still claims it
        elif kind == "renumber" and args[0] in self.src.paths():
            self.src.renumber(args[0])
        elif kind == "target_renumber" and args[0] in self.tgt.paths():
            self.tgt.renumber(args[0])  # a target folder restored or re-indexed: its copies under new keys
        elif kind == "rename":
            old, new = args
            paths = self.src.paths()
            if old in paths and new not in paths and new[:len(old)] != old:
                self.src.rename_folder(old, new)
        elif kind == "killed":
            n, applied, delete = args
            self.tgt.faults.fail_write(n, Crash, applied=applied)
            try:
                self.run(delete=delete, force_delete=True)
            except Crash:
                pass
            finally:
                self.tgt.faults.clear()
        elif kind == "sync":
            assert self.run(delete=args[0], force_delete=True).error is None


def _counts(result) -> dict:
    assert result.error is None, result.error
    return {k: getattr(result.counters, k) for k in COUNTS}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.lists(st.tuples(st.sampled_from(NAMES), BODIES, FLAGS), min_size=1, max_size=12),
       ops=st.lists(OPS, max_size=10), delete=st.booleans(), force=st.booleans(), keywords=st.booleans(),
       max_size=st.sampled_from([None, 40, 2000]), uidplus=st.booleans())
def test_the_dry_run_counts_what_the_run_then_does_per_folder(first, ops, delete, force, keywords, max_size,
                                                               uidplus):
    with tempfile.TemporaryDirectory(prefix="mm-dry-") as d:
        state = StateDB.open(Path(d) / "state.db")
        try:
            h = History(state, keywords, max_size, uidplus)
            for path, body, flags in first:
                h.src.deliver(path, body, flags)
            assert h.run().error is None
            for op in ops:
                h.apply(op)
            kw = dict(delete=delete, force_delete=force)
            # Folder by folder, each dry run right before its run; the folders the state knows come too, so
            # that a folder gone from the source (renamed away) is planned and deleted as well.
            folders = sorted(set(h.src.paths()) | {f.source_path for f in state.folders(ACCOUNT)})
            for folder in folders:
                before = (repr(sorted((p, h.tgt.contents(p)) for p in h.tgt.paths())),
                          {f.source_path: state.messages(f.id) for f in state.folders(ACCOUNT)})
                dry = h.run(folder=folder, dry_run=True, **kw)
                after = (repr(sorted((p, h.tgt.contents(p)) for p in h.tgt.paths())),
                         {f.source_path: state.messages(f.id) for f in state.folders(ACCOUNT)})
                assert after == before, "the dry run changed the target or the state"
                real = h.run(folder=folder, **kw)
                assert _counts(dry) == _counts(real), folder
                for name, n in _counts(real).items():
                    if n:
                        event(f"a folder's run with {name}")  # --hypothesis-show-statistics: what was covered
            # and the whole account at once, after more changes
            for op in ops[::-1]:
                if op[0] in ("flags", "expunge", "mail", "target_expunge"):
                    h.apply(op)
            assert _counts(h.run(dry_run=True, **kw)) == _counts(h.run(**kw))
        finally:
            state.close()


def test_the_dry_run_counts_what_the_run_then_does_on_dovecot(imap_accounts, tmp_path):
    """One fixed history of the property above against two real Dovecot servers, through the command line:
    hostile names and messages, then flag changes (a keyword among them), expunges, new mail and a copy
    deleted on the target behind the state's back, and a dry run with --delete before the run."""
    from test_sync_imap import env_for, mm, populate, sync

    from servers import imapcheck

    src, dst = imap_accounts
    names = ["Café ☕ Übersicht", "a&b", "with space", 'quo"te', "L1/L2/L3"]
    layout = {"INBOX": [(b, "\\Seen") for b in HOSTILE_BODIES[:6] if b]}
    for i, name in enumerate(names):
        layout[name] = [(f"Subject: {i}\r\n\r\nmessage {i}\r\n".encode(), "\\Flagged"),
                        (HOSTILE_BODIES[8], ""), (HOSTILE_BODIES[8], "$Label1")]
    populate(src, layout)
    state = tmp_path / "s.db"
    first, _ = sync(src, dst, state)
    assert first["failed"] == 0

    c = imapcheck.connect(src.port, src.user, src.password)
    c.select("INBOX")
    c.uid("STORE", "1", "-FLAGS", "(\\Seen)")
    c.uid("STORE", "2", "+FLAGS", "(\\Answered $Label1)")
    c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    imapcheck.append(c, "INBOX", b"Subject: new\r\n\r\nnew mail\r\n", "\\Draft")
    c.select(imapcheck._q("a&-b"))
    c.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    c.expunge()
    c.logout()
    d = imapcheck.connect(dst.port, dst.user, dst.password)
    d.select(imapcheck._q("with space"))
    d.uid("STORE", "1", "+FLAGS", "(\\Deleted)")  # the target's copy gone, the state's row still claims it
    d.expunge()
    d.logout()

    p = mm("sync", src.url(), dst.url(), "--state", state, "--json", "--dry-run", "--delete", "--force-delete",
           env=env_for(src, dst))
    dry = json.loads(p.stdout)
    real, _ = sync(src, dst, state, "--delete", "--force-delete")
    for k in ("copied", "flags_updated", "deleted"):
        assert dry[k] == real[k], (k, dry, real)
    # the new mail; the copies of INBOX's and a&b's expunged messages; INBOX's two flag changes
    assert (real["copied"], real["deleted"], real["flags_updated"]) == (1, 2, 2)
