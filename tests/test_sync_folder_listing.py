"""A folder created on the target must be listed there (issue 15's promise: nothing lost).

Found by tests/test_fleet.py under load: Dovecot 2.3 with its mailbox list index (the default) lost one of two
folders that two sessions of one user created at the same moment — the folder and its 13 messages were on
disk, LIST never showed it again, and the run said it copied everything.  Since then the engine creates the
folders its parallel workers need one after the other on one connection before they start, and checks at the
end of the account that every folder it created is in the target's LIST.
"""

from __future__ import annotations

from mailmigrate.stores.maildir import MaildirStore
from mailmigrate.sync.engine import SyncOptions, sync_account
from mailmigrate.sync.state import StateDB


def _source(root):
    for folder in ("", ".Sent", ".Work", ".Archive"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            (root / folder / "cur" / f"16000000{i}.M{i}{folder}.host:2,S").write_bytes(
                f"Subject: {folder or 'inbox'} {i}\r\n\r\nbody {i}\r\n".encode())


def test_parallel_workers_find_their_folders_created_before_they_start(tmp_path, monkeypatch):
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    _source(src_root)
    src, dst = MaildirStore(src_root), MaildirStore(dst_root, create=True)
    creators = []
    real_create = MaildirStore.create_folder

    def create(self, path, special_use=None):
        creators.append(self)
        return real_create(self, path, special_use)

    monkeypatch.setattr(MaildirStore, "create_folder", create)
    state = StateDB.open(tmp_path / "state.db")
    try:
        r = sync_account(src, dst, account_name="a", state=state, options=SyncOptions(connections=3))
    finally:
        state.close()
    assert r.error is None and r.counters.copied == 12 and r.counters.folders_created == 3
    assert len(creators) == 3 and all(c is dst for c in creators)  # the main connection, not the workers' own


class HidingMaildir(MaildirStore):
    """A target whose LIST leaves out one folder once it exists (as Dovecot's stale list index did)."""

    hidden = ("Work",)

    def list_folders(self):
        return [f for f in super().list_folders() if f.path != self.hidden]

    def clone(self):
        return None  # one connection: the check must hold without the parallel path too


def test_a_created_folder_the_target_does_not_list_is_reported_not_passed_over(tmp_path):
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    _source(src_root)
    src, dst = MaildirStore(src_root), HidingMaildir(dst_root, create=True)
    state = StateDB.open(tmp_path / "state.db")
    try:
        r = sync_account(src, dst, account_name="a", state=state, options=SyncOptions())
    finally:
        state.close()
    assert r.counters.copied == 12  # the copies are there …
    (p,) = [p for p in r.problems if p.kind == "folder"]
    assert p.folder == "Work" and "does not list it" in p.reason and "doveadm force-resync" in p.reason
    assert r.counters.failed == 1  # … and the run says something is wrong (exit status 1)
