"""What one action on one unit came to, as the command line, the dashboard and the fleet driver report it.

Kept apart from ``actions.py`` so that the fleet driver (``fleet.py``), which ``actions.py`` calls, needs
nothing from it: the two were an import cycle hidden in function bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

from .store import WorkflowStore


@dataclass
class ActionOutcome:
    unit: str
    action: str
    ok: bool
    state: str
    message: str
    #: The action did its work but not all of it: messages or folders of a start or sync failed (named in
    #: the unit's log, result and the report).  The unit stays migrating, since a sync retries them and
    #: finish refuses what has no verified copy; a command still says so and exits non-zero, so a script
    #: driving a cutover notices before finish does.
    incomplete: bool = False


def incomplete(wf: WorkflowStore, unit: str, action: str, ok: bool) -> bool:
    """Whether a successful start or sync left messages or folders behind (the unit's last result)."""
    if not ok or action not in ("start", "sync"):
        return False
    u = wf.get(unit)
    meta = u.meta if u else {}
    last = meta.get("last_result") or {}
    groupware_failed = any(g.get("failed") or g.get("error") for g in meta.get("groupware") or [])
    return bool((last.get("counters") or {}).get("failed")) or groupware_failed
