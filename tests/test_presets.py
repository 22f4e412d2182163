"""Provider presets (issue 21, "Provider presets"), through the CLI on Dovecot servers configured to look
like the providers: ``?preset=gmail`` (labels, ``[Gmail]/All Mail`` deduplicated, views left out) and
``?preset=m365`` (its folder names, its message size limit), and preset defaults giving way to explicit
options.

How the Dovecots are made to look like the providers, and from where:
  * Gmail: folder names as Gmail lists them (vialink/imap-migrator GMAIL.md; Google's "IMAP Extensions"
    page, developers.google.com/gmail/imap/imap-extensions, for its LIST of them) with the RFC 6154
    attribute of each role (RFC 8457 for \\Important): ``[Gmail]/All Mail`` \\All, ``[Gmail]/Sent Mail``
    \\Sent, ``[Gmail]/Drafts`` \\Drafts, ``[Gmail]/Spam`` \\Junk, ``[Gmail]/Trash`` \\Trash,
    ``[Gmail]/Important`` \\Important, ``[Gmail]/Starred`` \\Flagged.  On Gmail a labelled message is one
    message listed in its label folders and in All Mail; on Dovecot those are copies with the same bytes,
    which is what the engine sees over IMAP either way.
  * Microsoft 365: the folder names Exchange Online gives a mailbox (Sent Items, Deleted Items, Junk Email,
    Archive, Drafts), its default message size limit of 35 MB (docs/PROVIDERS.md has the sources).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from mailmigrate.stores import presets
from mailmigrate.stores.registry import parse_spec
from conftest import ImapAccount
from servers import imapcheck
from servers.dovecot import DovecotServer, available
from test_oauth import oauth_pair  # noqa: F401  (a fixture: Dovecot with its oauth2 passdb and our token server)

try:  # the fleet's fixture (Redis broker, PostgreSQL state); without its client libraries the fleet test skips
    from test_fleet import fleet_env  # noqa: F401
except ImportError:  # pragma: no cover
    @pytest.fixture
    def fleet_env():
        pytest.skip("the fleet's client libraries (redis, psycopg) are not installed")
from test_sync_imap import msg, populate, snapshot

MM = [sys.executable, "-m", "mailmigrate.cli.main"]

GMAIL_FOLDERS = {"[Gmail]/All Mail": "\\All", "[Gmail]/Sent Mail": "\\Sent", "[Gmail]/Drafts": "\\Drafts",
                 "[Gmail]/Spam": "\\Junk", "[Gmail]/Trash": "\\Trash", "[Gmail]/Important": "\\Important",
                 "[Gmail]/Starred": "\\Flagged"}
M365_FOLDERS = {"Sent Items": "\\Sent", "Deleted Items": "\\Trash", "Junk Email": "\\Junk", "Archive": "\\Archive",
                "Drafts": "\\Drafts"}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd (bash .ci/run installs it)")
    gmail = DovecotServer(tmp_path_factory.mktemp("gmail"), special_use=GMAIL_FOLDERS).start()
    m365 = DovecotServer(tmp_path_factory.mktemp("m365"), special_use=M365_FOLDERS).start()
    plain = DovecotServer(tmp_path_factory.mktemp("plain")).start()
    yield {"gmail": gmail, "m365": m365, "plain": plain}
    for s in (gmail, m365, plain):
        s.stop()


_n = iter(range(10**6))


def account(servers, kind: str) -> ImapAccount:
    n = next(_n)
    user, password = f"{kind}{n}", f"pw-{kind}-{n}"
    servers[kind].add_user(user, password)
    return ImapAccount(servers[kind], user, password)


def sync(src, dst, tmp_path, *extra, src_url=None, dst_url=None, state="s.db"):
    pw = tmp_path / "pw"
    pw.mkdir(exist_ok=True)
    for name, acc in (("s", src), ("t", dst)):
        (pw / name).write_text(acc.password)
        (pw / name).chmod(0o600)
    p = subprocess.run([*MM, "sync", src_url or src.url(), dst_url or dst.url(), "--source-password-file",
                        str(pw / "s"), "--target-password-file", str(pw / "t"), "--state", str(tmp_path / state),
                        "--json", "--no-progress", *extra], capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return p, out


def verify(src, dst, state_path, src_url, dst_url):
    from mailmigrate.model import Account as Acc, Secret
    from mailmigrate.stores.registry import StoreOptions, build_store
    from mailmigrate.sync.runner import SyncRequest, account_key
    from mailmigrate.sync.state import StateDB
    from mailmigrate.sync.verify import verify_account

    sspec, tspec = parse_spec(src_url), parse_spec(dst_url)
    source = build_store(sspec, user=None, password=Secret(src.password), options=StoreOptions(), side="source")
    target = build_store(tspec, user=None, password=Secret(dst.password), options=StoreOptions(), side="target")
    req = SyncRequest(source=sspec, target=tspec, accounts=[Acc(src.user, dst.user)], state_path=state_path)
    state = StateDB.open(state_path)
    try:
        return verify_account(source, target, state, account_key(req, req.accounts[0]))
    finally:
        state.close()


def count(got, folder) -> int:
    return sum(got.get(folder, {}).values())


def bodies(got, folder) -> list[bytes]:
    return sorted(b for (b, _, _), n in got.get(folder, {}).items() for _ in range(n))


def gmail_account(servers):
    """INBOX message 1 also labelled Work; message 2 only in INBOX; message 3 only in Work; message 4 and
    its twin 5 (same bytes) archived: only in All Mail; message 6 sent; a starred message is in Starred and
    its label.  All Mail lists every one of them, as Gmail's does."""
    g = account(servers, "gmail")
    m1, m2, m3, m4, m6, m7 = msg(1), msg(2), msg(3), msg(4), msg(6), msg(7)
    populate(g, {"INBOX": [(m1, "\\Seen"), (m2, "")],
                 "Work": [(m1, "\\Seen"), (m3, "")],
                 "Family": [(m7, "\\Flagged")],
                 "[Gmail]/Sent Mail": [(m6, "\\Seen")],
                 "[Gmail]/Starred": [(m7, "\\Flagged")],
                 "[Gmail]/Important": [(m1, "\\Seen")],
                 "[Gmail]/All Mail": [(m1, "\\Seen"), (m2, ""), (m3, ""), (m4, "\\Seen"), (m4, "\\Seen"),
                                      (m6, "\\Seen"), (m7, "\\Flagged")]})
    return g


def test_gmail_source_all_mail_once_archive_kept_rerun_copies_nothing(servers, tmp_path):
    g, t = gmail_account(servers), account(servers, "plain")
    populate(t, {"Sent": []})  # a target mailbox as a server makes it: its Sent exists
    p, out = sync(g, t, tmp_path, src_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t)
    # every labelled message once per label folder, sent mail in the target's Sent
    assert bodies(got, "INBOX") == sorted([msg(1), msg(2)])
    assert bodies(got, "Work") == sorted([msg(1), msg(3)])
    assert bodies(got, "Family") == [msg(7)]
    assert bodies(got, "Sent") == [msg(6)]
    # the archived message and its twin (only in All Mail) arrive, in Archive; nothing labelled is doubled
    assert bodies(got, "Archive") == [msg(4), msg(4)]
    # the views are not copied
    assert not any(k.startswith("[Gmail]") and count(got, k) for k in got), got.keys()
    t_ = out["totals"] if "totals" in out else out
    assert t_["skipped_in_label"] == 5 and t_["failed"] == 0
    assert sum(count(got, k) for k in got) == 8
    # a rerun copies nothing
    p, out = sync(g, t, tmp_path, src_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out.get("totals") or out)["copied"] == 0
    assert snapshot(t) == got
    # verification (as a project's verify step runs it) finds nothing missing: the All Mail messages that
    # were not copied are the label folders' copies, and the views are not copied on purpose
    check = verify(g, t, tmp_path / "s.db", g.url(preset="gmail"), t.url())
    assert check.ok, check.as_dict()
    assert check.totals()["in_label"] == 5 and check.totals()["target_messages"] == 8


def test_gmail_message_archived_after_the_first_run_reaches_the_archive(servers, tmp_path):
    """The label's copy goes with --delete when the message loses its last label; the next run copies the
    message from All Mail into Archive, so it is not lost."""
    g, t = gmail_account(servers), account(servers, "plain")
    p, _ = sync(g, t, tmp_path, "--delete", src_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    c = imapcheck.connect(g.port, g.user, g.password)
    c.select('"Work"')
    typ, data = c.search(None, "ALL")
    # message 3 is Work's second message: archiving it on Gmail removes it from the label folder only
    c.store(data[0].split()[1], "+FLAGS", "\\Deleted")
    c.expunge()
    c.logout()
    p, out = sync(g, t, tmp_path, "--delete", "--force-delete", src_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t)
    assert bodies(got, "Work") == [msg(1)]
    assert bodies(got, "Archive") == sorted([msg(3), msg(4), msg(4)])
    # a label removed on Gmail: its folder's copies go, and its message (now only in All Mail) reaches the
    # archive in the same run
    c = imapcheck.connect(g.port, g.user, g.password)
    assert c.delete('"Family"')[0] == "OK"
    c.logout()
    p, out = sync(g, t, tmp_path, "--delete", "--force-delete", src_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t)
    assert count(got, "Family") == 0
    assert bodies(got, "Archive") == sorted([msg(3), msg(4), msg(4), msg(7)])


def test_gmail_all_mail_copy_and_skip(servers, tmp_path):
    g = gmail_account(servers)
    t1, t2 = account(servers, "plain"), account(servers, "plain")
    p, _ = sync(g, t1, tmp_path, "--gmail-all-mail", "copy", src_url=g.url(preset="gmail"), state="copy.db")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t1)
    assert count(got, "[Gmail]/All Mail") == 7 and count(got, "[Gmail]/Starred") == 1
    p, _ = sync(g, t2, tmp_path, "--gmail-all-mail", "skip", src_url=g.url(preset="gmail"), state="skip.db")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t2)
    assert count(got, "Archive") == 0
    assert count(got, "[Gmail]/All Mail") + count(got, "[Gmail]/Starred") + count(got, "[Gmail]/Important") == 0
    assert bodies(got, "INBOX") == sorted([msg(1), msg(2)])


def test_gmail_target_all_mail_is_no_destination(servers, tmp_path):
    """A source folder that would land in the Gmail target's All Mail is reported, not copied there."""
    s, g = account(servers, "plain"), account(servers, "gmail")
    populate(s, {"INBOX": [(msg(1), "")], "Old": [(msg(2), "")]})
    populate(g, {"[Gmail]/All Mail": []})
    p, out = sync(s, g, tmp_path, "--map", "Old=[Gmail]/All Mail", dst_url=g.url(preset="gmail"))
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(g)
    assert bodies(got, "INBOX") == [msg(1)] and count(got, "[Gmail]/All Mail") == 0
    assert "Gmail view" in p.stdout


def m365_account(servers):
    """A mailbox as Exchange Online makes it: its folders exist from the start."""
    m = account(servers, "m365")
    populate(m, {name: [] for name in M365_FOLDERS})
    return m


def test_m365_folders_size_limit_and_override(servers, tmp_path):
    """A Dovecot with Exchange Online's folder names as target: Sent, Trash and Junk land in Sent Items,
    Deleted Items and Junk Email; a message above the 35 MB limit is skipped and named, not failed, and a
    larger ?max_message_size= lets it through."""
    s, m = account(servers, "plain"), m365_account(servers)
    big = msg(9, presets.PRESETS["m365"].max_message_size + 1000)
    populate(s, {"INBOX": [(msg(1), ""), (big, "")], "Sent": [(msg(2), "\\Seen")], "Trash": [(msg(3), "")],
                 "Junk": [(msg(4), "")]})
    # a dry run already says so
    p, out = sync(s, m, tmp_path, "--dry-run", dst_url=m.url(preset="m365"), state="dry.db")
    assert p.returncode == 0, p.stdout + p.stderr
    assert out["copied"] == 4 and out["skipped_too_large"] == 1, out
    p, out = sync(s, m, tmp_path, dst_url=m.url(preset="m365"))
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(m)
    assert bodies(got, "INBOX") == [msg(1)]
    assert bodies(got, "Sent Items") == [msg(2)] and bodies(got, "Deleted Items") == [msg(3)]
    assert bodies(got, "Junk Email") == [msg(4)]
    t_ = out.get("totals") or out
    assert t_["skipped_too_large"] == 1 and t_["failed"] == 0
    too_large = [e for e in out["errors"] if e["kind"] == "skipped"]
    assert len(too_large) == 1 and too_large[0]["folder"] == "INBOX" and "size limit" in too_large[0]["message"]
    assert s.user in too_large[0]["account"]
    check = verify(s, m, tmp_path / "s.db", s.url(), m.url(preset="m365"))
    assert check.ok and check.totals()["skipped_too_large"] == 1, check.as_dict()
    # the user's own limit wins over the preset's: the message goes with the next run
    p, out = sync(s, m, tmp_path, dst_url=m.url(preset="m365", max_message_size=len(big) + 1))
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out.get("totals") or out)["copied"] == 1
    assert sorted(bodies(snapshot(m), "INBOX")) == sorted([msg(1), big])


def test_special_use_override_per_folder(servers, tmp_path):
    """--special-use: a folder named like nothing known goes to the target's Sent; one named like Trash
    keeps its own name with =none."""
    s, t = account(servers, "plain"), m365_account(servers)
    populate(s, {"INBOX": [(msg(1), "")], "Postausgang alt": [(msg(2), "")], "Trash": [(msg(3), "")]})
    p, _ = sync(s, t, tmp_path, "--special-use", "Postausgang alt=sent", "--special-use", "Trash=none")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(t)
    assert bodies(got, "Sent Items") == [msg(2)]
    assert bodies(got, "Trash") == [msg(3)] and count(got, "Deleted Items") == 0


def test_preset_fills_only_what_the_url_leaves_out():
    """imap://ann@?preset=gmail reaches imap.gmail.com on 993 with TLS from the first byte; a host, a port
    or ?tls= in the URL wins."""
    g = parse_spec("imap://ann@example.org@?preset=gmail")
    assert (g.host, g.port, g.tls, g.user) == ("imap.gmail.com", 993, "implicit", "ann@example.org")
    m = parse_spec("imaps://bob@?preset=m365")
    assert (m.host, m.port, m.tls) == ("outlook.office365.com", 993, "implicit")
    own = parse_spec("imap://bob@127.0.0.1:1143?preset=m365&tls=none")
    assert (own.host, own.port, own.tls) == ("127.0.0.1", 1143, "none")
    starttls = parse_spec("imap://bob@mail.example.org:143?preset=m365")
    assert (starttls.host, starttls.port, starttls.tls) == ("mail.example.org", 143, "starttls")
    with pytest.raises(Exception, match="preset 'yahoo' is not known"):
        parse_spec("imap://bob@?preset=yahoo")


def test_daily_limit_paces_unless_told_otherwise(servers, tmp_path):
    """A Gmail source paces the run under its daily download limit (said in the log); --max-bandwidth 0
    switches that off.  Both copy everything."""
    g, t = gmail_account(servers), account(servers, "plain")
    p, _ = sync(g, t, tmp_path, "--log-file", str(tmp_path / "paced.log"), src_url=g.url(preset="gmail"),
                state="paced.db")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "KiB/s to the target" in (tmp_path / "paced.log").read_text()
    t2 = account(servers, "plain")
    p, _ = sync(g, t2, tmp_path, "--log-file", str(tmp_path / "free.log"), "--max-bandwidth", "0",
                src_url=g.url(preset="gmail"), state="free.db")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "KiB/s to the target" not in (tmp_path / "free.log").read_text()
    assert snapshot(t2) == snapshot(t)


def test_m365_throttling_answer_is_waited_out(servers, tmp_path):
    """Exchange Online answers a throttled command with ``BAD Request is throttled. Suggested Backoff Time:
    N milliseconds`` (Microsoft Q&A, "AV3 BAD Request is throttled"; the answer's classification is in
    tests/test_imap_protocol.py).  Here a proxy in front of the M365-like target gives that answer to the
    first LIST: the account waits the time the server suggested, starts again, and copies everything once."""
    from servers.faultproxy import Fault, FaultProxy

    s, m = account(servers, "plain"), m365_account(servers)
    populate(s, {"INBOX": [(msg(1), ""), (msg(2), "\\Seen")], "Sent": [(msg(3), "\\Seen")]})
    with FaultProxy(m.port) as proxy:
        proxy.push(Fault("answer", command=b"LIST",
                         reply=b"BAD Request is throttled. Suggested Backoff Time: 300 milliseconds"))
        url = f"imap://{m.user}@127.0.0.1:{proxy.port}?tls=none&preset=m365"
        p, out = sync(s, m, tmp_path, "--log-file", str(tmp_path / "log"), dst_url=url)
        assert proxy.faults_fired == 1
    assert p.returncode == 0, p.stdout + p.stderr
    assert "throttled" in (tmp_path / "log").read_text() and "retrying in 0.3s" in (tmp_path / "log").read_text()
    got = snapshot(m)
    assert bodies(got, "INBOX") == sorted([msg(1), msg(2)]) and bodies(got, "Sent Items") == [msg(3)]
    assert (out.get("totals") or out)["copied"] == 3


def test_project_file_preset_and_folder_roles(servers, tmp_path):
    """A project's [source]/[target] URL takes ?preset= and its [options] folder_roles and gmail_all_mail:
    start copies a Gmail-like source once per folder into an M365-like target, and finish's verification
    counts nothing as missing."""
    from test_sync_imap import mm
    from test_workflow_project import project_file

    g, m = gmail_account(servers), m365_account(servers)
    populate(g, {"Ablage": [(msg(8), "")]})
    p = project_file(tmp_path, g, m, "gm", '[options]\nfolder_roles = { "Ablage" = "junk" }\n'
                     'gmail_all_mail = "dedupe"\ndelete_on_finish = false\n',
                     target_url=m.url(preset="m365"))
    text = p.read_text().replace(g.url(), g.url(preset="gmail"))
    p.write_text(text)
    mm("project", "init", p)
    mm("project", "start", p)
    got = snapshot(m)
    assert bodies(got, "Sent Items") == [msg(6)]
    # Ablage is the junk folder by the project's rule; All Mail's archived twins go to Archive
    assert bodies(got, "Junk Email") == [msg(8)] and count(got, "Ablage") == 0
    assert bodies(got, "Archive") == [msg(4), msg(4)]
    assert count(got, "[Gmail]/All Mail") == 0 and count(got, "[Gmail]/Starred") == 0
    fin = json.loads(mm("project", "finish", p, "--json").stdout)[0]
    assert fin["ok"] and fin["state"] == "migrated", fin
    report = json.loads(mm("project", "report", p, "--json").stdout)
    assert report["ok"] and report["totals"]["missing"] == 0 and report["totals"]["in_label"] == 5, report
    assert "whose copy is a label folder's: 5" in next((tmp_path / "reports").glob("report-*.html")).read_text()
    bad = project_file(tmp_path, g, m, "bad", '[options]\nfolder_roles = { "Ablage" = "attic" }\n')
    r = mm("project", "init", bad, check=False)
    assert r.returncode != 0 and "attic" in r.stdout + r.stderr


def test_accounts_file_rules_take_special_use(servers, tmp_path):
    """The accounts file's rules column takes --special-use like the command line."""
    import os

    s, m = account(servers, "plain"), m365_account(servers)
    populate(s, {"INBOX": [(msg(1), "")], "Papierkorb alt": [(msg(2), "")]})
    acc = tmp_path / "users.csv"
    acc.write_text(f"{s.user},{m.user},{s.password},{m.password},\"--special-use 'Papierkorb alt=trash'\"\n")
    os.chmod(acc, 0o600)
    p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{s.port}?tls=none",
                        f"imap://127.0.0.1:{m.port}?tls=none&preset=m365", "--accounts", str(acc),
                        "--state", str(tmp_path / "s.db"), "--json", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(m)
    assert bodies(got, "Deleted Items") == [msg(2)] and count(got, "Papierkorb alt") == 0


def test_preset_prefers_the_providers_oauth_mechanism(oauth_pair, tmp_path):
    """With an OAuth token and no --source-sasl, a server offering both mechanisms gets OAUTHBEARER; with
    ?preset=gmail it gets XOAUTH2, Google's documented one; --source-sasl still wins over the preset."""
    from test_oauth import _refresh_file, _seed

    idp, src, dst = oauth_pair
    _seed(src, dst, ["pa", "pb", "pc"])

    def run(user, *extra, preset=""):
        rf = _refresh_file(tmp_path, idp, user, name=f"{user}.json")
        return subprocess.run([*MM, "-vv", "sync", f"imap://{user}@127.0.0.1:{src.port}?tls=none{preset}",
                               f"imap://127.0.0.1:{dst.port}?tls=none", "--source-oauth-refresh-file", str(rf),
                               "--state", str(tmp_path / f"{user}.db"), "--json", *extra],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "target-pw"})

    def methods(user):
        """The mechanisms the server saw this user log in with (PLAIN: the test filling the mailbox)."""
        return set(re.findall(r"Login: user=<" + user + r">, method=(\S+),", src.log())) - {"PLAIN"}

    for user, extra, preset, want in (("pa", (), "", "OAUTHBEARER"), ("pb", (), "&preset=gmail", "XOAUTH2"),
                                      ("pc", ("--source-sasl", "oauthbearer"), "&preset=gmail", "OAUTHBEARER")):
        p = run(user, *extra, preset=preset)
        assert p.returncode == 0, p.stderr[-3000:]
        assert json.loads(p.stdout)["copied"] == 9
        assert methods(user) == {want}, (user, methods(user))


def test_gmail_preset_and_rules_through_the_fleet(servers, tmp_path, fleet_env):
    """A fleet worker reads the preset from the job's URL and the rules from the job: All Mail is
    deduplicated, the views are left out, and --special-use reaches the worker."""
    from servers.fleet import start_worker, stop_worker, wait_ready

    broker, state, _ = fleet_env
    g, t = gmail_account(servers), account(servers, "plain")
    populate(t, {"Sent": [], "Junk": []})
    acc = tmp_path / "acc.csv"
    acc.write_text(f"{g.user},{t.user},{g.password},{t.password}\n")
    os.chmod(acc, 0o600)
    w = start_worker(broker, state, concurrency=1, name="presets", log=tmp_path / "w.log",
                     extra=["--accounts", str(acc)])
    try:
        wait_ready(w, tmp_path / "w.log")
        p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{g.port}?tls=none&preset=gmail",
                            f"imap://127.0.0.1:{t.port}?tls=none", "--accounts", str(acc), "--executor", "celery",
                            "--broker", broker, "--state", state, "--special-use", "Family=junk",
                            "--fleet-timeout", "120", "--json", "--no-progress"],
                           capture_output=True, text=True, timeout=180)
    finally:
        stop_worker(w)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    got = snapshot(t)
    assert bodies(got, "INBOX") == sorted([msg(1), msg(2)]) and bodies(got, "Work") == sorted([msg(1), msg(3)])
    assert bodies(got, "Junk") == [msg(7)] and count(got, "Family") == 0
    assert bodies(got, "Archive") == [msg(4), msg(4)] and bodies(got, "Sent") == [msg(6)]
    assert count(got, "[Gmail]/All Mail") + count(got, "[Gmail]/Starred") + count(got, "[Gmail]/Important") == 0
