"""The list of users a CommuniGate migration created, written by several processes at once.

A project command and its dashboard (or two cg2kms runs on one state) may each create users at the same
moment; every one of them must stay in the list, or a later start takes that user for someone else's.
"""

from __future__ import annotations

import json
import multiprocessing
import stat

from mailmigrate.paths.communigate.migrate import load_created, record_created

PROCESSES = 6
EACH = 25


def _record_many(state_path, who: int, start) -> None:
    start.wait()
    for k in range(EACH):
        record_created(state_path, f"p{who}u{k}@example.com")


def test_users_recorded_by_many_processes_at_once_are_all_kept(tmp_path):
    state_path = tmp_path / "cg2kms_state.db"
    record_created(state_path, "earlier@example.com")  # a run before this one
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_record_many, args=(state_path, i, start)) for i in range(PROCESSES)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    want = {"earlier@example.com"} | {f"p{i}u{k}@example.com" for i in range(PROCESSES) for k in range(EACH)}
    got = load_created(state_path)
    assert len(want - got) == 0, f"{len(want - got)} of {len(want)} users lost: {sorted(want - got)[:5]}"
    listed = tmp_path / "cg2kms_state.db.created-users.json"
    assert sorted(json.loads(listed.read_text())) == sorted(want)  # one entry each, no duplicates
    assert stat.S_IMODE(listed.stat().st_mode) == 0o600
    assert not list(tmp_path.glob("*.tmp"))  # no half-written list left behind
