"""One factory per store kind for the contract suite: ``make(tmp_path, request) -> (store, populate, caps)``.

``populate({folder: [(bytes, flags, datetime)]})`` writes mail through a path independent of the store under
test (files written directly; imaplib for IMAP).  ``caps`` says what the format can hold, so that the suite
asks each store only what its format allows (mbox keeps flags in headers; CommuniGate has no keyword letters).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from mailmigrate.formats import maildir as mdfmt
from mailmigrate.formats import mbox as mbfmt
from mailmigrate.formats import mutf7
from mailmigrate.model import Secret

DEFAULT_DATE = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def _items(messages):
    for m in messages:
        data, flags, *rest = m
        yield data, frozenset(flags), (rest[0] if rest and rest[0] else DEFAULT_DATE)


def make_maildir(tmp_path, request):
    from mailmigrate.stores.maildir import MaildirStore

    root = Path(tmp_path) / "Maildir"
    counter = [0]

    def populate(folders):
        for folder, messages in folders.items():
            path = tuple(folder)
            d = root / mdfmt.folder_to_dirname(path) if path != ("INBOX",) else root
            for sub in ("cur", "new", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            kw = {}
            for data, flags, date in _items(messages):
                counter[0] += 1
                for f in flags:
                    if not f.startswith("\\") and f not in mdfmt.FLAG_TO_LETTER and f not in kw:
                        kw[f] = len(kw)
                info, _ = mdfmt.flags_to_info(flags, kw)
                p = d / "cur" / mdfmt.build_name(f"{int(date.timestamp())}.M{counter[0]}.contract", info)
                p.write_bytes(data)
                os.utime(p, (date.timestamp(), date.timestamp()))
            if kw:
                (d / "dovecot-keywords").write_bytes(mdfmt.dump_keywords({i: n for n, i in kw.items()}))

    root.mkdir(parents=True)
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir()
    return MaildirStore(root), populate, {"write", "flags", "keywords", "dates", "empty", "no-final-newline", "bare-lf", "nul"}


def make_mbox(tmp_path, request):
    from mailmigrate.stores.mbox import MboxStore

    root = Path(tmp_path) / "mail"
    root.mkdir()

    def populate(folders):
        for folder, messages in folders.items():
            path = tuple(folder)
            parts = ["Inbox"] if path == ("INBOX",) else list(path)
            f = root.joinpath(*[p + ".sbd" for p in parts[:-1]], parts[-1])
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "ab") as out:
                for data, flags, date in _items(messages):
                    out.write(mbfmt.write_message(data, "contract@example.org", date))

    return MboxStore(root), populate, {"dates", "bare-lf", "nul"}


def make_imap(tmp_path, request):
    src, _ = request.getfixturevalue("dovecot_pair")
    try:
        from contract.imap_factory import make_imap_store
    except ImportError:
        return _make_imap_here(src)
    store, populate = make_imap_store(tmp_path, src)
    return store, populate, IMAP_CAPS


IMAP_CAPS = {"write", "flags", "keywords", "dates", "no-final-newline"}


def _make_imap_here(src):
    """Until the IMAP engineer's tests/contract/imap_factory.py exists: a user on the test Dovecot, populated
    over imaplib (not through the store under test)."""
    from conftest import _ids
    from mailmigrate.stores.imap import ImapStore
    from servers import imapcheck

    user = f"contract{os.getpid()}x{next(_ids)}"
    src.add_user(user, "pw")

    def populate(folders):
        c = imapcheck.connect(src.port, user, "pw")
        try:
            for folder, messages in folders.items():
                path = tuple(folder)
                wire = "INBOX" if path == ("INBOX",) else mutf7.encode("/".join(path))
                if path != ("INBOX",):
                    c.create(imapcheck._q(wire))
                for data, flags, date in _items(messages):
                    imapcheck.append(c, wire, data, " ".join(sorted(flags)), date)
        finally:
            c.logout()

    store = ImapStore("127.0.0.1", src.port, user=user, password=Secret("pw"), tls="none")
    return store, populate, IMAP_CAPS


def make_communigate(tmp_path, request):
    import pytest

    try:
        from contract.communigate_factory import make_communigate_store
    except ImportError:
        pytest.skip("tests/contract/communigate_factory.py (the CommuniGate engineer's) is not there yet")

    store, populate = make_communigate_store(tmp_path)
    return store, populate, {"flags", "dates", "bare-lf", "nul"}


def make_cyrus(tmp_path, request, fixture="cyrus_server"):
    """A user on Cyrus as Debian ships it ("." separator, INBOX. prefix), populated over imaplib in its own
    namespace. Cyrus refuses bare LF and NUL in APPEND ("Message contains bare newlines"/NUL): the suite
    asks it only for what it can hold; munge8bit rewrites 8-bit header bytes ("8bit-header-munged")."""
    from conftest import _ids
    from mailmigrate.stores.imap import ImapStore
    from servers import imapcheck

    srv = request.getfixturevalue(fixture)
    user = f"contract{os.getpid()}x{next(_ids)}"
    srv.add_user(user, "pw")

    def populate(folders):
        c = imapcheck.connect(srv.port, user, "pw")
        try:
            prefix, sep = imapcheck._namespace(c)
            for folder, messages in folders.items():
                path = tuple(folder)
                wire = imapcheck.wire_of(path, prefix, sep)
                if path != ("INBOX",):
                    c.create(imapcheck._q(wire))
                for data, flags, date in _items(messages):
                    imapcheck.append(c, wire, data, " ".join(sorted(flags)), date)
        finally:
            c.logout()

    store = ImapStore("127.0.0.1", srv.port, user=user, password=Secret("pw"), tls="none")
    return store, populate, {"write", "flags", "keywords", "dates", "no-final-newline", "no-bare-lf",
                             "8bit-header-munged"}


def make_cyrus_alt(tmp_path, request):
    return make_cyrus(tmp_path, request, fixture="cyrus_alt_server")


def make_courier(tmp_path, request):
    """A user on Courier-IMAP 5.0 with Debian's settings (tests/servers/courier.py): INBOX. prefix, "."
    separator, keywords, no MULTIAPPEND (one APPEND per message, synchronising literals: no LITERAL+); it
    keeps and serves NUL bytes as they were (Dovecot serves them as 0x80)."""
    store, populate, _ = make_cyrus(tmp_path, request, fixture="courier_server")
    return store, populate, {"write", "flags", "keywords", "dates", "no-final-newline", "nul"}


def make_memory(tmp_path, request):
    """The in-memory store (stores/memory.py), populated through its mailbox's deliveries, not through the
    store under test; it keeps bytes exactly as given, like Maildir."""
    from mailmigrate.stores.memory import MemoryMailbox, MemoryStore

    mailbox = MemoryMailbox()

    def populate(folders):
        for folder, messages in folders.items():
            mailbox.make_folder(tuple(folder))
            for data, flags, date in _items(messages):
                mailbox.deliver(tuple(folder), data, flags, date)

    return MemoryStore(mailbox), populate, {"write", "flags", "keywords", "dates", "empty", "no-final-newline",
                                            "bare-lf", "nul"}


def make_memory_sided(tmp_path, request):
    """The memory store as the engine holds it: behind the side tag (stores/sided.py), on the wrapper base.  A
    wrapper that forgets a method, or hands back a stream it broke, fails the contract here."""
    from mailmigrate.stores.sided import SidedStore

    store, populate, caps = make_memory(tmp_path, request)
    return SidedStore(store, "target"), populate, caps


class FreeSlots:
    """What SlotStore asks of the fleet's slots, always granted: for tests about what passes through it."""

    def on_lost(self, fn):
        pass

    def acquire(self, key, limit, wait):
        return "token"

    def holds(self, key, token):
        return True

    def release(self, key, token):
        pass


def make_memory_slots(tmp_path, request):
    """The memory store as a fleet worker holds it: behind its connection slot (fleet/limits.py SlotStore,
    with slots that are always free: the slots themselves are tests/test_fleet*.py's), behind the side tag."""
    from mailmigrate.fleet.limits import SlotStore
    from mailmigrate.stores.sided import SidedStore

    store, populate, caps = make_memory(tmp_path, request)
    return SidedStore(SlotStore(store, FreeSlots(), "mm:slots:target:contract", 1), "target"), populate, caps


FACTORIES = {"maildir": make_maildir, "memory": make_memory, "mbox": make_mbox, "imap": make_imap, "communigate": make_communigate,
             "cyrus": make_cyrus, "cyrus-alt": make_cyrus_alt, "courier": make_courier,
             "memory-sided": make_memory_sided, "memory-slots": make_memory_slots}
