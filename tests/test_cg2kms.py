"""The `cg2kms` command with cg2kms's own options: the seed's three examples run as written (only -path
points at a copy; Kerio's administrator comes from the environment), against the Kerio stand-in in front of
a real Dovecot, creating the users; what happens without an administrator; -setPass/-forceSetPass for one
user and for many; and `mailmigrate communigate migrate`, the native form, with passwords from the
environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

import cgp_fixture
from servers import imapcheck, netns
from servers.kerio import KerioAdminServer, KerioImapFrontEnd
from test_communigate_migrate import assert_same, wire

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "communigate"
CG2KMS = [sys.executable, "-c", "import sys; from mailmigrate.cli.cg2kms import main; sys.exit(main())"]
MAILMIGRATE = [sys.executable, "-m", "mailmigrate.cli.main"]
DOMAINS = ("example.com", "example.org", "shop.example.net", "test.com")
USERS = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org", "erin@example.org",
         "frank@shop.example.net", "postmaster@test.com"]


@pytest.fixture
def store(tmp_path) -> Path:
    """The sample store plus the seed's domain test.com with a postmaster account."""
    dest = tmp_path / "CommuniGate Files"
    shutil.copytree(SAMPLE, dest)
    shutil.copytree(dest / "Domains" / "example.org" / "dave.macnt", dest / "Domains" / "test.com" / "postmaster.macnt")
    return dest


@pytest.fixture
def kerio(dovecot_factory, tmp_path):
    """Kerio with every user in place already (cg2kms's examples use -force: the users exist)."""
    dovecot = dovecot_factory()
    dovecot.add_users({u: f"pw-{u}" for u in USERS})
    with KerioAdminServer(tmp_path / "kerio", domains=DOMAINS) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password="12345", user_exists=admin.has_user) as front:
        for u in USERS:
            login, domain = u.split("@")
            admin.add_user(login, domain, f"pw-{u}")
        yield dovecot, admin, front


def run(cmd, cwd, env=None, timeout=120):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def no_password(text: str, password: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(password)}(?![\w-])", text) is None


POSTMASTER_MAIL = b"Subject: for the postmaster\n\nhello\n"


@pytest.fixture
def real_store(tmp_path):
    """The store written from CommuniGate's public descriptions (tests/cgp_fixture.py) plus the seed's
    domain test.com with a postmaster (settings shaped as communigate-cpanel-adaptor's postmaster.macnt)."""
    fx = cgp_fixture.build(tmp_path / "CommuniGate Files")
    pm = fx.base / "Domains" / "test.com" / "postmaster.macnt"
    pm.mkdir(parents=True)
    (pm / "account.settings").write_text("{\n Password = cp@nel;\n PasswordEncryption = clear;\n"
                                         " WebAdminPrefs = {ExpertLevel=10;};\n}\n")
    (pm / "INBOX.mbox").write_bytes(b"From <a@test.com> (S-1) Wed Mar  1 09:30:00 2023\n" + POSTMASTER_MAIL)
    when = datetime(2023, 3, 1, 9, 30, tzinfo=timezone.utc)
    fx.mail["postmaster@test.com"] = {"INBOX": [(POSTMASTER_MAIL, frozenset({"\\Seen"}), when)]}
    fx.readable["postmaster@test.com"] = "cp@nel"
    return fx


@pytest.mark.skipif(not netns.available(), reason="needs root, unshare and ip (a private network namespace)")
def test_the_seeds_three_examples_as_written_create_the_users(dovecot_factory, real_store, tmp_path):
    """The seed's examples, exactly as written (-server localhost -password 12345, no port, no admin
    option), plus Kerio's administrator in the environment: missing users are created through the
    administration API on localhost:4040 and the mail goes in over localhost:143.  The well-known ports are
    a private network namespace's, relayed to the stand-ins."""
    fx = real_store
    dovecot = dovecot_factory()
    created: dict[str, str] = {}
    domains = (cgp_fixture.MAIN, "example.org", "shop.example.net", "test.com")
    work = tmp_path / "run"
    work.mkdir()
    with KerioAdminServer(tmp_path / "kerio", domains=domains, on_user_created=created.__setitem__) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password="12345", user_exists=admin.has_user) as front:
        relays = [netns.UnixToTcp(tmp_path / "imap.sock", front.port),
                  netns.UnixToTcp(tmp_path / "admin.sock", admin.port)]
        env = {**os.environ, "MAILMIGRATE_ADMIN_USER": "Admin", "MAILMIGRATE_ADMIN_PASSWORD": "adminpw",
               "SSL_CERT_FILE": str(admin.certfile)}
        env.pop("MAILMIGRATE_TARGET_PASSWORD", None)
        mapping = {143: tmp_path / "imap.sock", 4040: tmp_path / "admin.sock"}
        path = str(fx.base)
        examples = [
            # "Migration of a postmaster user from the test.com domain"
            ["-path", path, "-migrate", "-force", "-server", "localhost", "-password", "12345", "-domain", "test.com",
             "-user", "postmaster"],
            # "User migration from a single domain test.com"
            ["-path", path, "-migrate", "-force", "-server", "localhost", "-password", "12345", "-domain", "test.com"],
            # "User migration from all domains"
            ["-path", path, "-migrate", "-force", "-server", "localhost", "-password", "12345"],
        ]
        outputs = []
        try:
            for args in examples:
                p = netns.run(CG2KMS + args, mapping, cwd=work, env=env)
                assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
                outputs.append(p.stdout + p.stderr)
        finally:
            for r in relays:
                r.close()
    assert "postmaster@test.com  INBOX: 1 of 1 new messages copied" in outputs[0]
    assert "Messages: 0 copied" in outputs[1] and "1 already there" in outputs[1]
    total = sum(len(m) for a in fx.mail for m in fx.mail[a].values())
    assert f"Messages: {total - 1} copied" in outputs[2]
    assert sorted(created) == sorted(fx.mail)  # every account created once, through the API
    assert [c for c in admin.calls if c == "Users.create"] and all(no_password(o, "12345") for o in outputs)
    passes = {}
    for f in work.glob("cg2kms_*.pass"):
        for ln in f.read_text().splitlines():
            if not ln.startswith("#"):
                address, password, how = ln.split("\t")
                passes[address] = (password, how)
    assert {a: p for a, (p, _) in passes.items()} == created
    for address, readable in fx.readable.items():
        assert passes[address][1] == ("migrated" if readable else "generated"), address
        if readable:
            assert passes[address][0] == readable
    dovecot.add_users(created)
    for address, password in created.items():
        got = imapcheck.account(dovecot.port, address, password)
        want = {k: Counter((wire(b), fl, w.timestamp()) for b, fl, w in v) for k, v in fx.mail[address].items()}
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}, address


def test_without_admin_credentials_cg2kms_stops_before_copying(kerio, store, tmp_path):
    """The seed's example without anything to create users with: one sentence naming what is missing, exit
    2, nothing copied, no pass file."""
    dovecot, admin, front = kerio
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}
    p = subprocess.run(CG2KMS + ["-path", str(store), "-migrate", "-force", "-server", "127.0.0.1", "-port",
                                 str(front.port), "-password", "12345"], cwd=tmp_path, capture_output=True,
                       text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stdout == ""
    assert "https://127.0.0.1:4040" in p.stderr and "MAILMIGRATE_ADMIN_USER" in p.stderr
    assert "MAILMIGRATE_ADMIN_PASSWORD" in p.stderr and "nothing was copied" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    assert front.setusers == [] and list(tmp_path.glob("cg2kms_*.pass")) == []


def test_without_force_existing_users_are_not_migrated(kerio, store, tmp_path):
    dovecot, admin, front = kerio
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-server", "127.0.0.1", "-port", str(front.port),
                      "-password", "12345", "-domain", "example.org", "-quiet", "-adminUrl",
                      f"https://127.0.0.1:{admin.port}", "-cafile", str(admin.certfile)], tmp_path,
            env={"MAILMIGRATE_ADMIN_USER": "Admin", "MAILMIGRATE_ADMIN_PASSWORD": "adminpw"})
    assert p.returncode == 1 and p.stdout == ""
    assert "dave@example.org: exists on the target; not touched and its mail not migrated without --force" in p.stderr
    assert front.setusers == []


def test_set_pass_applies_to_a_single_user_migration_only(kerio, store, tmp_path):
    """-setPass/-forceSetPass: "if a single user is migrated" (the seed).  With many accounts they are
    ignored, and the screen says so."""
    dovecot, admin, front = kerio
    env = {"MAILMIGRATE_ADMIN_USER": "Admin"}
    secret = tmp_path / "admin.pw"
    secret.write_text("adminpw\n")
    secret.chmod(0o644)
    api = ["-server", "127.0.0.1", "-port", str(front.port), "-password", "12345", "-adminUrl",
           f"https://127.0.0.1:{admin.port}", "-cafile", str(admin.certfile), "-adminPasswordFile", str(secret)]
    p = run(CG2KMS + ["-path", str(store), "-migrate", *api, "-user", "bob"], tmp_path, env=env)
    assert p.returncode == 2 and "admin.pw" in p.stderr and front.setusers == []  # others could read it
    secret.chmod(0o600)
    for login in ("bob", "carol"):  # make room: these two are created by the runs below
        uid = admin.find_user(login, "example.com")["id"]
        del admin.users[uid]
    p = run(CG2KMS + ["-path", str(store), "-migrate", *api, "-domain", "example.com", "-user", "bob",
                      "-forceSetPass", "Forced-1"], tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-force", *api, "-domain", "example.com",
                      "-forceSetPass", "Forced-2"], tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "apply to a single-user migration (-user)" in p.stdout and "ignored" in p.stdout
    passes = "".join(f.read_text() for f in tmp_path.glob("cg2kms_*.pass"))
    assert "bob@example.com\tForced-1\tforce-set-password" in passes
    assert "Forced-2" not in passes and "carol@example.com\tc4rol\tmigrated" in passes


def test_help_and_overview(store, tmp_path):
    for args in ([], ["-help"], ["-?"]):
        p = run(CG2KMS + args, tmp_path)
        assert p.returncode == 0 and "-primaryDomain" in p.stdout and "MAILMIGRATE_TARGET_PASSWORD" in p.stdout
    p = run(CG2KMS + ["-path", str(store), "-domain", "example.org", "-json"], tmp_path)
    assert p.returncode == 0
    assert [a["name"] for a in json.loads(p.stdout)["domains"][0]["accounts"]] == ["dave", "erin"]
    assert list(tmp_path.glob("cg2kms_*")) == []  # an overview writes nothing


def test_usage_errors_never_repeat_a_password(store, tmp_path):
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-password", "s3cret-value", "-server"], tmp_path)
    assert p.returncode == 2 and "s3cret-value" not in p.stderr + p.stdout
    p = run(CG2KMS + ["-path", str(store), "-migrate", "s3cret-value"], tmp_path)
    assert p.returncode == 2 and "s3cret-value" not in p.stderr + p.stdout
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-password", "s3cret-value"], tmp_path)
    assert p.returncode == 2 and "-server is required" in p.stderr and "s3cret-value" not in p.stderr


def test_native_command_creates_users_through_kerio_api(dovecot_factory, store, tmp_path):
    """mailmigrate communigate migrate: passwords from the environment and a 0600 file, users created through
    the admin API, JSON report; a rerun without --force carries on with the users it created."""
    dovecot = dovecot_factory()
    created: dict[str, str] = {}
    with KerioAdminServer(tmp_path / "kerio", domains=DOMAINS, on_user_created=created.__setitem__) as admin, \
            KerioImapFrontEnd(dovecot.port, master_password="m-a-s-t-e-r", user_exists=admin.has_user) as front:
        setpw = tmp_path / "setpass"
        setpw.write_text("Given-Pass-7\n")
        setpw.chmod(0o600)
        cmd = MAILMIGRATE + ["communigate", "migrate", str(store), "--server", "127.0.0.1", "--port", str(front.port),
                             "--domain", "example.com", "--admin-url", f"https://127.0.0.1:{admin.port}",
                             "--admin-user", "Admin", "--cafile", str(admin.certfile),
                             "--set-password-file", str(setpw), "--output-dir", str(tmp_path / "out"), "--json"]
        env = {"MAILMIGRATE_TARGET_PASSWORD": "m-a-s-t-e-r", "MAILMIGRATE_ADMIN_PASSWORD": "adminpw"}
        p = run(cmd, tmp_path, env)
        assert p.returncode == 0, p.stdout + p.stderr
        report = json.loads(p.stdout)
        assert report["copied"] == 16 and report["accounts_created"] == 3 and report["not_copied"] == []
        assert {a["account"]: a["password"] for a in report["accounts"]} == {
            "alice@example.com": "migrated", "bob@example.com": "set-password", "carol@example.com": "migrated"}
        passfile = Path(report["pass_file"])
        assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
        assert "bob@example.com\tGiven-Pass-7\tset-password" in passfile.read_text()
        everything = p.stdout + p.stderr + Path(report["log"]).read_text()
        for secret in ("m-a-s-t-e-r", "adminpw", "Given-Pass-7", "c4rol"):
            assert secret not in everything
        assert created["bob@example.com"] == "Given-Pass-7"

        (store / "Accounts" / "bob.mbox").open("ab").write(
            b"From <late@example.org> (S-3) Mon Mar  6 10:00:00 2023 +0000\nSubject: late\n\nnew mail\n")
        p = run(cmd, tmp_path, env)
        assert p.returncode == 0, p.stdout + p.stderr
        report = json.loads(p.stdout)
        assert report["copied"] == 1 and report["skipped"] == 16 and report["passwords_set"] == 0
        assert [a["action"] for a in report["accounts"]] == ["existing"] * 3

    dovecot.add_users(created)
    for address, password in created.items():
        assert_same(store, dovecot.port, address, password)
    bob = imapcheck.account(dovecot.port, "bob@example.com", "Given-Pass-7")
    assert any(b"new mail" in body for body, _, _ in bob["INBOX"])


def test_native_command_without_master_password_is_a_usage_error(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}
    p = subprocess.run(MAILMIGRATE + ["communigate", "migrate", str(store), "--server", "127.0.0.1"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "master password" in p.stderr


def test_cg2kms_carries_calendars_and_contacts_to_kerios_dav_layout(kerio, store, tmp_path):
    """cg2kms's own command line with -caldav/-carddav: after each account's mail, its CommuniGate calendar
    and contact boxes (named in account.info, as the sample's alice has them) arrive under Kerio Connect's
    /calendars/DOMAIN/USER/ layout, written by a DAV service account (a Radicale with an admin playing the
    DAV server: no Kerio runs here); every item with its UID; a rerun copies nothing (it finds the home the
    first run made, not the service account's own principal)."""
    from mailmigrate.model import Secret
    from mailmigrate.stores.communigate_groupware import CommuniGateGroupwareStore
    from mailmigrate.stores.dav import parse_dav_url
    from servers.dav import Radicale

    dovecot, admin, front = kerio
    dav = Radicale(tmp_path / "radicale", admin="dav-admin")
    dav.add_user("dav-admin", "dav-pw")
    dav.start()
    (tmp_path / "dav.pw").write_text("dav-pw")
    os.chmod(tmp_path / "dav.pw", 0o600)
    args = CG2KMS + ["-path", str(store), "-migrate", "-force", "-server", "127.0.0.1", "-port", str(front.port),
                     "-domain", "example.com", "-user", "alice", "-adminUrl", f"https://127.0.0.1:{admin.port}",
                     "-cafile", str(admin.certfile),
                     "-caldav", f"caldav://127.0.0.1:{dav.port}/calendars/%d/%n/?tls=none",
                     "-carddav", f"carddav://127.0.0.1:{dav.port}/addressbooks/%d/%n/?tls=none",
                     "-davUser", "dav-admin", "-davPasswordFile", str(tmp_path / "dav.pw")]
    env = {"MAILMIGRATE_ADMIN_USER": "Admin", "MAILMIGRATE_ADMIN_PASSWORD": "adminpw",
           "MAILMIGRATE_TARGET_PASSWORD": "12345"}
    try:
        p = run(args, tmp_path, env=env)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        for kind, path in (("calendar", "calendars"), ("addressbook", "addressbooks")):
            src = CommuniGateGroupwareStore(store, "alice", None, kind=kind, primary_domain="example.com")
            src.open()
            want = sorted(src.get(c, n).data for c in src.collections() for n in src.list_items(c))
            assert want, f"the sample's alice has {kind} items"
            tgt = parse_dav_url(f"{'caldav' if kind == 'calendar' else 'carddav'}://127.0.0.1:{dav.port}/{path}/"
                                f"example.com/alice/?tls=none", "dav-admin", Secret("dav-pw"), home_from_path=True)
            tgt.open()
            got = sorted(tgt.get(c, n).data for c in tgt.collections() for n in tgt.list_items(c))
            from mailmigrate.formats.ical import item_info
            assert sorted(item_info(d).uid for d in got) == sorted(item_info(d).uid for d in want)
            what = "calendars" if kind == "calendar" else "contacts"
            assert f"alice@example.com: {what}: {len(want)} items copied" in p.stdout + p.stderr
        again = run(args, tmp_path, env=env)
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert "calendars: 0 items copied" in again.stdout + again.stderr
        assert no_password(p.stdout + p.stderr + again.stdout + again.stderr, "dav-pw")
    finally:
        dav.stop()
