"""``mailmigrate ns7``: NethServer 7 -> 8 one application at a time, without a project file.

The same plug-in and the same state machine as a ``nethserver7`` project: the applications are units of a
workflow store kept beside the NS8 tree (``<root>/.mailmigrate/ns7-workflow.db``), so the lock, the stale-lock
rule, the history and which action may run when are the workflow's.  Only the words differ: this command
speaks the seed's (FACTS.md) — ``not_migrated``, ``migrating``, ``syncing``, ``migrated``, ``skipped`` — so a
unit whose last action failed shows as ``migrating`` when it has anything on NS8 and ``not_migrated`` when
not (its log and the command's exit status say what failed), and a refusal is an :class:`IllegalStep`, a busy
application a StateLocked.

A store written before this one (``ns7-migration.json``, the path's former state file) is taken over once:
each application's state and its steps' data become its unit's.
"""

from __future__ import annotations

import contextlib
import getpass
from dataclasses import dataclass

from ..errors import ConfigError, MailmigrateError, StateLocked
from ..paths.nethserver import ns8_steps as _steps
from ..paths.nethserver.eventlog import EventLog  # noqa: F401  (callers use it with the steps' functions)
from ..paths.nethserver.ns8_steps import (  # noqa: F401  (the command's vocabulary beside the work)
    APPS, AppRecord, IllegalStep, Project, StepResult, convert_mail, describe_plan, mail_users,
)
from ..paths.nethserver.plugin import (
    FORMER_STATE, STEPS_KEY, NethServerPath, NethServerSettings, former_state, former_steps_data,
)
from .driver import Driver, StoreUnits
from .states import BUSY, FAILED, MIGRATED as _MIGRATED, MIGRATING as _MIGRATING, NOT_STARTED, SKIPPED as _SKIPPED
from .states import IllegalTransition, UnitBusy, starts_from
from .store import Unit, WorkflowStore

NOT_MIGRATED, MIGRATING, SYNCING, MIGRATED, SKIPPED = "not_migrated", "migrating", "syncing", "migrated", "skipped"
_WORDS = {NOT_STARTED: NOT_MIGRATED, _MIGRATING: MIGRATING, _MIGRATED: MIGRATED, _SKIPPED: SKIPPED}


def shown(state: str, bound: bool) -> str:
    """A workflow state in the seed's words."""
    if state in BUSY:
        return SYNCING
    if state == FAILED:
        return MIGRATING if bound else NOT_MIGRATED
    return _WORDS.get(state, state)


class _Units(StoreUnits):
    def state(self, unit: str) -> str | None:
        u = self._wf.get(unit)
        return shown(u.state, u.bound) if u else None


@dataclass
class AppResult(StepResult):
    """A step's result with the application's state after it, in the seed's words."""

    state: str = ""


def workflow_file(p: Project):
    return p.state_dir / "ns7-workflow.db"


@contextlib.contextmanager
def _store(p: Project):
    p.state_dir.mkdir(parents=True, exist_ok=True)
    wf = WorkflowStore.open(workflow_file(p))
    try:
        _adopt_json(p, wf)
        for app in APPS:
            wf.add_unit(app, "application", {})
        yield wf
    finally:
        wf.close()


def _adopt_json(p: Project, wf: WorkflowStore) -> None:
    """The former state file's applications, once: their state and their steps' data."""
    old = p.state_dir / FORMER_STATE
    if not old.is_file():
        return
    apps, data = former_state(p.state_dir), former_steps_data(p.state_dir)
    states = {NOT_MIGRATED: (NOT_STARTED, False), MIGRATING: (_MIGRATING, True), MIGRATED: (_MIGRATED, True),
              SKIPPED: (_SKIPPED, False), SYNCING: (FAILED, True)}  # a lock in the old file: its action died
    for app, a in apps.items():
        state, bound = states.get(a.get("state"), (NOT_STARTED, False))
        wf.adopt(app, "application", state, bound, {STEPS_KEY: data[app]}, f"from {old.name}: {a.get('state')}")
    old.rename(old.with_name(old.name + ".adopted"))


def _driver(wf: WorkflowStore, p: Project, *, disable_source: bool = True, dovecot=None) -> Driver:
    settings = NethServerSettings(source_root=str(p.source.root), root=str(p.target.root),
                                  applications=list(APPS), keep_source=not disable_source)
    return Driver(wf, NethServerPath(None, settings, tree=p, dovecot=dovecot), getpass.getuser(), view=_Units)


def _refused(app: str, u: Unit, action: str) -> str:
    words = []
    for s in starts_from(action):
        w = _WORDS.get(s)
        if w and w not in words:
            words.append(w)
    return f"{app} is {shown(u.state, u.bound)}: {action} is possible only when it is {' or '.join(words)}"


def _act(p: Project, app: str, action: str, **kw) -> AppResult:
    if app not in APPS:
        raise ConfigError(f"application {app!r}: mailmigrate migrates {', '.join(APPS)} (others: use NS8's tool)")
    with _store(p) as wf:
        driver = _driver(wf, p, **kw)
        refusal = driver.refusal(app, action)
        if refusal:
            raise IllegalStep(refusal)
        try:
            out, res = driver.act(app, action)
        except UnitBusy as e:
            u = wf.get(app)
            raise StateLocked(f"{app}: {e} (held by {u.lock_owner}); wait for it") from None
        except IllegalTransition as e:
            raise IllegalStep(f"{_refused(app, wf.get(app), action)} ({e})") from None
        if res is None:  # the step stopped before it began its work
            raise MailmigrateError(out.message)
        u = wf.get(app)
        return AppResult(res.app, res.action, res.done, res.log, res.details, state=shown(u.state, u.bound))


def start(p: Project, app: str = "mail") -> AppResult:
    return _act(p, app, "start")


def sync(p: Project, app: str = "mail") -> AppResult:
    return _act(p, app, "sync")


def finish(p: Project, app: str = "mail", *, disable_source: bool = True, dovecot=None) -> AppResult:
    return _act(p, app, "finish", disable_source=disable_source, dovecot=dovecot)


def abort(p: Project, app: str = "mail") -> AppResult:
    return _act(p, app, "abort")


def skip(p: Project, app: str = "mail") -> AppResult:
    return _act(p, app, "skip")


def status(p: Project) -> dict[str, str]:
    with _store(p) as wf:
        return {app: shown(wf.get(app).state, wf.get(app).bound) for app in APPS}


def history(p: Project, app: str) -> list[dict]:
    """Every action that ended on ``app``, oldest first, with who ran it, when, and how it ended (the
    workflow's history less the rows that took the unit)."""
    with _store(p) as wf:
        return [h for h in wf.history(app) if h["actor"] != "system" and h["detail"] not in ("", "started")]


def steps_data(p: Project, app: str) -> dict:
    """What the steps keep of ``app`` between actions (the unit's metadata)."""
    with _store(p) as wf:
        return dict(wf.get(app).meta.get(STEPS_KEY) or {})


def finish_plan(p: Project, *, disable_source: bool = True) -> dict:
    with _store(p) as wf:
        u = wf.get("mail")
        allowed = "finish" in _driver(wf, p).allowed("mail", u.state, u.bound)
        rec = AppRecord("mail", dict(u.meta.get(STEPS_KEY) or {}))
        return _steps.finish_plan(p, rec, shown(u.state, u.bound), allowed, disable_source=disable_source)
