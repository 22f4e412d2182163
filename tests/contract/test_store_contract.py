"""One contract, every store (the model: vdirsyncer's storage tests).  What the sync engine relies on:
folders listed, keys stable, bytes exact, flags and dates kept, twins distinct; and for targets, that what
is appended, flagged and deleted is exactly what was asked."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mailmigrate.model import AppendItem, Body

from .factories import FACTORIES

BODIES = [
    b"Subject: plain\r\n\r\nCRLF body\r\n",
    b"Subject: bare\n\nbare LF body\n",
    b"Subject: 8bit \xe9\r\n\r\nLatin-1 \xff\xfe\r\n",
    b"Subject: nul\r\n\r\nbefore\x00after\r\n",
    b"no header block at all\r\n",
    b"From the start of a line\r\n\r\nFrom here too\r\n>From escaped already\r\n",
]


@pytest.fixture(params=sorted(FACTORIES))
def kind(request, tmp_path):
    store, populate, caps = FACTORIES[request.param](tmp_path, request)
    yield request.param, store, populate, caps
    store.close()


def holdable(caps) -> list[bytes]:
    """BODIES a store can hold: Cyrus refuses bare LF, NUL and a first line that is no header field in an
    APPEND ("no-bare-lf"); the engine reports such a message as refused by the target, naming it."""
    if "no-bare-lf" not in caps:
        return BODIES
    # and a first line that is not a header field ("Message contains invalid header")
    return [b for b in BODIES if b"\x00" not in b and b.replace(b"\r\n", b"").find(b"\n") < 0
            and b":" in b.split(b"\r\n", 1)[0]]


def as_stored(data: bytes, caps) -> bytes:
    """IMAP servers serve CRLF line ends whatever was appended; stores with "bare-lf" keep bytes as they are;
    "8bit-header-munged" (Cyrus's munge8bit) stores 8-bit header bytes as "X"."""
    if "8bit-header-munged" in caps:
        import re

        end = data.find(b"\r\n\r\n")
        end = len(data) if end < 0 else end
        data = re.sub(rb"[\x80-\xff]", b"X", data[:end]) + data[end:]
    if "nul" not in caps:
        data = data.replace(b"\x00", b"\x80")  # Dovecot serves NUL as 0x80 (no BINARY in a plain FETCH)
    if "bare-lf" in caps:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def fetch_all(store, path):
    _, metas = store.list_messages(path)
    got = {m.key: b.read() for m, b in store.fetch(path, [m.key for m in metas])}
    return metas, got


def test_lists_populated_folders(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [(BODIES[0], ())], ("Work",): [(BODIES[0], ())], ("Work", "Deep"): [(BODIES[0], ())]})
    store.open()
    paths = {f.path for f in store.list_folders() if f.selectable}
    assert {("INBOX",), ("Work",), ("Work", "Deep")} <= paths


def test_bytes_exact_and_keys_stable(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [(b, ()) for b in holdable(caps)]})
    store.open()
    metas, got = fetch_all(store, ("INBOX",))
    assert sorted(got.values()) == sorted(as_stored(b, caps) for b in holdable(caps))
    metas2, _ = fetch_all(store, ("INBOX",))
    assert [m.key for m in metas] == [m.key for m in metas2]
    assert all(m.size == len(got[m.key]) for m in metas if m.size is not None)


def test_twins_have_distinct_keys(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [(BODIES[0], ()), (BODIES[0], ())]})
    store.open()
    metas, got = fetch_all(store, ("INBOX",))
    assert len({m.key for m in metas}) == 2 and list(got.values()) == [BODIES[0], BODIES[0]]


def test_new_mail_keeps_old_keys(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [(BODIES[0], ())]})
    store.open()
    before, _ = fetch_all(store, ("INBOX",))
    populate({("INBOX",): [(BODIES[1], ())]})
    after, got = fetch_all(store, ("INBOX",))
    assert {m.key for m in before} < {m.key for m in after} and len(after) == 2


def test_flags_and_dates(kind):
    name, store, populate, caps = kind
    when = datetime(2021, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    flags = {"\\Seen", "\\Flagged"} | ({"$Label1"} if "keywords" in caps else set())
    populate({("INBOX",): [(BODIES[0], flags if "flags" in caps else (), when)]})
    store.open()
    _, metas = store.list_messages(("INBOX",))
    if "flags" in caps:
        assert metas[0].flags == frozenset(flags)
    if "dates" in caps:
        assert metas[0].internaldate.timestamp() == when.timestamp()


def test_empty_message(kind):
    name, store, populate, caps = kind
    if "empty" not in caps:
        pytest.skip(f"{name} cannot hold a 0-byte message")
    populate({("INBOX",): [(b"", ())]})
    store.open()
    _, got = fetch_all(store, ("INBOX",))
    assert list(got.values()) == [b""]


# --- targets ----------------------------------------------------------------------------------------

def writable(kind):
    name, store, populate, caps = kind
    if "write" not in caps:
        pytest.skip(f"{name} is a source only")
    populate({("INBOX",): []})
    store.open()
    return store


def test_append_returns_keys_that_list_shows(kind):
    store = writable(kind)
    caps = kind[3]
    when = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    items = [AppendItem(Body.from_bytes(b), frozenset({"\\Seen"}), when) for b in holdable(caps)] + \
            [AppendItem(Body.from_bytes(BODIES[0]), frozenset(), when)]
    keys = store.append(("INBOX",), items)
    metas, got = fetch_all(store, ("INBOX",))
    if all(keys):
        assert set(keys) == {m.key for m in metas}
        assert [got[k] for k in keys] == [as_stored(i.body.read(), caps) for i in items]
    assert sorted(got.values()) == sorted(as_stored(i.body.read(), caps) for i in items)  # twins both stored
    assert all(m.internaldate.timestamp() == when.timestamp() for m in metas)


def test_set_flags_and_delete_only_what_was_asked(kind):
    store = writable(kind)
    keys = store.append(("INBOX",), [AppendItem(Body.from_bytes(b), frozenset({"\\Seen"}))
                                     for b in (holdable(kind[3]) * 3)[:3]])
    metas, _ = fetch_all(store, ("INBOX",))
    k = [m.key for m in metas]
    store.set_flags(("INBOX",), [(k[0], frozenset({"\\Flagged", "$Work"}), frozenset({"\\Seen"}))])
    store.delete_messages(("INBOX",), [k[1]])
    after, got = fetch_all(store, ("INBOX",))
    by = {m.key: m for m in after}
    assert set(by) == {k[0], k[2]}
    assert by[k[0]].flags == frozenset({"\\Flagged", "$Work"}) and by[k[2]].flags == frozenset({"\\Seen"})


@pytest.mark.parametrize("path", [("Work",), ("Work", "Deep", "Deeper"), ("Café ☕",), ("a&b",), ("c+d e",),
                                  ('quo"te',), ("a.b",), ("x/y",)])
def test_create_folder_and_subscribe(kind, path):
    store = writable(kind)
    store.create_folder(path)
    store.subscribe(path)
    store.append(path, [AppendItem(Body.from_bytes(BODIES[0]))])
    folders = {f.path: f for f in store.list_folders()}
    assert path in folders and folders[path].subscribed
    _, got = fetch_all(store, path)
    assert list(got.values()) == [BODIES[0]]


def test_folders_created_and_subscribed_together(kind):
    """``create_folders`` and ``subscribe_folders`` (on IMAP all sent before an answer is read) end as the one-
    at-a-time calls do, with the names some servers refuse at first (Cyrus: '"') and a folder already there."""
    store = writable(kind)
    paths = [("Work",), ("Work", "Deep", "Deeper"), ("Café ☕",), ("a&b",), ("c+d e",), ('quo"te',), ("a.b",),
             ("x/y",), ('twice"',), ("INBOX",)]
    store.create_folder(("Work",))
    refused = store.create_folders([(p, None) for p in paths])
    # Courier refuses a CREATE of a folder that is there ("NO Cannot create this folder.", no code): that one
    # refusal is handed back, and the folders after it are created all the same.
    assert [r is None for r in refused] == [kind[0] != "courier"] + [True] * (len(paths) - 1), refused
    assert store.subscribe_folders(paths) == [None] * len(paths)
    for p in paths:
        store.append(p, [AppendItem(Body.from_bytes(BODIES[0]))])
    folders = {f.path: f for f in store.list_folders()}
    for p in paths:
        assert p in folders and folders[p].subscribed, p
        _, got = fetch_all(store, p)
        assert list(got.values()) == [BODIES[0]], p


def test_vanished_key_is_absent_and_validity_is_steady(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [(BODIES[0], ())]})
    store.open()
    status, metas = store.list_messages(("INBOX",))
    assert store.folder_status(("INBOX",)).validity == status.validity
    bogus = "999999" if name in ("imap", "courier") or name.startswith("cyrus") else "no-such-key"
    got = list(store.fetch(("INBOX",), [bogus, metas[0].key]))
    assert [m.key for m, _ in got] == [metas[0].key]


def test_well_known_names_carry_their_special_use(kind):
    name, store, populate, caps = kind
    populate({("INBOX",): [], ("Sent Items",): [(BODIES[0], ())], ("Papierkorb",): [(BODIES[0], ())]})
    store.open()
    uses = {f.path: f.special_use for f in store.list_folders()}
    assert uses[("Sent Items",)] == "\\Sent" and uses[("Papierkorb",)] == "\\Trash"


# --- reruns -----------------------------------------------------------------------------------------------

def test_changes_since_reports_every_change_or_declines(kind):
    """What a rerun relies on instead of a listing: every new message (with date and size), every flag
    change, every expunged key, and no untouched key reported as gone.  A store that keeps no change log
    declines (None) and the engine lists the folder instead."""
    name, store, populate, caps = kind
    populate({("INBOX",): [(b, ()) for b in holdable(caps)[:4]]})
    store.open()
    before, metas = store.list_messages(("INBOX",))
    keys = [m.key for m in metas]
    if "write" in caps:
        store.set_flags(("INBOX",), [(keys[0], frozenset({"\\Flagged"}), frozenset())])
        store.delete_messages(("INBOX",), [keys[1]])
    populate({("INBOX",): [(BODIES[5], ())]})
    changes = store.changes_since(("INBOX",), before)
    if changes is None:
        pytest.skip(f"{name} keeps no change log: the engine lists its folders")
    status, now = store.list_messages(("INBOX",))
    reported = {m.key: m for m in changes.changed}
    (new,) = [m for m in now if m.key not in keys]
    assert new.key in reported and reported[new.key].internaldate is not None and reported[new.key].size
    assert changes.status.validity == status.validity
    untouched = keys[2:]
    assert not [k for k in untouched if k in changes.vanished]
    assert all(reported[k].flags == m.flags for m in now if (k := m.key) in reported)
    if "write" in caps:
        assert keys[1] in changes.vanished
        assert reported[keys[0]].flags == frozenset({"\\Flagged"})
