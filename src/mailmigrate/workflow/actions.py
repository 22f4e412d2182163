"""A project's actions — start, sync, finish, abort, skip — on its units, whatever the migration path.

The workflow knows no path: the project's ``[project] path`` names a plug-in (``paths/registry.py``) and every
action goes through the one state machine (:class:`~.driver.Driver`: refusals, the busy state, history, logs,
the unit's last result).  What each action does is the path's (``paths/mailbox.py``,
``paths/communigate/plugin.py``, ``paths/nethserver/plugin.py``).  With ``[fleet] executor = "celery"`` (or
``executor="celery"`` given to :meth:`Workflow.run`) the copying of start, sync and finish goes to the fleet's
workers as one job per account (``workflow/fleet.py``), for the paths that copy mail per account; the units'
states, logs and history are recorded here all the same.
"""

from __future__ import annotations

import getpass
import logging
from typing import Callable

from ..errors import ConfigError
from ..paths import registry
from ..sync.engine import Progress
from . import fleet
from .driver import Driver, UnitRecorder
from .outcome import ActionOutcome
from .project import Project
from .states import IllegalTransition
from .store import WorkflowStore

log = logging.getLogger("mailmigrate.workflow")


class Workflow:
    def __init__(self, project: Project, actor: str | None = None):
        self.project = project
        self.wf = WorkflowStore.open(project.workflow)
        self.actor = actor or getpass.getuser()
        #: the project's migration path, as its plug-in
        self.path = registry.get(project.path, project.name)(project, project.settings)
        self.driver = Driver(self.wf, self.path, self.actor)

    def close(self) -> None:
        self.path.close()
        self.wf.close()

    # --- set-up -----------------------------------------------------------------------------------
    def init(self) -> list[str]:
        added = self.driver.init()
        self.wf.log(None, "INFO", f"project {self.project.name}: {len(added)} unit(s) added by {self.actor}")
        return added

    # --- actions ----------------------------------------------------------------------------------
    def run(self, units: list[str] | None, action: str, progress: Progress | None = None, *,
            executor: str | None = None, broker: str | None = None, fleet_timeout: float | None = None,
            on_fleet: Callable[[dict], None] | None = None) -> list[ActionOutcome]:
        """``action`` on ``units`` (default: all), here or on the fleet (``executor``, ``broker`` and
        ``fleet_timeout`` override the project's ``[fleet]``); ``on_fleet`` receives the fleet-wide counts
        while the workers copy."""
        known = [u.name for u in self.wf.units()]
        unknown = [n for n in units or [] if n not in known]
        if unknown:  # a typo is a usage error, said before anything runs, not a failed unit
            raise ConfigError(f"project {self.project.name} has no unit {', '.join(map(repr, unknown))}"
                              + (f"; units are named like {', '.join(known[:3])}" if known else
                                 "; it has no units yet (project init)"))
        names = units or known
        settings = fleet.settings(self.project, executor, broker, fleet_timeout) if action in fleet.COPYING else None
        if settings is None:
            return [self.act(n, action, progress, executor="local") for n in names]
        return fleet.run_units(self, names, action, settings, on_progress=on_fleet)

    def act(self, unit: str, action: str, progress: Progress | None = None, *,
            executor: str | None = None) -> ActionOutcome:
        if executor is None and self.project.executor != "local":
            return self.run([unit], action, progress)[0]  # the dashboard's buttons go to the fleet too
        try:
            return self.driver.act(unit, action, progress)[0]
        except IllegalTransition as e:
            u = self.wf.get(unit)
            return ActionOutcome(unit, action, False, u.state if u else "?", str(e))

    # --- verification and the report --------------------------------------------------------------
    def verify_unit(self, unit: str):
        """Verify one unit's mail message by message and keep the result with the unit, so that the report
        and the dashboard show it until the next verification."""
        if not self.path.verifies_mail:
            raise ConfigError(f"project {self.project.name}: path {self.project.path} has no mail to verify "
                              f"message by message")
        return self.path.verify_unit(unit, UnitRecorder(self.wf, unit))

    def verifiable(self) -> list[str]:
        """The units whose mail a verification can compare: units of a mail-copying path that have been
        started."""
        if not self.path.verifies_mail:
            return []
        return [u.name for u in self.wf.units() if u.bound]

    def report(self) -> dict:
        """Verify every started unit now, then the report of the whole project (and its directory)."""
        from .report import build_report

        for name in self.verifiable():
            self.verify_unit(name)
        return build_report(self.project.name, self.status(), {}, self.directory_check())

    def directory_check(self) -> dict | None:
        """The post-migration checklist (users, groups, memberships, aliases, send-as, forwards, …) between
        the project's source and target directories, or None when the project names none."""
        d = self.project.directory
        if not d:
            return None
        from ..directory.checklist import compare
        from ..directory.urls import open_directory
        from ..credentials import read_password_file

        def pw(key):
            return read_password_file(d[key], key.replace("_", " ")) if d.get(key) else None

        with open_directory(d["source"], pw("source_password_file"), must_exist=True) as src, \
                open_directory(d["target"], pw("target_password_file"), must_exist=True) as tgt:
            return compare(src.read(), tgt.read()).as_dict()

    # --- reading ----------------------------------------------------------------------------------
    def status(self) -> list[dict]:
        prog = self.wf.progress()
        out = []
        for u in self.wf.units():
            out.append({"unit": u.name, "state": u.state, "bound": u.bound, "updated": u.updated,
                        "last_error": u.last_error, "actions": self.driver.allowed(u.name, u.state, u.bound),
                        "progress": prog.get(u.name, {}), "last_result": u.meta.get("last_result"),
                        "verification": u.meta.get("verification"), "found": u.meta.get("overview"),
                        "user": u.meta.get("user"), "groupware": u.meta.get("groupware"),
                        "groupware_verification": u.meta.get("groupware_verification")})
        return out

    def for_units(self, units: list[str] | None, fn: Callable[[str], ActionOutcome]) -> list[ActionOutcome]:
        names = units or [u.name for u in self.wf.units()]
        return [fn(n) for n in names]
