"""Issue 19, Maildir and mbox part: a symbolic link planted inside a store is never followed — a message
file or a cur/ directory or a whole folder, absolute or relative — and each one is reported by name as not
copied, while the rest of the mail migrates.  Run through the real command line, as root would run it over
users' mailboxes; the secret is a file outside the store that the planter could not read themselves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from test_sync_local import read_maildir, run_mm, write_msg

SECRET = b"root:$6$secret-hash-from-shadow:19000:0:99999:7:::\n"
T0 = 1_600_000_000


@pytest.fixture
def outside(tmp_path) -> Path:
    o = tmp_path / "outside"
    o.mkdir()
    (o / "shadow").write_bytes(SECRET)
    # A whole Maildir someone else owns: a folder link would pull all of it in.
    write_msg(o / "bob", f"{T0}.B1.host", b"Subject: bob's\r\n\r\n" + SECRET, "S", T0)
    return o


def _everything_received(target: Path) -> bytes:
    return b"".join(b for msgs in read_maildir(target).values() for b, _, _ in msgs)


def test_maildir_links_are_reported_never_followed(tmp_path, outside):
    src = tmp_path / "src"
    write_msg(src, f"{T0}.M1.host", b"Subject: real\r\n\r\nkeep me\r\n", "S", T0)
    os.symlink(outside / "shadow", src / "cur" / f"{T0}.L1.host:2,S")  # absolute, a message file
    os.symlink("../../outside/shadow", src / "cur" / f"{T0}.L2.host:2,")  # relative, stays a link
    write_msg(src / ".Work", f"{T0}.W1.host", b"Subject: work\r\n\r\nown work\r\n", "", T0)
    os.symlink("../outside/bob", src / ".Stolen")  # relative, a whole folder
    (src / ".Notes").mkdir()
    os.symlink(outside / "bob" / "cur", src / ".Notes" / "cur")  # a folder's cur/ directory
    (src / ".Notes" / "maildirfolder").touch()
    (outside / "kw").write_bytes(b"0 root:$6$secret-hash\n")
    os.symlink(outside / "kw", src / ".Work" / "dovecot-keywords")  # its lines must not become keywords

    target = tmp_path / "dst"
    p = run_mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json", check=False)
    assert p.returncode == 1, p.stderr  # something was not copied: the run says so
    summary = json.loads(p.stdout)
    assert summary["copied"] == 2 and summary["failed"] == 4

    got = _everything_received(target)
    assert b"keep me" in got and b"own work" in got
    assert b"secret-hash" not in got and b"bob's" not in got
    assert not any("secret" in f.name for f in target.rglob("*"))
    everything_said = p.stdout + p.stderr
    for name in (f"cur/{T0}.L1.host:2,S", f"cur/{T0}.L2.host:2,", ".Stolen", ".Notes/cur"):
        assert f"{name} is a symbolic link" in everything_said, name
    assert "secret-hash" not in everything_said

    # A rerun still reports them (they are not "done") and copies nothing twice.
    again = run_mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json",
                   check=False)
    s2 = json.loads(again.stdout)
    assert s2["copied"] == 0 and s2["failed"] == 4


def test_a_link_swapped_in_after_the_listing_is_not_read(tmp_path, outside):
    """The race: a message file listed as a file, replaced by a link before it is read (O_NOFOLLOW)."""
    from mailmigrate.stores.maildir import MaildirStore

    src = tmp_path / "src"
    f = write_msg(src, f"{T0}.M1.host", b"Subject: real\r\n\r\nreal\r\n", "S", T0)
    with MaildirStore(src) as store:
        _, metas = store.list_messages(("INBOX",))
        f.unlink()
        os.symlink(outside / "shadow", f)
        got = [b.read() for _, b in store.fetch(("INBOX",), [m.key for m in metas])]
        problems = store.fetch_problems()
    assert got == []
    assert len(problems) == 1 and "is a symbolic link" in problems[0][1]


def test_mbox_tree_links_are_reported_never_followed(tmp_path, outside):
    box = tmp_path / "mail"
    box.mkdir()
    (box / "Inbox").write_bytes(b"From alice@example.org Mon Jan  4 10:00:00 2021\nSubject: hi\n\nhello\n")
    (outside / "mbox").write_bytes(b"From eve@example.org Mon Jan  4 10:00:00 2021\nSubject: x\n\n" + SECRET)
    os.symlink(outside / "mbox", box / "Stolen")  # absolute, a folder file
    (outside / "tree").mkdir()
    (outside / "tree" / "Deep").write_bytes(b"From eve@example.org Mon Jan  4 10:00:00 2021\n\n" + SECRET)
    os.symlink("../outside/tree", box / "Archive.sbd")  # relative, a directory of folders

    target = tmp_path / "dst"
    p = run_mm("sync", f"mbox:{box}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json", check=False)
    assert p.returncode == 1, p.stderr
    summary = json.loads(p.stdout)
    assert summary["copied"] == 1 and summary["failed"] == 2
    got = _everything_received(target)
    assert b"hello" in got and b"secret-hash" not in got
    for name in ("Stolen", "Archive.sbd"):
        assert f"{name} is a symbolic link" in p.stdout + p.stderr, name


def test_maildir_folders_dovecot_would_not_name_are_copied_not_skipped(tmp_path):
    """Before: `.Entwürfe` (raw UTF-8) and `.Trash..bak` were skipped with a log line, exit 0, failed 0."""
    src = tmp_path / "src"
    write_msg(src, f"{T0}.M1.host", b"Subject: inbox\r\n\r\ninbox\r\n", "S", T0)
    write_msg(src / ".Entwürfe", f"{T0}.E1.host", b"Subject: draft\r\n\r\nentwurf\r\n", "D", T0)
    write_msg(src / ".Trash..bak", f"{T0}.T1.host", b"Subject: old trash\r\n\r\nbak\r\n", "S", T0)
    write_msg(src / ".R&D", f"{T0}.R1.host", b"Subject: rnd\r\n\r\nresearch\r\n", "", T0)
    write_msg(src / ".Entw&APw-rfe", f"{T0}.E2.host", b"Subject: proper\r\n\r\nproper mUTF-7\r\n", "", T0)
    target = tmp_path / "dst"
    p = run_mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json")
    s = json.loads(p.stdout)
    assert s["copied"] == 5 and s["failed"] == 0
    got = read_maildir(target)
    by_body = {b: folder for folder, msgs in got.items() for b, _, _ in msgs}
    assert by_body[b"Subject: proper\r\n\r\nproper mUTF-7\r\n"] == ".Entw&APw-rfe"
    # The raw UTF-8 one cannot merge with the proper one: it keeps its own folder, named after it.
    assert by_body[b"Subject: draft\r\n\r\nentwurf\r\n"].startswith(".Entw&APw-rfe (")
    assert by_body[b"Subject: rnd\r\n\r\nresearch\r\n"] == ".R&-D"
    assert by_body[b"Subject: old trash\r\n\r\nbak\r\n"].startswith(".Trash.")
    assert len(set(by_body.values())) == 5
    again = json.loads(run_mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db",
                              "--json").stdout)
    assert again["copied"] == 0


def test_a_folder_name_too_long_for_the_file_system_fails_that_folder_only(tmp_path):
    """Before: OSError ENAMETOOLONG escaped as a traceback and stopped this account and every later one."""
    box = tmp_path / "mail"
    deep = box / ("a" * 200 + ".sbd")
    deep.mkdir(parents=True)
    (deep / ("b" * 200)).write_bytes(b"From a@b Mon Jan  4 10:00:00 2021\nSubject: deep\n\ndeep\n")
    (box / "Inbox").write_bytes(b"From a@b Mon Jan  4 10:00:00 2021\nSubject: hi\n\nhi\n")
    (box / "Later").write_bytes(b"From a@b Mon Jan  4 10:00:00 2021\nSubject: later\n\nlater\n")
    target = tmp_path / "dst"
    p = run_mm("sync", f"mbox:{box}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    s = json.loads(p.stdout)
    assert s["copied"] == 2 and s["failed"] == 1
    assert "File name too long" in p.stdout + p.stderr and "a" * 200 in p.stdout + p.stderr
    got = _everything_received(target)
    assert b"hi\n" in got and b"later\n" in got
