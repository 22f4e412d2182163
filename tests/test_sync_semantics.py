"""Nothing merged, nothing twice, deletes that are safe: the engine's promise in the situations an administrator
meets besides a fresh target and a state file that is never lost (issue 15, part two; issue 19's verified deletes).

Every test runs mailmigrate as a user does (the command line) against real Dovecot servers on loopback and
reads the result back with Python's own imaplib (tests/servers/imapcheck.py).
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from servers import imapcheck
from test_sync_imap import assert_same, env_for, mm, msg, populate, snapshot, sync


_tags = itertools.count()


def _write_private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


# --- accounts file and summary (issue 15: "target password missing", "0 failed" beside ACCOUNT FAILED) ---

def test_accounts_file_password_with_target_master_logs_in(imap_accounts, tmp_path):
    """--target-master in the run, but no master password given: the 4th column is the account's own
    password and is used (it was ignored, and the account failed with "target password missing")."""
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen")]})
    accounts = _write_private(tmp_path / "users.csv", f"{src.user},{dst.user},{src.password},{dst.password}\n")
    p = mm("sync", src.url(), dst.url(), "--accounts", accounts, "--target-master", "master",
           "--state", tmp_path / "s.db", "--json", env={"MAILMIGRATE_TARGET_PASSWORD": ""}, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["copied"] == 1
    assert_same(src, dst)


def test_summary_counts_failed_accounts(imap_accounts, tmp_path):
    src, dst = imap_accounts
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db",
           env={"MAILMIGRATE_SOURCE_PASSWORD": src.password, "MAILMIGRATE_TARGET_PASSWORD": "wrong-pw-9"},
           check=False)
    assert p.returncode == 2  # a refused login is the account's settings (main's exit statuses)
    assert "ACCOUNT FAILED" in p.stdout
    assert "1 account(s), 1 failed" in p.stdout, p.stdout


# --- a target that already holds the mail (issue 15: "adopt what is already there", account identity) ---

def _imaps(acc, host="127.0.0.1"):
    return f"imaps://{acc.user}@{host}:{acc.server.tls_port}?cafile={acc.server.cafile}"


def _own_message(acc, folder="INBOX", text="written on the target"):
    c = imapcheck.connect(acc.port, acc.user, acc.password)
    imapcheck.append(c, folder, f"Subject: {text}\r\n\r\nmine\r\n".encode(), "")
    c.logout()


def _without(snap, text):
    """The snapshot without the messages holding ``text``; how many there were."""
    n = 0
    for folder in snap.values():
        for k in [k for k in folder if text.encode() in k[0]]:
            n += folder.pop(k)
    return n


def _twins_layout():
    return {"INBOX": [(msg(i), "\\Seen" if i % 2 else "") for i in range(6)] + [(msg(3), "")],  # a twin of 3
            "Work": [(msg(20 + i, 2000), "") for i in range(3)],
            "Work/Old": [(b"bare LF only\nno headers\n", "\\Flagged")]}


def test_state_deleted_rerun_on_cyrus_adopts_what_it_rewrote(prefix_target, tmp_path):
    """Cyrus rewrites raw 8-bit header bytes (munge8bit): its copies are still found by content."""
    src, dst = prefix_target
    populate(src, {"INBOX": [(msg(1), "\\Seen"), (b"Subject: 8bit \xe9\xe8\r\n\r\nLatin-1 \xff\r\n", "")],
                   "Work": [(msg(2), ""), (msg(2), "")]})
    state = tmp_path / "s.db"
    first, _ = sync(src, dst, state)
    assert first["copied"] == 4
    state.unlink()
    again, _ = sync(src, dst, state)
    assert (again["copied"], again["adopted"], again["target_only"], again["failed"]) == (0, 4, 0, 0), again


def test_state_deleted_rerun_adopts_and_copies_nothing(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, _twins_layout())
    state = tmp_path / "s.db"
    first, _ = sync(src, dst, state)
    assert first["copied"] == 11
    _own_message(dst)
    state.unlink()
    for extra in ("-wal", "-shm"):
        (tmp_path / f"s.db{extra}").unlink(missing_ok=True)
    dry, _ = sync(src, dst, state, "--dry-run")
    assert (dry["copied"], dry["adopted"]) == (0, 11), dry
    again, p = sync(src, dst, state)
    assert (again["copied"], again["adopted"], again["target_only"], again["failed"]) == (0, 11, 1, 0), again
    target = snapshot(dst)
    assert _without(target, "written on the target") == 1
    assert {k: v for k, v in target.items() if v} == {k: v for k, v in snapshot(src).items() if v}
    # Adopted copies are the state's now: flags follow, a rerun does nothing.
    c = imapcheck.connect(src.port, src.user, src.password)
    c.select("INBOX")
    c.uid("STORE", "1", "+FLAGS", "(\\Answered)")
    c.logout()
    third, _ = sync(src, dst, state)
    assert (third["copied"], third["adopted"], third["flags_updated"]) == (0, 0, 1)
    # An abort takes away only what mailmigrate made: the adopted copies were there before it came.
    from mailmigrate.model import Secret
    from mailmigrate.stores.imap import ImapStore
    from mailmigrate.sync.abort import abort_account
    from mailmigrate.sync.state import StateDB

    before = snapshot(dst)
    db = StateDB.open(state)
    try:
        (account,) = list(db.iter_accounts())
        res = abort_account(ImapStore("127.0.0.1", dst.port, user=dst.user, password=Secret(dst.password),
                                      tls="none"), db, account)
    finally:
        db.close()
    assert (res.messages_removed, res.adopted_kept) == (0, 11)
    assert {k: sum(v.values()) for k, v in snapshot(dst).items()} == {k: sum(v.values()) for k, v in before.items()}


def test_same_source_by_another_spelling_copies_nothing(imap_accounts, state_where):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "") for i in range(4)], "Work": [(msg(9), "\\Seen")]})
    state = state_where
    first, _ = sync(src, dst, state)
    assert first["copied"] == 5
    # imaps:// on the TLS port instead of imap:// on the plain one: the same account in the state.
    p = mm("sync", _imaps(src), _imaps(dst), "--state", state, "--json", env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert (s["copied"], s["adopted"], s["skipped"]) == (0, 0, 5), s
    # A host name instead of the address: the same server once its id is pinned on both spellings...
    pinned = ("--source-id", "old-server", "--target-id", "new-server")
    p = mm("sync", src.url(), dst.url(), "--state", state, "--json", *pinned, env=env_for(src, dst))
    assert json.loads(p.stdout)["copied"] == 0
    p = mm("sync", _imaps(src, "localhost"), _imaps(dst, "localhost"), "--state", state, "--json", *pinned,
           env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert (s["copied"], s["adopted"]) == (0, 0), s
    # ...and unpinned, a spelling the state has never seen still copies nothing: the copies are adopted.
    p = mm("sync", _imaps(src, "localhost"), _imaps(dst, "localhost"), "--state", state, "--json",
           env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert (s["copied"], s["adopted"]) == (0, 5), s
    assert_same(src, dst)


def test_state_written_under_the_old_account_names_keeps_working(imap_accounts, tmp_path):
    import sqlite3

    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "") for i in range(3)]})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    old = f"imap://{src.user}@127.0.0.1:{src.port} -> imap://{dst.user}@127.0.0.1:{dst.port}"
    db = sqlite3.connect(state)
    db.execute("UPDATE folders SET account=?", (old,))
    db.commit()
    db.close()
    s, _ = sync(src, dst, state)
    assert (s["copied"], s["adopted"], s["skipped"]) == (0, 0, 3), s
    db = sqlite3.connect(state)
    assert db.execute("SELECT DISTINCT account FROM folders").fetchall() == [
        (f"imap://{src.user}@127.0.0.1 -> imap://{dst.user}@127.0.0.1",)]
    db.close()


# --- folder-name collisions (issue 15: "INBOX/Projects" and "Projects" merged on an INBOX. server) ---

def _named(snap):
    """Folder (decoded wire name) -> sorted list of message bytes; empty folders left out."""
    return {imapcheck.decoded(k): sorted(m[0] for m in v.elements()) for k, v in snap.items() if v}


@pytest.fixture(params=["dovecot-inbox-prefix", "cyrus", "courier"])
def prefix_target(request, dovecot_factory):
    """A Dovecot source and a target with an INBOX. personal namespace and "." as separator: a Dovecot
    configured like Courier, Cyrus 3.6 as Debian ships it, and Courier-IMAP itself."""
    from conftest import ImapAccount

    s_srv = dovecot_factory()
    tag = f"c{os.getpid()}x{next(_tags)}"
    if request.param in ("cyrus", "courier"):
        t_srv = request.getfixturevalue(f"{request.param}_server")
    else:
        t_srv = dovecot_factory(separator=".", prefix="INBOX.")
    s_srv.add_user(tag, "pw1")
    t_srv.add_user(tag, "pw2")
    return ImapAccount(s_srv, tag, "pw1"), ImapAccount(t_srv, tag, "pw2")


def test_folders_that_collide_on_an_inbox_prefix_target_land_in_two(prefix_target, tmp_path):
    src, dst = prefix_target
    populate(src, {"Projects": [(msg(1), ""), (msg(2), "")], "INBOX/Projects": [(msg(3), "\\Seen")],
                   "Projects/Alpha": [(msg(4), "")], "INBOX/Projects/Alpha": [(msg(5), "")]})
    state = tmp_path / "s.db"
    s, p = sync(src, dst, state)
    assert s["copied"] == 5 and s["failed"] == 0
    got = _named(snapshot(dst))
    assert got == {"INBOX.Projects": [msg(1), msg(2)], "INBOX.Projects (2)": [msg(3)],
                   "INBOX.Projects.Alpha": [msg(4)], "INBOX.Projects (2).Alpha": [msg(5)]}, got
    warnings = [w for w in s["accounts"][0]["problems"] if "same target folder" in w["reason"]]
    assert len(warnings) == 1 and warnings[0]["folder"] == "INBOX/Projects", warnings
    # The decision is recorded: a rerun keeps it, says nothing, copies nothing; new mail follows its folder.
    _own_message(src, "INBOX/Projects", "new in INBOX/Projects")
    s, _ = sync(src, dst, state)
    assert s["copied"] == 1 and s["accounts"][0]["problems"] == []
    assert len(_named(snapshot(dst))["INBOX.Projects (2)"]) == 2


# --- --delete follows deleted folders; the emptied-source guard (issue 15) ---

def _imap_delete_folder(acc, folder):
    c = imapcheck.connect(acc.port, acc.user, acc.password)
    typ, resp = c.delete(folder)
    assert typ == "OK", resp
    c.logout()


def _expunge_all(acc, folder, keep=0):
    c = imapcheck.connect(acc.port, acc.user, acc.password)
    c.select(folder)
    typ, data = c.uid("SEARCH", "ALL")
    uids = data[0].split()[keep:]
    if uids:
        c.uid("STORE", b",".join(uids).decode(), "+FLAGS.SILENT", "(\\Deleted)")
        c.expunge()
    c.logout()


def test_delete_follows_a_deleted_source_folder(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Gone": [(msg(10), ""), (msg(11), "\\Seen")],
                   "Shared": [(msg(20), "")]})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    _own_message(dst, "INBOX")  # target-only mail elsewhere
    _own_message(dst, "Shared", "the user's own mail in a folder whose source goes")
    _imap_delete_folder(src, "Gone")
    _imap_delete_folder(src, "Shared")
    s, _ = sync(src, dst, state)
    assert s["deleted"] == 0, "without --delete nothing goes"
    s, p = sync(src, dst, state, "--delete")
    assert (s["deleted"], s["failed"], s["deletes_withheld"]) == (3, 0, 0), s
    target = snapshot(dst)
    assert "Gone" not in target, "mailmigrate created it and nothing else is in it: removed"
    assert [m[0] for m in target["Shared"]] == [
        b"Subject: the user's own mail in a folder whose source goes\r\n\r\nmine\r\n"]
    assert sum(1 for m in target["INBOX"] if b"written on the target" in m[0]) == 1
    kept = [w for w in s["accounts"][0]["problems"] if w["folder"] == "Shared"]
    assert len(kept) == 1 and "holds 1 messages mailmigrate did not copy" in kept[0]["reason"], kept
    # Done once: the next run has nothing left to say.
    s, _ = sync(src, dst, state, "--delete")
    assert (s["deleted"], s["accounts"][0]["problems"]) == (0, [])


def test_emptied_source_folder_gets_no_deletes_without_force(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "") for i in range(30)], "Work": [(msg(100 + i), "") for i in range(3)],
                   "Archive": [(msg(200 + i), "") for i in range(40)]})  # the account as a whole loses less
    state = tmp_path / "s.db"
    sync(src, dst, state)
    _expunge_all(src, "Work")  # lists no messages now: a broken index? a wrong mount?
    s, p = sync(src, dst, state, "--delete", check=False)
    assert p.returncode == 1
    assert (s["deleted"], s["deletes_withheld"]) == (0, 3), s
    assert len(snapshot(dst)["Work"]) == 3
    p2 = mm("sync", src.url(), dst.url(), "--state", state, "--delete", env=env_for(src, dst), check=False)
    assert p2.returncode == 1
    assert "3 copies not deleted: the source lists no messages" in p2.stdout and "--force-delete" in p2.stdout
    # More than half of a folder's copies at once: withheld too; the share can be set.
    _expunge_all(src, "INBOX", keep=10)
    s, p = sync(src, dst, state, "--delete", check=False)
    assert p.returncode == 1 and s["deleted"] == 0 and s["deletes_withheld"] == 23
    assert "20 of 30 copies would be deleted" in json.dumps(s["accounts"][0]["problems"])
    s, p = sync(src, dst, state, "--delete", "--delete-guard", "70", check=False)
    assert p.returncode == 1 and (s["deleted"], s["deletes_withheld"]) == (20, 3), s
    s, p = sync(src, dst, state, "--delete", "--force-delete")
    assert (s["deleted"], s["deletes_withheld"]) == (3, 0)
    assert_same(src, dst)


def test_account_whose_source_lists_nothing_gets_no_deletes(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Work": [(msg(2), "")]})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    _expunge_all(src, "INBOX")
    _imap_delete_folder(src, "Work")
    s, p = sync(src, dst, state, "--delete", check=False)
    assert p.returncode == 1 and s["deleted"] == 0 and s["deletes_withheld"] == 2, s
    reasons = [w["reason"] for w in s["accounts"][0]["problems"]]
    assert any("the account's source looks emptied" in r for r in reasons), reasons
    assert {k for k, v in snapshot(dst).items() if v} == {"INBOX", "Work"}


# --- deletes and aborts verify what they delete (issue 19) ---

def test_abort_after_the_user_recreated_a_folder_keeps_their_mail(imap_accounts, tmp_path):
    from test_workflow_project import project_file, status

    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), ""), (msg(2), "")], "Work": [(msg(10 + i), "") for i in range(3)]})
    p = project_file(tmp_path, src, dst, "acme")
    mm("project", "init", p)
    mm("project", "start", p)
    # The user deletes Work on the new server and makes it again: new UIDVALIDITY, UIDs 1..3 again.
    _imap_delete_folder(dst, "Work")
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    imapcheck.create(c, "Work")
    c.logout()
    for i in range(3):
        _own_message(dst, "Work", f"the user's new mail {i}")
    out = json.loads(mm("project", "abort", p, "--json").stdout)
    work = snapshot(dst).get("Work", {})
    assert sorted(m[0] for m in work) == [f"Subject: the user's new mail {i}\r\n\r\nmine\r\n".encode() for i in range(3)]
    assert not snapshot(dst)["INBOX"], "the INBOX copies are mailmigrate's and go"
    (unit,) = status(p)
    assert out[0]["ok"] and status(p)[unit]["state"] == "not_started"
    said = json.dumps(out)
    assert "removed 2 message(s)" in said and "kept non-empty folders Work" in said, said
    assert "kept 3 message(s) that are no longer mailmigrate's copies" in said and "re-created" in said, said


def test_delete_leaves_a_target_message_that_is_no_longer_the_copy(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), ""), (msg(2), ""), (msg(3), "")]})
    state = tmp_path / "s.db"
    out = tmp_path / "Maildir"
    mm("sync", src.url(), f"maildir:{out}", "--state", state, env=env_for(src, dst))
    files = sorted((out / "cur").iterdir())
    by_body = {f.read_bytes(): f for f in files}
    replaced = by_body[msg(1)]
    replaced.write_bytes(b"Subject: someone else's message under the copy's name\r\n\r\nx\r\n")
    _expunge_all(src, "INBOX", keep=1)  # messages 2 and 3 leave the source: their copies go...
    c = imapcheck.connect(src.port, src.user, src.password)
    c.select("INBOX")
    c.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")  # ...and message 1, whose copy was replaced, too
    c.expunge()
    c.logout()
    p = mm("sync", src.url(), f"maildir:{out}", "--state", state, "--delete", "--force-delete", "--json",
           env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert replaced.exists(), "a file that no longer holds the copy is left alone"
    assert s["deleted"] == 2, s
    reasons = [w["reason"] for w in s["accounts"][0]["problems"]]
    assert any("now holds other content" in r for r in reasons), reasons


def test_project_file_pins_server_ids_and_sets_the_delete_guard(tmp_path):
    from mailmigrate.errors import ConfigError
    from mailmigrate.workflow.project import load_project

    f = tmp_path / "p.toml"
    f.write_text('[source]\nurl = "imap://old.example.org"\nid = "old"\n[target]\nurl = "maildir:out/%u"\n'
                 '[accounts]\nlist = ["ann"]\n[options]\ndelete_guard = 80\nforce_delete = true\n')
    p = load_project(f)
    assert p.source.spec.identity("ann") == "imap://ann@old" and p.source.spec.text.endswith("?id=old")
    assert (p.delete_guard, p.force_delete) == (0.8, True)
    f.write_text(f.read_text().replace("delete_guard = 80", "delete_guard = 180"))
    with pytest.raises(ConfigError, match="delete_guard"):
        load_project(f)


def test_project_finish_withholds_deletes_of_an_emptied_source(imap_accounts, tmp_path):
    from test_workflow_project import project_file, status

    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")], "Work": [(msg(2), ""), (msg(3), "")]})
    p = project_file(tmp_path, src, dst, "acme", "[options]\ndelete_on_finish = true\n")
    mm("project", "init", p)
    mm("project", "start", p)
    _expunge_all(src, "Work")
    r = mm("project", "finish", p, check=False)
    assert r.returncode == 1 and "2 copies NOT deleted" in r.stdout and "force_delete" in r.stdout, r.stdout
    assert len(snapshot(dst)["Work"]) == 2
    (unit,) = status(p)
    assert status(p)[unit]["state"] != "migrated"
    p.write_text(p.read_text().replace("delete_on_finish = true", "delete_on_finish = true\nforce_delete = true"))
    mm("project", "finish", p)
    assert status(p)[unit]["state"] == "migrated" and not snapshot(dst).get("Work")


def test_collision_rule_is_stable_and_keeps_recorded_mappings():
    """The rule itself, on names: fewer levels first, then name order; " (2)", " (3)"; children follow their
    parent; a mapping the state recorded is never taken away, so a folder that appears later moves aside."""
    from mailmigrate.model import FolderInfo
    from mailmigrate.sync.folders import plan_folders, separate_collisions

    def wire(path):  # an INBOX. server: INBOX's children and top-level folders are one name
        return ".".join(path[1:] if path[0] == "INBOX" and len(path) > 1 else path)

    src = [FolderInfo(p, None, False, True) for p in
           [("INBOX",), ("INBOX", "Projects"), ("Projects",), ("INBOX", "Projects", "A"), ("Projects", "A"),
            ("Projects (2)",)]]
    plans, cols = separate_collisions(plan_folders(src, []), wire, {})
    got = {p.source.path: p.target_path for p in plans}
    assert got[("Projects",)] == ("Projects",) and got[("Projects", "A")] == ("Projects", "A")
    assert got[("Projects (2)",)] == ("Projects (2)",)
    assert got[("INBOX", "Projects")] == ("INBOX", "Projects (3)")  # (2) is another source folder's name
    assert got[("INBOX", "Projects", "A")] == ("INBOX", "Projects (3)", "A")
    assert [c.source for c in cols] == [("INBOX", "Projects")]
    # Recorded first: INBOX/Projects keeps the plain name it got in an earlier run, Projects moves aside.
    plans, cols = separate_collisions(plan_folders(src[:3], []), wire, {("INBOX", "Projects"): ("INBOX", "Projects")})
    got = {p.source.path: p.target_path for p in plans}
    assert got == {("INBOX",): ("INBOX",), ("INBOX", "Projects"): ("INBOX", "Projects"),
                   ("Projects",): ("Projects (2)",)}


def test_delete_follows_a_deleted_source_folder_on_inbox_prefix_targets(prefix_target, tmp_path):
    src, dst = prefix_target
    populate(src, {"INBOX": [(msg(1), "")], "Gone": [(msg(10), ""), (msg(11), "\\Seen")]})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    _own_message(dst, "INBOX")
    _imap_delete_folder(src, "Gone")
    s, _ = sync(src, dst, state, "--delete")
    assert (s["deleted"], s["failed"], s["accounts"][0]["problems"]) == (2, 0, []), s
    target = snapshot(dst)
    assert "INBOX.Gone" not in target
    assert len(target["INBOX"]) == 2  # the copy of message 1 and the user's own


def test_a_message_with_nul_bytes_is_adopted_not_copied_twice(imap_accounts, tmp_path):
    """A message holding a NUL byte (which a server may serve as 0x80: the normalised fingerprint maps NUL to
    0x80): with the state lost, the rerun finds the copy (adopted) instead of appending it a second time."""
    src, dst = imap_accounts
    nul = b"From: n@example.org\r\nSubject: nul\r\n\r\nbefore\x00after\r\n"
    imapcheck.populate_any(src.port, src.user, src.password, {("INBOX",): [(nul, "\\Seen"), (msg(1), "")]})
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json", env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert s["copied"] == 2 and s["failed"] == 0
    (tmp_path / "s.db").unlink()
    s2 = json.loads(mm("sync", src.url(), dst.url(), "--state", tmp_path / "s2.db", "--json",
                       env=env_for(src, dst)).stdout)
    assert s2["copied"] == 0 and s2["adopted"] == 2
    assert sum(len(v) for v in imapcheck.account_by_path(dst.port, dst.user, dst.password).values()) == 2
