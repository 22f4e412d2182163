"""Migration projects end to end on real Dovecot: start, sync, abort (source untouched, only our copies
removed), finish with verification, and a report whose numbers match what the servers hold."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from servers import imapcheck
from servers.dovecot import make_cert
from test_sync_imap import MM, mm, msg, pair_refusing_message_2, populate, snapshot


def project_file(tmp_path, src, dst, name: str, extra: str = "", *, target_url: str | None = None):
    """A project file for one IMAP pair with its passwords in 0600 files beside it: a project file may not
    hold a password itself.  ``target_url``: the target written otherwise than ``dst.url()``."""
    for pw_file, pw in (("src.pw", src.password), ("dst.pw", dst.password)):
        (tmp_path / pw_file).write_text(pw)
        os.chmod(tmp_path / pw_file, 0o600)
    p = tmp_path / f"{name}.toml"
    p.write_text(f"""[project]
name = "{name}"
[source]
url = "{src.url()}"
password_file = "src.pw"
[target]
url = "{target_url or dst.url()}"
password_file = "dst.pw"
{extra}""")
    return p


def project(tmp_path, src, dst):
    p = project_file(tmp_path, src, dst, "acme", "[options]\ndelete_on_finish = true\n")
    mm("project", "init", p)
    return p


def status(p):
    return {u["unit"]: u for u in json.loads(mm("project", "status", p, "--json").stdout)}


def test_abort_removes_only_our_copies_and_leaves_the_source_untouched(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "\\Seen") for i in range(6)], "Work/Deep": [(msg(9), "")]})
    before = snapshot(src)
    p = project(tmp_path, src, dst)
    unit = src.user if src.user == dst.user else f"{src.user}->{dst.user}"
    mm("project", "start", p)
    assert status(p)[unit]["state"] == "migrating"
    assert sum(snapshot(dst)["INBOX"].values()) == 6
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    imapcheck.append(c, "INBOX", b"Subject: delivered to the new server\r\n\r\nnew\r\n", "")
    c.logout()
    out = json.loads(mm("project", "abort", p, "--json").stdout)
    assert out[0]["ok"] and status(p)[unit]["state"] == "not_started"
    after_abort = snapshot(dst)
    assert [k[0] for k in after_abort["INBOX"]] == [b"Subject: delivered to the new server\r\n\r\nnew\r\n"]
    assert "Work/Deep" not in after_abort  # the folder mailmigrate created is gone again
    assert snapshot(src) == before  # nothing on the source changed, not even \Seen
    # A refused action says why and changes nothing.
    r = mm("project", "finish", p, check=False)
    assert r.returncode == 1 and "not been started" in r.stdout


def test_finish_verifies_and_the_report_matches_the_servers(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i, 1000 * i), "") for i in range(5)], "Archive": [(msg(50), "\\Seen")] * 2})
    p = project(tmp_path, src, dst)
    mm("project", "start", p)
    c = imapcheck.connect(src.port, src.user, src.password)
    imapcheck.append(c, "INBOX", msg(77), "")  # mail arrives between start and finish
    c.logout()
    mm("project", "sync", p)
    fin = json.loads(mm("project", "finish", p, "--json").stdout)[0]
    assert fin["ok"] and fin["state"] == "migrated" and "verified" in fin["message"]
    r = mm("project", "report", p, "--json")
    report = json.loads(r.stdout)
    src_msgs = snapshot(src)
    n = sum(sum(c.values()) for c in src_msgs.values())
    size = sum(len(k[0]) * v for c in src_msgs.values() for k, v in c.items())
    assert report["ok"] and report["totals"]["source_messages"] == n == report["totals"]["target_messages"]
    assert report["totals"]["source_bytes"] == size and report["totals"]["missing"] == 0
    folders = {f["source"]: f for f in report["units"][0]["verification"]["folders"]}
    assert folders["Archive"]["source_messages"] == 2 and folders["INBOX"]["target_messages"] == 6
    html = next((tmp_path / "reports").glob("report-*.html")).read_text()
    assert "Everything verified" in html
    hist = [h for h in json.loads(mm("project", "status", p, "--json").stdout)]
    assert hist[0]["state"] == "migrated" and hist[0]["actions"] == []


def test_report_compares_directories_before_and_after(imap_accounts, tmp_path):
    """With a [directory] section the report also proves the accounts: a user missing on the target shows."""
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")]})
    p = project(tmp_path, src, dst)
    (tmp_path / "old.users").write_text("ann:{PLAIN}x::::::\nbob:{PLAIN}y::::::\n")
    (tmp_path / "new.users").write_text("ann:{PLAIN}x::::::\n")
    with open(p, "a") as f:
        f.write(f'\n[directory]\nsource = "passwd-file:{tmp_path / "old.users"}"\n'
                f'target = "passwd-file:{tmp_path / "new.users"}"\n')
    mm("project", "start", p)
    r = mm("project", "report", p, "--json", check=False)
    report = json.loads(r.stdout)
    users = next(c for c in report["directory"]["checks"] if c["check"] == "users")
    assert r.returncode == 1 and not report["ok"] and users["missing"] == ["bob"]
    (tmp_path / "new.users").write_text("ann:{PLAIN}x::::::\nbob:{PLAIN}y::::::\n")
    r = mm("project", "report", p, "--json", check=False)
    assert json.loads(r.stdout)["directory"]["ok"]
    html = sorted((tmp_path / "reports").glob("report-*.html"))[-1].read_text()
    assert "Directory: before and after" in html


def test_a_report_is_never_seen_half_written(tmp_path):
    """The report is the proof an administrator keeps: a program picking it up from the reports directory
    while it is written (again, within the same second) finds the whole of it or nothing."""
    from readers import digest, reading
    from mailmigrate.workflow.report import build_report, write_report

    folders = [{"source": f"Folder {i}", "target": f"Folder {i}", "source_messages": 1000, "target_messages": 999,
                "source_bytes": 10 ** 8, "missing": [f"<{i}.{j}@example.com>" for j in range(30)], "error": None,
                "ok": False} for i in range(40)]
    check = {"ok": False, "folders": folders,
             "totals": {"source_messages": 40000, "source_bytes": 4 * 10 ** 9, "target_messages": 39960,
                        "target_bytes": 4 * 10 ** 9, "missing": 40}}
    status = [{"unit": f"user{u}@example.com", "state": "migrating", "last_error": None} for u in range(300)]
    report = build_report("acme", status, {s["unit"]: check for s in status})
    out = tmp_path / "reports"
    with reading(out / "report-*", tmp_path) as seen:
        for _ in range(5):
            jp, hp = write_report(report, out)
    assert jp.stat().st_size > 1_000_000 and json.loads(jp.read_text())["units"][299]["unit"] == "user299@example.com"
    assert seen[str(jp)] == {digest(jp.read_bytes())}
    assert seen[str(hp)] == {digest(hp.read_bytes())}


def mm_from(cwd, *args, check=True):
    """The CLI run from ``cwd``, as an operator (or the dashboard's service) runs it from wherever it is."""
    p = subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
    return p


def maildir_with(root, messages: list[bytes]):
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(messages):
        (root / "cur" / f"{1600000000 + i}.M{i}P1.host:2,S").write_bytes(data)


def messages_in(root) -> list[bytes]:
    return sorted(f.read_bytes() for sub in ("cur", "new") for f in (root / sub).glob("*") if f.is_file())


@pytest.mark.parametrize("scheme", ["maildir:", "Maildir:"])
def test_relative_maildir_paths_are_beside_the_project_file_from_any_directory(tmp_path, scheme):
    """A project names its Maildirs (and its directory files) relative to itself; run from a directory that
    holds other mail under the same relative names, it still copies the project's own mail, and only there."""
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    mine = [msg(i) for i in range(3)]
    maildir_with(proj / "old" / "ann" / "Maildir", mine)
    maildir_with(elsewhere / "old" / "ann" / "Maildir", [msg(99)])  # what the current directory would give
    (proj / "old.users").write_text("ann:{PLAIN}x::::::\nbob:{PLAIN}y::::::\n")  # bob is not made yet
    (proj / "new.users").write_text("ann:{PLAIN}x::::::\n")
    p = proj / "rel.toml"
    p.write_text(f"""[project]
name = "rel"
[source]
url = "{scheme}old/%n/Maildir"
[target]
url = "{scheme}new/%n/Maildir"
[accounts]
list = ["ann"]
[directory]
source = "passwd-file:old.users"
target = "passwd-file:new.users"
""")
    mm_from(elsewhere, "project", "init", p)
    out = json.loads(mm_from(elsewhere, "project", "start", p, "--json").stdout)
    assert out[0]["ok"] and out[0]["state"] == "migrating", out
    assert messages_in(proj / "new" / "ann" / "Maildir") == sorted(mine)
    assert not (elsewhere / "new").exists()
    r = mm_from(elsewhere, "project", "report", p, "--json", check=False)
    report = json.loads(r.stdout)
    users = next(c for c in report["directory"]["checks"] if c["check"] == "users")
    assert r.returncode == 1 and users["missing"] == ["bob"], report["directory"]
    assert report["totals"]["source_messages"] == 3 and report["totals"]["missing"] == 0, report["totals"]


@pytest.mark.parametrize("tls", ["starttls", "imaps"])
def test_a_relative_cafile_is_beside_the_project_file_from_any_directory(imap_accounts, tmp_path, tls):
    """The target's CA, kept beside the project file as cafile=certs/ca.pem, is the one start trusts when run
    from a directory holding another certs/ca.pem: the copy goes through over verified TLS."""
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "") for i in range(3)]})
    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    (proj / "certs").mkdir(parents=True)
    (proj / "certs" / "ca.pem").write_bytes(dst.server.cafile.read_bytes())
    (elsewhere / "certs").mkdir(parents=True)
    _, other = make_cert(elsewhere / "certs")
    other.rename(elsewhere / "certs" / "ca.pem")  # a CA that did not sign the target's certificate
    if tls == "starttls":
        target = f"imap://{dst.user}@127.0.0.1:{dst.server.port}?tls=starttls&cafile=certs/ca.pem"
    else:
        target = f"imaps://{dst.user}@127.0.0.1:{dst.server.tls_port}?cafile=certs/ca.pem"
    p = project_file(proj, src, dst, "tls", target_url=target)
    mm_from(elsewhere, "project", "init", p)
    r = mm_from(elsewhere, "project", "start", p, "--json", check=False)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out[0]["ok"] and out[0]["state"] == "migrating", (out, r.stderr[-2000:])
    assert sum(snapshot(dst)["INBOX"].values()) == 3
    assert dst.password not in r.stdout + r.stderr


def test_a_start_that_left_a_message_behind_says_so_and_exits_non_zero(dovecot_factory, tmp_path):
    """A message the target refuses is not a failed unit (the rest was copied; the next sync retries it and
    finish refuses what has no verified copy), but the command must not say plain "ok" and exit 0: a script
    driving the cutover has to notice before finish does."""
    src, dst = pair_refusing_message_2(dovecot_factory)
    p = project_file(tmp_path, src, dst, "partial")
    assert mm("project", "init", p).returncode == 0
    r = mm("project", "start", p, check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ann: start INCOMPLETE -> migrating" in r.stdout and "failed 1" in r.stdout
    assert status(p)["ann"]["state"] == "migrating"
    assert sum(snapshot(dst)["INBOX"].values()) == 2
    r = mm("project", "sync", p, "--json", check=False)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert [(o["ok"], o["incomplete"]) for o in out] == [(True, True)]  # still refused: still said


def test_a_project_of_one_local_mailbox_without_users(tmp_path):
    """maildir -> maildir names no user: `project init` made no unit and crashed on it (AttributeError),
    `start` then failed 'no unit named None'. The one mailbox is a unit named "mailbox"."""
    import sys
    from pathlib import Path
    sample = Path(__file__).resolve().parent.parent / "examples" / "sample-maildir"
    mm = [sys.executable, "-m", "mailmigrate.cli.main", "project"]
    run = lambda *a: subprocess.run([*mm, *a], capture_output=True, text=True, cwd=tmp_path)  # noqa: E731
    p = run("init", "p.toml", "--source", f"maildir:{sample}", "--target", "maildir:out")
    assert p.returncode == 0, p.stderr
    p = run("start", "p.toml")
    assert p.returncode == 0 and "mailbox: start ok" in p.stdout, p.stdout + p.stderr
    p = run("finish", "p.toml")
    assert p.returncode == 0 and "mailbox: finish ok -> migrated" in p.stdout, p.stdout + p.stderr
    messages = lambda root: sorted(f.read_bytes() for f in root.rglob("*")  # noqa: E731
                                   if f.is_file() and f.parent.name in ("cur", "new"))
    assert messages(tmp_path / "out") == messages(sample)


def test_an_unknown_unit_is_a_usage_error(tmp_path):
    """`project sync FILE zed` was a failed unit '-> ?' with exit 1; a typo is a usage error: exit 2, nothing run."""
    import sys
    from pathlib import Path
    sample = Path(__file__).resolve().parent.parent / "examples" / "sample-maildir"
    mm = [sys.executable, "-m", "mailmigrate.cli.main", "project"]
    subprocess.run([*mm, "init", "p.toml", "--source", f"maildir:{sample}", "--target", "maildir:out"],
                   cwd=tmp_path, check=True, capture_output=True)
    p = subprocess.run([*mm, "start", "p.toml", "zed"], capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and "has no unit 'zed'" in p.stderr and "mailbox" in p.stderr
    assert not (tmp_path / "out").exists()
