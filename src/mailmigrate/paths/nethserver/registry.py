"""The migrate actions of the ``migration-import`` event: named, ordered by priority, each one idempotent.

Like e-smith's ``event_actions($event, '<package>-migrate' => 60)``, an action registers a name and a
priority in the step runner's registry (paths/plan.py), which runs them in (priority, name) order.  Each
action reads the source through the context and changes the target only through it, so a dry run is the
same code with the writes left out and a rerun finds its own earlier work and does nothing twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ...formats.esmith import EsmithDb, read_esmith, write_esmith
from ..journal import EventLog
from ..plan import Registered as Action, StepRegistry
from .layout import NethServerTree, SmeSource

__all__ = ["ACTIONS", "Action", "Context", "action", "ordered"]

ACTIONS = StepRegistry("migrate action")
action = ACTIONS.register
ordered = ACTIONS.ordered


@dataclass
class Context:
    source: SmeSource
    target: NethServerTree
    log: EventLog
    dry_run: bool = False
    timestamp: str = field(default_factory=lambda: time.strftime("%Y%m%d%H%M%S"))
    _src: dict[str, EsmithDb] = field(default_factory=dict)
    _dst: dict[str, EsmithDb] = field(default_factory=dict)
    #: things an action computed that a later one needs (e.g. the users actually migrated)
    shared: dict = field(default_factory=dict)

    def src_db(self, name: str) -> EsmithDb:
        if name not in self._src:
            self._src[name] = read_esmith(self.source.db(name))
        return self._src[name]

    def dst_db(self, name: str) -> EsmithDb:
        if name not in self._dst:
            self._dst[name] = read_esmith(self.target.db(name)) if self.target.db(name).exists() else EsmithDb()
        return self._dst[name]

    def save(self, name: str) -> None:
        if self.dry_run or name not in self._dst:
            return
        self.target.db_dir.mkdir(parents=True, exist_ok=True)
        write_esmith(self.target.db(name), self._dst[name])

    @property
    def domain(self) -> str:
        rec = self.src_db("configuration").get("DomainName")
        return rec.type if rec is not None and rec.type else "localdomain"

    def users(self) -> list[str]:
        """Source users that become NethServer users (SME's admin is not one; its mail still moves)."""
        return [k for k, r in self.src_db("accounts").of_type("user") if k != "admin"]
