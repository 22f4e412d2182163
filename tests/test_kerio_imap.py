"""Kerio's IMAP master authentication, spoken by a raw socket client to the test front end over Dovecot."""

from __future__ import annotations

import itertools
import os
import socket
from datetime import datetime, timezone

import pytest

from mailmigrate.model import INBOX, AppendItem, Body, Secret
from servers.kerio import KerioImapFrontEnd, masterauth_response

MASTER = "kerio-master-secret"
_n = itertools.count()


@pytest.fixture
def dovecot(dovecot_pair):
    """The shared target Dovecot (master user master/masterpw); tests use users of their own."""
    return dovecot_pair[1]


@pytest.fixture(scope="module")
def _owners(dovecot_pair):
    """Mailbox owners for this module, added in one go: Dovecot takes seconds to notice each change."""
    names = [f"alice{os.getpid()}x{next(_n)}@example.com" for _ in range(16)]
    dovecot_pair[1].add_users({n: "alice-pw" for n in names})
    return iter(names)


@pytest.fixture
def alice(_owners):
    """A fresh mailbox owner, named as Kerio names users: login@domain."""
    return next(_owners)


@pytest.fixture
def front(dovecot, alice):
    with KerioImapFrontEnd(dovecot.port, master_password=MASTER, backend_master=dovecot.master_user,
                           user_exists={alice}.__contains__) as fe:
        yield fe


class Raw:
    """A line-level IMAP client: what a test sends is exactly what goes on the wire."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.sock.makefile("rb")

    def line(self) -> str:
        data = self.file.readline()
        assert data, "connection closed"
        return data.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, text: str | bytes) -> None:
        self.sock.sendall((text.encode() if isinstance(text, str) else text) + b"\r\n")

    def command(self, tag: str, text: str) -> tuple[list[str], str]:
        self.send(f"{tag} {text}")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[str], str]:
        untagged = []
        while True:
            ln = self.line()
            if ln.startswith(tag + " "):
                return untagged, ln
            untagged.append(ln)

    def masterauth(self, tag: str, password: str) -> str:
        self.send(f"{tag} X-MASTERAUTH")
        cont = self.line()
        assert cont.startswith("+ ")
        self.send(masterauth_response(cont[2:], password))
        return self.until(tag)[1]

    def close(self):
        self.file.close()
        self.sock.close()


def listed_by_dovecot(dovecot, user: str, password: str) -> list[str]:
    """The user's LIST as Dovecot answers a direct login, past the front end: what the user finds in the mailbox
    whoever wrote it."""
    d = Raw(dovecot.port)
    try:
        d.line()
        assert d.command("b1", f"LOGIN {user} {password}")[1].startswith("b1 OK")
        return d.command("b2", 'LIST "" "*"')[0]
    finally:
        d.close()


@pytest.fixture
def raw(front):
    c = Raw(front.port)
    assert c.line().startswith("* OK")
    yield c
    c.close()


def test_capability_offers_x_masterauth(raw):
    untagged, done = raw.command("a1", "CAPABILITY")
    assert done.startswith("a1 OK")
    caps = untagged[0].split()
    assert caps[:2] == ["*", "CAPABILITY"] and "X-MASTERAUTH" in caps and "IMAP4rev1" in caps


def test_setuser_is_refused_before_masterauth(raw, front, alice):
    _, done = raw.command("a1", f"X-SETUSER {alice}")
    assert done.startswith("a1 NO")
    assert front.setusers == []


def test_wrong_masterauth_answer_is_refused_and_setuser_stays_closed(raw, front, alice):
    assert raw.masterauth("a1", "not-the-master").startswith("a1 NO")
    # the answer must be lower-case hex: the right digest in upper case is wrong too
    raw.send("a2 X-MASTERAUTH")
    challenge = raw.line()[2:]
    raw.send(masterauth_response(challenge, MASTER).upper())
    assert raw.until("a2")[1].startswith("a2 NO")
    _, done = raw.command("a3", f"X-SETUSER {alice}")
    assert done.startswith("a3 NO")
    assert front.masterauth_failures == 2


def test_challenges_differ_between_attempts(raw):
    raw.send("a1 X-MASTERAUTH")
    first = raw.line()
    raw.send("*")
    assert raw.until("a1")[1].startswith("a1 BAD")
    raw.send("a2 X-MASTERAUTH")
    second = raw.line()
    assert first != second


def test_setuser_of_unknown_user_is_refused(raw, front, alice):
    assert raw.masterauth("a1", MASTER).startswith("a1 OK")
    _, done = raw.command("a2", "X-SETUSER nobody@example.com")
    assert done.startswith("a2 NO")
    # the session is still usable for another user
    _, done = raw.command("a3", f'X-SETUSER "{alice}"')  # quoted, as IMAP clients may send it
    assert done.startswith("a3 OK")
    assert front.setusers == [alice]


def test_after_setuser_the_session_is_dovecots_as_that_user(raw, alice):
    assert raw.masterauth("a1", MASTER).startswith("a1 OK")
    assert raw.command("a2", f"X-SETUSER {alice}")[1].startswith("a2 OK")

    message = b"From: bob@example.com\r\nSubject: relayed\r\n\r\nbody line\r\n"
    raw.send(f"a3 APPEND INBOX (\\Flagged) {{{len(message)}}}")
    assert raw.line().startswith("+")
    raw.sock.sendall(message + b"\r\n")
    assert raw.until("a3")[1].startswith("a3 OK")

    untagged, done = raw.command("a4", "SELECT INBOX")
    assert done.startswith("a4 OK")
    assert "* 1 EXISTS" in untagged

    raw.send("a5 FETCH 1 (FLAGS BODY.PEEK[])")
    head = raw.line()
    assert head.startswith("* 1 FETCH") and "\\Flagged" in head and head.endswith(f"{{{len(message)}}}")
    assert raw.file.read(len(message)) == message
    assert raw.until("a5")[1].startswith("a5 OK")

    # Dovecot's own post-login capabilities now answer, not the front end's
    untagged, _ = raw.command("a6", "CAPABILITY")
    assert "X-MASTERAUTH" not in untagged[0] and "UIDPLUS" in untagged[0]

    untagged, done = raw.command("a7", "LOGOUT")
    assert untagged[0].startswith("* BYE") and done.startswith("a7 OK")
    assert raw.file.readline() == b""


def test_the_message_is_in_the_users_real_mailbox(front, dovecot, alice):
    """What was written through the front end is there for a direct Dovecot login as the user."""
    c = Raw(front.port)
    c.line()
    assert c.masterauth("a1", MASTER).startswith("a1 OK")
    assert c.command("a2", f"X-SETUSER {alice}")[1].startswith("a2 OK")
    assert c.command("a3", "CREATE Projects")[1].startswith("a3 OK")
    c.command("a4", "LOGOUT")
    c.close()

    assert any(ln.endswith("Projects") for ln in listed_by_dovecot(dovecot, alice, "alice-pw"))


def test_user_created_through_the_api_gets_mail_through_master_auth(tmp_path, dovecot):
    """The cg2kms order: create the user in Kerio's directory, then write their mail as master."""
    from mailmigrate.directory.base import User
    from mailmigrate.directory.kerio import KerioDirectory
    from servers.kerio import KerioAdminServer

    login = f"newbie{os.getpid()}x{next(_n)}"
    email = f"{login}@example.com"
    with KerioAdminServer(tmp_path / "kerio", on_user_created=dovecot.add_user) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password=MASTER, backend_master=dovecot.master_user,
                              user_exists=admin.has_user) as fe:
        c = Raw(fe.port)
        c.line()
        assert c.masterauth("a1", MASTER).startswith("a1 OK")
        # not yet in Kerio: refused
        assert c.command("a2", f"X-SETUSER {email}")[1].startswith("a2 NO")

        url = f"kerio://Admin@127.0.0.1:{admin.port}/example.com?cafile={admin.certfile}"
        with KerioDirectory.from_url(url, Secret("adminpw")) as directory:
            directory.add(User(login, real_name="New Bie", password=Secret("newbie-pw")))

        assert c.command("a3", f"X-SETUSER {email}")[1].startswith("a3 OK")
        assert c.command("a4", "CREATE Archive")[1].startswith("a4 OK")
        c.command("a5", "LOGOUT")
        c.close()

    # the password given to Kerio is the one the user now logs in with
    assert any(ln.endswith("Archive") for ln in listed_by_dovecot(dovecot, email, "newbie-pw"))


def test_mailmigrate_sync_into_kerio_with_master_auth(front, dovecot, alice, tmp_path):
    """The real command line into "Kerio": imap://…?master=kerio logs in with X-MASTERAUTH as the master,
    selects the owner with X-SETUSER, and the sample Maildir lands byte-exact in that user's mailbox."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from servers import imapcheck

    sample = Path(__file__).resolve().parent.parent / "examples" / "sample-maildir"
    env = {**os.environ, "MAILMIGRATE_TARGET_PASSWORD": MASTER}
    url = f"imap://{alice.replace('@', '%40')}@127.0.0.1:{front.port}?tls=none&master=kerio"
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sync", f"maildir:{sample}", url,
                        "--target-master", "Admin", "--state", str(tmp_path / "s.db"), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["copied"] == 65 and MASTER not in p.stdout + p.stderr
    got = imapcheck.account(dovecot.port, alice, "alice-pw")
    inbox = sorted(k[0] for k in got["INBOX"])
    want = sorted(f.read_bytes() for sub in ("cur", "new") for f in (sample / sub).iterdir())
    assert inbox == want
    # rerun through the front end: nothing to copy
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sync", f"maildir:{sample}", url,
                        "--target-master", "Admin", "--state", str(tmp_path / "s.db"), "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert json.loads(p.stdout)["copied"] == 0


def test_imap_store_lists_and_appends_through_kerio_master_auth(front, dovecot, alice):
    """mailmigrate's own IMAP store in Kerio mode, as cg2kms uses it against Kerio."""
    from mailmigrate.stores.imap import ImapStore

    body = b"From: carol@example.com\r\nSubject: via kerio\r\nMessage-ID: <k1@example.com>\r\n\r\nhello\r\n"
    when = datetime(2020, 5, 17, 8, 30, tzinfo=timezone.utc)
    store = ImapStore("127.0.0.1", front.port, user=alice, password=Secret(MASTER), tls="none",
                      master_user="kerio-master", master_mode="kerio")
    with store:
        store.create_folder(("Work", "Projects"))
        store.append(INBOX, [AppendItem(Body.from_bytes(body), frozenset({"\\Seen"}), when)])
        names = {f.path for f in store.list_folders()}
        assert {INBOX, ("Work",), ("Work", "Projects")} <= names
        _, metas = store.list_messages(INBOX)
        assert len(metas) == 1 and "\\Seen" in metas[0].flags and metas[0].internaldate == when
        (_, fetched), = list(store.fetch(INBOX, [metas[0].key]))
        assert fetched.read() == body
    assert front.setusers == [alice]
    # it went to alice's real maildir on Dovecot
    assert (dovecot.maildir(alice)).exists()


def test_imap_store_with_wrong_master_password_is_refused(front, alice):
    from mailmigrate.errors import AuthenticationFailed
    from mailmigrate.stores.imap import ImapStore

    store = ImapStore("127.0.0.1", front.port, user=alice, password=Secret("not-it"), tls="none",
                      master_user="kerio-master", master_mode="kerio")
    with pytest.raises(AuthenticationFailed) as e:
        store.open()
    assert "not-it" not in str(e.value)
    assert front.setusers == [] and front.masterauth_failures == 1
