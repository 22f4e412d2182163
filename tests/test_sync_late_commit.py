"""A killed run's last APPEND committed by the server after the next run's recovery looked for it.

The race (seen in test_sync_imap.py::test_repeated_kill_9_then_rerun_is_exact under load): the client is
killed right after sending a whole MULTIAPPEND, the server's session is descheduled, the next run finds
the PENDING intents' copies nowhere, copies the messages again, and then the old session commits — two
copies.  Here the late commit is made deterministic: the test appends the killed batch's bytes itself, at
the moment the real server would, on real Dovecot servers, with SQLite and PostgreSQL state, with and
without UIDPLUS.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from servers import imapcheck
from test_sync_imap import Crash, msg, populate, snapshot

T0 = datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)  # populate()'s first INTERNALDATE


@pytest.fixture
def accounts(request, imap_accounts, dovecot_factory):
    """(source, target); the target hides UIDPLUS when the test is parametrised with uidplus=False."""
    from conftest import ImapAccount

    src, dst = imap_accounts
    if getattr(request, "param", True):
        return src, dst
    t_srv = dovecot_factory(uidplus=False)
    t_srv.add_user("ann", "pw2")
    return src, ImapAccount(t_srv, "ann", "pw2")


def run(src, dst, where, **opts):
    from mailmigrate.model import Secret
    from mailmigrate.stores.imap import ImapStore
    from mailmigrate.sync.engine import SyncOptions, sync_account
    from mailmigrate.sync.state_pg import open_state

    s = ImapStore("127.0.0.1", src.port, user=src.user, password=Secret(src.password), tls="none")
    t = ImapStore("127.0.0.1", dst.port, user=dst.user, password=Secret(dst.password), tls="none")
    state = open_state(where)
    try:
        return sync_account(s, t, account_name="acc", state=state,
                            options=SyncOptions(late_commit_grace=0, **opts))
    finally:
        state.close()


def layout():
    """31 messages, one of them twice (twins are two rows with two copies; both must survive)."""
    items = [(msg(i, 300 * i), "\\Seen" if i % 3 else "") for i in range(30)]
    items.append(items[3])
    return items


def late_commit(dst, items) -> None:
    """What the killed session's server commits: the same bytes, flags and dates, in one go."""
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    for i, (data, flags) in enumerate(items):
        imapcheck.append(c, "Box", data, flags, T0 + timedelta(hours=i))
    c.logout()


def killed_before_append(src, dst, where) -> None:
    """A first run dies with the whole folder as PENDING intents, before its APPEND reached the target."""

    def die(point):
        if point == "before-append":
            raise Crash()

    with pytest.raises(Crash):
        run(src, dst, where, checkpoint=die)


def mail(acc, extra: Counter | None = None) -> dict:
    """Folders with mail: the multiset of (bytes, flags, INTERNALDATE) each, plus ``extra`` in Box."""
    return {k: v + extra if extra and k == "Box" else v for k, v in snapshot(acc).items() if v}


def deleted_flagged(acc) -> int:
    return sum(n for (_, flags, _), n in snapshot(acc)["Box"].items() if "\\Deleted" in flags)


@pytest.mark.parametrize("accounts", [True, False], ids=["uidplus", "no-uidplus"], indirect=True)
def test_late_commit_after_recovery_leaves_one_copy(accounts, state_where):
    src, dst = accounts
    items = layout()
    populate(src, {"Box": items})
    # The user's own mail in the target folder before mailmigrate came, below every floor: never touched.
    # (Not a copy of a source message: a target folder the state knows nothing of has such copies adopted,
    # test_sync_semantics.py.)
    populate(dst, {"Box": [(b"Subject: the user's own\r\n\r\nmine\r\n", "\\Seen")]})
    mine = snapshot(dst)["Box"]
    killed_before_append(src, dst, state_where)

    landed = []

    def commit_late(point):
        # The first batch of the rerun: recovery has just declared the intents lost.
        if point == "before-intent" and not landed:
            late_commit(dst, items)
            landed.append(True)

    r = run(src, dst, state_where, checkpoint=commit_late)
    assert landed and r.error is None and r.counters.failed == 0
    assert r.counters.copied == 31, "recovery found nothing, so everything was copied again"
    if accounts[1].server.uidplus:
        assert mail(dst) == mail(src, mine), "one copy each, the twins twice, the user's own kept"
        assert r.counters.late_duplicates_removed == 31 and r.problems == []
    else:
        # Without UIDPLUS an EXPUNGE could take messages someone else marked: touch nothing, name each copy.
        assert mail(dst) == mail(src, mine + snapshot(src)["Box"]) and deleted_flagged(dst) == 0
        assert r.counters.late_duplicates_removed == 0
        assert sorted(p.message for p in r.problems) == sorted(str(uid) for uid in range(1, 32))
        assert all(p.kind == "warning" and p.folder == "Box" and "second copy" in p.reason
                   and "Subject: 'message " in p.reason for p in r.problems)
    # A rerun has nothing to copy and nothing more to say.
    again = run(src, dst, state_where)
    assert again.counters.copied == 0 and again.counters.late_duplicates_removed == 0 and again.problems == []


@pytest.mark.parametrize("accounts", [True], ids=["uidplus"], indirect=True)
def test_late_commit_after_the_rerun_finished_is_removed_by_the_next_run(accounts, state_where):
    src, dst = accounts
    items = layout()
    populate(src, {"Box": items})
    killed_before_append(src, dst, state_where)
    r = run(src, dst, state_where)
    assert mail(dst) == mail(src)
    assert r.counters.copied == 31 and r.counters.late_duplicates_removed == 0
    # The old session commits only now, after the rerun ended; the source has not changed since, so only
    # the watch makes the next run look at this folder.
    late_commit(dst, items)
    r = run(src, dst, state_where)
    assert mail(dst) == mail(src)
    assert r.error is None and r.counters.copied == 0 and r.counters.late_duplicates_removed == 31
