"""The fleet end to end: real Redis broker, real PostgreSQL state, real `mailmigrate worker` processes.

50 Maildir accounts (no IMAP server needed) are migrated by three workers through `mailmigrate sync
--executor celery`; one worker is killed with SIGKILL (main process and pool children) while it is copying
an account.  Every account must be exact, file by file; the killed accounts must have been run again;
and the fleet-wide connection limit must have been reached but never exceeded.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time

import psycopg
import pytest
import redis

from servers.fleet import MM, kill_mid_copy, make_accounts, process_group, read_maildir, run_watching_stderr, \
    start_worker, stop_worker, wait_for, wait_ready
from servers.pgdb import drop_database, make_database

REDIS = "redis://127.0.0.1:6379"


@pytest.fixture
def fleet_env():
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=2).ping()
    except redis.RedisError as e:
        pytest.skip(f"no Redis on 127.0.0.1: {e}")
    # A Redis database of its own, claimed in database 0 so that tests running at once never share one:
    # its queue and slots are this test's only.
    claims = redis.Redis.from_url(f"{REDIS}/0")
    db = next((d for d in random.sample(range(1, 16), 15)
               if claims.set(f"mm-test-claim:{d}", os.getpid(), nx=True, ex=3600)), None)
    if db is None:
        pytest.skip("all 15 Redis test databases are in use by other tests")
    admin, name, url = make_database("mm_fleet")
    broker = f"{REDIS}/{db}"
    r = redis.Redis.from_url(broker)
    r.flushdb()
    yield broker, url, r
    r.flushdb()
    claims.delete(f"mm-test-claim:{db}")
    drop_database(admin, name)


class HolderProbe(threading.Thread):
    """Counts, every few milliseconds, the live slot holders of a server in Redis; keeps the maximum."""

    def __init__(self, r, key):
        super().__init__(daemon=True)
        self.r, self.key, self.max, self.samples = r, key, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            sec, usec = self.r.time()
            n = self.r.zcount(self.key, sec + usec / 1e6, "+inf")
            self.max = max(self.max, n)
            self.samples += 1
            time.sleep(0.002)


def test_fifty_accounts_three_workers_one_killed(tmp_path, fleet_env):
    broker, state, r = fleet_env
    accounts = make_accounts(tmp_path, 50, messages=40)
    limit = 3
    extra = ["--visibility-timeout", "6", "--slot-ttl", "5"]
    workers = [start_worker(broker, state, concurrency=2, name=f"w{i}", log=tmp_path / f"w{i}.log", extra=extra)
               for i in range(3)]
    probes = [HolderProbe(r, f"mm:slots:{role}:maildir:local") for role in ("source", "target")]
    for p in probes:
        p.start()
    sync = None
    try:
        for i, w in enumerate(workers):  # all taking jobs from the first one on: worker 0 surely gets some
            wait_ready(w, tmp_path / f"w{i}.log")
        sync = subprocess.Popen(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst",
                                      "--accounts", accounts, "--executor", "celery", "--broker", broker,
                                      "--state", state, "--max-connections", str(limit), "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        conn = psycopg.connect(state, autocommit=True)
        # Some accounts done, and worker 0 in the middle of copying one (part of it on the target), checked
        # with worker 0 stopped, then SIGKILLed.
        killed = kill_mid_copy(workers[0], sync, conn, done=5)
        out, err = sync.communicate(timeout=150)
    finally:
        if sync and sync.poll() is None:  # the test failed while it ran
            sync.kill()
        for p in probes:
            p.stop.set()
        for w in workers:
            stop_worker(w)
    assert sync.returncode == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["accounts_total"] == 50 and summary["accounts_failed"] == 0 and summary["failed"] == 0
    # The accounts the dead worker was copying were run again, by another worker.
    rows = dict(conn.execute("SELECT worker, attempts FROM fleet_jobs WHERE worker IS NOT NULL").fetchall())
    again = conn.execute("SELECT account, attempts, worker FROM fleet_jobs WHERE attempts > 1").fetchall()
    assert len(again) >= len(killed), (killed, rows)
    assert all(process_group(int(w.rsplit(" ", 1)[1])) != workers[0].pid for _, _, w in again)
    # Every account exact: same messages (bytes, twins included) and flags in the same folders.
    for u in sorted(p.name for p in tmp_path.glob("user*")):
        src, dst = read_maildir(tmp_path / u / "src"), read_maildir(tmp_path / u / "dst")
        assert dst == src, u
        assert sum(len(v) for v in dst.values()) == 3 * (40 + 3)
    # The limit held across the fleet: reached (3 workers x 2 processes x 3 connections would be 18) and
    # never exceeded, on both sides.
    for p in probes:
        assert p.samples > 100
        assert p.max == limit, (p.key, p.max)
    # A rerun finds nothing to copy.
    again = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst", "--accounts",
                                 accounts, "--state", state, "--json"], capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["copied"] == 0, again.stderr[-2000:]
    conn.close()


class _Connection:
    """A store's connection as SlotStore sees it: open and close."""

    def open(self):
        pass

    def close(self):
        pass


def test_an_account_takes_its_source_slot_before_its_target_slot(fleet_env):
    """The engine opens an account's source and target at the same time.  Account A's target side opening
    first must take A's source slot before the target slot: had it taken only the target slot, B taking the
    one source slot and waiting for the one target slot while A waits for the source slot would have stopped
    both until the slot wait ran out (and a fleet of them for good, the heartbeats keeping the slots)."""
    from mailmigrate.fleet.limits import Slots, SlotStore

    broker, _, _ = fleet_env
    slots = Slots(broker, ttl=30, wait=3)
    skey, tkey = "mm:slots:source:x", "mm:slots:target:x"

    def pair():
        src = SlotStore(_Connection(), slots, skey, 1)
        return src, SlotStore(_Connection(), slots, tkey, 1, after=src)

    (a_src, a_tgt), (b_src, b_tgt) = pair(), pair()
    a_tgt.open()
    assert (slots.holders(skey), slots.holders(tkey)) == (1, 1)
    b_opened = []
    b = threading.Thread(target=lambda: [b_src.open(), b_tgt.open(), b_opened.append(True)])
    b.start()
    time.sleep(0.5)  # B waits for the source slot, holding nothing
    assert not b_opened and (slots.holders(skey), slots.holders(tkey)) == (1, 1)
    a_src.open()  # A's slot already: no wait
    a_src.close()
    a_tgt.close()
    b.join(timeout=10)
    assert b_opened == [True]
    assert (slots.holders(skey), slots.holders(tkey)) == (1, 1)
    b_src.close()
    b_tgt.close()
    assert (slots.holders(skey), slots.holders(tkey)) == (0, 0)
    slots.close()


def test_a_source_reconnect_keeps_its_slot(fleet_env, tmp_path):
    """After an abandoned fetch the engine swaps the source's connection mid-account.  Doing it as close()
    and open() gave the source slot back and queued for one again while the target slot stayed held: an
    account B waiting for that source slot (and next for the target slot) and A waiting for a source slot
    stopped each other until the slot wait ran out.  The swap keeps the slot."""
    from types import SimpleNamespace

    from mailmigrate.fleet.limits import Slots, SlotStore
    from mailmigrate.stores.maildir import MaildirStore
    from mailmigrate.sync.engine import _AccountRun

    broker, _, _ = fleet_env
    slots = Slots(broker, ttl=30, wait=3)
    skey, tkey = "mm:slots:source:y", "mm:slots:target:y"

    def pair(name):
        src = SlotStore(MaildirStore(tmp_path / name / "src", create=True), slots, skey, 1)
        return src, SlotStore(MaildirStore(tmp_path / name / "dst", create=True), slots, tkey, 1, after=src)

    (a_src, a_tgt), (b_src, b_tgt) = pair("a"), pair("b")
    a_src.open()
    a_tgt.open()
    b_opened = []
    b = threading.Thread(target=lambda: [b_src.open(), b_tgt.open(), b_opened.append(True)])
    b.start()
    time.sleep(0.5)  # B queues for the source slot
    held = a_src._token
    _AccountRun._reopen_source(SimpleNamespace(source=a_src))  # what the engine does after an abandoned fetch
    assert a_src._token == held  # never given back, so B could not slip in between (it polls; A was usually first)
    time.sleep(0.5)
    assert not b_opened and (slots.holders(skey), slots.holders(tkey)) == (1, 1)
    a_src.list_folders()  # the new connection works
    a_src.close()
    a_tgt.close()
    b.join(timeout=10)
    assert b_opened == [True]
    b_src.close()
    b_tgt.close()
    assert (slots.holders(skey), slots.holders(tkey)) == (0, 0)
    slots.close()


def test_an_extra_connection_refused_on_one_side_gives_back_the_other_sides_slot(fleet_env, tmp_path):
    """Folders in parallel want extra connection pairs; when the target has no free slot the pair is not
    made, and the source slot its half took must be free again at once, not held idle until the account
    ends while other accounts of the fleet wait for it."""
    from mailmigrate.fleet.limits import Slots, SlotStore
    from mailmigrate.stores.maildir import MaildirStore
    from mailmigrate.sync.engine import Progress, SyncOptions, sync_account
    from mailmigrate.sync.state import StateDB

    broker, _, _ = fleet_env
    slots = Slots(broker, ttl=30, wait=3)
    skey, tkey = "mm:slots:source:z", "mm:slots:target:z"
    root = tmp_path / "src"
    for folder in ("", ".A", ".B", ".C"):
        for sub in ("cur", "new", "tmp"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(40):
            (root / folder / "new" / f"{i}.m{i}.host").write_bytes(b"Subject: %d\r\n\r\n" % i + b"x" * 4000)
    src = SlotStore(MaildirStore(root), slots, skey, 4)
    dst = SlotStore(MaildirStore(tmp_path / "dst", create=True), slots, tkey, 1, after=src)
    seen = []

    class Watch(Progress):
        def folder_done(self, account, folder):
            seen.append(slots.holders(skey))

    state = StateDB.open(tmp_path / "s.db")
    try:
        r = sync_account(src, dst, account_name="a", state=state,
                         options=SyncOptions(connections=3, max_attempts=1, progress=Watch()))
    finally:
        state.close()
    assert r.error is None and r.counters.copied == 160
    # The extra pairs failed on the target's one slot at their start; by the last folder only the
    # account's own connection holds a source slot.
    assert seen[-1] == 1, seen
    assert (slots.holders(skey), slots.holders(tkey)) == (0, 0)
    slots.close()


class ServerSessions(threading.Thread):
    """Counts the sessions a Dovecot server holds, as its own connection limits count them (`doveadm who`,
    from its anvil service: a session begins at login and ends when the server ends it); keeps the maximum.

    Counting established sockets with `ss` measured the kernel, not the server: on a
    loaded machine a socket the client had closed after the server's LOGOUT answer stayed "established" on the
    server's side for tens of milliseconds, beside the next holder's new connection."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.conf, self.max, self.samples = str(server.root / "dovecot.conf"), 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            out = subprocess.run(["doveadm", "-c", self.conf, "who", "-1"], capture_output=True, text=True).stdout
            self.max = max(self.max, sum(1 for ln in out.splitlines()[1:] if ln.strip()))
            self.samples += 1
            time.sleep(0.005)


def test_fifty_accounts_on_real_dovecot(tmp_path, fleet_env, dovecot_factory):
    """Dovecot to Dovecot over IMAP by two workers: every account exact as imaplib sees it, and the
    connection limit observed on the servers' side (their own session count), not in mailmigrate's own
    bookkeeping."""
    from servers import imapcheck

    broker, state, _ = fleet_env
    src, dst = dovecot_factory(), dovecot_factory()
    n = 50
    users = {f"fl{i:03d}": (f"s-{i}-pw", f"t-{i}-pw") for i in range(n)}
    src.add_users({u: p[0] for u, p in users.items()})
    dst.add_users({u: p[1] for u, p in users.items()})
    # Fill the sources with mailmigrate's local executor from generated Maildirs.
    make_accounts(tmp_path / "gen", n, messages=12)
    fill = tmp_path / "fill.csv"
    fill.write_text("".join(f"user{i:03d}@example.org,fl{i:03d},,s-{i}-pw\n" for i in range(n)))
    fill.chmod(0o600)
    p = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/gen/%u/src", f"imap://127.0.0.1:{src.port}?tls=none",
                             "--accounts", fill, "--state", tmp_path / "fill.db", "--jobs", "4"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("".join(f"{u},{u},{s},{t}\n" for u, (s, t) in users.items()))
    accounts.chmod(0o600)
    limit = 2
    workers = [start_worker(broker, state, concurrency=2, name=f"d{i}", log=tmp_path / f"d{i}.log",
                            extra=["--accounts", str(accounts)]) for i in range(2)]
    probes = [ServerSessions(src), ServerSessions(dst)]
    for pr in probes:
        pr.start()
    try:
        sync = subprocess.run(MM + ["sync", f"imap://127.0.0.1:{src.port}?tls=none",
                                    f"imap://127.0.0.1:{dst.port}?tls=none", "--accounts", accounts,
                                    "--executor", "celery", "--broker", broker, "--state", state,
                                    "--max-connections", str(limit), "--json"],
                              capture_output=True, text=True, timeout=240)
    finally:
        for pr in probes:
            pr.stop.set()
        for w in workers:
            stop_worker(w)
    assert sync.returncode == 0, sync.stderr[-3000:]
    summary = json.loads(sync.stdout)
    assert summary["accounts_total"] == n and summary["accounts_failed"] == 0
    assert summary["copied"] == n * 3 * (12 + 1)
    for u, (s, t) in users.items():
        assert imapcheck.account(dst.port, u, t) == imapcheck.account(src.port, u, s), u
    for pr in probes:
        assert pr.samples > 20
        assert 1 <= pr.max <= limit, (pr.conf, pr.max)
    # No password in the output or the workers' logs (which show every job they received and its result).
    logs = "".join((tmp_path / f"d{i}.log").read_text() for i in range(2))
    assert "fl049" in logs
    assert not any(pw in sync.stderr + sync.stdout + logs for pair in users.values() for pw in pair)


def test_sync_with_no_worker_warns_and_the_fleet_timeout_ends_it(tmp_path, fleet_env):
    """`sync --executor celery` with no worker running: a warning on stderr within --idle-warning naming the
    queued jobs and the worker command (the state's password masked), then --fleet-timeout ends the command
    with status 1, each unfinished account reported failed and why, nothing copied.  The jobs it left stay
    queued: a worker started afterwards runs them, and a rerun then finds nothing to copy."""
    broker, state, _ = fleet_env
    secret = "pg-s3cret-not-shown"
    state_pw = state.replace("postgres@", f"postgres:{secret}@")  # trust auth: the password is not asked for
    accounts = make_accounts(tmp_path, 2, messages=3, folders=("",))
    src, dst = f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst"
    returncode, out, lines = run_watching_stderr(
        MM + ["sync", src, dst, "--accounts", accounts, "--executor", "celery", "--broker", broker, "--state",
              state_pw, "--idle-warning", "1", "--fleet-timeout", "3"])
    err = "".join(x for _, x in lines)
    assert returncode == 1, err
    queued = next(at for at, x in lines if x.startswith("fleet: 0/2 accounts done"))
    warned = [(at, x) for at, x in lines if "no worker has taken any of the 2 queued job(s)" in x]
    assert len(warned) == 1, err
    assert warned[0][0] - queued < 1 + 1.5, err  # --idle-warning 1, polled every 0.5 s
    masked = state_pw.replace(secret, "***")
    assert f"`mailmigrate worker --broker {broker} --state {masked}`" in warned[0][1], err
    assert "timeout of 3 s reached with 2 of 2 account(s) not finished" in err
    for u in ("user000@example.org", "user001@example.org"):
        assert (f"ACCOUNT FAILED maildir:{tmp_path}/{u}/src -> maildir:{tmp_path}/{u}/dst: fleet timeout (3 s) "
                f"reached while its job was queued; stopped waiting; its job may still be running on a worker, "
                f"or run when one takes it, copying nothing twice") in out, out
    assert secret not in out + err
    assert not list(tmp_path.glob("*/dst"))

    worker = start_worker(broker, state, concurrency=2, name="late", log=tmp_path / "late.log")
    try:
        conn = psycopg.connect(state, autocommit=True)
        assert wait_for(lambda: conn.execute("SELECT bool_and(status = 'done') FROM fleet_jobs").fetchone()[0],
                        timeout=60), conn.execute("SELECT account, status FROM fleet_jobs").fetchall()
        conn.close()
    finally:
        stop_worker(worker)
    again = subprocess.run(MM + ["sync", src, dst, "--accounts", accounts, "--state", state, "--json"],
                           capture_output=True, text=True, timeout=60)
    assert json.loads(again.stdout)["copied"] == 0, again.stderr[-2000:]
    for u in ("user000@example.org", "user001@example.org"):
        assert read_maildir(tmp_path / u / "dst") == read_maildir(tmp_path / u / "src")


def test_fleet_wait_options_are_checked(tmp_path):
    accounts = make_accounts(tmp_path, 1, messages=1, folders=("",))
    base = MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst", "--accounts", accounts]
    r = subprocess.run(base + ["--fleet-timeout", "5"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "need --executor celery" in r.stderr, r.stderr
    r = subprocess.run(base + ["--executor", "celery", "--broker", "redis://127.0.0.1:1/0", "--state",
                               "postgresql://nobody@127.0.0.1:1/none", "--fleet-timeout", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--fleet-timeout must be a number of seconds above 0" in r.stderr, r.stderr
    assert not list(tmp_path.glob("*/dst"))


def test_folder_and_message_rules_travel_to_the_workers(tmp_path, fleet_env):
    """`sync --exclude/--max-size` and an account's own rules (accounts file, 5th column) reach the workers with
    the job: the folders and messages left out are not on the targets, and are counted as skipped by rule."""
    broker, state, _ = fleet_env
    accounts = make_accounts(tmp_path, 3, messages=6, size=1500)
    # user001 also leaves its Sent folder out, by a rule of its own
    lines = accounts.read_text().splitlines()
    lines[1] += ',,,"--exclude ^Sent$"'
    accounts.write_text("\n".join(lines) + "\n")
    big = tmp_path / "user000@example.org" / "src" / "cur" / "1700000000.BIG.host:2,S"
    big.write_bytes(b"Subject: big\r\n\r\n" + b"x" * 50_000 + b"\r\n")
    w = start_worker(broker, state, concurrency=2, name="rules", log=tmp_path / "w.log")
    try:
        wait_ready(w, tmp_path / "w.log")
        p = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst",
                                 "--accounts", accounts, "--executor", "celery", "--broker", broker, "--state", state,
                                 "--exclude", "^Work$", "--max-size", "20000", "--fleet-timeout", "120", "--json"],
                           capture_output=True, text=True, timeout=180)
    finally:
        stop_worker(w)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    for i in range(3):
        src, dst = (read_maildir(tmp_path / f"user{i:03d}@example.org" / side) for side in ("src", "dst"))
        want = {f: m for f, m in src.items() if f != ".Work" and not (i == 1 and f == ".Sent")}
        if i == 0:
            want["INBOX"] = [m for m in want["INBOX"] if len(m[0]) < 20000]
        assert dst == want, i
    assert out["skipped_by_rule"] >= 1 and out["failed"] == 0


def test_each_sides_store_options_travel_to_the_workers(tmp_path, fleet_env, dovecot_factory):
    """A fleet job whose target is insecure (a self-signed certificate, --insecure for it alone) and whose
    source is not: the worker applies each side's own options.  Before, only the source's `insecure` was
    sent and applied to both sides, so this target refused the worker's connection."""
    from mailmigrate.fleet.submit import run_fleet
    from mailmigrate.model import Account
    from mailmigrate.stores.registry import StoreOptions, parse_spec
    from mailmigrate.sync.options import SyncOptions, SyncRequest
    from servers import imapcheck

    broker, state, _ = fleet_env
    dst = dovecot_factory(tls=True)
    dst.add_user("ins000", "t-ins-pw")
    make_accounts(tmp_path, 1, messages=5)
    w = start_worker(broker, state, concurrency=1, name="sides", log=tmp_path / "w.log",
                     env={"MAILMIGRATE_TARGET_PASSWORD": "t-ins-pw"})
    try:
        wait_ready(w, tmp_path / "w.log")
        req = SyncRequest(source=parse_spec(f"maildir:{tmp_path}/%u/src"),
                          target=parse_spec(f"imaps://127.0.0.1:{dst.tls_port}"),
                          accounts=[Account("user000@example.org", "ins000")], state_path=state,
                          source_options=StoreOptions(insecure=False), target_options=StoreOptions(insecure=True),
                          sync=SyncOptions(connections=1))
        result = run_fleet(req, broker=broker, state_url=state, timeout=120)
    finally:
        stop_worker(w)
    assert result.ok, result.errors()
    assert result.totals.copied == 3 * (5 + 1)
    assert sum(sum(c.values()) for c in imapcheck.account(dst.port, "ins000", "t-ins-pw").values()) == 3 * (5 + 1)
    assert "t-ins-pw" not in (tmp_path / "w.log").read_text()


def test_a_password_in_a_worker_log_record_is_redacted(tmp_path, fleet_env):
    """The worker's log is one channel of the one redaction filter: a source folder whose name holds the
    target's password (the worker logs the folder it creates on the target) shows *** there."""
    broker, state, _ = fleet_env
    secret = "Tgt-Pw-4c9e"
    accounts = make_accounts(tmp_path, 1, messages=2, folders=("", f".Work-{secret}"))
    w = start_worker(broker, state, concurrency=1, name="redact", log=tmp_path / "w.log",
                     env={"MAILMIGRATE_TARGET_PASSWORD": secret})
    try:
        wait_ready(w, tmp_path / "w.log")
        p = subprocess.run(MM + ["sync", f"maildir:{tmp_path}/%u/src", f"maildir:{tmp_path}/%u/dst",
                                 "--accounts", accounts, "--executor", "celery", "--broker", broker, "--state", state,
                                 "--fleet-timeout", "120", "--json"], capture_output=True, text=True, timeout=180)
    finally:
        stop_worker(w)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "user000@example.org" / "dst" / f".Work-{secret}").is_dir()  # the folder was copied
    log = (tmp_path / "w.log").read_text()
    assert "created target folder Work-***" in log
    assert secret not in log


def test_a_job_description_of_the_earlier_form_is_still_read():
    """Rows of a run enqueued by the earlier version (flat keys, one `insecure` for both sides) can be sent
    again (`fleet requeue`) to upgraded workers: they read it as that version ran it."""
    from mailmigrate.fleet.tasks import _current
    from mailmigrate.sync.options import SyncRequest

    old = {"run_id": "r1", "source": "imap://src.example.org", "target": "maildir:/srv/%u", "source_master": "adm",
           "target_master": None, "insecure": True, "allow_plaintext": False, "delete": True, "force_delete": False,
           "delete_guard": 0.3, "dry_run": False, "connections": 2, "retries": 4, "max_connections": 5,
           "max_rate": None, "max_bandwidth": 1024, "selection": {"exclude": ["^Trash$"]}}
    req = SyncRequest.from_dict(_current(old))
    assert req.source_options.insecure and req.target_options.insecure and req.source_options.master_user == "adm"
    assert (req.sync.delete, req.sync.delete_guard, req.sync.connections, req.sync.max_attempts) == (True, 0.3, 2, 4)
    assert req.sync.selection.exclude == ("^Trash$",) and (req.max_connections, req.max_bandwidth) == (5, 1024)
