"""SyncOptions and SyncRequest: written out and read back by one to_dict/from_dict (what a fleet job carries)."""

from __future__ import annotations

import dataclasses
import json

from mailmigrate.credentials import Secret
from mailmigrate.model import Account
from mailmigrate.stores.registry import StoreOptions, parse_spec
from mailmigrate.sync.engine import SyncOptions as EngineSyncOptions
from mailmigrate.sync.options import Progress, SyncOptions, SyncRequest
from mailmigrate.sync.selection import Selection


def _request() -> SyncRequest:
    return SyncRequest(
        source=parse_spec("imaps://ann@src.example.org?id=old-mx"), target=parse_spec("imap://dst.example.org"),
        accounts=[Account("ann", "ann", Secret("own-src-pw"), Secret("own-tgt-pw"))], state_path="/srv/s.db",
        source_options=StoreOptions(insecure=True, master_user="admin", timeout=90, oauth=object()),
        target_options=StoreOptions(allow_plaintext=True, create=True),
        source_password=Secret("run-src-pw"), target_password=Secret("run-tgt-pw"), jobs=4,
        sync=SyncOptions(delete=True, force_delete=True, delete_guard=0.2, dry_run=True, connections=2,
                         max_attempts=3, late_commit_grace=0.5,
                         selection=Selection(exclude=("^Trash$",), maps=(("Old", "Archive/Old"),), max_size=10_000)),
        max_rate=5.0, max_bandwidth=1 << 20, max_connections=6, lock_wait=30)


def test_a_request_comes_back_as_it_was_sent_each_side_with_its_own_options():
    req = _request()
    d = json.loads(json.dumps(req.to_dict()))  # as the broker carries it
    back = SyncRequest.from_dict(d, state_path="postgresql://x/y")
    assert back.source == req.source and back.source.server_id == "old-mx" and back.target == req.target
    assert back.source_options == StoreOptions(insecure=True, master_user="admin", timeout=90)
    assert back.target_options == StoreOptions(allow_plaintext=True)  # create: the receiver's to decide
    assert (back.jobs, back.max_rate, back.max_bandwidth, back.max_connections, back.lock_wait) == (4, 5.0, 1 << 20, 6, 30)
    fields = [f.name for f in dataclasses.fields(SyncOptions) if f.name not in SyncOptions.LOCAL]
    assert [getattr(back.sync, f) for f in fields] == [getattr(req.sync, f) for f in fields]
    assert back.sync.selection == req.sync.selection and back.sync.selection.exclude == ("^Trash$",)


def test_no_password_account_or_token_source_travels():
    req = _request()
    text = json.dumps(req.to_dict())
    for pw in ("own-src-pw", "own-tgt-pw", "run-src-pw", "run-tgt-pw"):
        assert pw not in text
    assert "ann@" in text and "accounts" not in text and "oauth" not in text and "/srv/s.db" not in text
    back = SyncRequest.from_dict(json.loads(text), source_password=Secret("worker-pw"), target_oauth="tokens")
    assert back.accounts == [] and back.source_password == Secret("worker-pw") and back.target_password is None
    assert back.target_options.oauth == "tokens" and back.source_options.oauth is None


def test_every_option_travels_unless_it_is_a_live_object():
    """A field added to SyncOptions reaches the workers without anyone copying it: only the named live
    objects stay behind, and the receiver gives its own."""
    sent = SyncOptions().to_dict()
    assert set(sent) | SyncOptions.LOCAL == {f.name for f in dataclasses.fields(SyncOptions)}
    mine = Progress()
    back = SyncOptions.from_dict({**sent, "from_a_newer_version": 1}, progress=mine)
    assert back.progress is mine and back == dataclasses.replace(SyncOptions(), progress=mine,
                                                                stop_requested=back.stop_requested)


def test_the_engine_still_names_the_same_class():
    assert EngineSyncOptions is SyncOptions
