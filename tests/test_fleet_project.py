"""Projects on the fleet, and RabbitMQ as the fleet's broker.

A mailbox project whose ``[fleet]`` says celery runs start, sync and finish as per-account jobs on two real
``mailmigrate worker`` processes (Redis broker, PostgreSQL state) between two real Dovecot servers: every
account exact as imaplib sees it, every unit in the state the local path would leave it in, with its log,
history and progress.  Then the same fleet on RabbitMQ, with a worker killed mid-account.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import psycopg
import pytest

from conftest import ImapAccount
from servers import imapcheck
from servers.fleet import (MM, kill_mid_copy, make_accounts, read_maildir, run_watching_stderr, start_worker,
                           stop_worker, wait_ready)
from test_fleet import fleet_env  # noqa: F401  (a fixture: Redis database of its own, PostgreSQL state)
from test_sync_imap import mm, msg, populate, snapshot


def _units(p):
    return {u["unit"]: u for u in json.loads(mm("project", "status", p, "--json").stdout)}


def _imap_pairs(tmp_path, src_srv, dst_srv, prefix: str, n: int, mail) -> tuple[list, "os.PathLike"]:
    """``n`` fresh source/target account pairs on the Dovecot pair, the source filled with ``mail(i)``, and
    the 0600 accounts file (passwords included) a fleet project's workers read them from."""
    tag = f"{os.getpid()}x{uuid.uuid4().hex[:6]}"
    pairs = []
    for i in range(n):
        s = ImapAccount(src_srv, f"{prefix}{tag}s{i}", f"pw-s{i}-{tag}")
        t = ImapAccount(dst_srv, f"{prefix}{tag}t{i}", f"pw-t{i}-{tag}")
        src_srv.add_user(s.user, s.password)
        dst_srv.add_user(t.user, t.password)
        populate(s, mail(i))
        pairs.append((s, t))
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("".join(f"{s.user},{t.user},{s.password},{t.password}\n" for s, t in pairs))
    accounts.chmod(0o600)
    return pairs, accounts


def _fleet_project(path, name: str, state: str, src_srv, dst_srv, extra: str, *, project: str = "") -> None:
    """A project file between the Dovecot pair whose accounts are in accounts.csv beside it; ``project``:
    more lines of its [project] section, ``extra``: more sections."""
    path.write_text(f"""[project]
name = "{name}"
state = "{state}"
{project}[source]
url = "imap://127.0.0.1:{src_srv.port}?tls=none"
[target]
url = "imap://127.0.0.1:{dst_srv.port}?tls=none"
[accounts]
file = "accounts.csv"
{extra}""")


def _runs(state) -> int:
    with psycopg.connect(state, autocommit=True) as c:
        return c.execute("SELECT count(DISTINCT run_id) FROM fleet_jobs").fetchone()[0]


def test_project_start_sync_finish_on_the_fleet(tmp_path, fleet_env, dovecot_pair):  # noqa: F811
    broker, state, _ = fleet_env
    src_srv, dst_srv = dovecot_pair
    pairs, accounts = _imap_pairs(
        tmp_path, src_srv, dst_srv, "pf", 6,
        lambda i: {"INBOX": [(msg(100 * i + k, 300 * k), "\\Seen" if k % 2 else "") for k in range(8)],
                   "Archive": [(msg(100 * i + 50), "\\Flagged")] * 2})
    p = tmp_path / "fleetp.toml"
    _fleet_project(p, "fleetp", state, src_srv, dst_srv, project='workflow = "wf.db"\n', extra=f"""[options]
delete_on_finish = true
[fleet]
executor = "celery"
broker = "{broker}"
max_connections = 3
""")
    mm("project", "init", p)
    units = [f"{s.user}->{t.user}" for s, t in pairs]
    workers = [start_worker(broker, state, concurrency=2, name=f"pw{i}", log=tmp_path / f"pw{i}.log",
                            extra=["--accounts", str(accounts)]) for i in range(2)]
    try:
        # start: the first copy of every account, by the workers.
        r = mm("project", "start", p, "--json")
        out = {o["unit"]: o for o in json.loads(r.stdout)}
        assert all(o["ok"] and o["state"] == "migrating" and o["message"].startswith("copied 10,")
                   for o in out.values()), out
        assert "fleet: 6/6 accounts done, 0 failed" in r.stderr
        for s, t in pairs:
            assert snapshot(t) == snapshot(s), s.user
        st = _units(p)
        assert all(st[u]["state"] == "migrating" and st[u]["progress"]["done"] == 10 == st[u]["progress"]["total"]
                   and st[u]["last_result"]["counters"]["copied"] == 10 for u in units), st
        logs = mm("project", "logs", p, "--unit", units[0]).stdout
        assert "on the fleet" in logs and "queued as job of fleet run" in logs
        assert "ran on pw0@" in logs or "ran on pw1@" in logs

        # abort (here, on the shared state) removes the copies of one account; start brings them back.
        assert json.loads(mm("project", "abort", p, units[5], "--json").stdout)[0]["ok"]
        assert sum(sum(c.values()) for c in snapshot(pairs[5][1]).values()) == 0
        assert _units(p)[units[5]]["state"] == "not_started"
        assert json.loads(mm("project", "start", p, units[5], "--json").stdout)[0]["ok"]
        assert snapshot(pairs[5][1]) == snapshot(pairs[5][0])

        # New mail on one account: an incremental sync on the fleet copies only that.
        c = imapcheck.connect(pairs[0][0].port, pairs[0][0].user, pairs[0][0].password)
        imapcheck.append(c, "INBOX", msg(999), "")
        c.logout()
        out = {o["unit"]: o for o in json.loads(mm("project", "sync", p, "--json").stdout)}
        assert out[units[0]]["message"].startswith("copied 1,")
        assert all(out[u]["ok"] and out[u]["message"].startswith("copied 0,") for u in units[1:]), out

        # A message deleted on the source: finish (final sync with delete, then verification) on the fleet.
        c = imapcheck.connect(pairs[1][0].port, pairs[1][0].user, pairs[1][0].password)
        c.select("INBOX")
        c.store("1", "+FLAGS", "\\Deleted")
        c.expunge()
        c.logout()
        fin = {o["unit"]: o for o in json.loads(mm("project", "finish", p, "--json").stdout)}
        assert all(o["ok"] and o["state"] == "migrated" and o["message"].startswith("verified:")
                   for o in fin.values()), fin
        for s, t in pairs:
            assert snapshot(t) == snapshot(s), s.user
        assert sum(snapshot(pairs[1][1])["INBOX"].values()) == 7
        history = [h for h in _history(p) if h["unit"] == units[1]]
        assert [(h["action"], h["after"]) for h in history if h["action"] != "add"] == [
            ("start", "syncing"), ("start", "migrating"), ("sync", "syncing"), ("sync", "migrating"),
            ("finish", "finishing"), ("finish", "migrated")]
        # A refused action enqueues nothing.
        runs = _runs(state)
        r = mm("project", "sync", p, units[2], check=False)
        assert r.returncode == 1 and "already migrated" in r.stdout and _runs(state) == runs
    finally:
        for w in workers:
            stop_worker(w)
    everything = mm("project", "logs", p).stdout + "".join((tmp_path / f"pw{i}.log").read_text() for i in range(2))
    assert not any(a.password in everything for pair in pairs for a in pair)


def _history(p):
    from mailmigrate.workflow.project import load_project
    from mailmigrate.workflow.store import WorkflowStore

    wf = WorkflowStore.open(load_project(p).workflow)
    try:
        return wf.history()
    finally:
        wf.close()


@pytest.fixture
def rabbitmq():
    """An AMQP broker URL on the local RabbitMQ: a virtual host of its own when rabbitmqctl may make one
    (its queue is this test's only), else the default one, emptied first."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as e:
        pytest.skip(f"no RabbitMQ on 127.0.0.1:5672 ({e}); `rabbitmq-server -detached` starts it (.ci/run does)")
    vhost = f"mm_test_{uuid.uuid4().hex[:8]}"
    try:
        for cmd in (["add_vhost", vhost], ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]):
            subprocess.run(["rabbitmqctl", "-q", *cmd], check=True, capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        vhost = None
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost or '/'}"
    if vhost is None:
        from mailmigrate.fleet.app import make_app

        app = make_app(url)
        app.control.purge()
        app.close()
    yield url
    if vhost:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True, timeout=120)


def test_rabbitmq_broker_with_a_worker_killed_mid_account(tmp_path, fleet_env, rabbitmq):  # noqa: F811
    """RabbitMQ hands out the jobs (Redis keeps only the connection slots): a worker SIGKILLed in the middle
    of an account loses its broker connection, its unacknowledged jobs go to the other worker at once (no
    visibility timeout to wait for), and every account ends exact.  The broker's password travels in the
    environment, never in argv, output or logs."""
    redis_url, state, _ = fleet_env
    accounts = make_accounts(tmp_path, 16, messages=40)
    env = {"MAILMIGRATE_BROKER": rabbitmq}
    workers = [start_worker(None, state, concurrency=2, name=f"r{i}", log=tmp_path / f"r{i}.log", env=env,
                            extra=["--redis", redis_url, "--slot-ttl", "5"]) for i in range(2)]
    sync = None
    try:
        for i, w in enumerate(workers):  # both taking jobs from the first one on: worker 0 surely gets some
            wait_ready(w, tmp_path / f"r{i}.log")
        sync = subprocess.Popen(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst",
                                      "--accounts", accounts, "--executor", "celery", "--state", state,
                                      "--max-connections", "3", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **env})
        conn = psycopg.connect(state, autocommit=True)
        killed = kill_mid_copy(workers[0], sync, conn, done=3)  # checked with worker 0 stopped, then SIGKILLed
        out, err = sync.communicate(timeout=150)
    finally:
        if sync and sync.poll() is None:  # the test failed while it ran
            sync.kill()
        for w in workers:
            stop_worker(w)
    assert sync.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["accounts_total"] == 16 and summary["accounts_failed"] == 0 and summary["failed"] == 0
    again = conn.execute("SELECT worker FROM fleet_jobs WHERE attempts > 1").fetchall()
    assert len(again) >= len(killed)
    assert all(w.startswith("r1@") for (w,) in again), again
    for u in sorted(d.name for d in tmp_path.glob("user*")):
        assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src"), u
    conn.close()
    logs = out + err + "".join((tmp_path / f"r{i}.log").read_text() for i in range(2))
    assert "amqp://guest:**@127.0.0.1:5672" in logs  # the worker's banner names the broker, masked
    assert "guest:guest" not in logs


def _maildir_project(tmp_path, state, fleet: str) -> "os.PathLike":
    make_accounts(tmp_path, 2, messages=3)
    p = tmp_path / "p.toml"
    p.write_text(f"""[project]
name = "p"
state = "{state}"
[source]
url = "maildir:%u/src"
[target]
url = "maildir:%u/dst"
[accounts]
file = "accounts.csv"
{fleet}""")
    return p


def test_fleet_project_needs_a_shared_state(tmp_path):
    p = _maildir_project(tmp_path, "local.db", '[fleet]\nexecutor = "celery"\nbroker = "redis://127.0.0.1:6379/0"\n')
    r = mm("project", "init", p, check=False)
    assert r.returncode == 2 and "needs the sync state on PostgreSQL" in r.stderr
    p.write_text(p.read_text().replace('executor = "celery"', 'executor = "local"'))
    mm("project", "init", p)
    r = mm("project", "start", p, "--executor", "celery", check=False)
    assert r.returncode == 2 and "needs the sync state on PostgreSQL" in r.stderr
    assert all(u["state"] == "not_started" for u in _units(p).values())


def test_fleet_timeout_settings_are_checked(tmp_path):
    p = _maildir_project(tmp_path, "local.db", '[fleet]\nfleet_timeout = "soon"\n')
    r = mm("project", "init", p, check=False)
    assert r.returncode == 2 and "[fleet] fleet_timeout must be a number of seconds above 0" in r.stderr
    p.write_text(p.read_text().replace('fleet_timeout = "soon"', "idle_warning = 0"))
    r = mm("project", "init", p, check=False)
    assert r.returncode == 2 and "[fleet] idle_warning must be a number of seconds above 0" in r.stderr
    p.write_text(p.read_text().replace("idle_warning = 0", "fleet_timeout = 30"))
    mm("project", "init", p)
    r = mm("project", "start", p, "--fleet-timeout", "5", check=False)  # the project copies here
    assert r.returncode == 2 and "needs the celery executor" in r.stderr
    assert all(u["state"] == "not_started" for u in _units(p).values())

def test_unreachable_broker_fails_the_units_and_copies_nothing(tmp_path):
    from servers.pgdb import drop_database, make_database

    admin, name, state = make_database("mm_fleetp")
    try:
        p = _maildir_project(tmp_path, state, '[fleet]\nexecutor = "celery"\nbroker = "redis://127.0.0.1:1/0"\n')
        mm("project", "init", p)
        r = mm("project", "start", p, "--json", check=False)
        out = json.loads(r.stdout)
        assert r.returncode == 1 and len(out) == 2
        assert all(not o["ok"] and o["state"] == "failed" and "did not take the jobs" in o["message"] for o in out)
        assert not list(tmp_path.glob("*/dst"))
        # Nothing was left waiting in the job table, and the units can simply be started again.
        with psycopg.connect(state, autocommit=True) as c:
            assert c.execute("SELECT DISTINCT status FROM fleet_jobs").fetchall() == [("failed",)]
        r = mm("project", "start", p, "--executor", "local", "--json")
        assert all(o["ok"] and o["state"] == "migrating" for o in json.loads(r.stdout))
        for u in ("user000@example.org", "user001@example.org"):
            assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src")
    finally:
        drop_database(admin, name)


def test_interrupted_fleet_command_fails_its_units_and_a_restart_is_exact(tmp_path, fleet_env):  # noqa: F811
    """Ctrl-C while no worker has taken the jobs yet: the units end failed (not busy forever); the jobs stay on
    the broker and a worker started later runs them; starting the units again then copies nothing twice."""
    import signal

    broker, state, _ = fleet_env
    p = _maildir_project(tmp_path, state, f'[fleet]\nexecutor = "celery"\nbroker = "{broker}"\n')
    mm("project", "init", p)
    run = subprocess.Popen(MM + ["project", "start", str(p)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    for line in run.stderr:
        if line.startswith("fleet: 0/2 accounts done"):
            break
    assert {u["state"] for u in _units(p).values()} == {"syncing"}
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    units = _units(p)
    assert all(u["state"] == "failed" and "its job may still be running" in u["last_error"]
               for u in units.values()), units
    worker = start_worker(broker, state, concurrency=1, name="late", log=tmp_path / "late.log")
    try:
        r = mm("project", "start", p, "--json")
    finally:
        stop_worker(worker)
    out = json.loads(r.stdout)
    assert all(o["ok"] and o["state"] == "migrating" for o in out), out
    for u in ("user000@example.org", "user001@example.org"):
        assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src")
    # Each account was copied once, whichever of its two jobs did it.
    with psycopg.connect(state, autocommit=True) as c:
        copied = c.execute("SELECT account, sum(copied) FROM fleet_jobs GROUP BY account").fetchall()
    assert sorted(n for _, n in copied) == [3 * (3 + 1)] * 2


def test_no_worker_warns_then_the_fleet_timeout_ends_the_wait_and_a_later_sync_is_exact(
        tmp_path, fleet_env, dovecot_pair):  # noqa: F811
    """With no worker running, a project sync on the fleet says so within [fleet] idle_warning, and
    fleet_timeout ends the wait: exit 1, the units failed as after Ctrl-C with the reason, nothing copied.
    The jobs it left queued run once a worker comes, alongside a new sync's, and every account ends exact
    with its new mail copied once."""
    broker, state, _ = fleet_env
    src_srv, dst_srv = dovecot_pair
    pairs, accounts = _imap_pairs(tmp_path, src_srv, dst_srv, "nw", 2,
                                  lambda i: {"INBOX": [(msg(700 + 10 * i + k, 200 * k), "") for k in range(3)]})
    p = tmp_path / "idle.toml"
    _fleet_project(p, "idle", state, src_srv, dst_srv, f"""[fleet]
executor = "celery"
broker = "{broker}"
fleet_timeout = 3
idle_warning = 1
""")
    mm("project", "init", p)
    mm("project", "start", p, "--executor", "local")  # the first copy here, so that the units can be synced
    for s, _ in pairs:
        c = imapcheck.connect(s.port, s.user, s.password)
        for k in range(2):
            imapcheck.append(c, "INBOX", msg(800 + k, 100), "")
        c.logout()
    before = [snapshot(t) for _, t in pairs]

    returncode, out, lines = run_watching_stderr(MM + ["project", "sync", str(p)])
    err = "".join(x for _, x in lines)
    assert returncode == 1, err
    queued = next(at for at, x in lines if x.startswith("fleet: 0/2 accounts done"))
    warned = [(at, x) for at, x in lines if "no worker has taken any of the 2 queued job(s)" in x]
    assert len(warned) == 1, err
    assert warned[0][0] - queued < 1 + 1.5, err  # idle_warning = 1, polled every 0.5 s
    assert f"mailmigrate worker --broker {broker} --state {state}" in warned[0][1]
    assert "timeout of 3 s reached with 2 of 2 account(s) not finished" in err
    units = _units(p)
    assert all(u["state"] == "failed" and "fleet timeout (3 s) reached while its job was queued" in u["last_error"]
               and "its job may still be running" in u["last_error"] for u in units.values()), units
    assert out.count("sync FAILED -> failed: fleet timeout (3 s) reached") == 2, out
    assert "no worker has taken any" in mm("project", "logs", p, "--search", "no worker").stdout
    assert [snapshot(t) for _, t in pairs] == before  # nothing copied meanwhile

    worker = start_worker(broker, state, concurrency=2, name="late", log=tmp_path / "late.log",
                          extra=["--accounts", str(accounts)])
    try:
        r = mm("project", "sync", p, "--fleet-timeout", "120", "--json")
    finally:
        stop_worker(worker)
    done = json.loads(r.stdout)
    assert all(o["ok"] and o["state"] == "migrating" for o in done), done
    for s, t in pairs:
        assert snapshot(t) == snapshot(s), s.user
    # The two new messages of each account were copied once, by the timed-out run's job or the new one's.
    with psycopg.connect(state, autocommit=True) as c:
        copied = c.execute("SELECT account, sum(copied) FROM fleet_jobs GROUP BY account").fetchall()
    assert sorted(n for _, n in copied) == [2, 2], copied
