"""Opening a connection, and creating and subscribing an account's folders, cost as few round trips as each
server allows, on every server Debian offers.

Every connection a run opens (two per account, two more per extra worker, again after each reconnect) used to
wait four times for its server after the greeting: the login, CAPABILITY, ENABLE, NAMESPACE.  A server that
sends its new capabilities with the login's answer (RFC 9051 7.1) is not asked for them again, ENABLE and
NAMESPACE go out together, and a worker's connection, a clone of the lead's store, does not ask for the
namespace its lead learnt from the same server.  Over a WAN each wait is a round trip: on a cutover loop's
rerun, the time before anything is compared.

The target folders of a first copy, and their subscriptions at its end, used to cost a round trip each;
they now go out together (``Store.create_folders``, ``Store.subscribe_folders``), with a folder the server
refused then tried on its own as before.

Every run of an account lists its folders and then asks their STATUS: where the server offers LIST-STATUS
(RFC 5819: Dovecot, Cyrus) the statuses come with the listing, a round trip less, and are used only when the
LIST was the connection's last command (an older answer would hide what changed since).

What must not change: the capabilities a run works with, QRESYNC enabled where the server has it, and the
namespace (Cyrus's and Courier's "INBOX." with "."), on the clones too.  Checked against real servers; the
waits are counted in the connection's own wire log.
"""

from __future__ import annotations

import logging

from mailmigrate.model import AppendItem, Body, Secret
from mailmigrate.stores.imap import ImapStore
from servers import imapcheck


class _Wire(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _logged(call) -> tuple[object, list[str]]:
    """What ``call()`` returned, and the wire lines it caused."""
    h = _Wire()
    wire = logging.getLogger("mailmigrate.imap.wire")
    old = wire.level
    wire.addHandler(h)
    wire.setLevel(logging.DEBUG)
    try:
        result = call()
    finally:
        wire.removeHandler(h)
        wire.setLevel(old)
    return result, h.lines


def _open_logged(store: ImapStore) -> list[str]:
    """The wire lines of ``store.open()``."""
    return _logged(store.open)[1]


def _waits(lines: list[str]) -> int:
    """How many times the client waited for the server: each server line that follows a client line."""
    return sum(1 for a, b in zip(lines, lines[1:]) if a.startswith("C:") and b.startswith("S:"))


def _commands(lines: list[str]) -> list[str]:
    return [l.split()[2].strip("\\r\\n'") for l in lines if l.startswith("C: b'")]


#: Each server's waits when a connection opens (from the greeting on): (the first, a clone's).  Dovecot and
#: Cyrus answer SASL-IR's AUTHENTICATE with their new capabilities, then ENABLE and NAMESPACE are one wait
#: (before: four waits each).  Courier has no SASL-IR (AUTHENTICATE waits for its "+"), sends no capabilities
#: with the login's answer and is asked CAPABILITY, and offers no CONDSTORE to ENABLE.
WAITS = {"dovecot": (2, 2), "cyrus": (2, 2), "cyrus-alt": (2, 2), "courier": (3, 2)}


def _store(acc) -> ImapStore:
    return ImapStore("127.0.0.1", acc.port, user=acc.user, password=Secret(acc.password), tls="none")


def test_a_connection_opens_in_as_few_waits_as_the_server_allows(cross_accounts):
    """Each side of each server pair: the waits of a first connection and of a clone (a worker's), the
    capabilities those connections work with equal what the server answers to CAPABILITY, QRESYNC is on where
    offered, and a clone has its lead's namespace without asking for it."""
    for acc in cross_accounts:
        imapcheck.populate_any(acc.port, acc.user, acc.password,
                               {("Projects", "Alpha"): [(b"Subject: a\r\n\r\nx\r\n", "")]})
        lead = _store(acc)
        twin = None
        try:
            opened = _open_logged(lead)
            twin = lead.clone()
            cloned = _open_logged(twin)
            assert (_waits(opened), _waits(cloned)) == WAITS[acc.kind], (acc.kind, opened, cloned)
            assert "NAMESPACE" not in _commands(cloned)
            for store in (lead, twin):
                assert store.qresync == ("QRESYNC" in store.conn.capabilities)
                kept = set(store.conn.capabilities)
                assert store.conn.capability() == kept, acc.kind  # what the login's answer said is complete
            assert (twin.prefix, twin.sep) == (lead.prefix, lead.sep)
            assert (lead.prefix, lead.sep) == {"cyrus": ("INBOX.", "."), "courier": ("INBOX.", ".")}.get(
                acc.kind, ("", "/")), acc.kind
            assert sorted(f.path for f in twin.list_folders()) == sorted(f.path for f in lead.list_folders())
            assert ("Projects", "Alpha") in {f.path for f in twin.list_folders()}
        finally:
            lead.close()
            if twin is not None:
                twin.close()


def test_a_reconnect_does_not_ask_for_the_namespace_again(cross_accounts):
    """A connection replaced after an abandoned fetch (``reconnect``) is to the same server for the same user."""
    for acc in cross_accounts:
        store = _store(acc)
        try:
            store.open()
            before = (store.prefix, store.sep)
            _, lines = _logged(store.reconnect)
            logged_in = any("<login data>" in line or "AUTHENTICATE" in line for line in lines)
            assert logged_in and "NAMESPACE" not in _commands(lines), lines
            assert (store.prefix, store.sep) == before
            assert store.list_folders()
        finally:
            store.close()


def test_an_accounts_folders_are_created_and_subscribed_in_one_wait_each(cross_accounts):
    """Seven folders (nested, a special use, a name with a space) on each server: the CREATEs are one wait,
    the SUBSCRIBEs another, and the target lists every folder, subscribed, with its special use where the
    server takes one (on a folder whose name would not suggest it)."""
    outgoing = ("Outgoing copies",)
    paths = [("Archive",), ("Archive", "2024"), outgoing, ("Lists",), ("Lists", "dev"), ("Projects",),
             ("Old mail",)]
    for acc in cross_accounts:
        store = _store(acc)
        try:
            store.open()
            use = "\\Sent" if "CREATE-SPECIAL-USE" in store.conn.capabilities else None
            refused, created = _logged(lambda: store.create_folders([(p, use if p == outgoing else None)
                                                                     for p in paths]))
            assert refused == [None] * len(paths)
            assert _commands(created) == ["CREATE"] * len(paths) and _waits(created) == 1, (acc.kind, created)
            refused, subscribed = _logged(lambda: store.subscribe_folders(paths))
            assert refused == [None] * len(paths)
            assert _commands(subscribed) == ["SUBSCRIBE"] * len(paths) and _waits(subscribed) == 1, acc.kind
            listed = {f.path: f for f in store.list_folders()}
            assert all(p in listed and listed[p].subscribed for p in paths), (acc.kind, sorted(listed))
            assert listed[outgoing].special_use == use, acc.kind
        finally:
            store.close()


def _statuses_asked(store: ImapStore, paths) -> tuple[dict, list[str]]:
    return _logged(lambda: store.folder_statuses(paths))


def test_the_statuses_come_with_the_listing_where_the_server_offers_it(cross_accounts):
    """After a listing, the statuses of its folders cost no command on a server with LIST-STATUS (on Courier
    one pipelined STATUS each), and equal what STATUS answers; after any other command they are asked again,
    so a message appended in between is counted."""
    for acc in cross_accounts:
        imapcheck.populate_any(acc.port, acc.user, acc.password, {
            ("INBOX",): [(b"Subject: a\r\n\r\nx\r\n", "")] * 2, ("Lists", "dev"): [(b"Subject: b\r\n\r\ny\r\n", "")]})
        store = _store(acc)
        try:
            store.open()
            paths = [f.path for f in store.list_folders() if f.selectable]
            listed, lines = _statuses_asked(store, paths)
            has = "LIST-STATUS" in store.conn.capabilities
            assert has == (acc.kind != "courier"), acc.kind
            assert _commands(lines) == ([] if has else ["STATUS"] * len(paths)), (acc.kind, lines)
            asked, lines = _statuses_asked(store, paths)  # no listing just before: asked
            assert _commands(lines) == ["STATUS"] * len(paths)
            assert asked == listed and listed[("INBOX",)].count == 2 and listed[("Lists", "dev")].count == 1
            store.list_folders()
            store.append(("Lists", "dev"), [AppendItem(Body.from_bytes(b"Subject: c\r\n\r\nz\r\n"))])
            after, lines = _statuses_asked(store, paths)
            assert _commands(lines) == ["STATUS"] * len(paths), acc.kind
            dev = ("Lists", "dev")
            assert after[dev].count == 2 and after[dev].uidnext > listed[dev].uidnext
        finally:
            store.close()



def test_a_rerun_with_nothing_to_do_costs_only_this(cross_accounts, tmp_path):
    """What a cutover loop's rerun sends, through the command line.  Where both servers have CONDSTORE and
    LIST-STATUS (Dovecot, Cyrus): per side a login, ENABLE with NAMESPACE, LIST (the statuses with it) and
    LOGOUT, nothing else.  Courier as the target adds its CAPABILITY after the login, LSUB beside LIST and one
    STATUS per folder.  Courier as the source has no CONDSTORE to show that no flag changed, so each of its
    folders is examined again; nothing is written either way."""
    from test_sync_imap import env_for, mm

    src, dst = cross_accounts
    imapcheck.populate_any(src.port, src.user, src.password, {
        ("INBOX",): [(b"Subject: a\r\n\r\nx\r\n", "")] * 3, ("Lists", "dev"): [(b"Subject: b\r\n\r\ny\r\n", "")],
        ("Archive",): [(b"Subject: c\r\n\r\nz\r\n", "\\Seen")]})
    state, log = tmp_path / "s.db", tmp_path / "run.log"
    mm("sync", src.url(), dst.url(), "--state", state, env=env_for(src, dst))
    mm("-vv", "sync", src.url(), dst.url(), "--state", state, "--log-file", log, env=env_for(src, dst))
    lines = [line.split("wire: ", 1)[1] for line in log.read_text().splitlines() if "imap.wire" in line]
    sent = sorted(_commands(lines))
    side = ["ENABLE", "LIST", "LOGOUT", "NAMESPACE"]
    if "courier" not in (src.kind, dst.kind):
        assert sent == sorted(side * 2), sent
        assert sum("<login data>" in line for line in lines) == 2
    elif dst.kind == "courier":
        assert sent == sorted(side + ["AUTHENTICATE", "CAPABILITY", "LIST", "LOGOUT", "LSUB", "NAMESPACE"]
                              + ["STATUS"] * 3), sent
    else:
        assert sent.count("EXAMINE") == 3, sent
        writes = [line for line in lines if line.startswith("C: b'")
                  and any(w in line for w in (" APPEND ", " STORE ", " EXPUNGE", " CREATE ", " SUBSCRIBE "))]
        assert writes == [], writes
