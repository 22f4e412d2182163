"""Following a fleet run from the command that enqueued it: its counts, through faults of the fleet's own
services, and putting back the jobs the fleet lost.

The job table in the shared state is the truth about each account; the broker is only how jobs travel.  So
the follower trusts the rows and checks the broker against them:

* a row **running** (or **waiting** for its account's lock) whose worker has not said anything for
  ``stale_after`` seconds (workers beat every few seconds, tasks.Heartbeat) lost its worker — killed with
  its machine, frozen, cut off — or its job: the job is sent again.  A second delivery is harmless: it waits
  for the account's lock while a live holder still has it, and does nothing once the account is finished;
* a row **queued** whose job the Redis broker no longer holds, at two looks in a row (a worker taking a job
  is between the queue and the unacknowledged list for an instant), was lost with the broker's memory (a
  restart without persistence): the job is sent again.  RabbitMQ's durable queue cannot be looked into and
  does not lose jobs; there only the first rule applies.

The state database going away (a restart, a failover) is waited for: the follower says so once, reconnects
with backoff, and says when it is back; the run goes on on the workers meanwhile, so nothing is lost by
waiting.  The broker going away only delays a resend to the next look.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from ..sync.state_pg import PgStateDB, redact_url
from . import jobs
from .broker import held_ids, publish
from .faults import infrastructure_error

log = logging.getLogger("mailmigrate.fleet")

#: seconds without a word from a running job's worker before its job is sent again
STALE_AFTER = 120.0


def stuck(row: dict, run_id: str, held: set[str] | None, stale_after: float) -> str | None:
    """Why an unfinished row's job looks lost: "silent" (running or waiting, no word from its worker for
    ``stale_after`` seconds), "missing" (queued, and the broker's ``held`` ids lack its job), or None."""
    if row["status"] in ("running", "waiting") and row["silent"] > stale_after:
        return "silent"
    if row["status"] == "queued" and held is not None and jobs.task_id(run_id, row["account"]) not in held:
        return "missing"
    return None


class Follower:
    """One run's rows, read through a connection that survives the state database's restarts."""

    def __init__(self, state_url: str, broker: str, run_id: str, *, state: PgStateDB | None = None,
                 stale_after: float = STALE_AFTER, every: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.state_url, self.broker, self.run_id = state_url, broker, run_id
        self.state = state
        self.stale_after = stale_after
        self.every = every if every is not None else max(1.0, min(15.0, stale_after / 4))
        self.clock = clock
        self._next_check = clock() + self.every
        self._missing: dict[str, float] = {}  # queued accounts not on the broker at the last look: since when
        self._down_since: float | None = None
        self._retry_at = 0.0
        self._backoff = 1.0
        self.requeued: list[tuple[str, str]] = []  # (account, why), for the caller's report

    # --- the database, through its faults -------------------------------------------------------
    def _db(self) -> PgStateDB | None:
        if self.state is not None:
            return self.state
        now = self.clock()
        if now < self._retry_at:
            return None
        try:
            self.state = PgStateDB.open(self.state_url)
        except Exception as e:
            if not infrastructure_error(e):
                raise
            self._down(e)
            return None
        if self._down_since is not None:
            log.warning("fleet: the state database %s is reachable again (after %.0f s); following the run",
                        redact_url(self.state_url), now - self._down_since)
            self._down_since, self._backoff = None, 1.0
            # the workers beat again within seconds; until then every row looks silent since the outage
            self._next_check = now + max(self.every, self.stale_after / 2)
        return self.state

    def _down(self, e: BaseException) -> None:
        now = self.clock()
        if self._down_since is None:
            self._down_since = now
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("fleet: the state database %s cannot be reached (%s); the workers go on, waiting for it",
                        redact_url(self.state_url), first[:300])
        if self.state is not None:
            try:
                self.state.close()
            except Exception:  # it is being given up
                pass
            self.state = None
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, 15.0)

    def read(self, what: Callable[[PgStateDB], object]):
        """``what(state)``, or None while the database cannot be reached."""
        db = self._db()
        if db is None:
            return None
        try:
            return what(db)
        except Exception as e:
            if not infrastructure_error(e):
                raise
            self._down(e)
            return None

    @property
    def database_down(self) -> bool:
        return self._down_since is not None

    def summary(self) -> dict | None:
        s = self.read(lambda db: jobs.summary(db, self.run_id))
        if s is not None and self.clock() >= self._next_check:
            self._next_check = self.clock() + self.every
            self.reconcile()
        return s

    def rows(self) -> list[dict] | None:
        return self.read(lambda db: jobs.rows(db, self.run_id))

    def close(self) -> None:
        if self.state is not None:
            try:
                self.state.close()
            except Exception:  # pragma: no cover - closing a dead connection
                pass
            self.state = None

    # --- putting lost jobs back ----------------------------------------------------------------
    def reconcile(self) -> None:
        pending = self.read(lambda db: jobs.unfinished(db, self.run_id))
        if not pending:
            self._missing.clear()
            return
        resend: list[tuple[dict, str]] = []
        for row in pending:
            if stuck(row, self.run_id, None, self.stale_after) == "silent":
                resend.append((row, f"no word from its worker ({row['worker'] or 'none'}) for {row['silent']:.0f} s"
                                    f" (killed, frozen or cut off)"))
        queued = [r for r in pending if r["status"] == "queued"]
        if queued:
            try:
                held = held_ids(self.broker)
            except Exception as e:  # the broker is away: look again next time
                log.warning("fleet: cannot look into the broker %s (%s); will look again",
                            redact_url(self.broker), str(e)[:300])
                held = None
            if held is not None:
                now = self.clock()
                seen = set()
                for row in queued:
                    if stuck(row, self.run_id, held, self.stale_after) != "missing":
                        continue
                    seen.add(row["account"])
                    if row["account"] in self._missing:
                        resend.append((row, "its queued job is no longer on the broker (restarted without its "
                                            "data?)"))
                    else:
                        self._missing[row["account"]] = now
                self._missing = {a: t for a, t in self._missing.items() if a in seen}
        if resend:
            self._resend(resend)

    def _resend(self, rows: list[tuple[dict, str]]) -> None:
        desc = self.read(lambda db: jobs.description(db, self.run_id))
        if desc is None:
            if not self.database_down:
                log.warning("fleet: run %s has no stored description (enqueued by an older mailmigrate); its lost "
                            "jobs cannot be sent again from here", self.run_id)
            return
        for row, why in rows:
            if not row.get("job"):
                continue
            try:
                publish(self.broker, desc, [(row["account"], row["job"])])
            except Exception as e:
                log.warning("fleet: account %s: %s, but the broker %s did not take it again (%s); will try again",
                            row["account"], why, redact_url(self.broker), str(e)[:300])
                continue
            if self.read(lambda db: jobs.requeued(db, self.run_id, row["account"], row["status"])):
                self._missing.pop(row["account"], None)
                self.requeued.append((row["account"], why))
                log.warning("fleet: account %s: %s; its job was sent again", row["account"], why)
