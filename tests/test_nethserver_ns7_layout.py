"""NethServer 7 -> 8 on a tree laid out as NethServer's packages lay it out (``tests/ns7_layout.py``).

What a user of the migrated server would notice: every address still delivers where it did (read from the
result NS8 is given), every user, group and mail setting as NS8's own import would set it or listed, NS7
left running when finish fails, and, served by Dovecot configured as NS7 and then as NS8, every message
with the UID, UIDVALIDITY, UIDNEXT, keyword and POP3 UIDL an IMAP or POP3 client cached, and each
reader's own \\Seen of another user's shared folder and of a public folder.
"""

from __future__ import annotations

import imaplib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import ns7_layout as L  # noqa: E402
from servers import dovecot  # noqa: E402

from mailmigrate.formats.esmith import read_esmith  # noqa: E402
from mailmigrate.workflow import ns7 as steps  # noqa: E402
from mailmigrate.paths.nethserver import quota as quota_mod  # noqa: E402
from mailmigrate.paths.nethserver.layout import NethServerTree, NS8MailTree  # noqa: E402


def _project(src: Path, dst: Path) -> steps.Project:
    return steps.Project(NethServerTree(src), NS8MailTree(dst))


@pytest.fixture
def project(tmp_path):
    return _project(L.build(tmp_path / "ns7"), tmp_path / "ns8")


def svc(p: steps.Project) -> dict[str, str]:
    cfg = read_esmith(p.source.db("configuration"))
    return {k: cfg[k].props.get("status") for k in ("dovecot", "postfix")}


def test_every_address_user_group_and_setting_arrives_as_ns8_holds_it(project):
    p = project
    assert steps.start(p).ok
    r = steps.finish(p)
    assert r.state == steps.MIGRATED and r.ok, [e.text for e in r.log.errors]
    s = json.loads(p.target.settings.read_text())
    addrs = {a["address"]: (a["domain"], a["destinations"]) for a in s["addresses"]}
    # a public folder's address and a group's address keep their destinations; root goes to postmaster
    assert addrs["support@"] == ("*", ["vmail+support"])
    assert addrs["orders@example.com"] == ("example.com", ["sales"])
    assert addrs["abuse@example.com"] == ("example.com", ["vmail+postmaster"])
    assert addrs["team@example.com"][1] == ["alice", "partner@partner.example"]
    assert addrs["info@example.com"][1] == ["alice", "partner@partner.example", "vmail+support"]
    assert not [e for e in r.log.entries if "dropped" in e.text]
    assert {a["address"] for a in s["addresses"] if a["internal"]} == {"team@example.com"}  # Access=private
    users = s["users"]
    assert users["alice"]["quota_mb"] == 0  # unlimited, not the 2048 MB default
    assert users["alice"]["spam_retention_days"] == 60
    assert users["bob"].get("disabled") is True and "bob" in s["disabled_users"]
    assert "root" in s["disabled_users"] and "alice" not in s["disabled_users"]
    assert users["carol"] == {"quota_mb": 2048, "internal": True}
    assert s["default_quota_mb"] == 2048
    assert s["groups"] == {"sales": {}, "board": {"internal": True}, "oldteam": {"internal": True}}
    assert any("oldteam" in w.text for w in r.log.warnings)
    rules = {(x["rule_type"], x["rule_subject"]): x for x in s["relay_rules"]}
    assert rules[("sender", "ceo@example.com")]["host"] == "smtp.ceo-relay.example"
    assert rules[("recipient", "partner.example")]["port"] == 25
    assert rules[("wildcard", "*")]["host"] == "relay.isp.example"
    assert s["domains"] == [{"domain": "example.com", "add_users": True, "add_groups": True,
                             "description": "Main domain"}]
    assert any("relay.example" in w.text and "not carried" in w.text for w in r.log.warnings)
    f = s["filter"]
    assert f["antispam"]["spam_flag_threshold"] == 5.5 and f["antispam"]["deny_message_threshold"] == 12
    assert f["antispam"]["greylist"] == {"enabled": True, "threshold": 4.0}
    assert f["antispam"]["prefix_email_subject"] == {"enabled": True, "prefix": "[SPAM]"}
    assert f["antivirus"] == {"enabled": True, "clamav_official_sigs": True, "third_party_sigs_rating": "low"}
    assert f["bypass"]["sender"] == ["friend@partner.example"] and f["bypass"]["sender_domain"] == ["partner.example"]
    assert f["bypass"]["recipient"] == ["ceo@example.com"]
    assert f["relay_networks"] == ["192.0.2.10", "198.51.100.0/24"] and f["sender_validation"] is True
    assert any("spammer.example" in w.text and "not carried" in w.text for w in r.log.warnings)
    assert s["mailbox"] == {"spam_folder": "Spam", "spam_retention_days": 30, "shared_seen": False,
                            "spam_subject_prefix": "[SPAM]"}
    # DKIM key pair and rspamd's bayes data, private
    assert (p.target.root / "dkim/default.key").read_bytes() == L.DKIM_PRIVATE
    assert (p.target.root / "dkim/default.txt").read_bytes() == L.DKIM_TXT
    assert (p.target.root / "rspamd-redis/persistent.rdb").read_bytes() == L.BAYES
    for f in ("dkim/default.key", "rspamd-redis/persistent.rdb", "mail-settings.json"):
        assert (p.target.root / f).stat().st_mode & 0o077 == 0, f
    assert svc(p) == {"dovecot": "disabled", "postfix": "disabled"}


def test_a_finish_with_an_error_in_the_conversions_keeps_ns7_running_and_can_be_repeated(project, tmp_path):
    """The quota check fails (no doveadm where it was said to be) after the verification passed: before,
    the unit still ended migrated and NS7's mail was disabled."""
    p = project
    steps.start(p)
    conf = tmp_path / "dovecot.conf"
    conf.write_text("# the target's configuration\n")
    broken = quota_mod.Doveadm(conf, binary=str(tmp_path / "no-doveadm"))
    r = steps.finish(p, dovecot=broken)
    assert not r.ok and r.state == steps.MIGRATING
    assert steps.status(p)["mail"] == steps.MIGRATING
    assert svc(p) == {"dovecot": "enabled", "postfix": "enabled"}
    assert p.target.settings.is_file() and (p.target.root / "dkim/default.key").is_file()
    r = steps.finish(p)  # the next finish resumes
    assert r.ok and r.state == steps.MIGRATED and svc(p)["dovecot"] == "disabled"


def test_abort_after_a_failed_finish_removes_what_finish_wrote_too(project, tmp_path):
    p = project
    steps.start(p)
    conf = tmp_path / "dovecot.conf"
    conf.write_text("# the target's configuration\n")
    steps.finish(p, dovecot=quota_mod.Doveadm(conf, binary=str(tmp_path / "no-doveadm")))
    assert p.target.settings.is_file()
    r = steps.abort(p)
    assert r.ok and r.state == steps.NOT_MIGRATED
    left = [f for f in p.target.root.rglob("*") if f.is_file() and ".mailmigrate" not in f.parts]
    assert left == []


def test_a_message_deleted_or_reflagged_on_ns7_between_syncs_is_one_file_on_ns8(project):
    p = project
    steps.start(p)
    inbox = p.source.vmail / "alice@example.com/Maildir/cur"
    os.rename(inbox / "1600000040.M3P40Q1.ns7:2,", inbox / "1600000040.M3P40Q1.ns7:2,FS")
    os.unlink(inbox / "1600000007.M1P7Q1.ns7:2,S")
    stranger = p.target.vmail / "alice/Maildir/cur/1700000000.M9P9Q9.ns8:2,"  # not ours: stays
    stranger.write_bytes(b"Subject: x\r\n\r\ny\r\n")
    r = steps.sync(p)
    assert r.ok
    got = sorted(x.name for x in (p.target.vmail / "alice/Maildir/cur").iterdir())
    assert got == ["1600000012.M2P12Q1.ns7:2,Sa", "1600000040.M3P40Q1.ns7:2,FS", "1700000000.M9P9Q9.ns8:2,"]


def test_symlinks_in_a_mail_home_are_never_followed(project, tmp_path):
    p = project
    secret = tmp_path / "shadow"
    secret.write_bytes(b"root:$6$secret\n")
    cur = p.source.vmail / "alice@example.com/Maildir/cur"
    os.symlink(secret, cur / "1600000099.M9P9Q9.ns7:2,S")
    os.symlink(tmp_path, p.source.vmail / "alice@example.com/Maildir/.Outside")
    r = steps.start(p)
    copied = b"".join(f.read_bytes() for f in (p.target.vmail / "alice").rglob("*") if f.is_file())
    assert b"$6$secret" not in copied
    assert not (p.target.vmail / "alice/Maildir/.Outside").exists()
    links = [w.text for w in r.log.warnings if "symlink" in w.text]
    assert any("1600000099.M9P9Q9.ns7:2,S" in t for t in links) and any(".Outside" in t for t in links)
    modes = {f.stat().st_mode & 0o777 for f in (p.target.vmail / "alice").rglob("*") if not f.is_symlink()}
    assert modes <= {0o600, 0o700}


# -- served by Dovecot as NS7 and then as NS8 -----------------------------------------------------------


def _chown(tree: Path) -> None:
    dv = pwd.getpwnam("dovecot")
    for x in [tree, *tree.rglob("*")]:
        os.lchown(x, dv.pw_uid, dv.pw_gid)


def _passwd(path: Path, login: str) -> Path:
    path.write_text("".join(f"{u if u in ('root', 'vmail') or login == 'n' else u + '@' + L.DOMAIN}"
                            f":{{PLAIN}}{pw}::::::\n" for u, pw in L.PASSWORDS.items()))
    return path


def _serve(vmail: Path, passwd: Path, login: str) -> dovecot.DovecotServer:
    """Dovecot with NS7's namespaces (``login='u'``: logins user@domain) or NS8's (``'n'``), from
    nethserver-mail's ``dovecot.conf/40namespaces`` and ns8-mail's ``local.conf``: ``Shared/<owner>/`` with the
    reader's private index, ``Public/`` over ``vmail/vmail``."""
    return dovecot.DovecotServer(mail_location=f"maildir:{vmail}/%{login}/Maildir", passdb_file=passwd,
                                 home=f"{vmail}/%{login}",
                                 extra_conf=dovecot.nethserver_conf(vmail, login, private_index=True, public=True)).start()


def _view(port: int, user: str, folders: list[str]) -> dict:
    """What a client caches: per folder UIDVALIDITY, UIDNEXT, and per UID the body, flags and keywords."""
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, L.PASSWORDS[user.partition("@")[0]])
    out = {}
    for f in folders:
        typ, data = c.status(f'"{f}"', "(UIDVALIDITY UIDNEXT)")
        assert typ == "OK", (user, f, data)
        st = dict(re.findall(rb"(UIDVALIDITY|UIDNEXT) (\d+)", data[0]))
        c.select(f'"{f}"', readonly=True)
        typ, rows = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        msgs = {}
        for item in rows:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                flags = frozenset(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).split()) - {b"\\Recent"}
                msgs[uid] = (item[1], flags)
        out[f] = (int(st[b"UIDVALIDITY"]), int(st[b"UIDNEXT"]), msgs)
    c.logout()
    return out


def _pop3_uidls(conf: Path, user: str) -> dict[int, str]:
    """POP3 UIDLs as Dovecot's POP3 server would give them (doveadm's ``pop3.uidl``, same code path)."""
    p = subprocess.run(["doveadm", "-c", str(conf), "fetch", "-u", user, "uid pop3.uidl", "mailbox", "INBOX"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return {int(u): v for u, v in re.findall(r"uid: (\d+)\npop3\.uidl: (\S+)", p.stdout)}


@pytest.mark.skipif(not dovecot.available(), reason="needs dovecot and root")
def test_clients_keep_uids_uidls_keywords_and_their_read_state_of_shared_and_public_folders(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="mm-ns7layout-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        src = L.build(base / "ns7")
        vmail7 = src / "var/lib/nethserver/vmail"
        for d in (base / "ns7", base / "ns7/var", base / "ns7/var/lib", base / "ns7/var/lib/nethserver"):
            os.chmod(d, 0o755)
        _chown(vmail7)
        own = ["INBOX", "Work"]
        # NS7 in use: clients have cached UIDs; carol marks one of alice's shared messages and one public
        # message read, which only carol's private index holds (SharedSeen disabled)
        ns7 = _serve(vmail7, _passwd(base / "ns7.passwd", "u"), "u")
        try:
            before = _view(ns7.port, "alice@example.com", own)
            c = imaplib.IMAP4("127.0.0.1", ns7.port)
            c.login("carol@example.com", L.PASSWORDS["carol"])
            for f in ("Shared/alice@example.com/Work", "Public/support"):
                assert c.select(f'"{f}"')[0] == "OK", f
                c.uid("STORE", "1:*" if f.startswith("Shared") else "5", "+FLAGS", "(\\Seen)")
                assert c.subscribe(f'"{f}"')[0] == "OK", f  # Dovecot writes carol's subscriptions file
            c.logout()
            carol7 = _view(ns7.port, "carol@example.com", ["Shared/alice@example.com/Work", "Public/support"])
            uidl7 = _pop3_uidls(ns7.root / "dovecot.conf", "alice@example.com")
        finally:
            ns7.stop()
        assert before["INBOX"][0:2] == (1600000000, 42)  # the one in new/ got UID 41
        assert sorted(before["INBOX"][2]) == [7, 12, 40, 41] and b"$Label1" in before["INBOX"][2][12][1]
        assert uidl7[7] == "00a1b2c3"
        assert (vmail7 / "carol@example.com/Maildir/shared/alice@example.com").is_dir()

        root = base / "ns8"
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))
        for action in ("start", "finish"):
            r = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", action, "mail",
                                "--source-root", str(src), "--root", str(root)],
                               capture_output=True, text=True, env=env, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
        assert "-> migrated" in r.stdout
        vmail8 = root / "vmail"
        os.chmod(root, 0o755)
        _chown(vmail8)
        ns8 = _serve(vmail8, _passwd(base / "ns8.passwd", "n"), "n")
        try:
            after = _view(ns8.port, "alice", own)
            carol8 = _view(ns8.port, "carol", ["Shared/alice/Work", "Public/support"])
            c = imaplib.IMAP4("127.0.0.1", ns8.port)
            c.login("carol", L.PASSWORDS["carol"])
            subscribed = {ln.decode().rsplit(" ", 1)[-1].strip('"') for ln in c.lsub()[1] if ln}
            c.logout()
            uidl8 = _pop3_uidls(ns8.root / "dovecot.conf", "alice")
        finally:
            ns8.stop()
        assert after == before  # UIDVALIDITY, UIDNEXT, every UID with its bytes, flags and keywords
        assert uidl8 == uidl7
        assert list(carol8.values()) == list(carol7.values())
        seen = [uid for _v, _n, msgs in carol8.values() for uid, (_b, fl) in msgs.items() if b"\\Seen" in fl]
        assert len(seen) == 3  # both of Work, one of support: carol's own read state came along
        assert {"Shared/alice/Work", "Public/support"} <= subscribed, subscribed
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- NethServer 8 itself, through the cluster API (a stand-in: tests/servers/ns8.py) -----------------------


NS8_USERS = {"alice", "bob", "carol"}  # what NS8's account provider knows (NS7's, reached from NS8)
NS8_GROUPS = {"sales", "board", "oldteam"}


def _dest(m, a):
    return sorted((d["dtype"], d["name"]) for d in m.addresses[a]["destinations"])


def test_finish_applies_the_settings_to_ns8_and_reads_them_back(project):
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import NS8StandIn

    p = project
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        p.ns8 = ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"))
        steps.start(p)
        r = steps.finish(p)
        assert r.ok and r.state == steps.MIGRATED, [e.text for e in r.log.errors]
        m = ns8.mail
        assert ("cluster", "import-module") in ns8.cluster.log and r.details["ns8"]["mismatches"] == 0
        # every address delivers where it did on NS7, as the NS8 module holds it
        assert _dest(m, ("wildcard", "support", "")) == [("public", "support")]
        assert _dest(m, ("domain", "orders", "example.com")) == [("group", "sales")]
        assert _dest(m, ("domain", "abuse", "example.com")) == [("public", "postmaster")]
        assert _dest(m, ("domain", "team", "example.com")) == [("external", "partner@partner.example"),
                                                               ("user", "alice")]
        assert m.addresses[("domain", "team", "example.com")]["internal"] is True
        assert m.mailboxes["alice"]["quota"]["limit"] == 0 and m.mailboxes["carol"]["quota"]["limit"] == 2048
        assert m.mailboxes["alice"]["spam_retention"]["value"] == 60
        assert m.disabled == {"bob"}
        assert m.internal == {("adduser", "carol"): True, ("addgroup", "board"): True,
                              ("addgroup", "oldteam"): True}
        assert any("SenderValidation" in w.text for w in r.log.warnings)
        assert {(r_.get("sender") or r_.get("recipient")) for r_ in m.relay} == {"ceo@example.com",
                                                                                 "partner.example", "*"}
        assert m.filter["antispam"]["spam_flag_threshold"] == 5.5
        assert {"value": "partner.example", "type": "domain", "direction": "from"} in m.bypass
        assert m.settings["spam_folder"] == {"enabled": True, "name": "Spam"}
        assert m.domains["example.com"]["addgroups"] is True
        # the POP3 connector accounts as imapsync tasks: IMAP scheduled, POP3 left unscheduled for review
        tasks = {t["remoteusername"]: t for t in ns8.imapsync.tasks}
        assert (tasks["alice.isp"]["localuser"], tasks["alice.isp"]["security"], tasks["alice.isp"]["remoteport"],
                tasks["alice.isp"]["cron"]) == ("alice", "ssl", 993, "15m")
        assert tasks["carol"]["cron"] == "" and tasks["carol"]["delete_remote"] is True
        assert tasks["carol"]["remotepassword"] == "pop-secret"
        assert not any("pop-secret" in e.text or "imap-secret" in e.text for e in r.log.entries)
        # applying again (a repeated finish after a failure) adds nothing twice
        n, t = len(m.addresses), len(ns8.imapsync.tasks)
        api = ns8_api.ClusterAPI(p.ns8)
        ns8_api.apply(api, json.loads(p.target.settings.read_text()), steps.EventLog("again"))
        ns8_api.apply_fetch_tasks(api, json.loads(p.target.fetch_tasks.read_text()), steps.EventLog("again"))
        assert (len(m.addresses), len(ns8.imapsync.tasks)) == (n, t)
        assert len(m.bypass) == len({tuple(sorted(b.items())) for b in m.bypass}) == 3


def test_ns8_refusing_keeps_ns7_running_and_dry_run_changes_nothing(project, tmp_path):
    from servers.ns8 import NS8StandIn

    p = project
    steps.start(p)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"),
               MAILMIGRATE_NS8_PASSWORD="wrong-password")

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", *a, "--source-root",
                               str(p.source.root), "--root", str(p.target.root)], capture_output=True, text=True,
                              env=env, timeout=120)

    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        before = {f: f.read_bytes() for f in p.target.root.rglob("*") if f.is_file()}
        r = cli("finish", "mail", "--dry-run", "--ns8-url", ns8.url)
        assert r.returncode == 0, r.stderr
        for what in ("support@ -> vmail+support", "orders@example.com -> sales", "add-address support@*",
                     "set-mailbox-enabled bob false", "status=disabled",
                     # every bypass rule finish adds is shown too, not only the filter settings
                     "add-bypass-rule email from friend@partner.example",
                     "add-bypass-rule domain from partner.example", "add-bypass-rule email to ceo@example.com",
                     # and what finish would leave to the operator, as the real finish warns
                     "by hand: SenderValidation", "by hand: trusted networks 192.0.2.10, 198.51.100.0/24"):
            assert what in r.stdout, what
        assert "relay-secret" not in r.stdout and "ceo-secret" not in r.stdout
        assert {f: f.read_bytes() for f in p.target.root.rglob("*") if f.is_file()} == before
        assert ns8.cluster.log == [] and svc(p)["dovecot"] == "enabled"
        r = cli("finish", "mail", "--ns8-url", ns8.url)
        assert r.returncode == 1 and "login as admin refused" in r.stdout
        assert "wrong-password" not in r.stdout + r.stderr
        assert steps.status(p)["mail"] == steps.MIGRATING and svc(p)["dovecot"] == "enabled"
        env["MAILMIGRATE_NS8_PASSWORD"] = "Nethesis,1234"
        r = cli("finish", "mail", "--ns8-url", ns8.url)
        assert r.returncode == 0, r.stdout + r.stderr
        assert steps.status(p)["mail"] == steps.MIGRATED and svc(p)["dovecot"] == "disabled"


def test_sync_keep_uids_between_two_maildirs(tmp_path):
    """``mailmigrate sync maildir:A maildir:B --keep-uids``: the same clone for any two Dovecot Maildirs,
    verified; a re-flagged message is renamed on the rerun, not copied again."""
    src = L.build(tmp_path / "ns7") / "var/lib/nethserver/vmail/alice@example.com/Maildir"
    dst = tmp_path / "new/Maildir"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent / "src"))

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sync", f"maildir:{src}",
                               f"maildir:{dst}", "--keep-uids", "--state", str(tmp_path / "state.db"), *a],
                              capture_output=True, text=True, env=env, timeout=120)

    r = cli()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "6 message(s)" in r.stdout and "verified" in r.stdout  # INBOX 3 + new/ 1, Work 2
    for rel in ("dovecot-uidlist", "dovecot-keywords", ".Work/dovecot-uidlist"):
        assert (dst / rel).read_bytes() == (src / rel).read_bytes(), rel
    assert (dst / "dovecot-acl").exists() is False and (dst / ".Work/dovecot-acl").read_bytes() == L.ACLS[
        ("alice@example.com", ".Work")].encode()  # a generic clone keeps the ACL files as they are
    os.rename(src / "cur/1600000040.M3P40Q1.ns7:2,", src / "cur/1600000040.M3P40Q1.ns7:2,S")
    r = cli("--json")
    got = json.loads(r.stdout)["accounts"][0]
    assert (got["copied"], got["renamed"], got["differences"]) == (0, 1, [])
    assert sorted(f.name for f in (dst / "cur").iterdir()) == sorted(f.name for f in (src / "cur").iterdir())


def test_a_user_ns8_does_not_know_is_named_and_keeps_ns7_running(project):
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import NS8StandIn

    p = project
    with NS8StandIn(users={"alice", "bob"}, groups=NS8_GROUPS) as ns8:  # carol missing from NS8's account provider
        p.ns8 = ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"))
        steps.start(p)
        r = steps.finish(p)
        assert r.state == steps.MIGRATING and svc(p)["dovecot"] == "enabled"
        assert any("mailbox carol: NS8 does not know this user" in e.text for e in r.log.errors)


def test_one_mailbox_that_cannot_be_written_is_named_and_the_others_move(project):
    p = project
    p.target.vmail.mkdir(parents=True)
    (p.target.vmail / "bob").write_bytes(b"not a directory")  # bob's home cannot be made
    r = steps.start(p)
    assert any(e.text.startswith("bob@example.com: mailbox not copied") for e in r.log.errors)
    assert (p.target.vmail / "alice/Maildir/cur/1600000007.M1P7Q1.ns7:2,S").is_file()
    assert (p.target.vmail / "carol/Maildir/cur").is_dir()


def test_what_ns8_does_not_hold_after_the_tasks_is_found_by_reading_it_back(project, monkeypatch):
    """A task that answers exit 0 but leaves nothing behind (here: the wildcard address support@) is caught by
    the read-back: finish names it and NS7 stays."""
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import MailModule, NS8StandIn

    real = MailModule.a_add_address
    monkeypatch.setattr(MailModule, "a_add_address",
                        lambda self, d: (0, None) if d.get("local") == "support" else real(self, d))
    p = project
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        p.ns8 = ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"))
        steps.start(p)
        r = steps.finish(p)
    assert r.state == steps.MIGRATING and svc(p)["dovecot"] == "enabled"
    assert any("does not hold" in e.text and "address support@*" in e.text for e in r.log.errors)


def test_start_installs_the_mail_module_on_ns8_and_abort_removes_only_that(project):
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import NS8StandIn

    p = project
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        p.ns8 = ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"))
        assert steps.start(p).ok and list(ns8.cluster.modules) == ["mail1"]
        r = steps.abort(p)
        assert r.ok and ns8.cluster.modules == {} and ("cluster", "remove-module") in ns8.cluster.log
        # a module that was there before the migration is never removed: the mail goes into a new one, as
        # NethServer's own migration imports it (the cluster's import-module always adds a module)
        ns8.cluster.run("cluster", "add-module", {"image": "mail", "node": 1})
        steps.start(p)
        assert list(ns8.cluster.modules) == ["mail1", "mail2"] and ns8.cluster.modules["mail2"].importer
        steps.abort(p)
        assert list(ns8.cluster.modules) == ["mail1"]


def test_a_task_ns8_refuses_is_named_without_the_values_it_echoes(project, monkeypatch):
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import MailModule, NS8StandIn

    def refuse(self, d):  # NS8's validation output repeats the value it refused
        return 10, [{"field": "password", "parameter": "password", "value": d.get("password"), "error": "too_weak"}]

    monkeypatch.setattr(MailModule, "a_add_relay_rule", refuse)
    p = project
    with NS8StandIn(users=NS8_USERS, groups=NS8_GROUPS) as ns8:
        p.ns8 = ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"))
        steps.start(p)
        r = steps.finish(p)
    text = " ".join(e.text for e in r.log.entries) + p.log_path.read_text()
    assert r.state == steps.MIGRATING and "add-relay-rule failed (exit 10): password: too_weak" in text
    assert "ceo-secret" not in text and "relay-secret" not in text


def test_the_ns8_leader_certificate_is_verified_unless_the_user_says_otherwise(tmp_path):
    from mailmigrate.model import Secret
    from mailmigrate.paths.nethserver import ns8_api
    from servers.ns8 import NS8StandIn

    key, crt = dovecot.make_cert(tmp_path)
    with NS8StandIn(cert=(key, crt)) as ns8:
        def login(**kw):
            ns8_api.ClusterAPI(ns8_api.ClusterLink(ns8.url, "admin", Secret("Nethesis,1234"), **kw)).login()

        with pytest.raises(ns8_api.NS8Error, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            login()
        login(cafile=str(crt))  # trusted through the given CA file
        login(verify_tls=False)  # --ns8-insecure
