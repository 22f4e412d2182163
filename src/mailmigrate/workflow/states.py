"""The life of one migration unit (an account, or an application in the NethServer 7 -> 8 sense).

Why a state machine and not a flag or two: the seeds' migrations run for days with many people pressing
buttons; "finish" after "abort", or "sync" while a sync is running, must be refused with a sentence that
says why, and the history must show who did what when.

    not_started --start--> syncing --ok--> migrating --sync--> syncing --ok--> migrating
    migrating --finish--> finishing --verified--> migrated
    migrating|failed --abort--> aborting --ok--> not_started          (removes only what mailmigrate made)
    not_started|migrating|failed --skip--> skipped --start--> syncing
    syncing|finishing|aborting --error--> failed --sync|start|finish|abort|skip--> …

``syncing``, ``finishing`` and ``aborting`` are *busy* states: an action holds the unit and no other action
is accepted until it ends.  A busy state left behind by a killed process is recognised by its stale lock
(the workflow store records the owner's pid and host) and may then be taken over.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..paths.base import ACTIONS as PATH_ACTIONS

NOT_STARTED = "not_started"
SYNCING = "syncing"
MIGRATING = "migrating"
FINISHING = "finishing"
ABORTING = "aborting"
MIGRATED = "migrated"
SKIPPED = "skipped"
FAILED = "failed"

STATES = (NOT_STARTED, SYNCING, MIGRATING, FINISHING, ABORTING, MIGRATED, SKIPPED, FAILED)
BUSY = (SYNCING, FINISHING, ABORTING)
ACTIONS = PATH_ACTIONS  # the actions every path offers (paths/base.py)

# action -> (states it may start from, the busy state while it runs, the state after success)
_RULES: dict[str, tuple[tuple[str, ...], str | None, str]] = {
    "start": ((NOT_STARTED, SKIPPED, FAILED), SYNCING, MIGRATING),
    "sync": ((MIGRATING, FAILED), SYNCING, MIGRATING),
    "finish": ((MIGRATING, FAILED), FINISHING, MIGRATED),
    "abort": ((MIGRATING, FAILED, SKIPPED), ABORTING, NOT_STARTED),
    "skip": ((NOT_STARTED, MIGRATING, FAILED), None, SKIPPED),
}

_WHY = {
    NOT_STARTED: "it has not been started yet (use start)",
    SYNCING: "a sync is running on it right now",
    FINISHING: "it is being finished right now",
    ABORTING: "it is being aborted right now",
    MIGRATING: "it is already started (use sync or finish)",
    MIGRATED: "it is already migrated; the migration of this unit is over",
    SKIPPED: "it was skipped (start it to include it again)",
    FAILED: "its last action failed",
}


class IllegalTransition(Exception):
    """Refused action, with a sentence fit for an administrator."""


class UnitBusy(IllegalTransition):
    """Refused because another action holds the unit right now (its owner is alive)."""


def starts_from(action: str) -> tuple[str, ...]:
    """The states ``action`` may start from (some of them only with or without anything on the target)."""
    return _RULES[action][0] if action in _RULES else ()


@dataclass(frozen=True)
class Transition:
    action: str
    before: str
    busy: str | None
    after: str


def plan(action: str, state: str, *, bound: bool = True) -> Transition:
    """What ``action`` does from ``state``, or IllegalTransition saying why not.

    ``bound``: whether the unit has anything on the target (a failed first start has not); ``sync`` and
    ``finish`` from FAILED need it, ``start`` from FAILED needs it not.
    """
    if action not in _RULES:
        raise IllegalTransition(f"unknown action {action!r}; actions are {', '.join(ACTIONS)}")
    allowed, busy, after = _RULES[action]
    if state in BUSY:
        raise UnitBusy(f"cannot {action}: {_WHY.get(state, state)}")
    if state not in allowed:
        raise IllegalTransition(f"cannot {action}: {_WHY.get(state, state)}")
    if state == FAILED:
        if action == "start" and bound:
            raise IllegalTransition("cannot start: it was started before; use sync to retry, or abort")
        if action in ("sync", "finish") and not bound:
            raise IllegalTransition(f"cannot {action}: its first start failed; use start to retry")
    if action == "abort" and state == SKIPPED and not bound:
        raise IllegalTransition("cannot abort: nothing was migrated for it")
    return Transition(action, state, busy, after)


def allowed_actions(state: str, *, bound: bool = True) -> list[str]:
    out = []
    for a in ACTIONS:
        try:
            plan(a, state, bound=bound)
        except IllegalTransition:
            continue
        out.append(a)
    return out
