"""The one job of a fleet: sync one account, exactly as the local executor would.

The job's arguments (stored in the broker) describe the run without any password: store URLs as the user
wrote them (``parse_spec`` refuses URLs holding a password), user names, options.  Passwords reach the
worker through its environment (MAILMIGRATE_SOURCE_PASSWORD / MAILMIGRATE_TARGET_PASSWORD), password files,
or an accounts file (mode 0600) given to ``mailmigrate worker``.

Per worker process: one connection to the PostgreSQL state, one Redis client for the connection slots.
The account is held with a PostgreSQL advisory lock while it is synced; a second delivery of the same job
(Redis redelivers after the visibility timeout) waits for it, then finds nothing left to copy.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery.exceptions import Retry

from ..errors import ConfigError, MailmigrateError, StateUnreachable
from ..model import Account, AccountResult, Secret
from ..stores.registry import StoreSpec
from ..sync.engine import sync_account
from ..sync.options import Progress, SyncRequest
from ..sync.session import AccountBusy, AccountSession, open_account
from ..sync.state_pg import PgStateDB
from . import jobs
from .faults import infrastructure_error
from .limits import RedisRateLimiter, Slots, SlotStore, slot_key

log = logging.getLogger("mailmigrate.fleet")


class WorkerConfig:
    """What a worker process knows that the broker must not: the state URL, Redis, the passwords."""

    def __init__(self, state_url: str, redis_url: str | None, *, source_password: Secret | None = None,
                 target_password: Secret | None = None, accounts: list[Account] | None = None,
                 slot_ttl: float = 30.0, slot_wait: float = 600.0, lock_wait: float = 30.0,
                 heartbeat: float = 10.0, source_oauth=None, target_oauth=None):
        self.state_url = state_url
        self.redis_url = redis_url
        self.source_password = source_password
        self.target_password = target_password
        self.accounts = {(a.source_user, a.target_user): a for a in accounts or []}
        self.slot_ttl = slot_ttl
        self.slot_wait = slot_wait
        self.lock_wait = lock_wait
        self.heartbeat = heartbeat
        self.source_oauth, self.target_oauth = source_oauth, target_oauth  # stores/oauth.py token sources


_config: WorkerConfig | None = None
_proc: dict = {}


def configure(config: WorkerConfig) -> None:
    global _config
    _config = config


def _context():
    """Per process (prefork children are forked after configure): open lazily, reopen after a fork."""
    if _config is None:
        raise ConfigError("this worker was not configured (start it with `mailmigrate worker`)")
    if _proc.get("pid") != os.getpid():
        _proc.clear()
        _proc["pid"] = os.getpid()
    if "state" not in _proc or _proc["state"].connection.closed:
        _proc["state"] = PgStateDB.open(_config.state_url)
    if "slots" not in _proc and _config.redis_url:
        _proc["slots"] = Slots(_config.redis_url, ttl=_config.slot_ttl, wait=_config.slot_wait)
    return _proc["state"], _proc.get("slots")


def server_name(spec: StoreSpec) -> str:
    """The server a connection limit counts against: host and port; file stores count as one local server."""
    if spec.kind == "imap":
        return f"{spec.host}:{spec.port}"
    return f"{spec.kind}:local"


class _FleetProgress(Progress):
    def __init__(self, state, run_id: str, account: str, every: float = 1.0):
        self.state, self.run_id, self.account, self.every = state, run_id, account, every
        self.n_copied = 0
        self.nbytes = 0
        self.to_copy = 0
        self._last = 0.0
        self._lock = threading.Lock()

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        with self._lock:
            self.to_copy += to_copy
        self._report()

    def copied(self, account, folder, messages, nbytes):
        with self._lock:
            self.n_copied += messages
            self.nbytes += nbytes
        self._report()

    def _report(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < self.every:
                return
            self._last = now
            n, b, t = self.n_copied, self.nbytes, self.to_copy
        jobs.progress(self.state, self.run_id, self.account, n, b, t)


def _forget_connections() -> None:
    """After an infrastructure error the process's state connection may be dead (a PostgreSQL restart ends
    every session, and with it the account locks): the next attempt opens a new one."""
    state = _proc.pop("state", None)
    if state is not None:
        try:
            state.close()
        except Exception:  # it is being given up either way
            pass


#: seconds between two looks for a lost infrastructure, doubling up to the cap
INFRA_BACKOFF, INFRA_BACKOFF_MAX = 1.0, 30.0


def sync_one_account(task, desc: dict, account: dict) -> dict:
    """Celery task body (registered in app.make_app): returns the account's counters, error and problems.

    The job is finished (and so acknowledged) only once its account is done or failed for a reason of its
    own.  While the state database, Redis or the broker is away, it waits and tries again, keeping the job:
    the engine's intents make the next attempt exact, whatever the last one had started."""
    delay = INFRA_BACKOFF
    said = False
    while True:
        try:
            out = _attempt(task, desc, account)
            if said:
                log.info("account %s: the fleet's infrastructure is back; the job went on", _user(account))
            return out
        except BaseException as e:
            if not infrastructure_error(e):
                raise
            _forget_connections()
            first = (str(e).strip().splitlines() or [""])[0][:300]
            log.warning("account %s: the fleet's infrastructure failed (%s: %s); the job is kept and tried again "
                        "in %.0f s", _user(account), type(e).__name__, first, delay)
            said = True
            time.sleep(delay)
            delay = min(delay * 2, INFRA_BACKOFF_MAX)


def _user(account: dict) -> str:
    return account.get("source_user") or account.get("target_user") or "?"


def request_from(desc: dict) -> SyncRequest:
    """The run's request as this worker runs it: the job's description (SyncRequest.to_dict) with this
    worker's passwords and OAuth token sources, which never travel."""
    cfg = _config
    return SyncRequest.from_dict(_current(desc), source_password=cfg.source_password,
                                 target_password=cfg.target_password, source_oauth=cfg.source_oauth,
                                 target_oauth=cfg.target_oauth)


def account_from(account: dict) -> Account:
    """The job's account, with its passwords and rules from this worker's accounts file when it lists it."""
    known = _config.accounts.get((account.get("source_user"), account.get("target_user")))
    return Account(account.get("source_user"), account.get("target_user"),
                   known.source_password if known else None, known.target_password if known else None,
                   rules=account.get("rules") or (known.rules if known else None))


def _current(desc: dict) -> dict:
    """A description written before requests had one form (flat keys, one ``insecure`` for both sides), as a
    request's dict: jobs of a run started by the earlier version can still be sent again (fleet requeue)."""
    if "sync" in desc:
        return desc
    both = {"insecure": desc.get("insecure"), "allow_plaintext": desc.get("allow_plaintext")}
    return {"source": desc["source"], "target": desc["target"],
            "source_options": {**both, "master_user": desc.get("source_master")},
            "target_options": {**both, "master_user": desc.get("target_master")},
            "max_rate": desc.get("max_rate"), "max_bandwidth": desc.get("max_bandwidth"),
            "max_connections": desc.get("max_connections"),
            "sync": {"delete": bool(desc.get("delete")), "dry_run": bool(desc.get("dry_run")),
                     "force_delete": bool(desc.get("force_delete")), "delete_guard": float(desc.get("delete_guard", 0.5)),
                     "connections": desc.get("connections", 3), "max_attempts": desc.get("retries", 6),
                     "selection": desc.get("selection")}}


def _attempt(task, desc: dict, account: dict) -> dict:
    state, slots = _context()
    run_id = desc["run_id"]
    # the job row is named as the submitter named it: the record's current name, found (and a record under
    # an earlier name moved to it) on the way in, dry run or not
    session = open_account(request_from(desc), account_from(account), state=state, lock_wait=_config.lock_wait,
                           rename=True)
    try:
        session.__enter__()
    except AccountBusy:
        name = session.name
        log.info("account %s is being synced by another worker; job put back", name)
        jobs.set_status(state, run_id, name, "waiting")
        try:
            raise task.retry(countdown=5)
        except Retry:
            raise
        except Exception as e:  # the broker is away: keep the job here and look again
            log.warning("account %s: could not put the job back on the broker (%s); waiting here instead",
                        name, e)
            raise StateUnreachable(f"broker unreachable while the account was held elsewhere: {e}") from None
    name = session.name
    beat = Heartbeat(state, run_id, name, _config.heartbeat)
    try:
        worker = f"{task.request.hostname or socket.gethostname()} pid {os.getpid()}"  # e.g. w1@host pid 42
        started = jobs.start(state, run_id, name, worker)
        if started == "finished":
            log.info("account %s already finished in run %s (a second delivery); nothing to do", name, run_id)
            return {"account": name, "duplicate": True}
        if started == "unknown":
            log.error("run %s is not in this worker's state database %s: the worker and `mailmigrate sync` "
                      "must use the same --state", run_id, state.path)
            return {"account": name, "error": "run unknown to this worker's state database"}
        beat.start()
        result = _run(session, run_id, slots)
        beat.stop()
        jobs.finish(state, run_id, name, result)
        return jobs.result_dict(result)
    finally:
        beat.stop()
        try:
            session.__exit__(None, None, None)  # gives the account's lock back
        except Exception as e:
            if not infrastructure_error(e):
                raise
            # the session is gone, and the lock with it


class Heartbeat:
    """Says, every ``every`` seconds, that this job's worker is alive (``fleet_jobs.updated``): the command
    following the run takes a running row that stopped beating for a lost job and puts it back.  A stopped
    or frozen process stops beating too, which is what makes its account count as stuck."""

    def __init__(self, state, run_id: str, account: str, every: float):
        self.state, self.run_id, self.account, self.every = state, run_id, account, every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every and self.every > 0:
            self._thread = threading.Thread(target=self._beat, name="mailmigrate-heartbeat", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                jobs.heartbeat(self.state, self.run_id, self.account)
            except Exception as e:  # the job's own work meets the same fault and handles it
                log.debug("heartbeat of %s failed: %s", self.account, e)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.every + 5)
            self._thread = None


def _run(session: AccountSession, run_id: str, slots) -> AccountResult:
    cfg, req, name = _config, session.req, session.name
    req.sync.progress = _FleetProgress(session.state, run_id, name)
    if (req.max_rate or req.max_bandwidth) and cfg.redis_url:
        req.sync.target_limiter = RedisRateLimiter(cfg.redis_url, server_name(req.target), req.max_rate,
                                                   req.max_bandwidth)
    try:
        src, tgt = session.stores()
    except MailmigrateError as e:
        return AccountResult(name, error=str(e))
    opts = session.options
    limit = req.max_connections
    if limit:
        if slots is None:
            return AccountResult(name, error="--max-connections needs Redis on the workers (worker --redis URL)")
        opts.connections = max(1, min(opts.connections, int(limit)))
        src = SlotStore(src, slots, slot_key("source", server_name(req.source)), int(limit))
        tgt = SlotStore(tgt, slots, slot_key("target", server_name(req.target)), int(limit), after=src)
    return sync_account(src, tgt, account_name=name, state=session.state, options=opts)
