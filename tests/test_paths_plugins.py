"""Migration paths are plug-ins behind one interface (paths/base.py): a path registered by name is driven by
the workflow - init, actions, refusals, the state machine, history, logs, status, the command line - with no
change to workflow/; and every registered path's allowed actions per state are the one state machine's, less
its own documented rule."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailmigrate.cli.main import main as cli
from mailmigrate.errors import ConfigError
from mailmigrate.paths import registry
from mailmigrate.paths.base import MigrationPath, Outcome, UnitInfo
from mailmigrate.workflow.actions import Workflow
from mailmigrate.workflow.project import load_project
from mailmigrate.workflow.states import BUSY, STATES


@dataclass
class NotesSettings:
    source: Path
    target: Path
    notes: list[str]


class NotesPath(MigrationPath):
    """A tiny path: each unit a text file moved from one directory to another.  start and sync copy it,
    finish copies it and checks the copy byte for byte, abort removes only a copy it made (the unit's
    metadata names it), skip leaves it; ``index`` is finished last, after every other note."""

    name = "notes"
    section = "notes"
    uses_stores = False

    @classmethod
    def parse_settings(cls, project_name, data, rel):
        sec = data.get("notes") or {}
        if "source" not in sec or "target" not in sec:
            raise ConfigError(f"project {project_name}: path notes needs [notes] source and target")
        return NotesSettings(rel(sec["source"]), rel(sec["target"]), list(sec.get("notes", [])))

    def units(self):
        return [UnitInfo(n, "note", {"file": f"{n}.txt"}) for n in self.settings.notes]

    def refusal(self, unit, action, others):
        if unit == "index" and action == "finish":
            waiting = [n for n in self.settings.notes if n != "index" and not others.settled(n)]
            if waiting:
                return f"index is finished last; {', '.join(f'{n} is {others.state(n)}' for n in waiting)}"
        return None

    def act(self, unit, action, record):
        src = self.settings.source / record.meta()["file"]
        dst = self.settings.target / record.meta()["file"]
        if action in ("start", "sync", "finish"):
            if not src.is_file():
                return Outcome(False, f"{src} is missing")
            self.settings.target.mkdir(exist_ok=True)
            made = not dst.exists()
            dst.write_bytes(src.read_bytes())
            if made:
                record.update_meta({"made": str(dst)})
            record.progress(total=1, done=1, bytes_done=dst.stat().st_size)
            record.log("INFO", f"{src.name}: {dst.stat().st_size} bytes")
            if action == "finish" and dst.read_bytes() != src.read_bytes():
                return Outcome(False, "the copy differs", True)
            return Outcome(True, f"copied {src.name}")
        if action == "abort":
            made = record.meta().get("made")
            if made:
                Path(made).unlink(missing_ok=True)
            return Outcome(True, f"removed {made or 'nothing'}")
        return Outcome(True, "skipped")


@pytest.fixture
def notes_path():
    registry.register(NotesPath)
    yield NotesPath
    registry.unregister("notes")


def _notes_project(tmp_path) -> Path:
    (tmp_path / "old").mkdir()
    for n in ("alpha", "beta", "index"):
        (tmp_path / "old" / f"{n}.txt").write_text(f"{n}\n")
    f = tmp_path / "notes.toml"
    f.write_text('[project]\nname = "notes"\npath = "notes"\n\n'
                 '[notes]\nsource = "old"\ntarget = "new"\nnotes = ["alpha", "beta", "index"]\n')
    return f


def test_a_registered_path_is_driven_by_the_workflow_unchanged(notes_path, tmp_path):
    f = _notes_project(tmp_path)
    with pytest.raises(ConfigError, match="is not one of"):
        registry.get("no-such-path")
    flow = Workflow(load_project(f), actor="tester")
    assert sorted(flow.init()) == ["alpha", "beta", "index"]
    assert flow.init() == []  # idempotent

    out = flow.act("alpha", "start")
    assert out.ok and out.state == "migrating" and (tmp_path / "new/alpha.txt").read_text() == "alpha\n"
    refused = flow.act("alpha", "start")  # the state machine's refusal, in its words
    assert not refused.ok and refused.state == "migrating" and "already started" in refused.message
    out = flow.act("index", "start")
    assert out.ok
    out = flow.act("index", "finish")  # the path's own rule, before the unit is taken
    assert not out.ok and out.state == "migrating"
    assert out.message == "index is finished last; alpha is migrating, beta is not_started"
    assert flow.act("beta", "skip").state == "skipped"
    assert flow.act("alpha", "finish").state == "migrated"
    out = flow.act("index", "finish")
    assert out.ok and out.state == "migrated"

    # a failure is the state machine's: failed, bound, then retried by sync
    flow.act("beta", "start")
    (tmp_path / "old/beta.txt").unlink()
    out = flow.act("beta", "sync")
    assert not out.ok and out.state == "failed" and "beta.txt is missing" in out.message
    (tmp_path / "old/beta.txt").write_text("beta again\n")
    assert flow.act("beta", "sync").state == "migrating"
    out = flow.act("beta", "abort")
    assert out.ok and out.state == "not_started" and not (tmp_path / "new/beta.txt").exists()

    rows = {r["unit"]: r for r in flow.status()}
    assert rows["alpha"]["actions"] == [] and rows["beta"]["actions"] == ["start", "skip"]
    assert rows["alpha"]["progress"]["bytes_done"] == len("alpha\n")
    assert [(h["action"], h["after"]) for h in flow.wf.history("beta") if h["detail"] != "started"][-2:] == \
        [("sync", "migrating"), ("abort", "not_started")]
    assert any("alpha.txt: 6 bytes" in r["message"] for r in flow.wf.logs(unit="alpha"))
    assert flow.verifiable() == []  # no mail to compare message by message
    flow.close()

    buf = io.StringIO()  # the command line drives it as well
    with redirect_stdout(buf):
        assert cli(["project", "status", str(f), "--json"]) == 0
    assert {r["unit"]: r["state"] for r in json.loads(buf.getvalue())} == \
        {"alpha": "migrated", "beta": "not_started", "index": "migrated"}


#: a project file per built-in path, enough to load it and list its units' allowed actions
SAMPLES = {
    "mailbox": ('path = "mailbox"\n\n[source]\nurl = "maildir:old"\n\n[target]\nurl = "maildir:new"\n', "mailbox"),
    "communigate": ('path = "communigate"\n\n[communigate]\nbase = "cgp"\n\n'
                    '[target]\nurl = "maildir:new"\nmaster = "admin"\n', None),
    "nethserver7": ('path = "nethserver7"\n\n[nethserver]\nsource_root = "ns7"\nroot = "ns8"\n'
                    'applications = ["mail", "account-provider"]\n', None),
}

#: the one state machine: (state, bound) -> the actions a unit allows
MACHINE = {
    ("not_started", False): ["start", "skip"], ("not_started", True): ["start", "skip"],
    ("migrating", False): ["sync", "finish", "abort", "skip"], ("migrating", True): ["sync", "finish", "abort", "skip"],
    ("migrated", False): [], ("migrated", True): [],
    ("skipped", False): ["start"], ("skipped", True): ["start", "abort"],
    ("failed", False): ["start", "abort", "skip"], ("failed", True): ["sync", "finish", "abort", "skip"],
    **{(s, b): [] for s in BUSY for b in (False, True)},
}


def _allowed_table(flow: Workflow, unit: str) -> dict:
    return {(s, b): flow.driver.allowed(unit, s, b) for s in STATES for b in (False, True)}


def test_every_registered_path_lists_its_allowed_actions_per_state(tmp_path):
    assert set(MACHINE) == {(s, b) for s in STATES for b in (False, True)}
    assert set(registry.names()) == set(SAMPLES), "a registered path needs a sample here"
    for name in registry.names():
        d = tmp_path / name
        d.mkdir()
        f = d / "p.toml"
        f.write_text(f'[project]\nname = "{name}"\n' + SAMPLES[name][0])
        flow = Workflow(load_project(f))
        if SAMPLES[name][1] is None:  # units found in a tree that is not here: registered by hand
            flow.wf.add_unit("mail", "application")
            flow.wf.add_unit("account-provider", "application")
            unit = "mail"
        else:
            flow.init()
            unit = SAMPLES[name][1]
        assert _allowed_table(flow, unit) == MACHINE, name
        if name == "nethserver7":
            # its own rule: the account provider finishes only once every other application is settled
            table = _allowed_table(flow, "account-provider")
            assert table == {k: [a for a in v if a != "finish"] for k, v in MACHINE.items()}
            flow.wf.begin("mail", "skip", "tester")
            assert _allowed_table(flow, "account-provider") == MACHINE
        flow.close()


def test_ns7_takes_over_the_former_state_file_once(tmp_path):
    """A migration begun by an earlier version (its own JSON state file) goes on under the workflow's
    state machine: each application's state and its steps' data become its unit's."""
    from mailmigrate.paths.nethserver.layout import NethServerTree, NS8MailTree
    from mailmigrate.workflow import ns7

    p = ns7.Project(NethServerTree(tmp_path / "ns7"), NS8MailTree(tmp_path / "ns8"))
    p.state_dir.mkdir(parents=True)
    old = p.state_dir / "ns7-migration.json"
    old.write_text(json.dumps({"apps": {
        "mail": {"state": "migrating", "created": ["vmail/alice"], "history": [{"action": "start"}],
                 "ns8_module": "mail1"},
        "sogo": {"state": "syncing", "lock": {"pid": 1, "host": "gone"}, "resume": "migrating", "created": []},
        "webtop": {"state": "skipped", "created": []}}}))
    assert ns7.status(p) == {"mail": "migrating", "sogo": "migrating", "webtop": "skipped",
                             "account-provider": "not_migrated"}
    assert ns7.steps_data(p, "mail") == {"created": ["vmail/alice"], "ns8_module": "mail1"}
    assert not old.exists() and (p.state_dir / "ns7-migration.json.adopted").is_file()
    with pytest.raises(ns7.IllegalStep, match="start is possible only when it is not_migrated or skipped"):
        ns7.start(p, "mail")


@pytest.mark.parametrize("name", ["communigate", "nethserver7"])
def test_only_a_path_of_per_account_copies_goes_to_the_fleet(tmp_path, name):
    """CommuniGate's start makes the user before the copy, NS7's steps are no account copies: a fleet job
    would skip that, so their projects stay on this machine."""
    f = tmp_path / "p.toml"
    f.write_text(f'[project]\nname = "{name}"\nstate = "postgresql://mm@localhost/mm"\n' + SAMPLES[name][0]
                 + '\n[fleet]\nexecutor = "celery"\n')
    with pytest.raises(ConfigError, match=f"path {name} runs on this machine"):
        load_project(f)


def test_a_nethserver7_project_keeps_what_an_earlier_version_noted_in_its_state_file(tmp_path):
    """A project begun before the steps kept their data in the unit: abort still removes what start
    created, as the former state file noted it, and from then on the unit's metadata holds it."""
    import shutil

    sample = Path(__file__).resolve().parent.parent / "examples" / "nethserver7"
    shutil.copytree(sample, tmp_path / "ns7", symlinks=True)
    made = tmp_path / "ns8/vmail/zed/Maildir/cur"
    made.mkdir(parents=True)
    (tmp_path / "ns8/.mailmigrate").mkdir()
    (tmp_path / "ns8/.mailmigrate/ns7-migration.json").write_text(json.dumps(
        {"apps": {"mail": {"state": "migrating", "created": ["vmail/zed"], "history": []}}}))
    f = tmp_path / "p.toml"
    f.write_text('[project]\nname = "ns"\npath = "nethserver7"\n\n[nethserver]\nsource_root = "ns7"\nroot = "ns8"\n')
    flow = Workflow(load_project(f), actor="tester")
    flow.init()
    t = flow.wf.begin("mail", "start", "tester")  # where the project's own store had it
    flow.wf.end("mail", t, "tester", ok=True, detail="started by an earlier version", bound=True)
    out = flow.act("mail", "abort")
    assert out.ok and out.state == "not_started", out.message
    assert not (tmp_path / "ns8/vmail/zed").exists()
    assert flow.wf.get("mail").meta["steps"]["created"] == []
    flow.close()
