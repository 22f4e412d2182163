"""The per-unit workflow: legal transitions, refusals that explain, history, stale locks."""

import os
import subprocess
import sys

import pytest
from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailmigrate.workflow.states import (ACTIONS, BUSY, FAILED, MIGRATED, MIGRATING, NOT_STARTED, SKIPPED, STATES,
                                         SYNCING, IllegalTransition, allowed_actions, plan)
from mailmigrate.workflow.store import WorkflowStore


def test_happy_path_with_history(tmp_path):
    wf = WorkflowStore.open(tmp_path / "wf.db")
    wf.add_unit("ann")
    for action, after in (("start", MIGRATING), ("sync", MIGRATING), ("sync", MIGRATING), ("finish", MIGRATED)):
        t = wf.begin("ann", action, "alice")
        if t.busy:
            assert wf.get("ann").state == t.busy
        assert wf.end("ann", t, "alice", ok=True) == after
    hist = [(h["action"], h["after"], h["actor"]) for h in wf.history("ann")]
    assert hist[-1] == ("finish", MIGRATED, "alice")
    assert ("start", SYNCING, "alice") in hist  # the busy step is recorded too
    with pytest.raises(IllegalTransition, match="already migrated"):
        wf.begin("ann", "sync", "bob")


@pytest.mark.parametrize("state,action,why", [
    (NOT_STARTED, "sync", "not been started"),
    (NOT_STARTED, "finish", "not been started"),
    (SYNCING, "sync", "sync is running"),
    (MIGRATED, "abort", "already migrated"),
    (SKIPPED, "finish", "skipped"),
])
def test_illegal_transitions_say_why(state, action, why):
    with pytest.raises(IllegalTransition, match=why):
        plan(action, state)


def test_concurrent_action_refused(tmp_path):
    wf = WorkflowStore.open(tmp_path / "wf.db")
    wf.add_unit("ann")
    t = wf.begin("ann", "start", "alice")
    other = WorkflowStore.open(tmp_path / "wf.db")
    with pytest.raises(IllegalTransition, match="sync is running"):
        other.begin("ann", "sync", "bob")
    wf.end("ann", t, "alice", ok=True)


def test_stale_lock_of_a_killed_process_becomes_failed(tmp_path):
    """A process killed in the middle of a sync leaves the unit busy; the next action sees it failed."""
    db = tmp_path / "wf.db"
    WorkflowStore.open(db).add_unit("ann")
    code = (
        "import os, signal\n"
        "from mailmigrate.workflow.store import WorkflowStore\n"
        f"wf = WorkflowStore.open({str(db)!r})\n"
        "wf.begin('ann', 'start', 'cron')\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -9
    wf = WorkflowStore.open(db)
    assert wf.get("ann").state == SYNCING
    t = wf.begin("ann", "start", "admin")  # first start failed before binding: start again is allowed
    assert t.before == FAILED
    assert any(h["action"] == "recover" for h in wf.history("ann"))


def test_failed_action_keeps_error_and_allows_retry(tmp_path):
    wf = WorkflowStore.open(tmp_path / "wf.db")
    wf.add_unit("ann")
    t = wf.begin("ann", "start", "a")
    wf.end("ann", t, "a", ok=True)
    t = wf.begin("ann", "sync", "a")
    wf.end("ann", t, "a", ok=False, detail="target: login refused")
    u = wf.get("ann")
    assert u.state == FAILED and u.last_error == "target: login refused" and u.bound
    assert set(allowed_actions(FAILED, bound=True)) == {"sync", "finish", "abort", "skip"}


class Machine(RuleBasedStateMachine):
    """Random action sequences over a few units: never an unknown state, never a lost unit, and the
    store agrees with a model that only knows the rules' outcome."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.wf = WorkflowStore.open(os.path.join(self.dir, "wf.db"))
        self.units = ["u1", "u2", "u3"]
        for u in self.units:
            self.wf.add_unit(u)

    @rule(unit=st.sampled_from(["u1", "u2", "u3"]), action=st.sampled_from(ACTIONS), ok=st.booleans())
    def act(self, unit, action, ok):
        before = self.wf.get(unit)
        try:
            t = self.wf.begin(unit, action, "prop")
        except IllegalTransition:
            assert action not in allowed_actions(before.state, bound=before.bound)
            assert self.wf.get(unit).state == before.state
            return
        assert action in allowed_actions(before.state, bound=before.bound)
        after = self.wf.end(unit, t, "prop", ok=ok)
        assert after == (t.after if ok else FAILED)

    @invariant()
    def sane(self):
        units = self.wf.units()
        assert sorted(u.name for u in units) == self.units
        for u in units:
            assert u.state in STATES and u.state not in BUSY  # every action ended
            if u.state == MIGRATED:
                assert u.bound


Machine.TestCase.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)
TestMachine = Machine.TestCase


@pytest.fixture
def pg_url():
    psycopg = pytest.importorskip("psycopg")
    import uuid

    name = f"mm_wf_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect("postgresql://postgres@127.0.0.1/postgres", autocommit=True)
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL on 127.0.0.1: {e}")
    admin.execute(f"CREATE DATABASE {name}")
    yield f"postgresql://postgres@127.0.0.1/{name}"
    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_postgresql_store_same_rules(pg_url):
    """The same workflow on PostgreSQL (shared by many workers): transitions, refusals, history, logs."""
    wf = WorkflowStore.open(pg_url)
    assert wf.add_unit("ann") and not wf.add_unit("ann")
    t = wf.begin("ann", "start", "alice")
    other = WorkflowStore.open(pg_url)
    with pytest.raises(IllegalTransition, match="sync is running"):
        other.begin("ann", "sync", "bob")
    assert wf.end("ann", t, "alice", ok=True) == MIGRATING
    t = other.begin("ann", "finish", "bob")
    assert other.end("ann", t, "bob", ok=True) == MIGRATED
    assert [h["actor"] for h in wf.history("ann")][-1] == "bob"
    wf.log("ann", "INFO", "copied 3")
    wf.set_progress("ann", total=3, done=3)
    assert wf.logs(search="copied")[0]["message"] == "copied 3" and wf.progress()["ann"]["done"] == 3
    wf.close()
    other.close()
