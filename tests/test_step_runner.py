"""The one step runner (paths/plan.py) as the procedures that share it use it: completions the system cannot
show are recorded once, one run at a time, a keep-going event survives a step's bug, and an SME import or a
CommuniGate migration cut short resumes on the next run without doing anything twice."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailmigrate.errors import MailmigrateError, StateLocked
from mailmigrate.paths.journal import EventLog
from mailmigrate.paths.plan import Plan, Step, StepRegistry
from mailmigrate.paths.communigate.migrate import MIGRATED, migrate
from mailmigrate.paths.runstate import RunState
# the CommuniGate sample and the Kerio stand-in of that module (its kerio fixture, not conftest's)
from test_communigate_migrate import assert_same, kerio, store  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = ROOT / "examples" / "sme-backup.tgz"


# --- the runner -------------------------------------------------------------------------------------------

def test_a_recorded_step_runs_once_and_only_once_it_succeeded(tmp_path):
    """"The services were stopped" looks like "never running": the record, not the system, says done."""
    ran: list[str] = []
    fail = [True]

    def stop():
        ran.append("stop")
        if fail[0]:
            raise OSError("systemctl: connection refused")

    def plan():
        return Plan("services", [Step("stop", "stop the MTA", apply=stop, record=True)],
                    state=RunState(tmp_path / "state.json"))

    assert plan().run(dry_run=True).outcomes[0].status == "planned"
    assert not (tmp_path / "state.json").exists()  # a dry run records nothing
    first = plan().run(dry_run=False)
    assert [o.status for o in first.outcomes] == ["failed"] and "connection refused" in first.render()
    fail[0] = False
    assert plan().run(dry_run=False).outcomes[0].status == "applied"
    assert plan().run(dry_run=False).outcomes[0].status == "done"
    assert ran == ["stop", "stop"]  # the failed try, the one that worked; never again after


def test_one_real_run_at_a_time_and_a_dry_run_needs_no_lock(tmp_path):
    """Two runs of one procedure would stop and start the same services: the second one stops at once, in
    another process as in this one, and the first one's lock goes with its process."""
    lock = tmp_path / "run.lock"
    applied = []
    plan = Plan("p", [Step("s", "d", changes=lambda: ["x"] if not applied else [], apply=lambda: applied.append(1))],
                lock=lock, busy="another run holds run.lock")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from mailmigrate.paths.runstate import hold_lock
        with hold_lock({str(lock)!r}, "busy"):
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateLocked, match="another run holds run.lock"):
            plan.run(dry_run=False)
        assert applied == []
        assert plan.run(dry_run=True).outcomes[0].status == "planned"
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert plan.run(dry_run=False).outcomes[0].status == "applied"


def test_a_keep_going_event_contains_a_steps_bug_and_a_plan_does_not(tmp_path):
    reg = StepRegistry("action")
    ran = []

    @reg.register("b-buggy", 10)
    def buggy(ctx):
        """Has a bug."""
        ran.append("b")
        return {}["missing"]

    @reg.register("a-later", 20)
    def later(ctx):
        """Runs after the bug."""
        ran.append("a")

    @reg.register("c-first", 5)
    def first(ctx):
        """Runs first."""
        ran.append("c")

    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a-later", 1)(lambda ctx: None)
    log = EventLog("event", tmp_path / "event.log")
    res = reg.plan("event", None, keep_going=True).run(dry_run=False, journal=log)
    assert ran == ["c", "b", "a"]  # (priority, name), and the bug stopped nothing
    assert [o.status for o in res.outcomes] == ["applied", "failed", "applied"]
    assert [e.line() for e in log.errors] == ["[ERROR] b-buggy: action failed unexpectedly: KeyError: 'missing'"]
    text = (tmp_path / "event.log").read_text()
    assert "event [INFO] c-first: start: Runs first." in text and "Traceback" in text
    with pytest.raises(KeyError):
        reg.plan("plan", None).run(dry_run=False)


# --- an SME import cut short ------------------------------------------------------------------------------

def _tree(root: Path) -> dict[str, bytes]:
    """What the import leaves for NethServer, with this root's own path taken out."""
    base = root / "var/lib/nethserver"
    return {p.relative_to(base).as_posix(): p.read_bytes().replace(str(root).encode(), b"")
            for p in sorted(base.rglob("*")) if p.is_file()}


def test_an_sme_import_cut_short_resumes_with_the_actions_that_failed(tmp_path):
    from mailmigrate.paths.nethserver.sme_import import run_import

    whole = tmp_path / "whole"
    run_import(ARCHIVE, whole)
    root = tmp_path / "root"
    blocked = root / "var/lib/nethserver/db/accounts"
    blocked.mkdir(parents=True)  # where the accounts database goes: every action writing it fails
    cut = run_import(ARCHIVE, root)
    failed = sorted({e.action for e in cut.log.errors if "action failed" in e.text})
    assert "nethserver-directory-migrate-users" in failed and "nethserver-mail-migrate-domains" not in failed
    assert (root / "var/lib/nethserver/db/domains").is_file()  # the event went on past the failures
    blocked.rmdir()
    again = run_import(ARCHIVE, root)
    assert not any("action failed" in e.text for e in again.log.errors)
    assert _tree(root) == _tree(whole)
    assert len(list((root / "root").glob("admin-migration-*"))) == 1  # nothing done twice


def test_one_sme_import_at_a_time_per_target(tmp_path):
    from mailmigrate.paths.nethserver.sme_import import run_import
    from mailmigrate.paths.runstate import hold_lock

    root = tmp_path / "root"
    with hold_lock(root / "var/lib/mailmigrate/migration-import.lock", "held"):
        with pytest.raises(StateLocked, match="another migration-import is writing to"):
            run_import(ARCHIVE, root)
        assert not (root / "var/lib/nethserver").exists()
        assert run_import(ARCHIVE, root, dry_run=True).log.entries  # a dry run writes nothing and may run
    assert run_import(ARCHIVE, root).log.entries


# --- a CommuniGate migration cut short --------------------------------------------------------------------

def test_a_communigate_migration_cut_short_after_its_users_resumes_with_the_mail(kerio, store):
    opts = kerio.options(store, domain="example.org")
    opts.state_path.write_bytes(b"not a state database\n" * 10)  # the mail step cannot open its state
    with pytest.raises(MailmigrateError):
        migrate(opts)
    (made,) = kerio.out.glob("cg2kms_*.pass")  # the users step ran, and wrote what it set
    first = {a: (p, how) for a, p, how in (ln.split("\t") for ln in made.read_text().splitlines()
                                           if not ln.startswith("#"))}
    assert first["erin@example.org"] == ("erin-pw", MIGRATED) and set(first) == {"dave@example.org",
                                                                                "erin@example.org"}
    log = next(kerio.out.glob("cg2kms_*.log")).read_text()
    assert "erin-pw" not in log
    opts.state_path.unlink()
    again = migrate(kerio.options(store, domain="example.org"))
    assert again.ok, again.summary_lines()
    assert [a.action for a in again.accounts] == ["existing", "existing"]  # ours: no --force, no new password
    assert again.passwords_set == 0 and again.totals.copied > 0
    kerio.login_users()
    for address, (password, _) in first.items():
        assert_same(store, kerio.dovecot.port, address, password)
    last = migrate(kerio.options(store, domain="example.org"))
    assert last.totals.copied == 0 and last.totals.skipped == again.totals.copied
