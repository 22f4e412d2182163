"""The mbox store on the trees users actually have: Thunderbird profiles, single files, growing and
compacted files, large ones."""

from __future__ import annotations

import tracemalloc
from datetime import datetime, timedelta, timezone

import pytest

from mailmigrate.errors import ConfigError, FolderFailed
from mailmigrate.formats import mbox as fmt
from mailmigrate.stores.mbox import MboxStore

T0 = datetime(2023, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


def mbox_of(*bodies: bytes) -> bytes:
    return b"".join(fmt.write_message(b, "a@example.org", T0 + timedelta(minutes=i)) for i, b in enumerate(bodies))


def fetch_all(st, path):
    _, metas = st.list_messages(path)
    return metas, {m.key: b.read() for m, b in st.fetch(path, [m.key for m in metas])}


def test_thunderbird_profile(tmp_path):
    (tmp_path / "Inbox").write_bytes(mbox_of(b"Subject: 1\n\nx\n"))
    (tmp_path / "Inbox.msf").write_bytes(b"// index")
    (tmp_path / "Sent").write_bytes(mbox_of(b"Subject: s\n\ny\n"))
    (tmp_path / ".hidden").write_bytes(mbox_of(b"Subject: h\n\nz\n"))
    (tmp_path / "msgFilterRules.dat").write_text("version=9")
    (tmp_path / "Archive.sbd" / "2022.sbd").mkdir(parents=True)
    (tmp_path / "Archive.sbd" / "2022.sbd" / "Q1").write_bytes(mbox_of(b"Subject: q\n\nq\n"))
    (tmp_path / "Archive.sbd" / "2022.sbd" / "Q1.msf").write_bytes(b"")
    (tmp_path / "Archive.sbd" / "2022").write_bytes(b"")
    with MboxStore(tmp_path) as st:
        folders = {f.path: f for f in st.list_folders()}
    assert set(folders) == {("INBOX",), ("Sent",), ("Archive",), ("Archive", "2022"), ("Archive", "2022", "Q1")}
    assert folders[("Sent",)].special_use == "\\Sent"
    assert not folders[("Archive",)].selectable and folders[("Archive", "2022")].selectable


def test_single_file_is_the_inbox(tmp_path):
    f = tmp_path / "mail.mbox"
    f.write_bytes(mbox_of(b"Subject: a\nStatus: RO\n\nbody\n"))
    with MboxStore(f) as st:
        assert [x.path for x in st.list_folders()] == [("INBOX",)]
        (m,), got = fetch_all(st, ("INBOX",))
    assert got[m.key] == b"Subject: a\nStatus: RO\n\nbody\n"
    assert m.flags == {"\\Seen"} and m.internaldate == T0 and m.size == len(got[m.key])


def test_keys_survive_new_mail_and_tell_twins_apart(tmp_path):
    f = tmp_path / "Inbox"
    twin = b"Subject: twin\n\nsame\n"
    f.write_bytes(mbox_of(twin, b"Subject: other\n\n.\n", twin))
    st = MboxStore(tmp_path)
    st.open()
    before, got = fetch_all(st, ("INBOX",))
    assert [m.key.rsplit(":", 1)[1] for m in before] == ["0", "0", "1"]
    assert before[0].key.split(":")[0] == before[2].key.split(":")[0]
    with open(f, "ab") as out:
        out.write(mbox_of(b"Subject: new\n\nmail\n"))
    after, got = fetch_all(st, ("INBOX",))
    assert [m.key for m in after[:3]] == [m.key for m in before] and len(after) == 4
    assert got[after[3].key] == b"Subject: new\n\nmail\n"


def test_fetch_after_the_file_was_compacted(tmp_path):
    f = tmp_path / "Inbox"
    f.write_bytes(mbox_of(b"Subject: gone\n\n1\n", b"Subject: stays\n\n2\n"))
    st = MboxStore(tmp_path)
    st.open()
    _, metas = st.list_messages(("INBOX",))
    f.write_bytes(mbox_of(b"Subject: stays\n\n2\n"))  # a client compacted the folder
    got = {m.key: b.read() for m, b in st.fetch(("INBOX",), [m.key for m in metas])}
    assert got == {metas[1].key: b"Subject: stays\n\n2\n"}  # the deleted one is absent, never wrong bytes


def test_mboxo_variant(tmp_path):
    (tmp_path / "Inbox").write_bytes(b"From a Mon Jan  4 10:00:00 2021\n\n>From x\n>>From y\n\n")
    with MboxStore(tmp_path, variant="mboxo") as st:
        _, got = fetch_all(st, ("INBOX",))
    assert list(got.values()) == [b"\nFrom x\n>>From y\n"]
    with pytest.raises(ConfigError):
        MboxStore(tmp_path, variant="mboxcl2")


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ConfigError):
        MboxStore(tmp_path / "nope").open()
    with MboxStore(tmp_path) as st:
        with pytest.raises(FolderFailed):
            st.list_messages(("Nope",))


def test_listing_a_big_mbox_keeps_memory_flat(tmp_path):
    big = b"Subject: big\n\n" + (b"x" * 1000 + b"\n") * 3000  # 3 MB, spooled to disk when fetched
    small = b"Subject: s\n\n" + b"y" * 5000 + b"\n"
    with open(tmp_path / "Inbox", "wb") as out:
        out.write(fmt.write_message(big))
        for i in range(4000):  # about 20 MB of mail
            out.write(fmt.write_message(small + str(i).encode()))
    st = MboxStore(tmp_path)
    st.open()
    tracemalloc.start()
    try:
        _, metas = st.list_messages(("INBOX",))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(metas) == 4001
    assert peak < 5_000_000, f"listing 23 MB of mbox peaked at {peak} bytes"
    ((m, body),) = list(st.fetch(("INBOX",), [metas[0].key]))
    assert not body.in_memory and body.size == len(big) and body.read() == big
