"""NethServer 7 -> 8 mail, served by a real Dovecot: what NS8 users see over IMAP after ``ns7 start; finish``.

The shipped NS7 sample is migrated with the command line into a scratch root, then the NS8 tree
(``ROOT/vmail/<u>/Maildir``, Maildir++ with listescaped names, per-folder ``dovecot-acl`` files, the
shared-mailbox dictionary) is served by Debian's Dovecot with the ``acl`` and ``listescape`` plugins and a
shared namespace ``Shared/<user>/``, as NS8's Dovecot serves it.  What is expected is read from the NS7
sample itself (file reads, nothing of mailmigrate), so a wrong conversion shows up as a wrong answer from
Dovecot: a missing or changed message, a right not granted, a folder a user can open and should not.

Groups: NS7 keeps groups in the account provider, not in the sample's e-smith databases, so the test's
passwd-file says who is in ``sales`` (Dovecot's ``acl_groups``): dave, who has no other grant on alice's
``Work\\Projects``, so the ``group=sales`` line is the only thing that can let him in; carol is in no group.
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

sys.path.insert(0, str(Path(__file__).parent))
from servers import dovecot, imapcheck  # noqa: E402

pytestmark = pytest.mark.skipif(not dovecot.available(), reason="needs dovecot and root")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "nethserver7"
NS7_VMAIL = SAMPLE / "var/lib/nethserver/vmail"
NS7_FULL = set("akeilprwts")

USERS = ("alice", "bob", "carol", "dave", "vmail")  # NS8 names: no @domain; vmail holds the public folders
GROUPS = {"dave": "sales"}  # the account provider's groups (see the module docstring)
PW = {u: f"{u}-secret" for u in USERS}
MAIL_FLAGS = {"D": "\\Draft", "F": "\\Flagged", "R": "\\Answered", "S": "\\Seen", "T": "\\Deleted"}


# -- the NS7 sample, read independently ----------------------------------------------------------------


def ns8_name(ns7_dir: str) -> str:
    return ns7_dir.partition("@")[0]


def imap_folder(dirname: str) -> str:
    """Maildir++ directory name (listescape, "\\5c" for a backslash) -> the name Dovecot shows with "/"."""
    if not dirname:
        return "INBOX"
    levels = dirname[1:].split(".")
    return "/".join(re.sub(r"\\([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), x) for x in levels)


def ns7_folders(maildir: Path) -> dict[str, Counter]:
    """IMAP folder name -> Counter of (bytes, flags), straight from the files."""
    out = {}
    # A clone of the repository has no empty directories: a folder is known by its maildirfolder file too.
    for d in [maildir] + sorted(p for p in maildir.iterdir() if p.name.startswith(".") and
                                any((p / x).exists() for x in ("cur", "new", "maildirfolder"))):
        c = Counter()
        for sub in ("cur", "new"):
            if not (d / sub).is_dir():
                continue
            for f in (d / sub).iterdir():
                info = f.name.partition(":2,")[2] if sub == "cur" else ""
                c[(f.read_bytes(), frozenset(MAIL_FLAGS[x] for x in info if x in MAIL_FLAGS))] += 1
        out[imap_folder("" if d == maildir else d.name)] = c
    return out


def ns7_acls() -> list[tuple[str, str, dict[str, str]]]:
    """(NS8 owner, IMAP folder, {NS7 identifier: rights}) for every dovecot-acl file of the sample."""
    out = []
    for acl in sorted(NS7_VMAIL.rglob("dovecot-acl")):
        rel = acl.parent.relative_to(NS7_VMAIL)
        owner, folder = ns8_name(rel.parts[0]), imap_folder("" if len(rel.parts) == 2 else rel.parts[2])
        lines = {}
        for ln in acl.read_text().splitlines():
            if ln.strip() and not ln.startswith("#"):
                ident, _, rights = ln.strip().partition(" ")
                lines[ident] = rights.strip()
        out.append((owner, folder, lines))
    return out


def granted(rights: str) -> set[str]:
    """What an NS7 line granted, in NS8 letters: NS7's full set implied deleting the folder (``x``)."""
    r = set(rights)
    return r | {"x"} if r == NS7_FULL else r


def expected_rights(user: str, owner: str, lines: dict[str, str]) -> set[str] | None:
    """The rights the NS7 ACL gave ``user`` (NS8 name), by Dovecot's precedence; None = no line applies."""
    if user == owner:  # without an "owner" line Dovecot gives the owner its own defaults, on NS7 as on NS8
        return granted(lines["owner"]) if "owner" in lines else None
    for ident, rights in lines.items():
        kind, _, name = ident.partition("=")
        if kind == "user" and ns8_name(name) == user:
            return granted(rights)
    for ident, rights in lines.items():
        kind, _, name = ident.partition("=")
        if kind == "group" and GROUPS.get(user) == ns8_name(name):
            return granted(rights)
    if "anyone" in lines or "authenticated" in lines:
        return granted(lines.get("anyone") or lines["authenticated"])
    return None


# -- the migration and the server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ns7dovecot")
    src = tmp / "ns7"
    shutil.copytree(SAMPLE, src, symlinks=True)
    # Dovecot's mail processes must traverse every directory above the mail: not pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="mm-ns8-", dir="/tmp"))
    os.chmod(root, 0o755)
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", *a, "--source-root", str(src),
                               "--root", str(root)], capture_output=True, text=True, env=env, timeout=120)

    r = cli("start", "mail")
    assert r.returncode == 0, r.stdout + r.stderr
    r = cli("finish", "mail")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mail: finish -> migrated" in r.stdout
    vmail = root / "vmail"
    dv = pwd.getpwnam("dovecot")
    for p in [vmail, *vmail.rglob("*")]:  # NS8 runs "chown -R vmail:vmail"; here Dovecot's user is dovecot
        os.lchown(p, dv.pw_uid, dv.pw_gid)
    passwd = tmp / "ns8.passwd"
    passwd.write_text("".join(f"{u}:{{PLAIN}}{PW[u]}::::::"
                              + (f"userdb_acl_groups={GROUPS[u]}" if u in GROUPS else "") + "\n" for u in USERS))
    try:
        with dovecot.nethserver_vmail(vmail, passwd, login="n") as server:
            yield server, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def login(server, user: str) -> imaplib.IMAP4:
    return imapcheck.connect(server.port, user, PW[user])


def q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def getacl(c: imaplib.IMAP4, mailbox: str) -> dict[str, set[str]]:
    typ, data = c.getacl(q(mailbox))
    assert typ == "OK", data
    words = data[-1].decode()
    words = re.findall(r'"(?:[^"\\]|\\.)*"|\S+', words)[1:]  # mailbox, then identifier rights pairs
    return {words[i].strip('"'): set(words[i + 1]) - {"c", "d"} for i in range(0, len(words), 2)}


def view(owner: str, folder: str, user: str) -> str:
    return folder if user == owner else f"Shared/{owner}/{folder}"


# -- (1) every message, byte for byte ------------------------------------------------------------------


def test_every_message_of_every_folder_is_served_byte_for_byte(served):
    server, _ = served
    ns7_dirs = sorted(d.name for d in NS7_VMAIL.iterdir() if (d / "Maildir").is_dir())
    assert {ns8_name(d) for d in ns7_dirs} == set(USERS)
    total = 0
    for d in ns7_dirs:
        want = ns7_folders(NS7_VMAIL / d / "Maildir")
        got = {name: Counter({(body, flags): n for (body, flags, _), n in msgs.items()})
               for name, msgs in imapcheck.account(server.port, ns8_name(d), PW[ns8_name(d)]).items()
               if not name.startswith("Shared/")}
        assert got == want, d
        total += sum(sum(c.values()) for c in want.values())
    # no folder of the sample was missed: every message file is counted
    assert total == len([f for f in NS7_VMAIL.rglob("*") if f.parent.name in ("cur", "new") and f.is_file()])
    # the folder name with a backslash is one folder, under its own name, not a hierarchy
    assert "Work\\Projects" in imapcheck.account(server.port, "alice", PW["alice"])


# -- (2) the converted ACLs grant what the NS7 ACLs granted ---------------------------------------------


def test_every_ns7_acl_line_grants_the_same_rights_to_the_ns8_user(served):
    server, _ = served
    acls = ns7_acls()
    assert len(acls) == 4
    checked = set()
    for owner, folder, lines in acls:
        for user in USERS:
            want = expected_rights(user, owner, lines)
            if want is None:
                continue
            c = login(server, user)
            try:
                got = imapcheck.myrights(c, view(owner, folder, user))
            finally:
                c.logout()
            assert got == want, (user, owner, folder)
            checked.add((owner, folder, user))
    # every identifier of the sample (owner, user=, group=, anyone) was matched by some NS8 user
    assert ("alice", "Work\\Projects", "bob") in checked  # user=bob@example.com akeilprwts
    assert ("alice", "Work\\Projects", "dave") in checked  # group=sales@example.com lrs
    assert ("bob", "Team", "carol") in checked  # anyone lr
    assert ("vmail", "Public", "alice") in checked  # user=alice@example.com on the public folder


def test_getacl_shows_the_converted_lines_and_no_root(served):
    server, _ = served
    for owner, folder, lines in ns7_acls():
        admin = owner if "a" in lines.get("owner", "") else next(
            ns8_name(i.partition("=")[2]) for i, r in lines.items() if i.startswith("user=") and "a" in r
            and ns8_name(i.partition("=")[2]) != "root")
        c = login(server, admin)
        try:
            got = getacl(c, view(owner, folder, admin))
        finally:
            c.logout()
        want = {}
        for ident, rights in lines.items():
            kind, _, name = ident.partition("=")
            if kind == "user" and ns8_name(name) == "root":
                continue
            # Dovecot names the owner line by the owner's login and a group with "$"
            key = {"user": ns8_name(name), "group": "$" + ns8_name(name), "owner": owner}.get(kind, ident)
            want[key] = granted(rights)
        assert "root" not in got and not any("@" in k for k in got), (owner, folder, got)
        assert got == want, (owner, folder)


def test_select_of_a_shared_folder_only_for_users_granted_lookup_and_read(served):
    server, _ = served
    allowed, refused = set(), set()
    for owner, folder, lines in ns7_acls():
        count = sum(ns7_folders(NS7_VMAIL / next(d.name for d in NS7_VMAIL.iterdir() if ns8_name(d.name) == owner)
                                / "Maildir")[folder].values())
        for user in USERS:
            if user == owner:
                continue
            want = expected_rights(user, owner, lines) or set()
            c = login(server, user)
            try:
                typ, data = c.select(q(f"Shared/{owner}/{folder}"), readonly=True)
                if {"l", "r"} <= want:
                    assert typ == "OK", (user, owner, folder, data)
                    assert int(data[0]) == count
                    typ, data = c.fetch("1:*", "(BODY.PEEK[])")
                    assert typ == "OK" and len([x for x in data if isinstance(x, tuple)]) == count
                    allowed.add((user, owner, folder))
                else:
                    assert typ == "NO", (user, owner, folder, data)
                    refused.add((user, owner, folder))
            finally:
                c.logout()
    assert ("dave", "alice", "Work\\Projects") in allowed  # through the group line only
    assert ("carol", "alice", "Work\\Projects") in refused  # no line for carol
    assert ("bob", "alice", "INBOX") in refused  # only root had rights there, and root is gone
    assert ("carol", "vmail", "Public") in allowed and ("dave", "bob", "Team") in allowed  # anyone


def test_shared_folders_are_listed_from_the_converted_dictionary(served):
    server, _ = served
    c = login(server, "bob")
    try:
        names = set(imapcheck.folders(c))
    finally:
        c.logout()
    assert {"Shared/alice/Work\\Projects", "Shared/vmail/Public"} <= names
    assert "Shared/alice/INBOX" not in names
