"""Issue 19, CommuniGate part: a symbolic link inside a store is never followed (message files and folder
directories, absolute and relative); each one is reported naming it, and the rest of the mail migrates."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailmigrate.formats import communigate_mailbox as cgm
from mailmigrate.model import INBOX
from mailmigrate.stores.communigate import CommuniGateStore

T = datetime(2023, 3, 1, 9, 30, tzinfo=timezone.utc)
SECRET = b"root:$6$secret-hash-from-shadow:19000:0:99999:7:::\n"


def _mbox(*bodies: bytes) -> bytes:
    return b"".join(cgm.write_message(b, "a@example.com", set(), i, T) for i, b in enumerate(bodies, 1))


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path]:
    """A store where the user of eve.macnt planted links to a file and a directory outside the store."""
    outside = tmp_path / "outside"
    (outside / "mail.folder").mkdir(parents=True)
    (outside / "shadow").write_bytes(SECRET)
    (outside / "Stolen.mbox").write_bytes(_mbox(b"Subject: stolen\n\n" + SECRET))
    (outside / "mail.folder" / "Deep.mbox").write_bytes(_mbox(b"Subject: deep\n\n" + SECRET))
    base = tmp_path / "cg"
    acc = base / "Accounts" / "eve.macnt"
    (acc / "Notes.mdir").mkdir(parents=True)
    (acc / "INBOX.mbox").write_bytes(_mbox(b"Subject: real\n\nkeep me\n"))
    (acc / "Notes.mdir" / "100-S-20230301093000").write_bytes(b"Subject: note\n\nreal note\n")
    os.symlink(outside / "shadow", acc / "Notes.mdir" / "101-S-20230301093000")  # absolute, message file
    os.symlink("../../../outside/shadow", acc / "Notes.mdir" / "102-S-20230301093000")  # relative
    os.symlink(outside / "Stolen.mbox", acc / "Stolen.mbox")  # absolute, a whole mailbox
    os.symlink("../../../outside/mail.folder", acc / "Work.folder")  # relative, a folder directory
    (acc / "Work.mbox").write_bytes(_mbox(b"Subject: work\n\nown work\n"))
    (base / "Accounts" / "mallory.mbox").symlink_to(outside / "Stolen.mbox")  # single-mailbox account
    (outside / "trent.macnt").mkdir()
    (outside / "trent.macnt" / "account.settings").write_text("{ Password = from-outside; }\n")
    (outside / "trent.macnt" / "INBOX.mbox").write_bytes(_mbox(b"Subject: outside\n\n" + SECRET))
    (base / "Accounts" / "trent.macnt").symlink_to(outside / "trent.macnt")  # a whole account directory
    return base, outside


def _everything(store: CommuniGateStore) -> tuple[dict, list, dict]:
    got, problems, damaged = {}, [], {}
    for f in store.list_folders():
        if not f.selectable:
            continue
        _, metas = store.list_messages(f.path)
        got[f.path] = [b.read() for _, b in store.fetch(f.path, [m.key for m in metas])]
        problems.extend(store.fetch_problems())
        damaged[f.path] = store.damaged(f.path)
    return got, problems, damaged


def test_links_in_a_store_are_reported_never_followed(planted):
    base, outside = planted
    with CommuniGateStore(base, "eve") as s:
        got, problems, damaged = _everything(s)
    assert not any(SECRET in b or b"stolen" in b or b"deep" in b for bodies in got.values() for b in bodies)
    assert got[INBOX] == [b"Subject: real\n\nkeep me\n"]
    assert got[("Notes",)] == [b"Subject: note\n\nreal note\n"]
    assert got[("Work",)] == [b"Subject: work\n\nown work\n"]
    reasons = "\n".join(r for _, r in problems)
    for name in ("Notes.mdir/101-S-20230301093000", "Notes.mdir/102-S-20230301093000", "Stolen.mbox",
                 "Work.folder"):
        assert f"{name} is a symbolic link" in reasons, name
    assert len(problems) == 4
    assert any("Work.folder" in d for d in damaged[("Work",)])
    assert any("Stolen.mbox" in d for d in damaged[("Stolen",)])


def test_single_mailbox_account_that_is_a_link_is_reported(planted):
    base, _ = planted
    with CommuniGateStore(base, "mallory") as s:
        got, problems, _ = _everything(s)
    assert got == {INBOX: []}
    (key, reason), = problems
    assert "mallory.mbox is a symbolic link" in reason


def test_account_directory_that_is_a_link_is_reported_and_its_settings_not_read(planted):
    from mailmigrate.directory.communigate import CommuniGateDirectory

    base, _ = planted
    with CommuniGateStore(base, "trent", primary_domain="example.com") as s:
        got, problems, _ = _everything(s)
    assert got == {INBOX: []} and "trent.macnt is a symbolic link" in problems[0][1]
    d = CommuniGateDirectory(base, primary_domain="example.com").read()
    trent = d.users["trent@example.com"]
    assert trent.password is None and any("trent.macnt is a symbolic link" in n for n in d.notes)


def test_link_planted_after_listing_is_not_read(planted):
    base, outside = planted
    acc = base / "Accounts" / "eve.macnt"
    with CommuniGateStore(base, "eve") as s:
        _, metas = s.list_messages(("Notes",))
        st = (acc / "Notes.mdir").stat()
        real = acc / "Notes.mdir" / "100-S-20230301093000"
        real.unlink()
        real.symlink_to(outside / "shadow")
        os.utime(acc / "Notes.mdir", ns=(st.st_atime_ns, st.st_mtime_ns))  # the listing looks current
        bodies = [b.read() for _, b in s.fetch(("Notes",), ["100"])]
        assert bodies == [] and "100" in dict(s.fetch_problems())


def test_migration_report_names_each_link_and_copies_the_rest(planted, dovecot_factory, tmp_path):
    from mailmigrate.model import Secret
    from mailmigrate.paths.communigate.migrate import MigrateOptions, migrate, open_directory_for
    from servers import imapcheck

    base, _ = planted
    (base / "Settings").mkdir()
    (base / "Settings" / "Main.settings").write_text("{ DomainName = example.com; }\n")
    dovecot = dovecot_factory()
    passwd = dovecot.root / "users.passwd"
    out = tmp_path / "out"
    opts = MigrateOptions(base=base, server="127.0.0.1", port=dovecot.port, master_password=Secret("masterpw"),
                          target="imap", master_user="master", directory=open_directory_for("imap", passwd_file=str(passwd)),
                          output_dir=out, user="eve", set_password=Secret("Eve-Pw-1"))
    report = migrate(opts)
    not_copied = [p.describe() for p in report.not_copied()]
    assert len(not_copied) == 4 and report.totals.copied == 3
    for name in ("101-S-20230301093000", "102-S-20230301093000", "Stolen.mbox", "Work.folder"):
        assert sum(f"{name} is a symbolic link" in line for line in not_copied) == 1, (name, not_copied)
    log = (out / Path(report.log_path).name).read_text()
    assert "Stolen.mbox is a symbolic link" in log
    again = migrate(opts)  # a rerun reports every link again and copies nothing twice
    assert len(again.not_copied()) == 4 and again.totals.copied == 0
    os.chmod(passwd, 0o644)  # this throwaway Dovecot's auth reads the passwd-file as another user
    import time
    deadline = time.monotonic() + 10
    while True:
        try:
            got = imapcheck.account(dovecot.port, "eve@example.com", "Eve-Pw-1")
            break
        except imapcheck.imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    everything = b"".join(body for c in got.values() for body, _, _ in c)
    assert SECRET.strip() not in everything and b"keep me" in everything and b"own work" in everything


def test_overview_lists_each_link_under_its_folder(planted):
    from mailmigrate.paths.communigate.overview import build_overview, to_json

    base, _ = planted
    ov = to_json(build_overview(base, user="eve", primary_domain="example.com"))
    (acc,) = [a for d in ov["domains"] for a in d["accounts"]]
    problems = {f["name"]: " ".join(f["problems"]) for f in acc["folders"]}
    assert "101-S-20230301093000 is a symbolic link" in problems["Notes"]
    assert "102-S-20230301093000 is a symbolic link" in problems["Notes"]
    assert "Stolen.mbox is a symbolic link" in problems["Stolen"]
    assert "Work.folder is a symbolic link" in problems["Work"]
    assert not problems["INBOX"]
    counts = {f["name"]: f["messages"] for f in acc["folders"]}
    assert counts["Notes"] == 1 and counts["Stolen"] == 0 and counts["Work"] == 1  # a link is not mail
