"""NethServer 7 -> 8 with ``--ns8-url``: the mail sent to NS8's import endpoint with the real ``rsync``, as
NethServer's own migration sends it, and imported by the mail module.

NS8 is the stand-in (``tests/servers/ns8.py``): ns8-core's API, its cluster ``import-module`` starting a
real ``rsync --daemon`` on loopback, and ns8-mail's import steps run on what arrived.  What a user notices:
the mail module's Dovecot volume serves every message with the UID, UIDVALIDITY and POP3 UIDL clients
cached, the DKIM key and bayes data arrive where NS8's rspamd reads them, the endpoint's password is on no
command line and in no log or state file, ``finish --dry-run`` lists what would be sent without sending it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ns7_layout as L  # noqa: E402
from servers import dovecot  # noqa: E402
from servers.ns8 import NS8StandIn  # noqa: E402
from test_nethserver_ns7_layout import (NS8_GROUPS, NS8_USERS, _chown, _passwd, _pop3_uidls,  # noqa: E402
                                        _serve, _view, svc)

from mailmigrate.workflow import ns7 as steps  # noqa: E402
from mailmigrate.paths.nethserver.layout import NethServerTree, NS8MailTree  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="needs rsync")
SRC = str(Path(__file__).resolve().parent.parent / "src")
NS8_PASSWORD = "Nethesis,1234"

# Stands in front of the real rsync: records each command line and, at that moment, every process's
# command line that holds the endpoint's password (which it reads from RSYNC_PASSWORD, as rsync does).
WRAPPER = """#!{python}
import os, sys
pw = os.environ.get("RSYNC_PASSWORD", "")
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            with open(f"/proc/{{pid}}/cmdline", "rb") as f:
                if pw and pw.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
with open({log!r}, "a") as f:
    f.write(repr({{"argv": sys.argv[1:], "password_given": bool(pw), "seen_in": found}}) + "\\n")
os.execv({rsync!r}, ["rsync", *sys.argv[1:]])
"""


def _wrapper(tmp: Path) -> tuple[Path, Path]:
    bindir, log = tmp / "bin", tmp / "rsync-calls.log"
    bindir.mkdir()
    (bindir / "rsync").write_text(WRAPPER.format(python=sys.executable, log=str(log), rsync=shutil.which("rsync")))
    (bindir / "rsync").chmod(0o755)
    return bindir, log


def _calls(log: Path) -> list[dict]:
    import ast

    return [ast.literal_eval(ln) for ln in log.read_text().splitlines()] if log.exists() else []


def _cli(src: Path, root: Path, ns8: NS8StandIn, *args: str, path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC, MAILMIGRATE_NS8_PASSWORD=NS8_PASSWORD)
    if path is not None:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", *args, "--source-root", str(src),
                           "--root", str(root), "--ns8-url", ns8.url], capture_output=True, text=True, env=env,
                          timeout=300)


def _secret(ns8: NS8StandIn) -> str:
    return ns8.mail.importer.password


def _everything_under(*roots: Path) -> bytes:
    return b"".join(f.read_bytes() for r in roots if r.exists() for f in r.rglob("*") if f.is_file())


@pytest.mark.skipif(not dovecot.available(), reason="needs dovecot and root")
def test_mail_pushed_through_the_import_endpoint_keeps_every_uid_and_arrives_where_ns8_serves_it():
    base = Path(tempfile.mkdtemp(prefix="mm-ns8push-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        src = L.build(base / "ns7")
        vmail7 = src / "var/lib/nethserver/vmail"
        for d in (base / "ns7", base / "ns7/var", base / "ns7/var/lib", base / "ns7/var/lib/nethserver"):
            os.chmod(d, 0o755)
        _chown(vmail7)
        own = ["INBOX", "Work"]
        ns7 = _serve(vmail7, _passwd(base / "ns7.passwd", "u"), "u")
        try:
            before = _view(ns7.port, "alice@example.com", own)
            uidl7 = _pop3_uidls(ns7.root / "dovecot.conf", "alice@example.com")
        finally:
            ns7.stop()
        root = base / "ns8-staging"
        bindir, calls = _wrapper(base)
        with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
            r = _cli(src, root, ns8, "start", "mail", path=bindir)
            assert r.returncode == 0, r.stdout + r.stderr
            assert ("cluster", "import-module") in ns8.cluster.log and list(ns8.cluster.modules) == ["mail1"]
            m = ns8.mail
            password = _secret(ns8)
            volume = m.volume("dovecot-data")
            assert (volume / "alice/Maildir/dovecot-uidlist").read_bytes() == \
                (vmail7 / "alice@example.com/Maildir/dovecot-uidlist").read_bytes()
            assert m.importer.proc.poll() is None and not m.imported  # pushed, not imported yet
            # mail arriving on NS7 between start and sync is sent by sync
            late = vmail7 / "alice@example.com/Maildir/new/1700000000.M9P9Q9.ns7"
            late.write_bytes(b"From: late@example.net\r\nSubject: late\r\n\r\nlate\r\n")
            r = _cli(src, root, ns8, "sync", "mail", path=bindir)
            assert r.returncode == 0, r.stdout + r.stderr
            assert (volume / "alice/Maildir/new" / late.name).read_bytes() == late.read_bytes()
            r = _cli(src, root, ns8, "finish", "mail", path=bindir)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "-> migrated" in r.stdout and steps.status(steps.Project(NethServerTree(src), NS8MailTree(root)))[
                "mail"] == steps.MIGRATED
            # the endpoint was closed by finish and the module imported what it got
            assert m.importer.proc.poll() == 0 and m.imported
            assert [x for x in m.importer.steps if ":" not in x] == [
                "20import_environment", "35migrate_maildirs", "40migrate_bayesdb", "50import_dkim"]
            # the homes arrive with NS8's names already: 35migrate_maildirs has nothing to rename
            assert "35migrate_maildirs: skipped alice" in m.importer.steps
            assert (m.env["DOVECOT_SPAM_FOLDER"], m.env["DOVECOT_SPAM_RETENTION"]) == ("Spam", "30")
            assert m.env["POSTFIX_ORIGIN"] == "example.com"
            assert (m.volume("rspamd-data") / "dkim/default.key").read_bytes() == L.DKIM_PRIVATE
            assert (m.volume("rspamd-data") / "dkim/default.txt").read_bytes() == L.DKIM_TXT
            assert (m.volume("rspamd-redis") / "persistent.rdb").read_bytes() == L.BAYES
            state = m.base / "srv/state"
            accounts = {a["name"]: a for a in json.loads((state / "accounts.json").read_text())}
            assert accounts["support@"]["props"]["Account"] == "vmail+support"  # NS7's records, as printjson
            # the settings went to that module (not another mail module) and were read back
            assert m.addresses[("wildcard", "support", "")]["destinations"] == [{"dtype": "public",
                                                                                  "name": "support"}]
            assert m.disabled == {"bob"}
            # the password: on no command line (ours or any process's while rsync ran), in no log or state
            seen = _calls(calls)
            assert {c["argv"][-1].rsplit("/", 1)[-1] for c in seen} >= {"terminate"}
            assert len(seen) >= 3 and all(c["password_given"] and not c["seen_in"] for c in seen), seen
            assert not any(password in a for c in seen for a in c["argv"])
            assert password.encode() not in _everything_under(root / ".mailmigrate") + r.stdout.encode() + \
                r.stderr.encode()
            assert not (root / ".mailmigrate/ns8-mail-import.secret").exists()  # kept only until the import
            assert not list((root / ".mailmigrate").glob("ns8-state-*"))  # NS7's settings files not left behind
            # NS8's Dovecot serves the volume: what every client cached is still valid
            os.chmod(ns8.cluster.root, 0o755)
            for d in (m.base, m.base / "srv", m.base / "srv/volumes"):
                os.chmod(d, 0o755)
            _chown(volume)
            served = _serve(volume, _passwd(base / "ns8.passwd", "n"), "n")
            try:
                after = _view(served.port, "alice", own)
                uidl8 = _pop3_uidls(served.root / "dovecot.conf", "alice")
            finally:
                served.stop()
        late_uid = max(after["INBOX"][2]) if after["INBOX"][2] else None
        assert after["INBOX"][0] == before["INBOX"][0]  # UIDVALIDITY
        assert {u: v for u, v in after["INBOX"][2].items() if u in before["INBOX"][2]} == before["INBOX"][2]
        assert late_uid >= before["INBOX"][1] and after["INBOX"][2][late_uid][0].endswith(b"late\r\n")
        assert after["Work"] == before["Work"]
        assert {u: v for u, v in uidl8.items() if u in uidl7} == uidl7
        assert svc(steps.Project(NethServerTree(src), NS8MailTree(root)))["dovecot"] == "disabled"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def ns7(tmp_path):
    return L.build(tmp_path / "ns7")


def test_finish_dry_run_lists_what_rsync_would_send_and_sends_nothing(ns7, tmp_path):
    root = tmp_path / "ns8"
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        volume = ns8.mail.volume("dovecot-data")
        lost = next((volume / "alice/Maildir/cur").iterdir())  # NS8's copy lacks one message
        lost.unlink()
        tasks, listing = list(ns8.cluster.log), sorted(volume.rglob("*"))
        r = _cli(ns7, root, ns8, "finish", "mail", "--dry-run")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"alice/Maildir/cur/{lost.name}" in r.stdout  # rsync's own itemized list
        assert "terminate: NS8 module mail1 imports the mail" in r.stdout
        # nothing sent, nothing asked of NS8's API, the endpoint still open
        assert sorted(volume.rglob("*")) == listing and ns8.cluster.log == tasks
        assert ns8.mail.importer.proc.poll() is None and not ns8.mail.imported
        r = _cli(ns7, root, ns8, "finish", "mail", "--dry-run", "--json")
        push = json.loads(r.stdout)["push"]
        assert any(lost.name in ln for ln in push["mailboxes"]) and push["then"]
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        assert lost.is_file() and ns8.mail.imported


def test_an_endpoint_gone_with_an_ns8_restart_is_started_again_with_the_same_credentials(ns7, tmp_path):
    """ns8-check-import: the daemon does not answer (NS8 restarted): the module's import-module is queued
    again with the same user, password and port, and the push goes on."""
    root = tmp_path / "ns8"
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        first = ns8.mail.importer
        first.stop()  # the daemon is gone; nothing was imported
        new = ns7 / "var/lib/nethserver/vmail/bob@example.com/Maildir/new/1700000001.M1P1Q1.ns7"
        new.parent.mkdir(exist_ok=True)
        new.write_bytes(b"Subject: after the restart\r\n\r\nx\r\n")
        r = _cli(ns7, root, ns8, "sync", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        again = ns8.mail.importer
        assert again is not first and (again.user, again.password, again.port) == (first.user, first.password,
                                                                                   first.port)
        assert ("module/mail1", "import-module") in ns8.cluster.log
        assert (ns8.mail.volume("dovecot-data") / "bob/Maildir/new" / new.name).is_file()
        r = _cli(ns7, root, ns8, "finish", "mail")  # finish waits for the import task started last
        assert r.returncode == 0, r.stdout + r.stderr
        assert ns8.mail.imported


def test_a_failed_push_keeps_ns7_running_and_abort_removes_the_module(ns7, tmp_path):
    root = tmp_path / "ns8"
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        # the module's state holds a directory where NS7's dovecot.json goes: rsync cannot replace it
        state = ns8.mail.base / "srv/state"
        (state / "dovecot.json").unlink()
        (state / "dovecot.json").mkdir()
        (state / "dovecot.json/keep").write_text("x")
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 1
        p = steps.Project(NethServerTree(ns7), NS8MailTree(root))
        assert steps.status(p)["mail"] == steps.MIGRATING and svc(p)["dovecot"] == "enabled"
        assert "rsync to NS8 (configuration) failed" in r.stdout
        daemon = ns8.mail.importer
        r = _cli(ns7, root, ns8, "abort", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        assert ns8.cluster.modules == {} and daemon.proc.poll() is not None
        assert not (root / ".mailmigrate/ns8-mail-import.secret").exists()
        assert "ns8_import" not in steps.steps_data(p, "mail")


def test_a_finish_repeated_after_ns8_imported_sends_nothing_and_never_forgets_mail_that_came_later(ns7, tmp_path):
    """The import is done but finish failed after it (NS8 does not know carol): NS7 stays enabled.  Mail
    that reaches NS7 after that cannot go through the closed endpoint: every later finish says so and
    none ends migrated, even once carol is known."""
    root = tmp_path / "ns8"
    p = steps.Project(NethServerTree(ns7), NS8MailTree(root))
    with NS8StandIn(users={"alice", "bob"}, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 1 and "mailbox carol: NS8 does not know this user" in r.stdout
        assert ns8.mail.imported and svc(p)["dovecot"] == "enabled"
        late = ns7 / "var/lib/nethserver/vmail/alice@example.com/Maildir/new/1700000002.M2P2Q2.ns7"
        late.write_bytes(b"Subject: too late\r\n\r\nx\r\n")
        tasks = len(ns8.cluster.log)
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 1 and "1 message file(s) copied from NS7 after NS8 module mail1 imported" in r.stdout
        assert not (ns8.mail.volume("dovecot-data") / "alice/Maildir/new" / late.name).exists()
        assert ("module/mail1", "import-module") not in ns8.cluster.log[tasks:]  # nothing reopened
        m = ns8.mail  # NS8's account provider now knows carol
        ns8.cluster.users.add("carol")
        m.users.add("carol")
        m.mailboxes["carol"] = {"user": "carol", "quota": {"limit": 0, "value": 0, "percent": 0}}
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 1 and "1 message file(s) copied from NS7 after NS8 module mail1" in r.stdout
        assert "does not know" not in r.stdout and "create-task failed" not in r.stdout  # that alone is left
        assert steps.status(p)["mail"] == steps.MIGRATING and svc(p)["dovecot"] == "enabled"


def test_a_finish_that_failed_after_ns8_imported_completes_once_ns8_is_fixed(ns7, tmp_path):
    root = tmp_path / "ns8"
    p = steps.Project(NethServerTree(ns7), NS8MailTree(root))
    with NS8StandIn(users={"alice", "bob"}, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        assert _cli(ns7, root, ns8, "finish", "mail").returncode == 1 and ns8.mail.imported
        m = ns8.mail  # NS8's account provider now knows carol
        ns8.cluster.users.add("carol")
        m.users.add("carol")
        m.mailboxes["carol"] = {"user": "carol", "quota": {"limit": 0, "value": 0, "percent": 0}}
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        assert steps.status(p)["mail"] == steps.MIGRATED and svc(p)["dovecot"] == "disabled"
        assert ns8.cluster.log.count(("cluster", "import-module")) == 1 and m.mailboxes["carol"]["quota"]["limit"] == 2048


def test_a_finish_that_stopped_after_telling_ns8_to_import_is_completed_by_the_next(ns7, tmp_path):
    """The process running finish died right after its ``terminate`` (here: the terminate is sent by hand):
    the state does not know NS8 imported; the next finish finds the endpoint gone, NS8 refusing a new one
    because the module has imported, and completes without a second import."""
    root = tmp_path / "ns8"
    p = steps.Project(NethServerTree(ns7), NS8MailTree(root))
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        assert _cli(ns7, root, ns8, "start", "mail").returncode == 0
        imp = ns8.mail.importer
        subprocess.run(["rsync", f"rsync://{imp.user}@127.0.0.1:{imp.port}/terminate"], check=True, timeout=60,
                       env=dict(os.environ, RSYNC_PASSWORD=imp.password), capture_output=True)
        imp.proc.wait(timeout=60)
        for _ in range(600):  # the stand-in's import steps run after the daemon stopped
            if ns8.mail.imported:
                break
            time.sleep(0.1)
        assert ns8.mail.imported
        r = _cli(ns7, root, ns8, "finish", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "has imported the mail already" in r.stdout and steps.status(p)["mail"] == steps.MIGRATED
        assert ("module/mail1", "import-module") in ns8.cluster.log  # the restart NS8 refused
        assert not (root / ".mailmigrate/ns8-mail-import.secret").exists()
