"""The one state machine around every path's work: refuse, take the unit, let the path act, record the end.

Every action of every path goes through :meth:`Driver.act`: the path's own rule (:meth:`MigrationPath.refusal`)
first, so that a refusal leaves the unit as it was; then the store's ``begin`` (the transition checked and the
unit taken into its busy state in one transaction, a busy state left by a dead process recovered as failed:
the one stale-lock rule); then the path's ``act`` with a :class:`UnitRecorder`; then ``end`` with the
outcome.  The project's :class:`~.actions.Workflow` and the ``mailmigrate ns7`` command (``ns7.py``) both
use it, so the NethServer path has no states of its own any more.
"""

from __future__ import annotations

import logging

from ..errors import MailmigrateError
from ..paths.base import MigrationPath, Outcome
from .outcome import ActionOutcome, incomplete
from .states import MIGRATED, SKIPPED, allowed_actions
from .store import WorkflowStore

log = logging.getLogger("mailmigrate.workflow")


class UnitRecorder:
    """A path's narrow view of one unit (:class:`mailmigrate.paths.base.Recorder`): its log lines, its
    metadata (set key by key, in a transaction), its live progress, the other units read-only, and the
    caller's live display of a copy (``listener``, an engine Progress or None)."""

    def __init__(self, wf: WorkflowStore, unit: str, listener=None, others: "StoreUnits | None" = None):
        self._wf, self.unit, self.listener = wf, unit, listener
        self.others = others or StoreUnits(wf)

    def log(self, level: str, message: str) -> None:
        self._wf.log(self.unit, level, message)

    def meta(self) -> dict:
        u = self._wf.get(self.unit)
        return dict(u.meta) if u else {}

    def update_meta(self, changes: dict) -> dict:
        return self._wf.update_meta(self.unit, changes)

    def progress(self, **numbers) -> None:
        self._wf.set_progress(self.unit, **numbers)


class StoreUnits:
    """The project's units as a path may see them (:class:`mailmigrate.paths.base.UnitsView`)."""

    def __init__(self, wf: WorkflowStore):
        self._wf = wf

    def state(self, unit: str) -> str | None:
        u = self._wf.get(unit)
        return u.state if u else None

    def settled(self, unit: str) -> bool:
        return self.state(unit) in (MIGRATED, SKIPPED)


class Driver:
    def __init__(self, wf: WorkflowStore, path: MigrationPath, actor: str, view: type[StoreUnits] = StoreUnits):
        """``view``: how the path sees the other units (the ``ns7`` command names their states in the
        seed's words)."""
        self.wf, self.path, self.actor = wf, path, actor
        self.view = view(wf)

    def init(self) -> list[str]:
        """Register the path's units; a unit registered before keeps its state and gets the metadata the path
        says an init refreshes."""
        added = []
        for info in self.path.units():
            if self.wf.add_unit(info.name, info.kind, info.meta):
                added.append(info.name)
            elif info.refresh:
                self.wf.update_meta(info.name, {k: info.meta[k] for k in info.refresh if k in info.meta})
        return added

    def refusal(self, unit: str, action: str) -> str | None:
        return self.path.refusal(unit, action, self.view)

    def allowed(self, unit: str, state: str, bound: bool) -> list[str]:
        """The actions ``unit`` allows now: the state machine's, less those the path refuses."""
        return [a for a in allowed_actions(state, bound=bound) if self.refusal(unit, a) is None]

    def act(self, unit: str, action: str, listener=None) -> tuple[ActionOutcome, object]:
        """``action`` on ``unit`` here and now: the outcome, and the path's own result (or None)."""
        refusal = self.refusal(unit, action)
        if refusal:
            self.wf.log(unit, "WARNING", f"{action} refused: {refusal}")
            u = self.wf.get(unit)
            return ActionOutcome(unit, action, False, u.state if u else "?", refusal), None
        t = self.wf.begin(unit, action, self.actor)  # IllegalTransition: the caller says it
        self.wf.log(unit, "INFO", f"{action} by {self.actor}")
        try:
            out = self.path.act(unit, action, UnitRecorder(self.wf, unit, listener, self.view))
        except MailmigrateError as e:
            out = Outcome(False, str(e))
        except Exception as e:  # an unexpected bug must not leave the unit busy forever
            log.exception("unit %s: %s crashed", unit, action)
            out = Outcome(False, f"internal error: {e!r}")
        return self.end(unit, t, out.ok, out.message, out.bound), out.result

    def end(self, unit: str, t, ok: bool, message: str, bound: bool | None) -> ActionOutcome:
        state = self.wf.end(unit, t, self.actor, ok=ok, detail=message, bound=bound)
        self.wf.log(unit, "INFO" if ok else "ERROR", f"{t.action}: {message}")
        return ActionOutcome(unit, t.action, ok, state, message, incomplete(self.wf, unit, t.action, ok))
