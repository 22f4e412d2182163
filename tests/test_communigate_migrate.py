"""CommuniGate Pro -> Kerio (and -> plain Dovecot): the migration path with cg2kms's behaviour.

The target is a real Dovecot with a master user.  For the Kerio flavour, the protocol-faithful Kerio
stand-in (tests/servers/kerio.py) sits in front of it: users are created through its JSON-RPC admin API
(which makes them real in Dovecot) and mail goes in through its IMAP front end with X-MASTERAUTH +
X-SETUSER.  What arrived is read back with stdlib imaplib (servers/imapcheck.py) and compared with what
CommuniGateStore reads from the sample store: bytes, flags and dates per folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailmigrate.errors import FolderFailed
from mailmigrate.model import Secret
from mailmigrate.paths.communigate.accounts import CGAccount
from mailmigrate.paths.communigate.migrate import (
    FORCED, GENERATED, GIVEN, MIGRATED, MigrateOptions, choose_password, migrate, open_directory_for,
)
from mailmigrate.stores.communigate import CommuniGateStore, discover
from servers import imapcheck
from servers.kerio import KerioAdminServer, KerioImapFrontEnd

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "communigate"
MASTER = "kerio-master-pw"
DOMAINS = ("example.com", "example.org", "shop.example.net")


@pytest.fixture
def store(tmp_path) -> Path:
    dest = tmp_path / "CommuniGate"
    shutil.copytree(SAMPLE, dest)
    return dest


@dataclass
class Kerio:
    dovecot: object
    admin: KerioAdminServer
    front: KerioImapFrontEnd
    out: Path
    created: dict  # address -> password given to Kerio's Users.create

    def login_users(self) -> None:
        """Make the users created through the admin API real in Dovecot with the password Kerio was given
        (one passwd-file write for all: Dovecot's master login behind X-SETUSER needs no passdb entry)."""
        if self.created:
            self.dovecot.add_users(dict(self.created))

    def directory(self):
        return open_directory_for("kerio", admin_url=f"https://127.0.0.1:{self.admin.port}", admin_user="Admin",
                                  admin_password=Secret("adminpw"), cafile=str(self.admin.certfile))

    def options(self, base: Path, **kw) -> MigrateOptions:
        kw.setdefault("directory", self.directory())
        return MigrateOptions(base=base, server="127.0.0.1", port=self.front.port,
                              master_password=Secret(MASTER), output_dir=self.out,
                              state_path=self.out / "state.db", **kw)


@pytest.fixture
def kerio(dovecot_factory, tmp_path):
    dovecot = dovecot_factory()
    created: dict[str, str] = {}
    with KerioAdminServer(tmp_path / "kerio", domains=DOMAINS, on_user_created=created.__setitem__) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password=MASTER, user_exists=admin.has_user) as front:
        out = tmp_path / "out"
        out.mkdir()
        yield Kerio(dovecot, admin, front, out, created)


def wire(data: bytes) -> bytes:
    """IMAP carries lines ending in CRLF: a message stored with bare LFs (most of CommuniGate's) comes back
    from any IMAP server with CRLF; every other byte is exact."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def expected(base: Path, domain: str, account: str) -> dict[str, Counter]:
    """What CommuniGateStore reads: target folder name -> Counter of (bytes as IMAP carries them, flags, UTC
    timestamp)."""
    out: dict[str, Counter] = {}
    with CommuniGateStore(base, account, domain) as s:
        for f in s.list_folders():
            if not f.selectable:
                continue
            try:
                _, metas = s.list_messages(f.path)
            except FolderFailed:  # a damaged store: this folder cannot be read at all
                continue
            name = "/".join(f.path)
            c = out.setdefault(name, Counter())
            for m, body in s.fetch(f.path, [m.key for m in metas]):
                c[(wire(body.read()), frozenset(m.flags), m.internaldate.timestamp())] += 1
    return out


def arrived(port: int, address: str, password: str) -> dict[str, Counter]:
    """What a mail client logging in as the user sees (so the password is checked too)."""
    got = imapcheck.account(port, address, password)
    return {k: v for k, v in got.items() if v or k == "INBOX"}


def pass_file(report) -> dict[str, tuple[str, str]]:
    """address -> (password, how) from the run's .pass file."""
    lines = Path(report.pass_path).read_text().splitlines()
    return {a: (p, how) for a, p, how in (ln.split("\t") for ln in lines if not ln.startswith("#"))}


def assert_same(base: Path, port: int, address: str, password: str) -> int:
    account, domain = address.split("@", 1)
    want = expected(base, domain, account)
    got = arrived(port, address, password)
    assert {k: v for k, v in want.items() if v or k == "INBOX"} == got, address
    return sum(sum(c.values()) for c in want.values())


# --- the password rules ----------------------------------------------------------------------------------

def _acc(state: str, pw: str | None = None) -> CGAccount:
    return CGAccount("u", "example.com", "multi", password=Secret(pw) if pw else None, password_state=state)


def test_password_rules_each_branch():
    given, forced = Secret("given-pw"), Secret("forced-pw")
    assert choose_password(_acc("readable", "cg-pw"), force_set_password=forced, set_password=given) == (forced, FORCED)
    assert choose_password(_acc("readable", "cg-pw"), set_password=given) == (Secret("cg-pw"), MIGRATED)
    assert choose_password(_acc("encrypted"), set_password=given) == (given, GIVEN)
    assert choose_password(_acc("none"), set_password=given) == (given, GIVEN)
    pw, how = choose_password(_acc("encrypted"))
    assert how == GENERATED and len(pw.reveal()) >= 16
    assert choose_password(_acc("encrypted"))[0] != pw  # never the same twice


# --- into Kerio: one user, one domain, everything -----------------------------------------------------------

def test_one_user_into_kerio_byte_exact_with_password_and_pass_file(kerio, store):
    lines: list[str] = []
    report = migrate(kerio.options(store, domain="example.com", user="alice"), lines.append)
    assert report.ok, report.summary_lines()
    assert [a.address for a in report.accounts] == ["alice@example.com"]
    assert report.accounts[0].action == "created" and report.accounts[0].password == MIGRATED
    # alice's readable CommuniGate password is now her Kerio (and so Dovecot) password
    assert kerio.admin.find_user("alice", "example.com")["fullName"] == "Alice Archer"
    kerio.login_users()
    n = assert_same(store, kerio.dovecot.port, "alice@example.com", 'Wonder land "42"')
    assert report.totals.copied == n > 0
    assert kerio.front.setusers and set(kerio.front.setusers) == {"alice@example.com"}

    p = Path(report.pass_path)
    assert p.name.startswith("cg2kms_") and p.suffix == ".pass"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert pass_file(report) == {"alice@example.com": ('Wonder land "42"', MIGRATED)}
    log = Path(report.log_path).read_text()
    assert "alice@example.com" in log and 'Wonder land "42"' not in log and MASTER not in log
    # the screen: a line per folder, nothing else
    assert any(ln.startswith("alice@example.com  INBOX: 5 of 5") for ln in lines)
    assert any("Work/Projects/2024/Q1" in ln for ln in lines)


def test_one_domain_then_rerun_copies_nothing(kerio, store):
    report = migrate(kerio.options(store, domain="example.org"))
    assert report.ok, report.summary_lines()
    assert [a.address for a in report.accounts] == ["dave@example.org", "erin@example.org"]
    pw = pass_file(report)
    assert pw["erin@example.org"] == ("erin-pw", MIGRATED)
    assert pw["dave@example.org"][1] == GENERATED  # encrypted in CommuniGate, nothing else given
    kerio.login_users()
    for address, (password, _) in pw.items():
        assert_same(store, kerio.dovecot.port, address, password)
    assert kerio.admin.find_user("alice", "example.com") is None  # other domains untouched

    again = migrate(kerio.options(store, domain="example.org"))
    assert again.ok, again.summary_lines()
    assert again.totals.copied == 0 and again.totals.skipped == report.totals.copied
    assert again.passwords_set == 0 and again.pass_path is None
    assert [a.action for a in again.accounts] == ["existing", "existing"]  # created by us: no --force needed


def test_all_domains(kerio, store):
    report = migrate(kerio.options(store, set_password=Secret("Set-Pass-1")))
    assert report.ok, report.summary_lines()
    assert [(d, a) for d, a in discover(store)] == [tuple(reversed(a.address.split("@"))) for a in report.accounts]
    pw = pass_file(report)
    assert {a: how for a, (_, how) in pw.items()} == {
        "alice@example.com": MIGRATED, "bob@example.com": GIVEN, "carol@example.com": MIGRATED,
        "dave@example.org": GIVEN, "erin@example.org": MIGRATED, "frank@shop.example.net": MIGRATED}
    assert kerio.created == {a: p for a, (p, _) in pw.items()}  # what Kerio was given is in the pass file
    kerio.login_users()
    total = sum(assert_same(store, kerio.dovecot.port, a, p) for a, (p, _) in pw.items())
    assert report.totals.copied == total == 24


def test_force_set_password_wins(kerio, store):
    report = migrate(kerio.options(store, domain="example.com", user="bob",
                                   force_set_password=Secret("Forced-9"), set_password=Secret("unused")))
    assert pass_file(report) == {"bob@example.com": ("Forced-9", FORCED)}
    kerio.login_users()
    assert_same(store, kerio.dovecot.port, "bob@example.com", "Forced-9")


def test_existing_user_is_skipped_without_force_and_migrated_with_it(kerio, store):
    kerio.admin.add_user("carol", "example.com", "kept-pw")
    kerio.dovecot.add_user("carol@example.com", "kept-pw")
    report = migrate(kerio.options(store, user="carol"))
    assert not report.ok and report.accounts[0].action == "skipped"
    assert "--force" in report.not_copied()[0].reason
    assert report.totals.copied == 0 and arrived(kerio.dovecot.port, "carol@example.com", "kept-pw") == {"INBOX": Counter()}
    assert report.pass_path is None

    calls = len(kerio.admin.calls)
    report = migrate(kerio.options(store, user="carol", force=True, force_set_password=Secret("ignored")))
    assert report.ok and report.accounts[0].action == "existing"
    assert not any(c in ("Users.create", "Users.set") for c in kerio.admin.calls[calls:])  # not touched
    assert report.pass_path is None
    assert_same(store, kerio.dovecot.port, "carol@example.com", "kept-pw")  # password unchanged


# --- a damaged store ------------------------------------------------------------------------------------

def test_damaged_store_migrates_the_rest_and_reports_the_damage(kerio, store):
    acct = store / "Accounts"
    inbox = acct / "alice.macnt" / "INBOX.mbox"
    data = inbox.read_bytes()
    cut = data.rindex(b"\nFrom <sender@example.org> (DS-105)") + 80  # inside the last message's header
    inbox.write_bytes(data[:cut])
    work = acct / "alice.macnt" / "Work.mbox"
    work.write_bytes(b"this is no mailbox\n" + work.read_bytes())  # the folder cannot be split at all
    (acct / "bob.settings").write_text('{ RealName = "Bob Baker"; Password = "unterminated\n')

    lines: list[str] = []
    report = migrate(kerio.options(store, domain="example.com"), lines.append)
    assert not report.ok
    by = {a.address: a for a in report.accounts}
    assert [a.action for a in report.accounts] == ["created"] * 3

    missing = {(p.account, p.folder, p.message): p.reason for p in report.not_copied()}
    truncated = missing[("alice@example.com", "INBOX", "105")]
    assert str(inbox) in truncated and "line" in truncated
    (work_key, why), = [(k, r) for k, r in missing.items() if k[1] == "Work"]
    assert work_key == ("alice@example.com", "Work", None) and str(work) in why and "line 1" in why
    assert len(missing) == 2
    # unreadable settings cost only the settings: bob is created with a generated password, mail arrives
    (warning,) = [p for p in report.warnings() if p.account == "bob@example.com" and "not carried over" not in p.reason]
    assert "bob.settings" in warning.reason and "line" in warning.reason
    pw = pass_file(report)
    assert pw["bob@example.com"][1] == GENERATED
    kerio.login_users()
    for address, (password, _) in pw.items():
        assert_same(store, kerio.dovecot.port, address, password)  # everything readable arrived
    got = arrived(kerio.dovecot.port, "alice@example.com", pw["alice@example.com"][0])
    assert sum(got["INBOX"].values()) == 4 and "Work" not in got and "Work/Projects" in got
    assert by["alice@example.com"].counters.failed == 2  # the message and the folder

    # the summary on screen and the log name the damage
    text = "\n".join(report.summary_lines())
    assert "Not copied:" in text and "folder Work" in text and "message 105" in text
    assert str(inbox) in Path(report.log_path).read_text()


# --- any IMAP server: Dovecot with its master user, users in its passwd-file ----------------------------

def test_plain_imap_target_with_passwd_file_users(dovecot_factory, store, tmp_path):
    dovecot = dovecot_factory()
    passwd = dovecot.root / "users.passwd"  # the passwd-file this Dovecot authenticates against
    directory = open_directory_for("imap", passwd_file=str(passwd))
    opts = MigrateOptions(base=store, server="127.0.0.1", port=dovecot.port, master_password=Secret("masterpw"),
                          target="imap", master_user="master", domain="shop.example.net", directory=directory,
                          output_dir=tmp_path, set_password=Secret("not-used"))
    report = migrate(opts)
    assert report.ok, report.summary_lines()
    assert Path(report.state_path) == tmp_path / "cg2kms_state.db"
    pw = pass_file(report)
    assert pw == {"frank@shop.example.net": ("fr4nk!", MIGRATED)}
    assert "{SSHA512}" in passwd.read_text() and "fr4nk!" not in passwd.read_text()
    import time
    assert stat.S_IMODE(passwd.stat().st_mode) & 0o007 == 0  # the writer never leaves hashes world-readable
    os.chmod(passwd, 0o644)  # ...but this throwaway Dovecot's auth process reads it as another user
    deadline = time.time() + 5
    while True:  # Dovecot re-reads its passwd-file at most once a second
        try:
            assert_same(store, dovecot.port, "frank@shop.example.net", "fr4nk!")
            break
        except imapcheck.imaplib.IMAP4.error:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


# --- addresses the target will not deliver ------------------------------------------------------------------

def test_cli_warns_per_account_of_aliases_and_forwarding_not_carried_over(kerio, store):
    """Kerio's writer sets no aliases: the mail arrives (no failure), and each account's result names the
    exact addresses an administrator must create by hand before the cutover, in JSON and on screen."""
    from test_sync_imap import mm

    args = ["communigate", "migrate", store, "--server", "127.0.0.1", "--port", kerio.front.port,
            "--domain", "example.org", "--admin-url", f"https://127.0.0.1:{kerio.admin.port}", "--admin-user",
            "Admin", "--cafile", kerio.admin.certfile, "--output-dir", kerio.out]
    env = {"MAILMIGRATE_TARGET_PASSWORD": MASTER, "MAILMIGRATE_ADMIN_PASSWORD": "adminpw"}
    report = json.loads(mm(*args, "--json", env=env).stdout)  # exit 0: nothing failed
    assert report["ok"] and report["not_copied"] == [] and report["copied"] == 6
    left = {a["account"]: {x["kind"]: x["addresses"] for x in a["not_carried_over"]} for a in report["accounts"]}
    assert left["erin@example.org"]["alias"] == ["info@example.org", "sales@example.org"]
    assert left["erin@example.org"]["forwarding"] == ["erin@new.example.net"]
    assert left["dave@example.org"]["alias"] == ["d@example.org", "david@example.org"]
    assert "david@example.info" in left["dave@example.org"]["domain alias"]
    (why,) = [w["reason"] for w in report["warnings"] if w["account"] == "erin@example.org" and "info@example.org," in w["reason"]]
    assert why.startswith(f"aliases not carried over (mailmigrate writes no user aliases to "
                          f"kerio://Admin@127.0.0.1:{kerio.admin.port})")

    screen = mm(*args, env=env).stdout  # a rerun: the users exist (made by this migration), same warnings
    assert "Warnings:" in screen and "Not copied:" not in screen
    assert "account erin@example.org: aliases not carried over" in screen
    assert "mail to info@example.org, sales@example.org will bounce after the cutover" in screen
    assert "account dave@example.org: aliases not carried over" in screen and "d@example.org, david@example.org" in screen


def test_cli_ldap_directory_takes_the_aliases(dovecot_factory, store, tmp_path):
    """A directory whose writer holds user aliases (LDAP) gets them with the user it creates: no warning
    for them; what no writer holds (forwarding) is still named."""
    import ldap3
    from servers.slapd import SlapdServer
    from test_sync_imap import mm

    if not Path("/usr/sbin/slapd").exists():
        pytest.skip("slapd not installed")
    dovecot = dovecot_factory()
    with SlapdServer(tmp_path / "ldap", "dc=example,dc=com") as srv:
        url = f"{srv.url}/dc=example,dc=com?bind={srv.admin_dn}"
        p = mm("communigate", "migrate", store, "--server", "127.0.0.1", "--port", dovecot.port, "--target", "imap",
               "--master-user", "master", "--domain", "example.com", "--directory", url, "--output-dir", tmp_path,
               "--json", env={"MAILMIGRATE_TARGET_PASSWORD": "masterpw", "MAILMIGRATE_ADMIN_PASSWORD": srv.admin_pw})
        report = json.loads(p.stdout)
        assert report["ok"]
        left = {a["account"]: [x["kind"] for x in a["not_carried_over"]] for a in report["accounts"]}
        assert left == {"alice@example.com": ["forwarding"], "bob@example.com": [], "carol@example.com": []}
        c = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
        c.search("dc=example,dc=com", "(uid=bob@example.com)", attributes=["mail"])
        assert sorted(c.entries[0].mail.values) == ["bob@example.com", "robert@example.com"]
