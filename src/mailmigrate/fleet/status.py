"""`mailmigrate fleet status` and `mailmigrate fleet requeue`: a run's accounts by state, the stuck ones named,
and lost jobs sent again — from any machine that reaches the state database and the broker.

"Stuck" uses the follower's rules (fleet/follow.py): a running or waiting account whose worker has been silent
longer than ``stale_after``, and, on a Redis broker, a queued account whose job the broker no longer holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError
from . import jobs
from .broker import held_ids, publish
from .follow import stuck


@dataclass
class RunStatus:
    run_id: str
    counts: dict
    accounts: list[dict] = field(default_factory=list)  # unfinished and failed rows, each with "stuck" (why) or None
    broker_checked: bool = False

    @property
    def stuck(self) -> list[dict]:
        return [a for a in self.accounts if a.get("stuck")]


def pick_run(state, run_id: str | None) -> str:
    if run_id:
        return run_id
    found = jobs.runs(state, 1)
    if not found:
        raise ConfigError("the state database holds no fleet run")
    return found[0]["run_id"]


def run_status(state, run_id: str, broker: str | None, stale_after: float) -> RunStatus:
    counts = jobs.summary(state, run_id)
    if not counts["total"]:
        raise ConfigError(f"run {run_id} is not in this state database")
    pending = jobs.unfinished(state, run_id)
    held = held_ids(broker) if broker and any(r["status"] == "queued" for r in pending) else None
    out = RunStatus(run_id, counts, broker_checked=held is not None)
    for row in pending:
        why = {"silent": f"no word from its worker for {row['silent']:.0f} s",
               "missing": "queued, but its job is not on the broker", None: None}[stuck(row, run_id, held, stale_after)]
        out.accounts.append({**{k: row[k] for k in ("account", "status", "silent", "attempts", "worker")},
                             "stuck": why})
    for row in jobs.rows(state, run_id):
        if row["status"] == "failed":
            out.accounts.append({"account": row["account"], "status": "failed", "silent": None,
                                 "attempts": row["attempts"], "worker": row["worker"], "stuck": None,
                                 "error": row["result"].error if row["result"] else None})
    return out


def requeue(state, run_id: str, broker: str, accounts: list[str], stale_after: float) -> list[tuple[str, str]]:
    """Sends the named unfinished accounts' jobs again (all stuck ones when none is named); returns
    (account, what happened) for each.  A finished account is refused: a new `sync` run is what copies
    what changed since."""
    desc = jobs.description(state, run_id)
    if desc is None:
        raise ConfigError(f"run {run_id} has no stored description (enqueued by an older mailmigrate, or not "
                          f"in this database); run the same sync again instead")
    pending = {r["account"]: r for r in jobs.unfinished(state, run_id)}
    if accounts:
        unknown = [a for a in accounts if a not in pending]
        if unknown:
            raise ConfigError(f"not unfinished in run {run_id}: {', '.join(unknown)} (see `mailmigrate fleet status`)")
        chosen = [pending[a] for a in accounts]
    else:
        chosen = [pending[a["account"]] for a in run_status(state, run_id, broker, stale_after).stuck]
    out = []
    for row in chosen:
        if not row.get("job"):
            out.append((row["account"], "no job arguments stored; not sent"))
            continue
        publish(broker, desc, [(row["account"], row["job"])])
        moved = not jobs.requeued(state, run_id, row["account"], row["status"])
        out.append((row["account"], "sent again" + (" (it moved meanwhile: a worker has it)" if moved else "")))
    return out
