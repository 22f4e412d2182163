"""The CommuniGate project path into its main target, Kerio Connect, through the CLI: the project file names
Kerio's administration API as the directory (users created there with cg2kms's password rules) and Kerio's
IMAP with master authentication as the target.  The Kerio stand-in (tests/servers/kerio.py) sits in front
of a real Dovecot; what arrived is read back by logging in to that Dovecot as each user with the password
the pass file says Kerio was given, and compared byte for byte with what the CommuniGate store holds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from mailmigrate.paths.communigate.migrate import GENERATED, MIGRATED, select_accounts
from samples import generator
from servers import imapcheck
from servers.kerio import KerioAdminServer, KerioImapFrontEnd
from test_communigate_migrate import assert_same, expected
from test_sync_imap import mm
from test_workflow_communigate import act, pass_files, status

DOMAINS = ("example.com", "example.org", "shop.example.net")
ADDRESSES = {"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org", "erin@example.org",
             "frank@shop.example.net"}
ADMIN_PW = "kerio-Admin-pw-7"
MASTER_PW = "kerio-Master-pw-9"
OWN = b"From: x@example.com\r\nSubject: mine\r\n\r\nkeep me\r\n"


@pytest.fixture
def kerio(dovecot_factory, tmp_path):
    dovecot = dovecot_factory()
    created: dict[str, str] = {}  # address -> the password Users.create was given
    with KerioAdminServer(tmp_path / "kerio", admin=("Admin", ADMIN_PW), domains=DOMAINS,
                          on_user_created=created.__setitem__) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password=MASTER_PW, user_exists=admin.has_user) as front:
        yield dovecot, admin, front, created


def make_project(tmp_path: Path, admin: KerioAdminServer, front: KerioImapFrontEnd, extra: str = "") -> Path:
    """A freshly generated CommuniGate store and a project file that targets Kerio: API and IMAP."""
    generator("make_communigate").build(tmp_path / "CommuniGate")
    for name, secret in (("admin.pw", ADMIN_PW), ("master.pw", MASTER_PW)):
        (tmp_path / name).write_text(secret + "\n")
        os.chmod(tmp_path / name, 0o600)
    shutil.copyfile(admin.certfile, tmp_path / "kerio-ca.pem")
    p = tmp_path / "cgk.toml"
    p.write_text(f"""[project]
name = "cgk"
path = "communigate"

[communigate]
base = "CommuniGate"
directory = "kerio://Admin@127.0.0.1:{admin.port}?cafile=kerio-ca.pem"
directory_password_file = "admin.pw"
{extra}
[target]
url = "imap://127.0.0.1:{front.port}?master=kerio&tls=none"
master = "Admin"
password_file = "master.pw"
""")
    return p


def kerio_user(admin: KerioAdminServer, address: str) -> dict | None:
    login, domain = address.split("@")
    return admin.find_user(login, domain)


def total(base: Path, address: str) -> int:
    account, domain = address.split("@", 1)
    return sum(sum(c.values()) for c in expected(base, domain, account).values())


def everything_written(tmp_path: Path) -> str:
    """Every file the project wrote, but the pass file (the one place a password belongs), the password files
    the test gave it, and what is not the project's (the CommuniGate store, the stand-ins' own files)."""
    out = []
    for f in sorted(tmp_path.rglob("*")):
        top = f.relative_to(tmp_path).parts[0]
        if f.is_file() and f.suffix not in (".pass", ".pw") and top != "CommuniGate" \
                and not top.startswith(("kerio", "dovecot")):
            out.append(f.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def test_communigate_project_into_kerio(kerio, tmp_path):
    dovecot, admin, front, created = kerio
    p = make_project(tmp_path, admin, front)
    base = tmp_path / "CommuniGate"
    shown = []  # everything the commands printed, searched for passwords at the end

    def act(*args) -> dict[str, dict]:
        r = mm("project", args[0], p, *args[1:], "--json")
        shown.append(r)
        return {o["unit"]: o for o in json.loads(r.stdout)}

    shown.append(mm("project", "init", p))
    assert set(status(p)) == ADDRESSES

    started = act("start")
    assert all(o["ok"] and o["state"] == "migrating" for o in started.values()), started
    assert f"user created in kerio://Admin@127.0.0.1:{admin.port}" in started["alice@example.com"]["message"]
    # The users exist in Kerio, each in its own domain under its CommuniGate name, enabled, with its
    # CommuniGate real name and the password cg2kms's rules chose (which the pass file holds).
    pw = pass_files(tmp_path)
    assert set(pw) == ADDRESSES == set(created)
    assert pw["alice@example.com"] == ('Wonder land "42"', MIGRATED)
    assert pw["bob@example.com"][1] == GENERATED
    real_names = {a.address: a.real_name or "" for a, _ in select_accounts(base)}
    assert real_names["alice@example.com"] == "Alice Archer"
    for address in ADDRESSES:
        rec = kerio_user(admin, address)
        assert rec is not None and rec["isEnabled"], address
        assert rec["password"] == pw[address][0] == created[address]
        assert rec["fullName"] == real_names[address]
    assert len(admin.users) == len(ADDRESSES)  # nobody else, no user in a wrong domain
    # Mail went in as each user through Kerio's master authentication, never as anybody else.
    assert set(front.setusers) == ADDRESSES and front.masterauth_failures == 0

    # New mail in CommuniGate arrives with sync.
    inbox = base / "Domains" / "example.org" / "dave.macnt" / "INBOX.mdir"
    (inbox / "1002-_-20230304123000").write_bytes(
        b"From: ann@example.com\nTo: dave@example.org\nSubject: after the start\nMessage-ID: <new-1@x>\n\nnew\n")
    synced = act("sync")
    assert all(o["ok"] for o in synced.values()), synced
    assert synced["dave@example.org"]["message"].startswith("copied 1,")
    assert synced["alice@example.com"]["message"].startswith("copied 0,")

    finished = act("finish")
    assert all(o["ok"] and o["state"] == "migrated" and "verified" in o["message"] for o in finished.values()), finished
    assert {u["state"] for u in status(p).values()} == {"migrated"}
    report = mm("project", "report", p, "--json")
    shown.append(report)
    rep = json.loads(report.stdout)
    assert rep["ok"] and rep["totals"]["missing"] == 0
    assert rep["totals"]["source_messages"] == sum(total(base, a) for a in ADDRESSES)
    assert {u["unit"]: u["state"] for u in rep["units"]} == {a: "migrated" for a in ADDRESSES}
    # Kerio gets no aliases from mailmigrate: each unit says which of its addresses must be made by hand, from
    # start on (its result and the log) to the report, as warnings, not as failures.
    assert "alias not carried over: info@example.org, sales@example.org" in started["erin@example.org"]["message"]
    warned = {u["unit"]: " ".join(p["reason"] for p in u["problems"] if p["kind"] == "warning") for u in rep["units"]}
    assert "mail to ali@example.com, a.archer@example.com will bounce" in warned["alice@example.com"]
    assert "mail to robert@example.com will bounce" in warned["bob@example.com"]
    assert "erin@new.example.net" in warned["erin@example.org"] and warned["frank@shop.example.net"] == ""

    # Every message is on Kerio byte for byte, as the user sees it logging in with the password set.
    dovecot.add_users(dict(created))
    for address, (password, _) in pw.items():
        assert assert_same(base, dovecot.port, address, password) == total(base, address) > 0

    # No password anywhere but the pass file: not on the screen, in the project's log, its workflow store,
    # its state, its report or the list of created users.
    shown.append(mm("project", "logs", p))
    assert "WARNING dave@example.org account dave@example.org: aliases not carried over" in " ".join(shown[-1].stdout.split())
    screen = "\n".join(r.stdout + r.stderr for r in shown)
    written = everything_written(tmp_path)
    assert "cgk-workflow.db" in os.listdir(tmp_path) and "alice@example.com" in written
    for secret in [ADMIN_PW, MASTER_PW] + [x for x, _ in pw.values()]:
        assert secret not in screen and secret not in written, secret


def test_abort_into_kerio_removes_the_mail_and_keeps_the_user(kerio, tmp_path):
    dovecot, admin, front, created = kerio
    p = make_project(tmp_path, admin, front, extra='users = ["alice"]\n')
    mm("project", "init", p)
    started = act(p, "start")["alice@example.com"]
    assert started["ok"], started
    dovecot.add_users(dict(created))
    password = 'Wonder land "42"'
    base = tmp_path / "CommuniGate"
    n = assert_same(base, dovecot.port, "alice@example.com", password)
    # the user's own mail, put there by no migration, must survive the abort
    c = imapcheck.connect(dovecot.port, "alice@example.com", password)
    c.append("INBOX", None, None, OWN)
    c.logout()

    ab = act(p, "abort", "alice@example.com")["alice@example.com"]
    assert ab["ok"] and ab["state"] == "not_started", ab
    assert ab["message"].startswith(f"removed {n} message(s)")
    left = imapcheck.account(dovecot.port, "alice@example.com", password)
    assert [b for c in left.values() for b, _, _ in c] == [OWN]
    # Documented: abort does not delete the user it created in Kerio, and start goes on with that user.
    assert kerio_user(admin, "alice@example.com") is not None and len(admin.users) == 1
    calls = len(admin.calls)
    again = act(p, "start", "alice@example.com")["alice@example.com"]
    assert again["ok"] and "created by an earlier run" in again["message"], again
    assert f"copied {n}, flags 0, deleted 0, failed 0" in again["message"], again
    # the user's own message, left on the target, is said (and nothing was adopted: abort removed the copies)
    assert again["message"].endswith("; 1 message(s) of the target's own left alone"), again
    assert not any(m in ("Users.create", "Users.set") for m in admin.calls[calls:])
    back = {k: v for k, v in imapcheck.account(dovecot.port, "alice@example.com", password).items() if v}
    (own,) = [m for m in back["INBOX"] if m[0] == OWN]
    del back["INBOX"][own]
    assert back == {k: v for k, v in expected(base, "example.com", "alice").items() if v}
