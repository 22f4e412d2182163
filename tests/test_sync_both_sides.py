"""Source and target are asked at the same time at the start of every account (connect, log in, list,
status): a rerun with nothing to copy waits for the slower server, not for both in turn."""

from __future__ import annotations

import threading

import pytest

from mailmigrate.errors import AuthenticationFailed, ServerRefused
from mailmigrate.stores.maildir import MaildirStore
from mailmigrate.sync.engine import SyncOptions, _both, sync_account
from mailmigrate.sync.state import StateDB


def test_the_two_sides_run_at_the_same_time():
    meet = threading.Barrier(2, timeout=10)  # broken, not passed, if one side waited for the other
    assert _both(lambda: meet.wait() is not None and "s", lambda: meet.wait() is not None and "t") == ("s", "t")


def test_the_source_error_comes_first_and_the_target_step_still_finishes():
    target_done = threading.Event()

    def target():
        target_done.set()
        raise ServerRefused("target says no")

    with pytest.raises(AuthenticationFailed, match="source says no"):
        _both(lambda: (_ for _ in ()).throw(AuthenticationFailed("source says no")), target)
    assert target_done.is_set()
    with pytest.raises(ServerRefused, match="target says no"):
        _both(lambda: "fine", target)


def test_an_account_opens_and_lists_both_stores_concurrently(tmp_path, monkeypatch):
    """Through the engine: both stores' open() and list_folders() must meet each other."""
    src_root, dst_root = tmp_path / "src", tmp_path / "dst"
    for sub in ("cur", "new", "tmp"):
        (src_root / sub).mkdir(parents=True)
    (src_root / "new" / "1.m1.host").write_bytes(b"Subject: hi\r\n\r\nbody\r\n")
    src, dst = MaildirStore(src_root), MaildirStore(dst_root, create=True)
    met = []
    for step in ("open", "list_folders"):
        barrier = threading.Barrier(2, timeout=10)
        for store in (src, dst):
            real = getattr(store, step)

            def meeting(*a, _real=real, _barrier=barrier, _step=step, **kw):
                _barrier.wait()
                met.append(_step)
                return _real(*a, **kw)

            monkeypatch.setattr(store, step, meeting)
    state = StateDB.open(tmp_path / "state.db")
    try:
        result = sync_account(src, dst, account_name="a", state=state, options=SyncOptions(max_attempts=1))
    finally:
        state.close()
    assert result.error is None and result.counters.copied == 1
    assert met.count("open") == 2 and met.count("list_folders") >= 2
