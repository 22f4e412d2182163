"""`mailmigrate sync … --executor celery`: one job per account on the broker, progress from the state.

Nothing secret goes into a job: the description holds store URLs (never with a password), user names and
options.  The command waits for every account to reach done or failed in the shared state database and
returns the same RunResult as the local executor, so the summary and JSON are the same.  Since only the
job table shows whether any worker is there, it warns when queued jobs sit untaken (fleet/watch.py), and
an optional timeout ends the wait with the unfinished accounts failed: their jobs stay on the broker.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from typing import Callable

from ..errors import ConfigError, FleetError
from ..model import AccountResult
from ..sync.runner import RunResult, SyncRequest, account_key, apply_preset_defaults
from ..sync.state_pg import PgStateDB, is_pg_url, redact_url
from . import jobs
from .broker import publish
from .follow import STALE_AFTER, Follower
from .watch import IDLE_WARNING, IdleWatch, timeout_message, timeout_reason

log = logging.getLogger("mailmigrate.fleet")


def describe_run(req: SyncRequest, run_id: str) -> dict:
    """What every job of the run carries: the request's one serialised form (SyncRequest.to_dict: no
    password, no account, each side's own store options) and the run's id."""
    apply_preset_defaults(req)  # the workers get the provider presets' caps and pace with the job
    return {**req.to_dict(), "run_id": run_id}


def enqueue(state, req: SyncRequest, broker: str) -> tuple[str, list[str]]:
    """One job per account of ``req`` on the broker, rows in the job table first (with what a resend needs);
    returns the run's id and the accounts' state names (in the order of ``req.accounts``).  A broker that
    cannot be reached is a FleetError, and the run's rows are marked failed rather than left waiting."""
    run_id = uuid.uuid4().hex
    names = [account_key(req, a) for a in req.accounts]
    args = [{"source_user": a.source_user, "target_user": a.target_user, **({"rules": a.rules} if a.rules else {})}
            for a in req.accounts]
    desc = describe_run(req, run_id)
    jobs.create_run(state, run_id, names, desc, args, redact_url(broker))
    try:
        publish(broker, desc, list(zip(names, args)))
    except Exception as e:  # kombu/amqp/redis errors: the broker is down or refuses us
        reason = f"the broker {redact_url(broker)} did not take the jobs: {e}"
        jobs.abandon(state, run_id, reason)
        raise FleetError(reason) from None
    return run_id, names


def run_fleet(req: SyncRequest, *, broker: str, state_url: str, poll: float = 0.5,
              on_progress: Callable[[dict], None] | None = None, timeout: float | None = None,
              idle_warning: float | None = None, stale_after: float = STALE_AFTER) -> RunResult:
    """Enqueue ``req`` and wait for its accounts, through restarts of the state database and the broker
    (fleet/follow.py: the rows are the truth; lost jobs are sent again).  With ``timeout`` the wait ends
    after that many seconds: the accounts not finished by then come back failed, saying so, rather than as
    an exception, so the caller still gets the summary of those that did finish and the exit status of a
    partial failure."""
    if not is_pg_url(state_url):
        raise ConfigError("--executor celery needs the shared state on PostgreSQL: --state postgresql://…")
    for option, seconds in (("--fleet-timeout", timeout), ("--idle-warning", idle_warning),
                            ("--stale-after", stale_after)):
        if seconds is not None and not seconds > 0:  # "not >" also refuses nan
            raise ConfigError(f"{option} must be a number of seconds above 0")
    state = PgStateDB.open(state_url)
    try:
        run_id, names = enqueue(state, req, broker)
    except BaseException:
        state.close()
        raise
    follow = Follower(state_url, broker, run_id, state=state, stale_after=stale_after)
    try:
        start = time.monotonic()
        idle = IdleWatch(broker, state_url, IDLE_WARNING if idle_warning is None else idle_warning)
        last = None
        timed_out = False
        while True:
            s = follow.summary()
            if s is not None:
                if on_progress and s != last:
                    on_progress(s)
                last = s
                if s["done"] + s["failed"] >= s["total"]:
                    break
                warning = idle.check(s)
                if warning:
                    log.warning("%s", warning)
            if timeout is not None and time.monotonic() - start >= timeout:
                timed_out = True
                break
            time.sleep(poll)
        rows = None
        while rows is None:  # the summary needs the rows: wait for the database, however long (Ctrl-C ends it)
            rows = follow.rows()
            if rows is None:
                time.sleep(poll)
        if timed_out:
            log.warning("%s", timeout_message(timeout, [r["status"] for r in rows if r["status"] not in jobs.FINAL],
                                              len(rows)))
        by_name = {}
        for row in rows:
            if row["status"] in jobs.FINAL:
                by_name[row["account"]] = row["result"] or AccountResult(row["account"],
                                                                         error="no result recorded")
            else:
                by_name[row["account"]] = AccountResult(row["account"],
                                                        error=timeout_reason(timeout, row["status"]))
        results = [by_name[n] for n in names]
    finally:
        follow.close()
    return RunResult(results, redact_url(state_url), req.sync.dry_run)


def print_progress(s: dict, stream=sys.stderr) -> None:
    stream.write(f"fleet: {s['done']}/{s['total']} accounts done, {s['failed']} failed, {s['running']} running, "
                 f"{s['queued'] + s['waiting']} waiting; {s['copied']} messages copied "
                 f"({s['bytes_copied'] / (1 << 20):.1f} MiB)\n")
    stream.flush()
