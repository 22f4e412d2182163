"""Choosing folders and messages (issue 21, "Selection and mapping"), through the CLI on real Dovecot
servers: --include/--exclude/--folder, --map/--rename, --no-special-use, a merge by rename refused with
nothing copied, --max-size and ages by INTERNALDATE counted as skipped by rule and never deleted by
--delete, --just-folders; and --include/--map against Cyrus ("." separator, INBOX. prefix)."""

from __future__ import annotations

import pytest

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

from servers import imapcheck
from test_sync_imap import msg, populate, snapshot

MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def _sync(src, dst, tmp_path, *extra, state="s.db"):
    pw = tmp_path / "pw"
    pw.mkdir(exist_ok=True)
    (pw / "s").write_text(src.password)
    (pw / "t").write_text(dst.password)
    (pw / "s").chmod(0o600)
    (pw / "t").chmod(0o600)
    p = subprocess.run([*MM, "sync", src.url(), dst.url(), "--source-password-file", str(pw / "s"),
                        "--target-password-file", str(pw / "t"), "--state", str(tmp_path / state), "--json",
                        "--no-progress", *extra], capture_output=True, text=True, timeout=300)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = None
    return p, out


def _totals(out):
    return out["totals"] if "totals" in out else out


def test_include_exclude_and_folder(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Work": [(msg(2), "")], "Work/Old": [(msg(3), "")],
                   "Private": [(msg(4), "")], "Spam-ish": [(msg(5), "")]})
    p, out = _sync(src, dst, tmp_path, "--include", "^(INBOX|Work)", "--exclude", "/Old$")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(dst)
    assert set(got) == {"INBOX", "Work"}, got
    # --folder with and without --folder-recursive, on fresh targets of the same source
    p, _ = _sync(src, dst, tmp_path, "--folder", "Private", state="s2.db")
    assert p.returncode == 0, p.stderr
    assert "Private" in snapshot(dst) and "Work/Old" not in snapshot(dst)
    p, _ = _sync(src, dst, tmp_path, "--folder", "Work", "--folder-recursive", state="s3.db")
    assert p.returncode == 0, p.stderr
    got = snapshot(dst)
    assert sum(got["Work/Old"].values()) == 1 and "Spam-ish" not in got


def test_map_rename_and_special_use(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Gesendete Objekte": [(msg(2), "")], "Kunden": [(msg(3), "")],
                   "Kunden/Alt": [(msg(4), "")], "Archiv 2019": [(msg(5), "")]})
    p, out = _sync(src, dst, tmp_path, "--map", "Kunden=Customers", "--rename", "^Archiv (\\d+)$=Archive/\\1",
                   "--no-special-use")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(dst)
    assert sum(got["Customers"].values()) == 1 and sum(got["Customers/Alt"].values()) == 1
    assert sum(got["Archive/2019"].values()) == 1
    # --no-special-use: "Gesendete Objekte" keeps its own name instead of landing in the target's Sent
    assert sum(got["Gesendete Objekte"].values()) == 1
    assert "Kunden" not in got and "Archiv 2019" not in got


def test_merge_by_rename_is_refused_before_anything_is_copied(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "A": [(msg(2), "")], "B": [(msg(3), "")]})
    p, out = _sync(src, dst, tmp_path, "--rename", "^[AB]$=Both")
    assert p.returncode != 0
    text = p.stdout + p.stderr
    assert "merge" in text and "Both" in text, text
    got = snapshot(dst)
    assert "Both" not in got and not any(sum(c.values()) for c in got.values()), got


def test_max_size_skipped_by_rule_then_not_deleted(imap_accounts, tmp_path):
    src, dst = imap_accounts
    big = msg(9, size=6 * 1024 * 1024)
    populate(src, {"INBOX": [(msg(1), ""), (big, "")]})
    limit = str(5 * 1024 * 1024)
    # the 6 MB message is left out by --max-size: skipped by rule, not failed, not on the target
    p, out = _sync(src, dst, tmp_path, "--max-size", limit)
    assert p.returncode == 0, p.stdout + p.stderr
    t = _totals(out)
    assert t["copied"] == 1 and t["skipped_by_rule"] == 1 and t["failed"] == 0, t
    assert [b for b, _, _ in snapshot(dst)["INBOX"]] == [msg(1)]
    # in words too (a rerun: the rule is looked at again, nothing else to do)
    p = subprocess.run([*MM, "sync", src.url(), dst.url(), "--source-password-file", str(tmp_path / "pw/s"),
                        "--target-password-file", str(tmp_path / "pw/t"), "--state", str(tmp_path / "s.db"),
                        "--no-progress", "--max-size", limit], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "1 messages skipped by rule" in p.stdout, p.stdout + p.stderr
    # without the rule it is copied; a rerun with the rule and --delete leaves that copy alone: a message
    # a rule leaves out is not gone from the source
    p, out = _sync(src, dst, tmp_path)
    assert p.returncode == 0 and _totals(out)["copied"] == 1, p.stdout + p.stderr
    p, out = _sync(src, dst, tmp_path, "--max-size", limit, "--delete")
    assert p.returncode == 0, p.stdout + p.stderr
    t = _totals(out)
    assert t["failed"] == 0 and t["deleted"] == 0, t
    assert sum(snapshot(dst)["INBOX"].values()) == 2


def test_ages_by_internaldate(imap_accounts, tmp_path):
    src, dst = imap_accounts
    now = datetime.now(timezone.utc)
    c = imapcheck.connect(src.port, src.user, src.password)
    for i, days in enumerate((2, 40, 400)):  # INTERNALDATE given with APPEND
        imapcheck.append(c, "INBOX", msg(100 + i), "", now - timedelta(days=days))
    c.logout()
    p, out = _sync(src, dst, tmp_path, "--min-age", "30", "--max-age", "365")
    assert p.returncode == 0, p.stdout + p.stderr
    assert _totals(out)["copied"] == 1 and _totals(out)["skipped_by_rule"] == 2
    (body, _, _), = snapshot(dst)["INBOX"].keys()
    assert body == msg(101)


def test_just_folders(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Work": [(msg(2), "")], "Work/Deep": [(msg(3), "")]})
    p, out = _sync(src, dst, tmp_path, "--just-folders")
    assert p.returncode == 0, p.stdout + p.stderr
    got = snapshot(dst)
    assert {"Work", "Work/Deep"} <= set(got) and not any(sum(c.values()) for c in got.values()), got
    # a later full run copies everything
    p, out = _sync(src, dst, tmp_path)
    assert p.returncode == 0 and _totals(out)["copied"] == 3, p.stdout


@pytest.mark.parametrize("server", ["cyrus", "courier"])
def test_include_and_map_against_cyrus(dovecot_pair, request, tmp_path, server):
    """Cyrus and Courier name folders INBOX.Kunden.Alt: the rules still read with "/"."""
    from conftest import ImapAccount

    src = ImapAccount(dovecot_pair[0], f"sel{server[:2]}src", f"pw-sel{server[:2]}src")
    dst = ImapAccount(request.getfixturevalue(f"{server}_server"), f"sel{server[:2]}dst", f"pw-sel{server[:2]}dst")
    src.server.add_user(src.user, src.password)
    dst.server.add_user(dst.user, dst.password)
    populate(src, {"INBOX": [(msg(1), "")], "Kunden": [(msg(2), "")], "Kunden/Alt": [(msg(3), "")],
                   "Privat": [(msg(4), "")]})
    p, out = _sync(src, dst, tmp_path, "--include", "^(INBOX|Kunden)", "--map", "Kunden/Alt=Customers/Old")
    assert p.returncode == 0, p.stdout + p.stderr
    got = imapcheck.account_by_path(dst.port, dst.user, dst.password)
    assert sum(got[("Customers", "Old")].values()) == 1 and sum(got[("Kunden",)].values()) == 1
    assert ("Privat",) not in got and ("Kunden", "Alt") not in got


def test_project_file_rules_and_finish_verifies_what_they_chose(imap_accounts, tmp_path):
    """The same rules in a project's [options]: start copies what they choose, finish (with --delete)
    leaves what they leave out alone and its verification counts nothing they left out as missing."""
    from test_sync_imap import mm
    from test_workflow_project import project_file

    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), ""), (msg(2, size=200_000), "")], "Kunden": [(msg(3), "")],
                   "Trash": [(msg(4), "")]})
    p = project_file(tmp_path, src, dst, "sel", '[options]\nexclude = ["^Trash$"]\nmax_size = 100000\n'
                     'map = { "Kunden" = "Customers" }\n')
    mm("project", "init", p)
    mm("project", "start", p)
    got = snapshot(dst)
    assert "Trash" not in got and sum(got["Customers"].values()) == 1
    assert [b for b, _, _ in got["INBOX"]] == [msg(1)]
    fin = json.loads(mm("project", "finish", p, "--json").stdout)[0]
    assert fin["ok"] and fin["state"] == "migrated" and "verified" in fin["message"], fin
    assert [b for b, _, _ in snapshot(dst)["INBOX"]] == [msg(1)]
    report = json.loads(mm("project", "report", p, "--json").stdout)
    assert report["ok"] and report["totals"]["missing"] == 0 and report["totals"]["skipped_by_rule"] == 1, report
    html = next((tmp_path / "reports").glob("report-*.html")).read_text()
    assert "skipped by rule" in html
    # a rule the project file gets wrong is named
    bad = project_file(tmp_path, src, dst, "bad", '[options]\nrename = ["x"]\n')
    r = mm("project", "init", bad, check=False)
    assert r.returncode != 0 and "rename" in r.stdout + r.stderr


def test_accounts_file_rules_per_account(dovecot_pair, tmp_path):
    """The accounts file's 5th column: one account's own rules, on top of the command line's."""
    import os

    from conftest import ImapAccount

    src_srv, dst_srv = dovecot_pair
    tag = f"selacc{os.getpid()}"
    lines = []
    for i, rules in enumerate(("", "--exclude ^Private$ --max-size 100000")):
        user = f"{tag}u{i}"
        src_srv.add_user(user, f"s-{i}")
        dst_srv.add_user(user, f"t-{i}")
        populate(ImapAccount(src_srv, user, f"s-{i}"), {"INBOX": [(msg(1), ""), (msg(2, size=200_000), "")],
                                                        "Private": [(msg(3), "")], "Junk": [(msg(4), "")]})
        lines.append(f'{user},{user},s-{i},t-{i},"{rules}"\n')
    acc = tmp_path / "users.csv"
    acc.write_text("".join(lines))
    os.chmod(acc, 0o600)
    p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{src_srv.port}?tls=none",
                        f"imap://127.0.0.1:{dst_srv.port}?tls=none", "--accounts", str(acc), "--exclude", "^Junk$",
                        "--state", str(tmp_path / "s.db"), "--json", "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    plain = imapcheck.account(dst_srv.port, f"{tag}u0", "t-0")
    ruled = imapcheck.account(dst_srv.port, f"{tag}u1", "t-1")
    assert sum(plain["INBOX"].values()) == 2 and "Private" in plain and "Junk" not in plain
    assert [b for b, _, _ in ruled["INBOX"]] == [msg(1)] and "Private" not in ruled and "Junk" not in ruled
    assert json.loads(p.stdout)["skipped_by_rule"] == 1
    # a rule the file gets wrong is named with its line, before anything is copied
    acc.write_text(f'{tag}u0,{tag}u0,s-0,t-0,"--max-size lots"\n')
    p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{src_srv.port}?tls=none",
                        f"imap://127.0.0.1:{dst_srv.port}?tls=none", "--accounts", str(acc),
                        "--state", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "line 1" in p.stderr and "--max-size" in p.stderr, p.stdout + p.stderr


def test_search_keys_on_an_imap_source_and_refused_elsewhere(imap_accounts, tmp_path):
    src, dst = imap_accounts
    c = imapcheck.connect(src.port, src.user, src.password)
    imapcheck.append(c, "INBOX", b"From: boss@example.org\r\nSubject: keep\r\n\r\nkeep\r\n", "\\Flagged")
    imapcheck.append(c, "INBOX", b"From: spam@example.org\r\nSubject: drop\r\n\r\ndrop\r\n", "")
    imapcheck.append(c, "INBOX", b"From: boss@example.org\r\nSubject: old\r\n\r\nold\r\n", "",
                     datetime(2015, 1, 2, tzinfo=timezone.utc))
    c.logout()
    p, out = _sync(src, dst, tmp_path, "--search", "FROM boss@example.org SINCE 1-Jan-2020")
    assert p.returncode == 0, p.stdout + p.stderr
    assert [b for b, _, _ in snapshot(dst)["INBOX"]] == [b"From: boss@example.org\r\nSubject: keep\r\n\r\nkeep\r\n"]
    assert _totals(out)["skipped_by_rule"] == 2 and _totals(out)["failed"] == 0
    # on a Maildir source it is refused, saying why, before anything is read
    p = subprocess.run([*MM, "sync", f"maildir:{tmp_path / 'md'}", f"maildir:{tmp_path / 'out'}",
                        "--search", "ALL", "--state", str(tmp_path / "md.db")], capture_output=True, text=True)
    assert p.returncode == 2 and "IMAP sources only" in p.stderr, p.stderr
    assert not (tmp_path / "out").exists()
