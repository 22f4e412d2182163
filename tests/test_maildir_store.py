"""The Maildir store against the real thing: what it writes, Dovecot reads, and what Dovecot writes, it reads;
plus what a crash, a full keyword table and foreign flag letters do."""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailmigrate.errors import ConfigError, StoreError
from mailmigrate.formats import maildir as md
from mailmigrate.formats import mutf7
from mailmigrate.model import AppendItem, Body
from mailmigrate.stores.maildir import MaildirStore

sys.path.insert(0, str(Path(__file__).parent))
from servers.dovecot import DovecotServer, available  # noqa: E402

WHEN = datetime(2022, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


@pytest.fixture
def dovecot_maildirpp():
    """Dovecot with its default Maildir++ layout (".A.B" directories), the layout this store writes."""
    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    s = DovecotServer(extra_conf="mail_location = maildir:~/Maildir\n").start()
    s.add_user("u", "pw")
    yield s
    s.stop()


def _chown_to_dovecot(root: Path) -> None:
    dv = pwd.getpwnam("dovecot")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [dirpath] + [os.path.join(dirpath, f) for f in filenames]:
            os.chown(n, dv.pw_uid, dv.pw_gid)


def _listed(lines) -> set[str]:
    """Names from LIST/LSUB answers (quoted or atom), decoded."""
    out = set()
    for ln in lines:
        m = re.search(rb'"(?:[^"]|\\")*" (?:"((?:[^"\\]|\\.)*)"|(\S+))$', ln)
        raw = m.group(1) if m.group(1) is not None else m.group(2)
        out.add(mutf7.decode(re.sub(rb"\\(.)", rb"\1", raw).decode()))
    return out


def _q(name: str) -> str:
    return '"' + mutf7.encode(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_dovecot_reads_what_the_store_writes(dovecot_maildirpp):
    root = dovecot_maildirpp.maildir("u")
    body = b"Subject: hello\r\n\r\nbare \xff bytes\r\n"
    with MaildirStore(root, create=True) as st:
        for path in [("Café", "Sub"), ("Projects",)]:
            st.create_folder(path)
            st.subscribe(path)
        st.append(("Café", "Sub"), [AppendItem(Body.from_bytes(body), frozenset({"\\Seen", "\\Flagged", "$Work"}),
                                               WHEN)])
        st.append(("INBOX",), [AppendItem(Body.from_bytes(b"Subject: in\r\n\r\nx\r\n"), frozenset({"\\Answered"}),
                                          WHEN)])
    _chown_to_dovecot(root)

    c = imaplib.IMAP4("127.0.0.1", dovecot_maildirpp.port)
    c.login("u", "pw")
    try:
        _, listed = c.list()
        names = _listed(listed)
        assert {"INBOX", "Café", "Café/Sub", "Projects"} <= names
        _, lsub = c.lsub()
        subscribed = _listed(lsub)
        assert {"Café/Sub", "Projects"} <= subscribed
        c.select(_q("Café/Sub"), readonly=True)
        _, data = c.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
        meta, got = data[0]
        assert got == body
        flags = set(re.search(rb"FLAGS \(([^)]*)\)", meta).group(1).split()) - {b"\\Recent"}
        assert flags == {b"\\Seen", b"\\Flagged", b"$Work"}, os.listdir(root / ".Caf&AOk-.Sub" / "cur")
        assert b'INTERNALDATE "04-Mar-2022 05:06:07 +0000"' in meta
        c.select("INBOX", readonly=True)
        _, data = c.fetch("1", "(FLAGS)")
        assert b"\\Answered" in data[0]
    finally:
        c.logout()


def test_store_reads_what_dovecot_writes(dovecot_maildirpp):
    body = b"Subject: from dovecot\r\n\r\n8-bit \xe9 body\r\n"
    c = imaplib.IMAP4("127.0.0.1", dovecot_maildirpp.port)
    c.login("u", "pw")
    for name in ["Gesendete Elemente", "Work/v1 & more", "Work/日本"]:
        c.create(_q(name))
        c.subscribe(_q(name))
    c.append(_q("Work/日本"), "(\\Seen $Label1 Custom)", imaplib.Time2Internaldate(WHEN.timestamp()), body)
    c.append("INBOX", "(\\Flagged \\Draft)", imaplib.Time2Internaldate(WHEN.timestamp()), b"Subject: i\r\n\r\n.\r\n")
    c.logout()

    with MaildirStore(dovecot_maildirpp.maildir("u")) as st:
        folders = {f.path: f for f in st.list_folders()}
        assert {("INBOX",), ("Gesendete Elemente",), ("Work",), ("Work", "v1 & more"), ("Work", "日本")} <= \
            set(folders)
        assert folders[("Gesendete Elemente",)].special_use == "\\Sent"
        assert folders[("Work", "日本")].subscribed and folders[("Gesendete Elemente",)].subscribed
        status, metas = st.list_messages(("Work", "日本"))
        assert status.validity > 1  # Dovecot's UIDVALIDITY from dovecot-uidlist
        (m,) = metas
        # Dovecot keeps files with bare LF (S= is that size, W= the CRLF one); the store returns the file.
        on_disk = body.replace(b"\r\n", b"\n")
        assert m.flags == {"\\Seen", "$Label1", "Custom"} and m.internaldate == WHEN and m.size == len(on_disk)
        ((_, got),) = list(st.fetch(("Work", "日本"), [m.key]))
        assert got.read() == on_disk
        (m,) = st.list_messages(("INBOX",))[1]
        assert m.flags == {"\\Flagged", "\\Draft"}


class Exploding(Body):
    """A body whose source connection breaks half way through."""

    def chunks(self, chunk_size=1 << 18):
        yield b"Subject: half\r\n"
        raise OSError("connection lost")


def test_a_failed_append_leaves_nothing_a_client_could_see(tmp_path):
    with MaildirStore(tmp_path / "M", create=True) as st:
        good = AppendItem(Body.from_bytes(b"Subject: ok\r\n\r\n"))
        with pytest.raises(StoreError, match="connection lost"):
            st.append(("INBOX",), [good, AppendItem(Exploding(data=b"x"))])
        for sub in ("cur", "new", "tmp"):
            assert os.listdir(tmp_path / "M" / sub) == []  # not even the good one: the batch is whole or nothing
        assert st.list_messages(("INBOX",))[1] == []


def test_appended_file_names_look_like_dovecots(tmp_path):
    with MaildirStore(tmp_path / "M", create=True) as st:
        keys = st.append(("INBOX",), [AppendItem(Body.from_bytes(b"12345"), frozenset({"\\Seen", "\\Answered"}), WHEN)])
    (name,) = os.listdir(tmp_path / "M" / "cur")
    assert re.fullmatch(r"\d+\.M\d+P\d+Q\d+R[0-9a-f]+\.[^/:,]+,S=5:2,RS", name)
    assert name.startswith(keys[0] + ",")
    assert os.stat(tmp_path / "M" / "cur" / name).st_mtime == WHEN.timestamp()


def test_flag_change_keeps_key_sizes_and_foreign_letters(tmp_path):
    root = tmp_path / "M"
    MaildirStore(root, create=True).open()
    (root / "cur" / "100.M1P1.h,S=9,W=10:2,SXz").write_bytes(b"123456789")
    with MaildirStore(root) as st:
        (m,) = st.list_messages(("INBOX",))[1]
        assert m.key == "100.M1P1.h" and m.flags == {"\\Seen"}  # X is unknown, z has no keyword line
        st.set_flags(("INBOX",), [(m.key, frozenset({"\\Flagged"}), frozenset({"\\Seen"}))])
        assert os.listdir(root / "cur") == ["100.M1P1.h,S=9,W=10:2,FXz"]
        (m2,) = st.list_messages(("INBOX",))[1]
        assert m2.key == m.key and m2.flags == {"\\Flagged"}


def test_keywords_beyond_26_letters_are_reported_not_lost_silently(tmp_path):
    with MaildirStore(tmp_path / "M", create=True) as st:
        st.create_folder(("Full",))
        (tmp_path / "M" / ".Full" / "dovecot-keywords").write_bytes(
            md.dump_keywords({i: f"kw{i}" for i in range(25)}))
        perm = st.permanent_flags(("Full",))
        kept, dropped = perm.filter(frozenset({"\\Seen", "kw3", "new1", "new2"}))
        assert "\\Seen" in kept and "kw3" in kept and len(dropped) == 1 and len(kept & {"new1", "new2"}) == 1
        assert perm.filter(frozenset(kept)) == (kept, frozenset())  # the letter it claimed stays claimed
        st.append(("Full",), [AppendItem(Body.from_bytes(b"x"), kept)])
        (m,) = st.list_messages(("Full",))[1]
        assert m.flags == kept
        assert len(md.parse_keywords((tmp_path / "M" / ".Full" / "dovecot-keywords").read_bytes())) == 26


def test_validity_is_stable_and_survives_dovecot_indexing_the_folder(tmp_path):
    with MaildirStore(tmp_path / "M", create=True) as st:
        st.create_folder(("A", "B"))
        v = st.folder_status(("A", "B")).validity
        assert v == MaildirStore(tmp_path / "M").folder_status(("A", "B")).validity
        (tmp_path / "M" / ".A.B" / "dovecot-uidlist").write_text("3 V1234 N1 Gabc\n")
        assert st.folder_status(("A", "B")).validity == v
        assert (tmp_path / "M" / ".A.B" / "maildirfolder").exists() and (tmp_path / "M" / ".A" / "maildirfolder").exists()


def test_hierarchy_only_parent_and_foreign_directories(tmp_path):
    root = tmp_path / "M"
    for d in (root, root / ".Lone.Child", root / ".Bad&Name"):
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True)
    (root / ".not-a-folder").mkdir()
    with MaildirStore(root) as st:
        folders = {f.path: f for f in st.list_folders()}
    # ".Bad&Name" (a bare "&", not modified UTF-7) holds mail: read as the folder it means (issue 19: skipping
    # it lost its mail in silence); ".not-a-folder" has no cur/new/tmp and stays out.
    assert set(folders) == {("INBOX",), ("Lone", "Child"), ("Lone",), ("Bad&Name",)}
    assert not folders[("Lone",)].selectable and folders[("Lone", "Child")].selectable


def test_missing_maildir_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        MaildirStore(tmp_path / "nope").open()
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "file").write_text("x")
    with pytest.raises(ConfigError):
        MaildirStore(tmp_path / "plain").open()


def test_subscribing_keeps_a_subscription_to_another_users_shared_folder(tmp_path):
    # Dovecot 2.3 keeps "Shared/bob@example.com/Team" (a shared namespace, not a folder of this Maildir) in the
    # subscriber's own file, in this very form; rewriting it as a folder of ours would lose the subscription.
    root = tmp_path / "M"
    shared = b"Shared/bob@example\tcom/Team\n"
    with MaildirStore(root, create=True) as st:
        (root / "subscriptions").write_bytes(md.SUBSCRIPTIONS_V2_HEADER + b"INBOX\n" + shared)
        st.create_folder(("Projects",))
        st.subscribe(("Projects",))
        st.subscribe(("Projects",))
        assert {f.path for f in st.list_folders() if f.subscribed} == {("INBOX",), ("Projects",)}
    assert (root / "subscriptions").read_bytes() == md.SUBSCRIPTIONS_V2_HEADER + b"INBOX\n" + shared + b"Projects\n"
