"""Reruns of changed folders read only what changed (RFC 7162 CONDSTORE/QRESYNC), against real Dovecot.

The source server is started with what it advertises cut down to each level a user may meet: everything
(QRESYNC), CONDSTORE without QRESYNC (with and without ESEARCH), and neither.  Each time the result must
be exact (the target equals the source, read with imaplib), and what the source had to send must match the
level: a handful of changed messages with CONDSTORE, the whole folder without it.
"""

from __future__ import annotations

import logging

import pytest

from conftest import ImapAccount
from servers import imapcheck
from servers.pgdb import drop_database, make_database
from test_sync_imap import assert_same, msg, populate

from mailmigrate.model import Secret
from mailmigrate.stores.imap import ImapStore
from mailmigrate.stores.imap_changes import AbsentBelow, UidRanges
from mailmigrate.sync.engine import SyncOptions, sync_account
from mailmigrate.sync.state_pg import open_state

# Dovecot 2.3's own list, less what each level leaves out (imap_capability replaces the list).
_ALL = ("IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
        "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
        "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS "
        "BINARY MOVE LITERAL+ SPECIAL-USE").split()
LEVELS = {
    "qresync": None,  # Dovecot as shipped
    "condstore": [c for c in _ALL if c != "QRESYNC"],
    "condstore-no-esearch": [c for c in _ALL if c not in ("QRESYNC", "ESEARCH", "ESORT", "CONTEXT=SEARCH")],
    "plain": [c for c in _ALL if c not in ("QRESYNC", "CONDSTORE")],
}


def state_at(kind: str, tmp_path, request) -> str:
    """Both state back ends: the engine's reruns ask the state the same questions through either."""
    if kind == "sqlite":
        return str(tmp_path / "s.db")
    admin, name, url = make_database("mm_resync")
    request.addfinalizer(lambda: drop_database(admin, name))
    return url


def source_at(level: str, dovecot_factory, imap_accounts) -> tuple[ImapAccount, ImapAccount]:
    src, dst = imap_accounts
    caps = LEVELS[level]
    if caps is None:
        return src, dst
    server = dovecot_factory(extra_conf="imap_capability = " + " ".join(caps) + "\n")
    server.add_user("ann", "pw-ann")
    return ImapAccount(server, "ann", "pw-ann"), dst


class Run:
    """In-process runs, so that the source store's count of messages listed can be read."""

    def __init__(self, src: ImapAccount, dst: ImapAccount, where: str):
        self.src, self.dst, self.where = src, dst, where
        self.listed = 0

    def __call__(self, **opts):
        s = ImapStore("127.0.0.1", self.src.port, user=self.src.user, password=Secret(self.src.password), tls="none")
        t = ImapStore("127.0.0.1", self.dst.port, user=self.dst.user, password=Secret(self.dst.password), tls="none")
        state = open_state(self.where)
        try:
            # One connection per side, so that every listing goes through the store whose counter is read.
            r = sync_account(s, t, account_name="acc", state=state, options=SyncOptions(connections=1, **opts))
        finally:
            state.close()
        assert r.error is None and r.counters.failed == 0, (r.error, r.problems)
        self.listed = s.listed
        return r.counters


def change_source(src: ImapAccount, *, flags=True, expunge=True, new=True) -> None:
    """As a mail client would: three flag changes (add, remove, keyword), two expunged, two delivered."""
    c = imapcheck.connect(src.port, src.user, src.password)
    c.select("INBOX")
    if flags:
        c.uid("STORE", "3", "+FLAGS", "(\\Flagged)")
        c.uid("STORE", "7", "-FLAGS", "(\\Seen)")
        c.uid("STORE", "11", "+FLAGS", "($Label1)")
    if expunge:
        c.uid("STORE", "20:21", "+FLAGS", "(\\Deleted)")
        c.expunge()
    if new:
        imapcheck.append(c, "INBOX", msg(1000), "\\Answered")
        imapcheck.append(c, "INBOX", msg(1001, 5000), "")
    c.logout()


INBOX = [(msg(i, 300 * (i % 5)), "\\Seen" if i % 2 else "") for i in range(1, 61)]
WORK = [(msg(100 + i), "\\Seen") for i in range(5)]


@pytest.mark.parametrize("level,state", [("qresync", "sqlite"), ("qresync", "postgresql"), ("condstore", "sqlite"),
                                         ("condstore-no-esearch", "postgresql"), ("plain", "sqlite")])
def test_rerun_applies_exactly_the_changes_and_lists_only_them(level, state, dovecot_factory, imap_accounts,
                                                                tmp_path, request, caplog):
    src, dst = source_at(level, dovecot_factory, imap_accounts)
    populate(src, {"INBOX": INBOX, "Work": WORK})
    run = Run(src, dst, state_at(state, tmp_path, request))
    c = run(delete=True)
    assert c.copied == 65 and run.listed == 65
    change_source(src)
    caplog.set_level(logging.INFO, logger="mailmigrate.stores.imap")
    c = run(delete=True)
    assert (c.copied, c.flags_updated, c.deleted) == (2, 3, 2)
    assert_same(src, dst)
    if level == "plain":
        # Without CONDSTORE nothing tells what changed: every message of every folder is listed, as before.
        assert run.listed == 60 + 5
    else:
        # The three flag changes and the two new messages; Work did not change and is not opened.
        assert run.listed == 5
        method = {"qresync": "(qresync)"}.get(level, "(condstore+uids)")
        assert any(method in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    # The state is true: a rerun finds nothing to do and lists nothing.
    c = run(delete=True)
    assert (c.copied, c.flags_updated, c.deleted) == (0, 0, 0)
    assert run.listed == (65 if level == "plain" else 0)


def test_without_expunges_condstore_needs_no_uid_listing(dovecot_factory, imap_accounts, tmp_path, caplog):
    """Without QRESYNC expunges are silent; when the count shows none, no UID listing is spent on them."""
    level = "condstore"
    src, dst = source_at(level, dovecot_factory, imap_accounts)
    populate(src, {"INBOX": INBOX})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run()
    change_source(src, expunge=False)
    caplog.set_level(logging.INFO, logger="mailmigrate.stores.imap")
    c = run()
    assert (c.copied, c.flags_updated) == (2, 3) and run.listed == 5
    assert_same(src, dst)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"({level})" in said and "+uids" not in said


def test_incremental_switched_off_lists_the_changed_folder_in_full(imap_accounts, tmp_path, monkeypatch):
    """The diagnostic switch bench/features.py measures with: same result, the old cost (the changed folder
    listed in full; the unchanged one still skipped by its HIGHESTMODSEQ)."""
    from mailmigrate.imap import diag

    src, dst = imap_accounts
    populate(src, {"INBOX": INBOX, "Work": WORK})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run(delete=True)
    change_source(src)
    monkeypatch.setenv(diag.ENV, "incremental")
    c = run(delete=True)
    assert (c.copied, c.flags_updated, c.deleted) == (2, 3, 2) and run.listed == 60
    assert_same(src, dst)


def test_expunged_without_delete_keeps_the_copies_until_a_delete_run(imap_accounts, tmp_path):
    """Without --delete the copies of expunged messages stay; a later --delete run still finds them, though
    the server's change log has moved past their expunge (the engine lists the folder for that)."""
    src, dst = imap_accounts
    populate(src, {"INBOX": INBOX})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run()
    change_source(src)
    c = run()
    assert (c.copied, c.flags_updated, c.deleted) == (2, 3, 0) and run.listed == 5
    target = imapcheck.account(dst.port, dst.user, dst.password)
    assert sum(target["INBOX"].values()) == 62, "expunged on the source, kept on the target without --delete"
    change_source(src, expunge=False, new=False)  # nothing new for the change log
    c = run(delete=True)
    assert (c.copied, c.deleted) == (0, 2)
    assert_same(src, dst)


def test_crash_during_an_incremental_rerun_recovers_by_content(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": INBOX})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run()
    c = imapcheck.connect(src.port, src.user, src.password)
    for i in range(150):
        imapcheck.append(c, "INBOX", msg(2000 + i), "")
    c.logout()
    calls = {"n": 0}

    class Crash(BaseException):
        pass

    def crash_after_first_append(point):
        if point == "after-append":
            calls["n"] += 1
            if calls["n"] == 1:
                raise Crash()

    with pytest.raises(Crash):
        run(checkpoint=crash_after_first_append)
    c = run()
    assert c.recovered > 0 and c.copied == 150 - c.recovered
    assert_same(src, dst)


def test_source_uidvalidity_change_still_rematches(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"Box": INBOX[:20]})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run()
    c = imapcheck.connect(src.port, src.user, src.password)
    assert c.delete("Box")[0] == "OK"
    c.logout()
    populate(src, {"Box": INBOX[:20]})
    c = run(delete=True)
    assert (c.copied, c.deleted, c.rematched) == (0, 0, 20)
    assert_same(src, dst)


# --- the UID sets the server reports ------------------------------------------------------------------

def test_vanished_ranges_are_never_expanded():
    v = UidRanges.parse([b"3,5:9", b"4000000:1", "12"])
    assert "3" in v and "4" in v and "3999999" in v and "4000000" in v and "4000001" not in v
    assert "gone:7:3" not in v and "" not in v and 0 not in v
    assert "7" in UidRanges.parse([b"1:10"]) and not UidRanges()
    absent = AbsentBelow(UidRanges.parse([b"1:2,4,6"]), 7)
    assert [k for k in map(str, range(0, 10)) if k in absent] == ["3", "5"]


def test_changed_rerun_asks_the_target_no_status_beyond_the_pipelined_one(imap_accounts, tmp_path, monkeypatch):
    """A changed folder reuses the target's status from the account's one pipelined STATUS: no STATUS
    round trip per folder on the target, before or after the copy (each one a round trip to a remote
    server, per changed folder, in every cutover rerun)."""
    src, dst = imap_accounts
    populate(src, {"INBOX": INBOX, "Work": WORK})
    run = Run(src, dst, str(tmp_path / "s.db"))
    run()
    asked = []
    real = ImapStore.folder_status

    def counting(self, path):
        asked.append((self.user, path))
        return real(self, path)

    monkeypatch.setattr(ImapStore, "folder_status", counting)
    change_source(src)
    c = run(delete=True)
    assert (c.copied, c.flags_updated, c.deleted) == (2, 3, 2)
    assert_same(src, dst)
    assert [p for user, p in asked if user == dst.user] == []
    c = run(delete=True)
    assert (c.copied, c.flags_updated, c.deleted) == (0, 0, 0)
