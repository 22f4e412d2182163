"""The `cg2kms` command with cg2kms's own options: the seed's three examples run as written (only -path,
-server and -port point at this machine's copies), against the Kerio stand-in in front of a real Dovecot;
and `mailmigrate communigate migrate`, the native form, with passwords from the environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from servers import imapcheck
from servers.kerio import KerioAdminServer, KerioImapFrontEnd
from test_communigate_migrate import assert_same

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


def test_the_seeds_three_examples(kerio, store, tmp_path):
    dovecot, admin, front = kerio
    work = tmp_path / "run"
    work.mkdir()
    server = ["-server", "127.0.0.1", "-port", str(front.port)]
    # "Migration of a postmaster user from the test.com domain"
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-force", *server, "-password", "12345", "-domain", "test.com",
                      "-user", "postmaster"], work)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "postmaster@test.com  INBOX: 2 of 2 new messages copied" in p.stdout
    assert "Messages: 5 copied" in p.stdout and no_password(p.stdout + p.stderr, "12345")
    assert front.setusers == ["postmaster@test.com"] * len(front.setusers)
    assert_same(store, dovecot.port, "postmaster@test.com", "pw-postmaster@test.com")

    # "User migration from a single domain test.com": postmaster is all it holds, and is there already
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-force", *server, "-password", "12345", "-domain", "test.com"],
            work)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Messages: 0 copied" in p.stdout and "5 already there" in p.stdout

    # "User migration from all domains"
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-force", *server, "-password", "12345"], work)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Messages: 24 copied" in p.stdout and "5 already there" in p.stdout
    for u in USERS:
        assert_same(store, dovecot.port, u, f"pw-{u}")

    # the users existed: nothing was created, no password set, no .pass file; one log per run, no password
    assert not any(c in ("Users.create", "Users.set") for c in admin.calls)
    assert list(work.glob("cg2kms_*.pass")) == []
    logs = sorted(work.glob("cg2kms_*.log"))
    assert len(logs) == 3 and all(re.fullmatch(r"cg2kms_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d(-\d+)?\.log", f.name) for f in logs)
    assert all(no_password(f.read_text(), "12345") for f in logs)
    assert (work / "cg2kms_state.db").exists()


def test_without_force_existing_users_are_not_migrated(kerio, store, tmp_path):
    dovecot, admin, front = kerio
    p = run(CG2KMS + ["-path", str(store), "-migrate", "-server", "127.0.0.1", "-port", str(front.port),
                      "-password", "12345", "-domain", "example.org", "-quiet"], tmp_path)
    assert p.returncode == 1 and p.stdout == ""
    assert "dave@example.org: no target directory to check it exists; its mail migrates only with --force" in p.stderr
    assert front.setusers == []


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
