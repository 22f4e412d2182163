"""The fleet's job table (``fleet_jobs`` in the PostgreSQL state): one row per run and account.

The command that enqueued a run creates the rows (queued); the worker that runs an account marks it
running, reports copied messages as it goes, and stores the account's result (done or failed).  The
enqueuing command reads the table to draw the fleet's progress and to print the summary.
"""

from __future__ import annotations

import hashlib
import json

from ..model import AccountResult, Counters, Problem

FINAL = ("done", "failed")


def result_dict(r: AccountResult) -> dict:
    return {"account": r.account, **r.counters.as_dict(), "error": r.error,
            "problems": [p.__dict__ for p in r.problems]}


def result_from(d: dict) -> AccountResult:
    c = Counters(**{k: d.get(k, 0) for k in Counters.__dataclass_fields__})
    return AccountResult(d["account"], c, [Problem(**p) for p in d.get("problems", [])], d.get("error"))


def task_id(run_id: str, account: str) -> str:
    """The broker message id of an account's job: derived, not stored, so that the command following a run
    can look for it on the broker and a requeue reuses it."""
    return f"mm-{run_id}-{hashlib.sha256(account.encode()).hexdigest()[:20]}"


def create_run(state, run_id: str, accounts: list[str], description: dict | None = None,
               jobs_args: list[dict] | None = None, broker: str | None = None) -> None:
    """The run's rows, queued; with its description and each account's job arguments, what a requeue needs."""
    with state.lock, state.connection.transaction(), state.connection.cursor() as cur:
        if description is not None:
            cur.execute("INSERT INTO fleet_runs(run_id, description, broker) VALUES (%s, %s, %s)",
                        (run_id, json.dumps(description), broker))
        args = jobs_args or [None] * len(accounts)
        cur.executemany("INSERT INTO fleet_jobs(run_id, account, status, job) VALUES (%s, %s, 'queued', %s)",
                        [(run_id, a, json.dumps(j) if j is not None else None) for a, j in zip(accounts, args)])


def heartbeat(state, run_id: str, account: str) -> None:
    """The worker running the account is alive (see tasks.Heartbeat)."""
    with state.lock:
        state.connection.execute("UPDATE fleet_jobs SET updated=now() WHERE run_id=%s AND account=%s "
                                 "AND status='running'", (run_id, account))


def description(state, run_id: str) -> dict | None:
    with state.lock:
        row = state.connection.execute("SELECT description FROM fleet_runs WHERE run_id=%s", (run_id,)).fetchone()
    return row[0] if row else None


def unfinished(state, run_id: str) -> list[dict]:
    """The run's accounts not done or failed: status, seconds since their worker or the queue last said
    anything (the database's clock), attempts, worker, job arguments."""
    with state.lock:
        found = state.connection.execute(
            "SELECT account, status, extract(epoch FROM now() - updated), attempts, worker, job FROM fleet_jobs "
            "WHERE run_id=%s AND status NOT IN ('done', 'failed') ORDER BY account", (run_id,)).fetchall()
    return [{"account": a, "status": st, "silent": float(age), "attempts": n, "worker": w, "job": j}
            for a, st, age, n, w, j in found]


def requeued(state, run_id: str, account: str, status_was: str) -> bool:
    """Marks an unfinished row queued again (its job was just sent anew); False when it moved meanwhile
    (a worker took it or finished it), and then nothing is changed."""
    with state.lock:
        cur = state.connection.execute(
            "UPDATE fleet_jobs SET status='queued', worker=NULL, updated=now() WHERE run_id=%s AND account=%s "
            "AND status=%s", (run_id, account, status_was))
        return cur.rowcount == 1


def runs(state, limit: int = 20) -> list[dict]:
    """The newest runs with their counts by status."""
    with state.lock:
        found = state.connection.execute(
            "SELECT j.run_id, min(r.created), max(j.updated), "
            "count(*) FILTER (WHERE j.status='queued'), count(*) FILTER (WHERE j.status='waiting'), "
            "count(*) FILTER (WHERE j.status='running'), count(*) FILTER (WHERE j.status='done'), "
            "count(*) FILTER (WHERE j.status='failed'), count(*) "
            "FROM fleet_jobs j LEFT JOIN fleet_runs r ON r.run_id = j.run_id "
            "GROUP BY j.run_id ORDER BY max(j.updated) DESC LIMIT %s", (limit,)).fetchall()
    keys = ("run_id", "created", "updated", "queued", "waiting", "running", "done", "failed", "total")
    return [dict(zip(keys, r)) for r in found]


def start(state, run_id: str, account: str, worker: str) -> str:
    """'started'; 'finished' when the job already has its result (a second delivery of a finished job:
    nothing to do); 'unknown' when the run is not in this database (worker and command disagree on --state)."""
    with state.lock:
        cur = state.connection.execute(
            "UPDATE fleet_jobs SET status='running', worker=%s, attempts=attempts+1, copied=0, bytes_copied=0,"
            " updated=now() WHERE run_id=%s AND account=%s AND status NOT IN ('done', 'failed')",
            (worker, run_id, account))
        if cur.rowcount == 1:
            return "started"
        row = state.connection.execute("SELECT status FROM fleet_jobs WHERE run_id=%s AND account=%s",
                                       (run_id, account)).fetchone()
        return "finished" if row else "unknown"


def set_status(state, run_id: str, account: str, status: str) -> None:
    with state.lock:
        state.connection.execute("UPDATE fleet_jobs SET status=%s, updated=now() WHERE run_id=%s AND account=%s "
                                 "AND status NOT IN ('done', 'failed')", (status, run_id, account))


def progress(state, run_id: str, account: str, copied: int, nbytes: int, to_copy: int = 0) -> None:
    with state.lock:
        state.connection.execute("UPDATE fleet_jobs SET copied=%s, bytes_copied=%s, to_copy=%s, updated=now() "
                                 "WHERE run_id=%s AND account=%s", (copied, nbytes, to_copy, run_id, account))


def abandon(state, run_id: str, reason: str) -> None:
    """The run could not be enqueued: its rows say so instead of waiting forever."""
    error = json.dumps({"error": reason})
    with state.lock:
        state.connection.execute(
            "UPDATE fleet_jobs SET status='failed', result=jsonb_build_object('account', account) || %s::jsonb,"
            " updated=now() WHERE run_id=%s AND status='queued'", (error, run_id))


def finish(state, run_id: str, account: str, result: AccountResult) -> None:
    status = "failed" if result.error else "done"
    with state.lock:
        state.connection.execute(
            "UPDATE fleet_jobs SET status=%s, result=%s, copied=%s, bytes_copied=%s, updated=now() "
            "WHERE run_id=%s AND account=%s",
            (status, json.dumps(result_dict(result)), result.counters.copied, result.counters.bytes_copied,
             run_id, account))


def summary(state, run_id: str) -> dict:
    """Counts by status and messages/bytes copied so far."""
    with state.lock:
        rows = state.connection.execute(
            "SELECT status, count(*), coalesce(sum(copied), 0), coalesce(sum(bytes_copied), 0) FROM fleet_jobs "
            "WHERE run_id=%s GROUP BY status", (run_id,)).fetchall()
    out = {"queued": 0, "waiting": 0, "running": 0, "done": 0, "failed": 0, "copied": 0, "bytes_copied": 0}
    for status, n, copied, nbytes in rows:
        out[status] = out.get(status, 0) + n
        out["copied"] += int(copied)
        out["bytes_copied"] += int(nbytes)
    out["total"] = sum(out[s] for s in ("queued", "waiting", "running", "done", "failed"))
    return out


def results(state, run_id: str) -> list[AccountResult]:
    with state.lock:
        rows = state.connection.execute(
            "SELECT account, result FROM fleet_jobs WHERE run_id=%s ORDER BY account", (run_id,)).fetchall()
    return [result_from(r) if r else AccountResult(a, error="no result recorded") for a, r in rows]


def rows(state, run_id: str) -> list[dict]:
    """Every account of a run as it stands: status, worker, attempts, numbers, and the result once final."""
    with state.lock:
        found = state.connection.execute(
            "SELECT account, status, worker, attempts, copied, bytes_copied, to_copy, result FROM fleet_jobs "
            "WHERE run_id=%s ORDER BY account", (run_id,)).fetchall()
    keys = ("account", "status", "worker", "attempts", "copied", "bytes_copied", "to_copy")
    return [{**dict(zip(keys, r[:7])), "result": result_from(r[7]) if r[7] else None} for r in found]
