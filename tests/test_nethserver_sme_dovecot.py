"""The SME Server backup imported into a NethServer tree, then served by a real Dovecot as NethServer's Dovecot
serves it: Maildir++ with listescape, logins user@domain, the acl plugin (vfile) and a shared namespace
``Shared/<user@domain>/`` listed from the migrated shared-mailbox index.

What is expected is read from the SME sample itself (its files, nothing of mailmigrate): every message of every
folder byte for byte, and every grant SME's ACL files made to a short name (``user=bob lr``) held by the same
person logged in as ``bob@example.com``: MYRIGHTS, LIST, SELECT allowed to the grantee and refused to others,
and a subscription to another user's shared folder still there.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from servers import dovecot, imapcheck

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARCHIVE = EXAMPLES / "sme-backup.tgz"
sys.path.insert(0, str(EXAMPLES))
import make_nethserver  # noqa: E402

pytestmark = pytest.mark.skipif(not dovecot.available(), reason="needs root and Debian's dovecot-imapd")
D = "example.com"


def imap_name(dirname: str) -> str:
    """".Work\\Projects" (as SME stored it) -> the IMAP name Dovecot shows: INBOX, A/B, Work\\Projects."""
    return "INBOX" if dirname == "" else dirname[1:].replace(".", "/")


def sme_acls(src: Path) -> list[tuple[str, str, dict[str, str]]]:
    """(owner, IMAP folder, {identifier: rights}) for every dovecot-acl file of the SME sample."""
    out = []
    for acl in sorted((src / "home/e-smith/files/users").glob("*/Maildir/**/dovecot-acl")):
        owner = acl.relative_to(src / "home/e-smith/files/users").parts[0]
        folder = imap_name("" if acl.parent.name == "Maildir" else acl.parent.name)
        lines = dict(ln.split(None, 1) for ln in acl.read_text().splitlines() if ln.strip() and ln[0] != "#")
        out.append((owner, folder, lines))
    return out


def sme_grant(user: str, lines: dict[str, str]) -> set[str] | None:
    """What SME's lines grant ``user`` (not the owner), by Dovecot's precedence; None: no line applies."""
    if f"user={user}" in lines:
        return set(lines[f"user={user}"])
    for ident in ("anyone", "authenticated"):
        if ident in lines:
            return set(lines[ident])
    return None


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smedovecot")
    want = make_nethserver.build_sme_tree(tmp / "src")  # user -> {".Folder": [bytes]}
    root = Path(tempfile.mkdtemp(prefix="mm-sme-", dir="/tmp"))  # Dovecot must traverse it: not pytest's 0700
    os.chmod(root, 0o755)
    try:
        r = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sme-import", str(ARCHIVE), "--root",
                            str(root)], capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: the sample's reported errors, on purpose
        vmail = root / "var/lib/nethserver/vmail"
        dv = pwd.getpwnam("dovecot")
        for p in [root / "var", root / "var/lib", root / "var/lib/nethserver", vmail, *vmail.rglob("*")]:
            os.lchown(p, dv.pw_uid, dv.pw_gid)  # NethServer's "chown -R vmail:vmail"; here Dovecot's user
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)
        passwd = tmp / "users"
        passwd.write_text("".join(f"{u}@{D}:{{PLAIN}}pw-{u}::::::\n" for u in sorted(want)))
        with dovecot.nethserver_vmail(vmail, passwd, login="u") as server:
            migrated_index = (vmail / "shared-mailboxes.db").read_bytes()

            def as_migrated() -> None:
                """Put the index back as the import wrote it.  Dovecot rewrites an owner's entries from the
                owner's ACL files the first time the owner lists mailboxes, so once everyone has logged in a
                listing would prove nothing about the migrated index; grantees must find shares before their
                owners log in."""
                (vmail / "shared-mailboxes.db").write_bytes(migrated_index)

            yield server, want, sme_acls(tmp / "src"), as_migrated
    finally:
        shutil.rmtree(root, ignore_errors=True)


def login(server, user: str) -> imaplib.IMAP4:
    return imapcheck.connect(server.port, f"{user}@{D}", f"pw-{user}")


def q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_imported_mail_is_served_byte_for_byte(served):
    server, want, _, _ = served
    for user in sorted(want):
        got = imapcheck.account(server.port, f"{user}@{D}", f"pw-{user}")
        got_bodies = {name: Counter(k[0] for k in msgs.elements()) for name, msgs in got.items()
                      if msgs and not name.startswith("Shared/")}
        expected = {imap_name(name): Counter(bodies) for name, bodies in want[user].items() if bodies}
        assert got_bodies == expected, user
    assert "Work\\Projects" in imapcheck.account(server.port, f"alice@{D}", "pw-alice")


def test_every_sme_grant_holds_for_the_same_person_as_user_at_domain(served):
    server, want, acls, _ = served
    users = sorted(want)
    checked = set()
    for owner, folder, lines in acls:
        for user in users:
            rights = set(lines["owner"]) if user == owner else sme_grant(user, lines)
            if rights is None:
                continue
            c = login(server, user)
            try:
                got = imapcheck.myrights(c, folder if user == owner else f"Shared/{owner}@{D}/{folder}")
            finally:
                c.logout()
            assert got == rights, (user, owner, folder)
            checked.add((user, owner, folder))
    assert ("bob", "alice", "Work\\Projects") in checked  # user=bob lr
    assert ("alice", "bob", "Team") in checked  # user=alice lrwstipe
    assert ("admin", "carol", "Lists") in checked  # anyone lr
    # the grant to zed (deleted on SME) is kept as it was, beside the owner's and bob@example.com's
    c = login(server, "alice")
    try:
        typ, data = c.getacl(q("Work\\Projects"))
    finally:
        c.logout()
    assert typ == "OK"
    words = data[-1].decode().split()[1:]
    assert dict(zip(words[::2], words[1::2])).keys() == {f"alice@{D}", f"bob@{D}", "zed"}


def test_shared_folders_are_listed_and_opened_by_grantees_only(served):
    server, want, acls, as_migrated = served
    allowed, refused = set(), set()
    for owner, folder, lines in acls:
        count = len(want[owner]["" if folder == "INBOX" else "." + folder.replace("/", ".")])
        for user in sorted(want):
            if user == owner:
                continue
            rights = sme_grant(user, lines) or set()
            name = f"Shared/{owner}@{D}/{folder}"
            as_migrated()
            c = login(server, user)
            try:
                assert (name in imapcheck.folders(c)) == ("l" in rights), (user, name)
                typ, data = c.select(q(name), readonly=True)
                if {"l", "r"} <= rights:
                    assert typ == "OK" and int(data[0]) == count, (user, name, data)
                    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
                    got = sorted(x[1] for x in data if isinstance(x, tuple))
                    assert got == sorted(want[owner]["" if folder == "INBOX" else "." + folder.replace("/", ".")])
                    allowed.add((user, owner, folder))
                else:
                    assert typ == "NO", (user, name, data)
                    refused.add((user, owner, folder))
            finally:
                c.logout()
    assert ("bob", "alice", "Work\\Projects") in allowed
    assert ("carol", "alice", "Work\\Projects") in refused and ("admin", "alice", "Work\\Projects") in refused
    assert ("alice", "bob", "Team") in allowed and ("carol", "bob", "Team") in refused
    assert ("alice", "carol", "Lists") in allowed and ("bob", "carol", "Lists") in allowed  # anyone


def test_subscription_to_another_users_shared_folder_is_kept(served):
    server, _, _, _ = served
    c = login(server, "alice")
    try:
        subscribed = imapcheck.subscriptions(c)
    finally:
        c.logout()
    assert {"INBOX", "Sent", f"Shared/bob@{D}/Team"} <= subscribed
    assert not any(re.match(r"Shared/bob/", s) for s in subscribed)
