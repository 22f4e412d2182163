"""CommuniGate Pro as a project path: the accounts of the CommuniGate tree are the units, start creates each
user in the target directory (a Dovecot passwd-file here) with cg2kms's password rules and copies the mail
into a real Dovecot as its master user; sync brings new mail, finish verifies message by message.  What
arrived is read back by logging in as each user with the password the pass file says."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from mailmigrate.paths.communigate.migrate import GENERATED, MIGRATED
from servers import imapcheck
from test_communigate_migrate import SAMPLE, assert_same, expected
from test_sync_imap import mm

ADDRESSES = {"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org", "erin@example.org",
             "frank@shop.example.net"}


def make_project(tmp_path: Path, port: int, passwd: Path, extra: str = "") -> Path:
    shutil.copytree(SAMPLE, tmp_path / "CommuniGate")
    (tmp_path / "master.pw").write_text("masterpw")
    os.chmod(tmp_path / "master.pw", 0o600)
    p = tmp_path / "cg.toml"
    p.write_text(f"""[project]
name = "cg"
path = "communigate"

[communigate]
base = "CommuniGate"
directory = "passwd-file:{passwd}"
{extra}
[target]
url = "imap://127.0.0.1:{port}?master=plain&tls=none"
master = "master"
password_file = "master.pw"
""")
    return p


def status(p: Path) -> dict[str, dict]:
    return {u["unit"]: u for u in json.loads(mm("project", "status", p, "--json").stdout)}


def act(p: Path, *args, check=True) -> dict[str, dict]:
    r = mm("project", *args[:1], p, *args[1:], "--json", check=check)
    return {o["unit"]: o for o in json.loads(r.stdout)}


def pass_files(d: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for f in sorted(d.glob("cg2kms_*.pass")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        for line in f.read_text().splitlines():
            if not line.startswith("#"):
                address, password, how = line.split("\t")
                out[address] = (password, how)
    return out


def passwd_users(passwd: Path) -> list[str]:
    return [ln.split(":", 1)[0] for ln in passwd.read_text().splitlines() if ln.strip()]


def first_login(fn):
    """Dovecot re-reads its passwd-file at most once a second, so a just-written user may need a moment
    before the first login succeeds."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return fn()
        except imapcheck.imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def logged_in(base: Path, port: int, address: str, password: str) -> int:
    """The mail the user sees, compared with the store."""
    return first_login(lambda: assert_same(base, port, address, password))


def total(base: Path, address: str) -> int:
    account, domain = address.split("@", 1)
    return sum(sum(c.values()) for c in expected(base, domain, account).values())


def test_communigate_project_start_sync_finish(dovecot_factory, tmp_path):
    dovecot = dovecot_factory()
    passwd = dovecot.root / "users.passwd"
    p = make_project(tmp_path, dovecot.port, passwd)
    base = tmp_path / "CommuniGate"
    mm("project", "init", p)
    units = status(p)
    assert set(units) == ADDRESSES and all(u["state"] == "not_started" for u in units.values())
    for address, u in units.items():  # the overview's counts are what the store holds
        assert u["found"]["messages"] == total(base, address), address
    assert units["alice@example.com"]["found"]["password"] == "readable"
    assert units["bob@example.com"]["found"]["password"] == "encrypted"
    table = mm("project", "status", p, env={"COLUMNS": "200"}).stdout
    dave = next(ln for ln in table.splitlines() if "dave@example.org" in ln)
    assert f"{total(base, 'dave@example.org')} msgs in 3 folders, password encrypted" in dave

    started = act(p, "start")
    assert set(started) == ADDRESSES
    assert all(o["ok"] and o["state"] == "migrating" for o in started.values()), started
    assert "user created in passwd-file:" in started["alice@example.com"]["message"]
    assert sorted(passwd_users(passwd)) == sorted(ADDRESSES)
    pw = pass_files(tmp_path)
    assert set(pw) == ADDRESSES
    assert pw["alice@example.com"] == ('Wonder land "42"', MIGRATED)  # the sample's readable password
    assert pw["frank@shop.example.net"] == ("fr4nk!", MIGRATED)
    assert pw["bob@example.com"][1] == GENERATED and pw["dave@example.org"][1] == GENERATED
    # No password reaches the project's log, its workflow store or the passwd-file in clear.
    logs = mm("project", "logs", p).stdout
    wf_bytes = (tmp_path / "cg-workflow.db").read_bytes()
    for password, _ in pw.values():
        assert password not in logs and password.encode() not in wf_bytes and password not in passwd.read_text()

    os.chmod(passwd, 0o644)  # the writer keeps it 0600; this throwaway Dovecot's auth reads it as another user
    for address, (password, _) in pw.items():
        logged_in(base, dovecot.port, address, password)

    # A second start of a started unit is refused and creates nothing.
    again = mm("project", "start", p, "alice@example.com", check=False)
    assert again.returncode == 1 and "already started" in again.stdout
    assert len(passwd_users(passwd)) == len(ADDRESSES) and pass_files(tmp_path) == pw

    # New mail in CommuniGate arrives with sync.
    inbox = base / "Domains" / "example.org" / "dave.macnt" / "INBOX.mdir"
    (inbox / "1002-_-20230304123000").write_bytes(
        b"From: ann@example.com\nTo: dave@example.org\nSubject: after the start\nMessage-ID: <new-1@x>\n\nnew\n")
    synced = act(p, "sync")
    assert all(o["ok"] for o in synced.values()), synced
    assert synced["dave@example.org"]["message"].startswith("copied 1,")
    assert synced["alice@example.com"]["message"].startswith("copied 0,")
    assert logged_in(base, dovecot.port, "dave@example.org", pw["dave@example.org"][0]) == total(base, "dave@example.org")

    finished = act(p, "finish")
    assert all(o["ok"] and o["state"] == "migrated" and "verified" in o["message"] for o in finished.values()), finished
    report = json.loads(mm("project", "report", p, "--json").stdout)
    assert report["ok"] and report["totals"]["missing"] == 0
    assert report["totals"]["source_messages"] == sum(total(base, a) for a in ADDRESSES)
    assert {u["unit"] for u in report["units"]} == ADDRESSES
    # a passwd-file holds no aliases: the report names them per unit (a warning: the mail is all there)
    bob = next(u for u in report["units"] if u["unit"] == "bob@example.com")
    assert [p["kind"] for p in bob["problems"]] == ["warning"]
    assert "mail to robert@example.com will bounce" in bob["problems"][0]["reason"]
    r = mm("project", "start", p, "alice@example.com", check=False)
    assert r.returncode == 1 and "already migrated" in r.stdout


def test_chosen_users_existing_user_refused_and_abort_keeps_the_created_user(dovecot_factory, tmp_path):
    dovecot = dovecot_factory()
    dovecot.add_user("carol@example.com", "kept-pw")  # someone else's mailbox by that name
    passwd = dovecot.root / "users.passwd"
    p = make_project(tmp_path, dovecot.port, passwd, extra='users = ["frank@shop.example.net", "carol"]\n')
    base = tmp_path / "CommuniGate"
    mm("project", "init", p)
    assert set(status(p)) == {"frank@shop.example.net", "carol@example.com"}

    out = act(p, "start", check=False)
    assert out["frank@shop.example.net"]["ok"]
    carol = out["carol@example.com"]
    assert not carol["ok"] and carol["state"] == "failed" and "exists on the target" in carol["message"]
    assert "force = true" in carol["message"]
    os.chmod(passwd, 0o644)  # frank's creation rewrote it 0600; Dovecot's auth reads it as another user
    carol_box = first_login(lambda: imapcheck.account(dovecot.port, "carol@example.com", "kept-pw"))
    assert not any(carol_box.values())  # nothing copied into someone else's mailbox
    logged_in(base, dovecot.port, "frank@shop.example.net", "fr4nk!")
    # abort removes the copied mail but keeps the user; start again goes on with that user.
    ab = act(p, "abort", "frank@shop.example.net")["frank@shop.example.net"]
    assert ab["ok"] and ab["state"] == "not_started"
    assert "frank@shop.example.net" in passwd_users(passwd)
    assert not any(imapcheck.account(dovecot.port, "frank@shop.example.net", "fr4nk!").values())
    again = act(p, "start", "frank@shop.example.net")["frank@shop.example.net"]
    assert again["ok"] and "created by an earlier run" in again["message"]
    assert passwd_users(passwd).count("frank@shop.example.net") == 1
    logged_in(base, dovecot.port, "frank@shop.example.net", "fr4nk!")
    assert list(pass_files(tmp_path)) == ["frank@shop.example.net"]  # one password set, once
