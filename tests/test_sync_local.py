"""The engine end to end on local stores, through the real command line: Maildir and mbox to Maildir.

The source Maildir is written here file by file (not through mailmigrate), and the result is read back
file by file, so the store under test is checked against an independent reading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}


def run_mm(*args, check=True, env=None):
    p = subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, env=env, timeout=300)
    if check and p.returncode not in (0,):
        raise AssertionError(f"mailmigrate {args} -> {p.returncode}\nstdout:{p.stdout}\nstderr:{p.stderr}")
    return p


def write_msg(folder: Path, name: str, data: bytes, flags: str = "", mtime: float | None = None) -> Path:
    for d in ("cur", "new", "tmp"):
        (folder / d).mkdir(parents=True, exist_ok=True)
    p = folder / "cur" / f"{name}:2,{flags}"
    p.write_bytes(data)
    if mtime is not None:
        os.utime(p, (mtime, mtime))
    return p


def read_maildir(root: Path) -> dict[str, list[tuple[bytes, str, int]]]:
    """folder dir name -> sorted [(bytes, flag letters, mtime)] read straight from disk."""
    out = {}
    dirs = [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("."))
    for d in dirs:
        msgs = []
        for sub in ("cur", "new"):
            if not (d / sub).is_dir():
                continue
            for f in (d / sub).iterdir():
                info = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
                msgs.append((f.read_bytes(), "".join(sorted(c for c in info if c.isupper())), int(f.stat().st_mtime)))
        out["INBOX" if d == root else d.name] = sorted(msgs)
    return out


MESSAGES = [
    b"From: a@x\r\nSubject: one\r\nMessage-ID: <same@x>\r\n\r\nfirst body\r\n",
    b"From: b@x\r\nSubject: two\r\nMessage-ID: <same@x>\r\n\r\na different body, same Message-ID\r\n",
    b"From: c@x\r\nSubject: no id\r\n\r\nno message-id here\r\n",
    b"From: d@x\r\nSubject: no id either\r\n\r\nanother without\r\n",
    b"From: e@x\r\nSubject: twin\r\n\r\nidentical twin\r\n",
    b"From: e@x\r\nSubject: twin\r\n\r\nidentical twin\r\n",
    b"bare LF only\nline two\n\nbody\n",
    b"",
]


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    t0 = 1_600_000_000
    for i, data in enumerate(MESSAGES):
        write_msg(src, f"{t0 + i}.M{i}P1.host", data, "S" if i % 2 else "", t0 + i * 3600)
    write_msg(src / ".Work", f"{t0}.W1.host", b"Subject: w\r\n\r\nwork\r\n", "FS", t0)
    write_msg(src / ".Work.Projects", f"{t0}.P1.host", b"Subject: p\r\n\r\nproject\r\n", "R", t0)
    write_msg(src / ".Sent", f"{t0}.S1.host", b"Subject: s\r\n\r\nsent\r\n", "S", t0)
    (src / "subscriptions").write_text("Work\nWork.Projects\n")
    return src


def test_maildir_to_maildir_exact_and_incremental(tmp_path, source):
    target = tmp_path / "dst"
    state = tmp_path / "state.db"
    p = run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state, "--json")
    summary = json.loads(p.stdout)
    assert summary["copied"] == len(MESSAGES) + 3 and summary["failed"] == 0
    assert read_maildir(target) == read_maildir(source)

    # A rerun copies nothing.
    again = json.loads(run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state, "--json").stdout)
    assert again["copied"] == 0 and again["skipped"] == len(MESSAGES) + 3
    assert read_maildir(target) == read_maildir(source)


def test_new_mail_flags_and_delete_follow(tmp_path, source):
    target = tmp_path / "dst"
    state = tmp_path / "state.db"
    run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state)
    # new mail, a flag change, a deletion on the source, and a message written only on the target
    write_msg(source, "1700000000.NEW.host", b"Subject: new\r\n\r\nnew\r\n", "", 1_700_000_000)
    f = next((source / "cur").glob("1600000000.M0P1.host*"))
    f.rename(f.with_name("1600000000.M0P1.host:2,FS"))
    gone = next((source / "cur").glob("1600000003.M3P1.host*"))
    gone.unlink()
    write_msg(target, "1800000000.ONLYTARGET.host", b"Subject: mine\r\n\r\nwritten on the target\r\n", "")

    s = json.loads(run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state, "--json").stdout)
    assert (s["copied"], s["flags_updated"], s["deleted"]) == (1, 1, 0)
    s = json.loads(run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state, "--delete",
                          "--json").stdout)
    assert (s["copied"], s["flags_updated"], s["deleted"]) == (0, 0, 1)
    got = read_maildir(target)
    want = read_maildir(source)
    mine = [m for m in got["INBOX"] if m[0].endswith(b"written on the target\r\n")]
    assert len(mine) == 1, "a message mailmigrate did not put there must survive --delete"
    got["INBOX"].remove(mine[0])
    assert got == want


def test_dry_run_changes_nothing(tmp_path, source):
    target = tmp_path / "dst"
    state = tmp_path / "state.db"
    s = json.loads(run_mm("sync", f"maildir:{source}", f"maildir:{target}", "--state", state, "--dry-run",
                          "--json").stdout)
    assert s["dry_run"] is True and s["copied"] == len(MESSAGES) + 3
    assert not target.exists()


def test_second_run_on_same_state_is_refused(tmp_path, source):
    from mailmigrate.sync.state import RunLock

    lock = RunLock(tmp_path / "state.db")
    lock.acquire()
    p = run_mm("sync", f"maildir:{source}", f"maildir:{tmp_path / 'dst'}", "--state", tmp_path / "state.db",
               check=False)
    lock.release()
    assert p.returncode == 1 and "in use by another mailmigrate run" in p.stderr


def test_missing_source_is_a_configuration_error(tmp_path):
    p = run_mm("sync", f"maildir:{tmp_path / 'nope'}", f"maildir:{tmp_path / 'dst'}", "--state",
               tmp_path / "s.db", check=False)
    assert p.returncode == 2 and "does not exist" in p.stderr


def test_mbox_directory_to_maildir(tmp_path):
    box = tmp_path / "mail"
    box.mkdir()
    (box / "Inbox").write_bytes(
        b"From alice@example.org Mon Jan  4 10:00:00 2021\n"
        b"Subject: hi\nStatus: RO\n\nhello\n>From the start\n\n"
        b"From bob@example.org Tue Jan  5 11:30:00 2021\n"
        b"Subject: twin\n\nsame\n\n"
        b"From bob@example.org Tue Jan  5 11:30:00 2021\n"
        b"Subject: twin\n\nsame\n"
    )
    (box / "Archive.sbd").mkdir()
    (box / "Archive.sbd" / "2020").write_bytes(
        b"From carol@example.org Wed Jan  6 12:00:00 2021\nSubject: old\n\nold mail\n"
    )
    target = tmp_path / "dst"
    s = json.loads(run_mm("sync", f"mbox:{box}", f"maildir:{target}", "--state", tmp_path / "s.db",
                          "--json").stdout)
    assert s["copied"] == 4 and s["failed"] == 0
    got = read_maildir(target)
    inbox = [m[0] for m in got["INBOX"]]
    assert b"Subject: hi\nStatus: RO\n\nhello\nFrom the start\n" in inbox  # mboxrd: one ">" removed
    assert inbox.count(b"Subject: twin\n\nsame\n") == 2
    hi = [m for m in got["INBOX"] if m[0].startswith(b"Subject: hi")][0]
    assert "S" in hi[1]
    import calendar

    assert hi[2] == calendar.timegm((2021, 1, 4, 10, 0, 0))
    assert [m[0] for m in got[".Archive.2020"]] == [b"Subject: old\n\nold mail\n"]
    s = json.loads(run_mm("sync", f"mbox:{box}", f"maildir:{target}", "--state", tmp_path / "s.db",
                          "--json").stdout)
    assert s["copied"] == 0


def test_keywords_the_target_cannot_keep_are_dropped_and_reported_once_per_folder(tmp_path):
    """A target folder whose keyword letters are all taken (Dovecot's Maildir has 26, a..z, listed in its
    dovecot-keywords file) keeps the keywords it already knows and no new one: every message is copied with
    the flags the folder keeps, and each keyword it drops is reported once for the folder, not per message."""
    from mailmigrate.formats import maildir as md

    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "cur").mkdir(parents=True)
    (src / "dovecot-keywords").write_bytes(md.dump_keywords({0: "known", 1: "new1", 2: "new2"}))
    for i in range(6):
        letters = ["S", "ab", "abc", "ac", "a", "S"][i]  # a = known, b = new1, c = new2
        write_msg(src, f"{1_600_000_000 + i}.M{i}P1.host", b"Subject: %d\r\n\r\nbody %d\r\n" % (i, i), letters)
    for d in ("cur", "new", "tmp"):
        (dst / d).mkdir(parents=True)
    # Every letter of the target taken, "known" among them.
    (dst / "dovecot-keywords").write_bytes(md.dump_keywords({i: ("known" if i == 7 else f"kw{i}") for i in range(26)}))
    p = run_mm("sync", f"maildir:{src}", f"maildir:{dst}", "--state", tmp_path / "s.db")
    assert p.stdout.count("does not keep the flag new1") == 1 and p.stdout.count("does not keep the flag new2") == 1, p.stdout
    kws = md.parse_keywords((dst / "dovecot-keywords").read_bytes())
    assert len(kws) == 26 and "new1" not in kws.values() and "new2" not in kws.values()
    known = chr(ord("a") + next(i for i, n in kws.items() if n == "known"))
    got = sorted(f.name.split(":2,", 1)[1] for f in (dst / "cur").iterdir())
    assert got == sorted(["S", known, known, known, known, "S"])
