"""NethServer 7 -> 8 mail application: start, sync, finish, abort, skip over the shipped NS7 sample."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailmigrate.errors import StateLocked
from mailmigrate.formats.esmith import read_esmith
from mailmigrate.paths.nethserver import ns8
from mailmigrate.workflow import ns7 as steps
from mailmigrate.paths.nethserver.eventlog import EventLog
from mailmigrate.paths.nethserver.layout import NethServerTree, NS8MailTree

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "nethserver7"
sys.path.insert(0, str(EXAMPLES))
import make_nethserver  # noqa: E402


@pytest.fixture
def project(tmp_path):
    src = tmp_path / "ns7"
    shutil.copytree(SAMPLE, src, symlinks=True)
    return steps.Project(NethServerTree(src), NS8MailTree(tmp_path / "ns8"))


def bodies(maildir: Path) -> dict[str, set[bytes]]:
    out = {}
    for d in [maildir] + sorted(p for p in maildir.iterdir() if p.name.startswith(".") and p.is_dir()):
        b = {f.read_bytes() for s in ("cur", "new") if (d / s).is_dir() for f in (d / s).iterdir()}
        if b:
            out["" if d == maildir else d.name] = b
    return out


def message_files(maildir: Path) -> list[Path]:
    return [f for d in [maildir, *(p for p in maildir.iterdir() if p.name.startswith(".") and p.is_dir())]
            for s in ("cur", "new") if (d / s).is_dir() for f in (d / s).iterdir()]


def ns7_message_count() -> int:
    return sum(len(message_files(d / "Maildir")) for d in (SAMPLE / "var/lib/nethserver/vmail").iterdir()
               if (d / "Maildir").is_dir())


def unqualified(identifier: str) -> str:
    kind, eq, name = identifier.partition("=")
    return f"{kind}={name.partition('@')[0]}" if eq else identifier


def svc_status(p: steps.Project) -> dict[str, str]:
    cfg = read_esmith(p.source.db("configuration"))
    return {k: cfg[k].props.get("status") for k in ("dovecot", "postfix", "getmail")}


def test_shipped_tree_is_what_the_generator_writes(tmp_path):
    make_nethserver.build_ns7_tree(tmp_path / "t")
    made = {p.relative_to(tmp_path / "t"): p.read_bytes() for p in (tmp_path / "t").rglob("*") if p.is_file()}
    shipped = {p.relative_to(SAMPLE): p.read_bytes() for p in SAMPLE.rglob("*") if p.is_file()}
    assert made == shipped


def test_life_cycle_start_sync_finish(project):
    p = project
    assert steps.status(p) == {"mail": steps.NOT_MIGRATED, "sogo": steps.NOT_MIGRATED, "webtop": steps.NOT_MIGRATED,
                               "account-provider": steps.NOT_MIGRATED}
    r = steps.start(p)
    assert r.ok and r.state == steps.MIGRATING and r.details["copied"] == ns7_message_count()
    assert svc_status(p) == {"dovecot": "enabled", "postfix": "enabled", "getmail": "enabled"}
    # mail arriving on NS7 between syncs is carried by the next sync, and only that
    new = p.source.vmail / "alice@example.com/Maildir/new/1800000000.M1P1Q1.late"
    new.parent.mkdir(exist_ok=True)  # a fresh clone has no empty new/: the delivery agent would create it
    new.write_bytes(make_nethserver.message(99, "late@example.net", "alice@example.com", "Late"))
    r = steps.sync(p)
    assert r.ok and r.details["copied"] == 1
    r = steps.finish(p)
    assert r.state == steps.MIGRATED and r.details["copied"] == 0
    assert steps.status(p)["mail"] == steps.MIGRATED
    # every message, per user, without the domain, listescaped names as they were
    for old in ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org", "vmail"):
        assert bodies(p.target.mail_home(ns8.ns8_user(old)) / "Maildir") == bodies(p.source.vmail / old / "Maildir")
    assert (p.target.vmail / "alice/Maildir/.Work\\5cProjects").is_dir()
    # NS7 stopped only now
    assert svc_status(p) == {"dovecot": "disabled", "postfix": "disabled", "getmail": "disabled"}
    hist = steps.history(p, "mail")
    assert [h["action"] for h in hist] == ["start", "sync", "finish"]


def test_finish_conversions(project):
    p = project
    steps.start(p)
    r = steps.finish(p)
    # ACL files: what each identifier was granted before, it is granted now (full set + x), root gone
    n = 0
    for acl in p.source.vmail.rglob("dovecot-acl"):
        rel = acl.relative_to(p.source.vmail)
        new = p.target.vmail / ns8.ns8_user(rel.parts[0]) / Path(*rel.parts[1:])
        before = {unqualified(k): v for k, v in ns8.parse_acl(acl.read_text()).items()}
        after = ns8.parse_acl(new.read_text())
        want = {k: (ns8.NS8_FULL_RIGHTS if v == ns8.NS7_FULL_RIGHTS else v) for k, v in before.items()
                if k != "user=root"}
        assert after == want, rel
        n += 1
    assert n == r.details["acl_files"] == 4
    assert (p.target.vmail / "shared-mailboxes.db").read_bytes() == (
        b"shared/shared-boxes/user/alice/bob\n1\nshared/shared-boxes/user/bob/alice\n1\n"
        b"shared/shared-boxes/anyone/vmail\n1\n")
    assert 'fileinto "Shared/bob/Team";' in (p.target.vmail / "alice/sieve/main.sieve").read_text()
    assert os.readlink(p.target.vmail / "alice/.dovecot.sieve") == "sieve/main.sieve"
    s = json.loads(p.target.settings.read_text())
    assert {u: e.get("quota_mb") for u, e in s["users"].items()} == {"alice": 1536, "bob": 25600, "carol": 21504,
                                                                     "dave": None}
    assert s["users"]["bob"]["forward"] == {"addresses": ["bob@elsewhere.example"], "keep_copy": True}
    assert s["relay_rules"][0]["rule_subject"] == "*" and s["relay_rules"][0]["host"] == "relay.isp.example"
    assert s["pending"] == ["doveadm quota recalc -A"]  # no Dovecot given: left for NS8
    # the usage NS8 must show: what the NS7 Maildirs hold (CRLF messages: virtual size = size); NS7's own
    # stale maildirsize files were not carried
    for old in ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org", "vmail"):
        files = message_files(p.source.vmail / old / "Maildir")
        size = sum(f.stat().st_size for f in files)
        assert s["quota_usage"][ns8.ns8_user(old)] == {"messages": len(files), "bytes": size, "vsize": size}
    assert (p.source.vmail / "alice@example.com/Maildir/maildirsize").is_file()
    assert not list(p.target.vmail.rglob("maildirsize"))
    addrs = {a["address"]: a["destinations"] for a in s["addresses"]}
    assert addrs["info@example.com"] == ["alice", "bob"] and addrs["sales@"] == ["alice", "bob"]
    # dangling on NS7 (it bounced there): carried as it is, as NS8's import does, with a warning
    assert addrs["old@example.com"] == ["gone@example.com"]
    assert p.target.settings.stat().st_mode & 0o077 == 0
    tasks = {t["source"]: t for t in json.loads(p.target.fetch_tasks.read_text())}
    assert (tasks["alice@isp.example"]["protocol"], tasks["alice@isp.example"]["scheduled"]) == ("imap", True)
    assert tasks["bob@old.example"]["scheduled"] is False and tasks["bob@old.example"]["review"]
    assert tasks["bob@old.example"]["delete_on_remote"] is True
    assert tasks["carol@mail.example"]["delete_after_days"] == 7 and tasks["carol@mail.example"]["enabled"] is False
    text = " ".join(e.text for e in r.log.entries)
    assert "custom template etc/postfix/main.cf/95custom" in text and "always Bcc" in text
    assert "gone@example.com" in text
    logtext = p.log_path.read_text()
    for secret in ("relay-secret", "imap-secret", "pop-secret"):
        assert secret not in logtext and secret not in text



def test_conversions_replace_files_whole_for_a_dovecot_reading_them(project):
    """NS8's Dovecot serves the mailboxes from start on: while finish converts the ACL files and the
    shared-mailbox index (here: again and again, as a repeated conversion would), it reads one whole version,
    never an empty or half-written file.  The converted files get the mode the copied messages have."""
    from readers import digest, reading

    p = project
    steps.start(p)
    users, _ = steps.mail_users(p)
    acls = p.target.vmail / "*" / "Maildir" / ".*" / "dovecot-acl"
    with reading(acls, p.target.root) as seen_acl, reading(p.target.shared_index, p.target.root) as seen_index:
        for _ in range(15):
            steps.convert_mail(p, users, EventLog("test"))
    written = sorted(p.target.vmail.glob("*/Maildir/.*/dovecot-acl"))
    assert len(written) == 3
    for f in written:
        assert seen_acl[str(f)] == {digest(f.read_bytes())}, f
    assert seen_index[str(p.target.shared_index)] == {digest(p.target.shared_index.read_bytes())}
    message_mode = message_files(p.target.vmail / "alice/Maildir")[0].stat().st_mode & 0o777
    for f in written + [p.target.shared_index, p.target.vmail / "alice/sieve/main.sieve"]:
        assert f.stat().st_mode & 0o777 == message_mode, f
    assert not [f for f in p.target.vmail.rglob("*.tmp")], "no temporary file left behind"

def test_finish_removes_quota_files_written_before_the_final_sync_and_counts_virtual_sizes(project):
    """A Dovecot with Maildir++ quota that served the NS8 tree after start wrote a maildirsize; the final sync
    then adds mail past it.  finish removes it (Dovecot recounts) and records the usage with bare LFs counted
    as CRLF, as Dovecot's virtual size does."""
    p = project
    steps.start(p)
    stale = p.target.vmail / "alice/Maildir/maildirsize"
    stale.write_text("1610612736S\n1000 4\n")
    lf = b"Subject: written with LF\n\n" + b"a line\n" * 100
    late = p.source.vmail / "alice@example.com/Maildir/new/1800000000.M2P2Q2.late"
    late.parent.mkdir(exist_ok=True)
    late.write_bytes(lf)
    r = steps.finish(p)
    assert r.state == steps.MIGRATED and r.details["quota_recalculated"] is False
    assert not stale.exists()
    files = message_files(p.source.vmail / "alice@example.com/Maildir")
    size = sum(f.stat().st_size for f in files)
    got = json.loads(p.target.settings.read_text())["quota_usage"]["alice"]
    assert got == {"messages": len(files), "bytes": size, "vsize": size + lf.count(b"\n")}
    assert any("maildirsize" in e.text and "alice" in e.text for e in r.log.entries)


def test_finish_refuses_conversions_and_keeps_ns7_running_when_not_everything_moved(project):
    p = project
    steps.start(p)
    clash = p.source.vmail / "alice@example.org/Maildir"  # becomes "alice" too
    for s in ("cur", "new", "tmp"):
        (clash / s).mkdir(parents=True)
    r = steps.finish(p)
    assert r.state == steps.MIGRATING and not r.ok
    assert any("both become alice" in e.text for e in r.log.errors)
    assert svc_status(p)["dovecot"] == "enabled"
    assert not p.target.settings.exists() and not (p.target.vmail / "bob/Maildir/.Team/dovecot-acl").exists()


def test_abort_removes_only_what_was_created_and_never_touches_ns7(project):
    p = project
    before = {f: f.read_bytes() for f in p.source.root.rglob("*") if f.is_file() and not f.name.endswith(".lock")}
    steps.start(p)
    kept = p.target.vmail / "bob/Maildir/new/1900000000.M1P1Q1.delivered"  # mail NS8 received meanwhile
    kept.write_bytes(b"Subject: new on NS8\r\n\r\nhi\r\n")
    r = steps.abort(p)
    assert r.state == steps.NOT_MIGRATED and r.details["removed"] == ns7_message_count()
    assert not (p.target.vmail / "alice").exists()
    assert kept.read_bytes() == b"Subject: new on NS8\r\n\r\nhi\r\n"
    after = {f: f.read_bytes() for f in p.source.root.rglob("*") if f.is_file() and not f.name.endswith(".lock")}
    assert after == before
    r = steps.start(p)  # and it can start over
    assert r.ok and r.details["copied"] == ns7_message_count()


def test_illegal_steps_and_skip(project):
    p = project
    with pytest.raises(steps.IllegalStep, match="finish is possible only when it is migrating"):
        steps.finish(p)
    with pytest.raises(steps.IllegalStep):
        steps.sync(p)
    assert steps.skip(p).state == steps.SKIPPED
    with pytest.raises(steps.IllegalStep):
        steps.abort(p)
    assert steps.start(p).state == steps.MIGRATING
    with pytest.raises(steps.IllegalStep):
        steps.start(p)
    with pytest.raises(Exception, match="mail"):  # an application mailmigrate does not migrate
        steps.start(p, "nextcloud")


def test_lock_held_by_a_live_process_refuses_and_a_dead_one_is_taken_over(project):
    p = project
    steps.start(p)
    import socket
    import sqlite3

    def held_by(pid):  # a sync holding the application, as its process leaves it in the workflow store
        with sqlite3.connect(steps.workflow_file(p)) as db:
            db.execute("UPDATE wf_units SET state='syncing', lock_owner=? WHERE name='mail'",
                       (f"{pid}@{socket.gethostname()}",))

    held_by(os.getpid())
    with pytest.raises(StateLocked):
        steps.sync(p)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    held_by(dead.pid)
    r = steps.sync(p)
    assert r.ok and r.state == steps.MIGRATING and r.details["copied"] == 0


def test_cli_ns7(project):
    p = project
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", *a, "--source-root",
                               str(p.source.root), "--root", str(p.target.root)], capture_output=True, text=True,
                              env=env, timeout=120)

    r = cli("start", "mail", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "migrating"
    r = cli("finish", "mail", "--keep-source")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mail: finish -> migrated" in r.stdout and "relay-secret" not in r.stdout
    assert svc_status(p)["dovecot"] == "enabled"
    assert cli("status").stdout.splitlines() == ["mail: migrated", "sogo: not_migrated", "webtop: not_migrated",
                                                 "account-provider: not_migrated"]
    r = cli("sync", "mail")
    assert r.returncode == 2 and "migrated" in r.stderr
