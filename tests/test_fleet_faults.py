"""The fleet survives its own infrastructure (issue 26): each fault injected once, a third of the way into a
run of 21 Maildir accounts on three workers — a PostgreSQL fast restart, a clean Redis restart, Redis killed
with and without its append-only file, a worker killed, a worker frozen longer than every timeout.

Each test starts its own PostgreSQL and Redis (tests/servers/own_services.py): restarting the machine's shared
ones would break the tests running beside it.  What a user must see every time: `sync` ends by itself with its
summary and exit status 0, every account exact file by file (nothing lost, nothing twice), and a rerun finds
nothing to copy.  The connection limit and the rate limit are on, so the workers talk to Redis throughout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import psycopg
import pytest

from servers.fleet import MM, make_accounts, process_group, read_maildir, start_worker, stop_worker, wait_ready
from servers.own_services import OwnPostgres, OwnRedis

ACCOUNTS, MESSAGES, FOLDERS = 21, 15, 3
#: the workers beat every second; the command sends a silent job again after 6 s
WORKER_EXTRA = ["--visibility-timeout", "20", "--slot-ttl", "5", "--heartbeat", "1"]


@pytest.fixture
def own_pg():
    pg = OwnPostgres()
    yield pg
    pg.stop()


def _done(conn) -> int:
    try:
        return conn.execute("SELECT count(*) FROM fleet_jobs WHERE status='done'").fetchone()[0]
    except psycopg.errors.UndefinedTable:
        return 0


def _running_on(conn, worker: subprocess.Popen) -> list[str]:
    rows = conn.execute("SELECT account, worker FROM fleet_jobs WHERE status='running'").fetchall()
    return [a for a, w in rows if w and process_group(int(w.rsplit(" ", 1)[1])) == worker.pid]


def _when(pred, run: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if run.poll() is not None:
            raise AssertionError(f"sync ended (exit {run.returncode}) before {what}: {run.stderr.read()[-3000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"not reached in {timeout:.0f} s: {what}")
        time.sleep(0.05)


def _run_with_fault(tmp_path, pg: OwnPostgres, rds: OwnRedis, fault) -> tuple[dict, str]:
    accounts = make_accounts(tmp_path, ACCOUNTS, messages=MESSAGES, size=1500)
    state = pg.url
    logs = [tmp_path / f"w{i}.log" for i in range(3)]
    workers = [start_worker(rds.url, state, concurrency=2, name=f"w{i}", log=logs[i], extra=WORKER_EXTRA)
               for i in range(3)]
    sync = None
    try:
        for w, log in zip(workers, logs):
            wait_ready(w, log)
        sync = subprocess.Popen(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst",
                                      "--accounts", accounts, "--executor", "celery", "--broker", rds.url,
                                      "--state", state, "--max-connections", "4", "--max-rate", "90",
                                      "--stale-after", "6", "--fleet-timeout", "400", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn = psycopg.connect(state, autocommit=True)
        _when(lambda: _done(conn) >= ACCOUNTS // 3, sync, what=f"{ACCOUNTS // 3} accounts done")
        assert _done(conn) < ACCOUNTS, "the whole run ended before the fault: nothing was tested"
        fault(workers=workers, conn=conn, sync=sync)
        conn.close()
        out, err = sync.communicate(timeout=420)
        (tmp_path / "sync.err").write_text(err)  # for a look after a failure
    finally:
        if sync and sync.poll() is None:
            sync.kill()
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGCONT)
            stop_worker(w)
    assert sync.returncode == 0, err[-4000:] + "\n--- w0:\n" + logs[0].read_text(errors="replace")[-3000:]
    summary = json.loads(out)
    assert summary["accounts_total"] == ACCOUNTS and summary["accounts_failed"] == 0, err[-3000:]
    for u in sorted(p.name for p in tmp_path.glob("user*")):
        src, dst = read_maildir(tmp_path / u / "src"), read_maildir(tmp_path / u / "dst")
        assert dst == src, u  # every message once, with its flags; the twins twice
        assert sum(len(v) for v in dst.values()) == FOLDERS * (MESSAGES + 1)
    again = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst", "--accounts",
                                 accounts, "--state", state, "--json"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["copied"] == 0, again.stderr[-2000:]
    return summary, err


def test_postgresql_fast_restart_mid_run(tmp_path, own_pg):
    rds = OwnRedis(aof=True)
    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, lambda **_: own_pg.restart_fast())
    finally:
        rds.stop()
    assert "Traceback" not in err


def test_redis_clean_restart_mid_run(tmp_path, own_pg):
    """SHUTDOWN SAVE, then the same server again: the queue and the taken jobs come back from its dump."""
    rds = OwnRedis(aof=False)

    def restart(**_):
        rds.shutdown_clean()
        rds.start()

    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, restart)
    finally:
        rds.stop()
    assert "Traceback" not in err


def test_redis_killed_with_its_append_only_file(tmp_path, own_pg):
    rds = OwnRedis(aof=True)

    def kill(**_):
        rds.kill()
        rds.start()

    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, kill)
    finally:
        rds.stop()
    assert "Traceback" not in err


def test_redis_killed_without_persistence_loses_the_queue_and_the_command_sends_it_again(tmp_path, own_pg):
    """The worst broker: every queued job gone.  The job table still lists them queued; the command sees they
    are not on the broker and sends them again, saying so."""
    rds = OwnRedis(aof=False)
    lost = {}

    def kill(conn, **_):
        lost["queued"] = conn.execute("SELECT count(*) FROM fleet_jobs WHERE status='queued'").fetchone()[0]
        rds.kill()
        rds.start()

    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, kill)
    finally:
        rds.stop()
    assert lost["queued"] > 0, "no job was queued when Redis died: the case was not tested"
    assert "its queued job is no longer on the broker" in err and "its job was sent again" in err, err[-3000:]


def test_a_worker_killed_mid_run(tmp_path, own_pg):
    rds = OwnRedis(aof=True)
    killed = {}

    def kill(workers, conn, sync):
        _when(lambda: _running_on(conn, workers[0]), sync, what="worker 0 running an account")
        killed["accounts"] = _running_on(conn, workers[0])
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait(timeout=30)

    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, kill)
    finally:
        rds.stop()
    assert killed["accounts"]


def test_a_worker_frozen_longer_than_every_timeout(tmp_path, own_pg):
    """SIGSTOP for 25 s: beyond the slot lease (5 s), the command's patience with a silent worker (6 s) and
    Redis' visibility timeout (20 s).  Its jobs are sent again and wait for the account lock the frozen worker
    still holds; it wakes up and finishes; nothing is copied twice."""
    rds = OwnRedis(aof=True)
    frozen = {}

    def freeze(workers, conn, sync):
        _when(lambda: _running_on(conn, workers[0]), sync, what="worker 0 running an account")
        frozen["accounts"] = _running_on(conn, workers[0])
        os.killpg(workers[0].pid, signal.SIGSTOP)
        time.sleep(25)
        os.killpg(workers[0].pid, signal.SIGCONT)

    try:
        summary, err = _run_with_fault(tmp_path, own_pg, rds, freeze)
    finally:
        rds.stop()
    assert frozen["accounts"]
    assert "no word from its worker" in err, err[-3000:]


def test_fleet_status_names_stuck_accounts_and_requeue_sends_them_again(tmp_path, own_pg):
    """An operator's view after the fact: a run whose queued jobs the broker lost and whose running account's
    worker went silent.  `fleet status` names both as stuck (exit 1), `fleet requeue` sends their jobs again,
    a worker runs them, and `fleet status` then shows the run complete (exit 0)."""
    rds = OwnRedis(aof=False)
    try:
        accounts = make_accounts(tmp_path, 3, messages=5, size=500)
        base = ["--state", own_pg.url]
        first = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst", "--accounts",
                                     accounts, "--executor", "celery", "--broker", rds.url, *base,
                                     "--fleet-timeout", "1", "--json"], capture_output=True, text=True, timeout=60)
        assert first.returncode == 1, first.stderr[-2000:]  # no worker: nothing done, jobs left queued
        assert "(3 queued)" in first.stderr
        import redis

        redis.Redis.from_url(rds.url).flushall()  # the broker forgets every job
        with psycopg.connect(own_pg.url, autocommit=True) as conn:  # and one account's worker fell silent
            conn.execute("UPDATE fleet_jobs SET status='running', worker='gone@host pid 1', "
                         "updated=now() - interval '10 minutes' WHERE account LIKE '%user001%'")
        st = subprocess.run(MM + ["fleet", "status", *base, "--broker", rds.url], capture_output=True, text=True,
                            timeout=60)
        assert st.returncode == 1, st.stdout + st.stderr
        lines = st.stdout.splitlines()
        assert "0 done, 0 failed, 1 running, 0 waiting for their lock, 2 queued" in lines[0]
        stuck = [x for x in lines if "STUCK" in x]
        assert len(stuck) == 3
        assert any("user001" in x and "no word from its worker for 600 s" in x for x in stuck), stuck
        assert sum("its job is not on the broker" in x for x in stuck) == 2, stuck
        rq = subprocess.run(MM + ["fleet", "requeue", *base, "--broker", rds.url], capture_output=True, text=True,
                            timeout=60)
        assert rq.returncode == 0 and rq.stdout.count(": sent again") == 3, rq.stdout + rq.stderr
        w = start_worker(rds.url, own_pg.url, concurrency=2, name="late", log=tmp_path / "late.log",
                         extra=WORKER_EXTRA)
        try:
            wait_ready(w, tmp_path / "late.log")
            with psycopg.connect(own_pg.url, autocommit=True) as conn:
                end = time.monotonic() + 60
                while conn.execute("SELECT count(*) FROM fleet_jobs WHERE status='done'").fetchone()[0] < 3:
                    assert time.monotonic() < end, (tmp_path / "late.log").read_text()[-2000:]
                    time.sleep(0.1)
        finally:
            stop_worker(w)
        st = subprocess.run(MM + ["fleet", "status", *base, "--json"], capture_output=True, text=True, timeout=60)
        assert st.returncode == 0, st.stdout + st.stderr
        assert json.loads(st.stdout)["counts"]["done"] == 3
        for u in ("user000@example.org", "user001@example.org", "user002@example.org"):
            assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src")
    finally:
        rds.stop()


def test_a_project_on_the_fleet_rides_out_a_postgresql_restart(tmp_path, own_pg):
    """`project start` on the fleet follows its jobs through the same faults: the state database restarted
    while it waits, every unit ends migrating with its mail exact."""
    rds = OwnRedis(aof=True)
    try:
        make_accounts(tmp_path, 12, messages=MESSAGES, size=1500)
        p = tmp_path / "p.toml"
        p.write_text(f"""[project]
name = "p"
state = "{own_pg.url}"
[source]
url = "maildir:%u/src"
[target]
url = "maildir:%u/dst"
[accounts]
file = "accounts.csv"
[options]
max_rate = 40
[fleet]
executor = "celery"
broker = "{rds.url}"
stale_after = 6
fleet_timeout = 300
""")
        run = lambda *a, **kw: subprocess.run(MM + list(a), capture_output=True, text=True, cwd=tmp_path, **kw)
        assert run("project", "init", str(p), timeout=60).returncode == 0
        logs = [tmp_path / f"w{i}.log" for i in range(2)]
        workers = [start_worker(rds.url, own_pg.url, concurrency=2, name=f"p{i}", log=logs[i], extra=WORKER_EXTRA)
                   for i in range(2)]
        try:
            for w, log in zip(workers, logs):
                wait_ready(w, log)
            start = subprocess.Popen(MM + ["project", "start", str(p), "--json"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            conn = psycopg.connect(own_pg.url, autocommit=True)
            _when(lambda: _done(conn) >= 4, start, what="4 accounts done")
            assert _done(conn) < 12, "the run ended before the fault: nothing was tested"
            conn.close()
            own_pg.restart_fast()
            out, err = start.communicate(timeout=400)
        finally:
            for w in workers:
                stop_worker(w)
        assert start.returncode == 0, err[-3000:]
        assert all(o["ok"] for o in json.loads(out)), out[-2000:]
        for u in sorted(x.name for x in tmp_path.glob("user*")):
            assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src"), u
        st = json.loads(run("project", "status", str(p), "--json", timeout=60).stdout)
        assert {u["state"] for u in st} == {"migrating"}, st
    finally:
        rds.stop()
