"""sync/session.open_account: one account's passwords, stores, state and lock, for the CLI, the fleet and the
workflow alike."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mailmigrate.credentials import Secret
from mailmigrate.errors import ConfigError, StateLocked
from mailmigrate.model import Account
from mailmigrate.stores.registry import StoreOptions, parse_spec
from mailmigrate.sync.engine import sync_account
from mailmigrate.sync.options import SyncOptions, SyncRequest
from mailmigrate.sync.session import AccountBusy, account_key, login_for, open_account, open_run_state
from mailmigrate.sync.state_pg import open_state
from test_sync_local import read_maildir


def _maildir(root: Path, messages: dict[str, bytes]) -> None:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, body in messages.items():
        (root / "cur" / f"{name}:2,S").write_bytes(body)


def _request(tmp_path, state, **kw) -> SyncRequest:
    return SyncRequest(source=parse_spec(f"maildir:{tmp_path}/%u/src"), target=parse_spec(f"maildir:{tmp_path}/%u/dst"),
                       accounts=[], state_path=state,
                       state_factory=open_state if str(state).startswith("postgresql") else None, **kw)


def test_an_account_is_synced_through_its_session_and_its_state_is_closed_after(tmp_path, state_where):
    _maildir(tmp_path / "ann" / "src", {"1.a.host": b"Subject: one\r\n\r\nbody\r\n"})
    req = _request(tmp_path, state_where)
    acc = Account("ann", "ann")
    with open_account(req, acc) as s:
        assert s.name == s.key == account_key(req, acc) == f"maildir:{tmp_path}/ann/src -> maildir:{tmp_path}/ann/dst"
        src, tgt = s.stores()
        r = sync_account(src, tgt, account_name=s.name, state=s.state, options=s.options)
        state = s.state
    assert r.ok and r.counters.copied == 1
    assert read_maildir(tmp_path / "ann" / "dst") == read_maildir(tmp_path / "ann" / "src")
    with pytest.raises(Exception):  # the session opened this state and closed it
        state.folders(s.name)


def test_a_sqlite_state_is_the_sessions_alone_while_it_is_open(tmp_path):
    req = _request(tmp_path, tmp_path / "s.db")
    with open_account(req, Account("ann", "ann")):
        with pytest.raises(StateLocked, match="in use by another mailmigrate run"):
            with open_account(req, Account("bob", "bob")):
                pass
    with open_account(req, Account("bob", "bob")):  # given back on the way out
        pass


def test_a_shared_state_holds_each_account_and_a_waiting_session_gets_it_when_released(tmp_path, pg_url):
    req = _request(tmp_path, pg_url)
    ann, bob = Account("ann", "ann"), Account("bob", "bob")
    with open_account(req, ann):
        with pytest.raises(AccountBusy, match="another process .* is syncing this account; nothing was done"):
            with open_account(req, ann):
                pass
        with open_account(req, bob):  # another account of the same state: not held
            pass
        got = []

        def wait_for_ann():
            with open_account(req, ann, lock_wait=20):
                got.append(time.monotonic())

        t = threading.Thread(target=wait_for_ann)
        t.start()
        time.sleep(0.5)
        released = time.monotonic()
    t.join(timeout=30)
    assert got and got[0] >= released


def test_the_run_state_is_shared_by_the_accounts_of_a_run(tmp_path, state_where):
    req = _request(tmp_path, state_where)
    with open_run_state(state_where, req.state_factory) as state:
        for user in ("ann", "bob"):
            with open_account(req, Account(user, user), state=state) as s:
                assert s.state is state
        assert state.folders("anything") is not None  # still open: the run's, not the session's to close


def test_a_record_under_an_earlier_name_is_renamed_unless_the_run_is_dry(tmp_path):
    state_path = tmp_path / "s.db"
    old = "imap://ann@src.example.org:143 -> imap://ann@dst.example.org:143"
    with open_run_state(state_path) as state:
        state.ensure_folder(old, ("INBOX",), ("INBOX",))
    req = SyncRequest(source=parse_spec("imap://src.example.org"), target=parse_spec("imap://dst.example.org"),
                      accounts=[], state_path=state_path, sync=SyncOptions(dry_run=True))
    acc = Account("ann", "ann")
    with open_account(req, acc) as s:
        assert s.name == old and s.key == "imap://ann@src.example.org -> imap://ann@dst.example.org"
    req.sync.dry_run = False
    with open_account(req, acc) as s:
        assert s.name == s.key
        assert s.state.folders(s.key) and not s.state.folders(old)


def test_passwords_the_run_the_account_and_the_master(tmp_path):
    run_src, run_tgt, own = Secret("run-src"), Secret("run-tgt"), Secret("own-tgt")
    req = SyncRequest(source=parse_spec("imap://src.example.org"), target=parse_spec("imap://dst.example.org"),
                      accounts=[], state_path=tmp_path / "s.db", source_password=run_src, target_password=run_tgt,
                      source_options=StoreOptions(master_user="admin"))
    s = open_account(req, Account("ann", "ann", None, own))
    (src_pw, src_opts), (tgt_pw, tgt_opts) = s.logins()
    assert (src_pw, src_opts.master_user) == (run_src, "admin")  # through the source's master
    assert (tgt_pw, tgt_opts.master_user) == (own, None)  # the account's own, on the target
    # an accounts-file password with a master but no master password: the account logs in as itself
    assert login_for(None, own, StoreOptions(master_user="admin")) == (own, StoreOptions(master_user=None))
    # nobody gave the target one: said before anything connects, and naming the side
    req.target_password = None
    with pytest.raises(ConfigError, match="target password for bob missing"):
        open_account(req, Account("bob", "bob")).store("target")


def test_the_accounts_own_rules_and_a_dry_runs_target_that_creates_nothing(tmp_path):
    _maildir(tmp_path / "ann" / "src", {"1.a.host": b"Subject: one\r\n\r\nbody\r\n"})
    req = _request(tmp_path, tmp_path / "s.db", sync=SyncOptions(dry_run=True))
    with open_account(req, Account("ann", "ann", rules="--exclude ^Trash$")) as s:
        assert s.options.selection.exclude == ("^Trash$",) and req.sync.selection.exclude == ()
        src, tgt = s.stores()
        r = sync_account(src, tgt, account_name=s.name, state=s.state, options=s.options)
    assert r.counters.copied == 1 and not (tmp_path / "ann" / "dst").exists()
