"""Many accounts, one state database, N at a time: what `mailmigrate sync` and the workflow layer run.

The state database is shared by all accounts of a run (one SQLite file, WAL), and locked for the run so
that a second run on the same state is refused rather than allowed to race.  A PostgreSQL state is shared
by design (other runs, fleet workers), so there the lock is per account instead: the same advisory lock a
fleet worker takes, so a local run and a worker never copy one account at once.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..errors import MailmigrateError
from ..model import Account, AccountResult, Counters, Secret
from ..stores import presets
from ..stores.registry import StoreOptions, StoreSpec, build_store
from .engine import SyncOptions, sync_account
from .limits import Limits
from .state import RunLock, StateDB

log = logging.getLogger("mailmigrate.sync")


@dataclass
class SyncRequest:
    source: StoreSpec
    target: StoreSpec
    accounts: list[Account]
    state_path: Path
    source_options: StoreOptions = field(default_factory=StoreOptions)
    target_options: StoreOptions = field(default_factory=StoreOptions)
    source_password: Secret | None = None  # for every account without its own (or the master's)
    target_password: Secret | None = None
    jobs: int = 1
    sync: SyncOptions = field(default_factory=SyncOptions)
    #: per target server: messages/s, bytes/s, and connections across all accounts of the run
    max_rate: float | None = None
    max_bandwidth: float | None = None
    max_connections: int | None = None
    #: opens the state (default: the SQLite StateDB, locked for the run); e.g. sync.state_pg.open_state
    state_factory: Callable[[Path], StateDB] | None = None
    #: a state with per-account locks (PostgreSQL): seconds to wait for an account another process syncs
    lock_wait: float = 0.0


@dataclass
class RunResult:
    accounts: list[AccountResult]
    state_path: Path
    dry_run: bool

    @property
    def totals(self) -> Counters:
        return Counters.total(a.counters for a in self.accounts)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.accounts)

    @property
    def exit_status(self) -> int:
        """0 all synced; 2 some account's settings are wrong (login refused, unknown host, TLS or certificate
        mismatch): fix them first, whatever else happened; 1 something else failed."""
        if any(a.error_kind == "configuration" for a in self.accounts):
            return 2
        return 0 if self.ok else 1

    def errors(self) -> list[dict]:
        """Every failure of the run, one record each: {kind, account, folder, message}."""
        out = []
        for a in self.accounts:
            if a.error:
                out.append({"kind": a.error_kind or "failure", "account": a.account, "folder": None,
                            "message": a.error})
            for p in a.problems:
                if p.kind != "warning":
                    out.append({"kind": p.kind, "account": a.account, "folder": p.folder,
                                "message": p.reason if p.message is None else f"{p.message}: {p.reason}"})
        return out

    def as_dict(self) -> dict:
        t = self.totals.as_dict()
        return {
            **t,
            "ok": self.ok,
            "exit_status": self.exit_status,
            "accounts_total": len(self.accounts),
            "accounts_failed": sum(1 for a in self.accounts if a.error),
            "dry_run": self.dry_run,
            "state": str(self.state_path),
            "errors": self.errors(),
            "accounts": [
                {
                    "account": a.account,
                    "source": a.source or a.account.split(" -> ", 1)[0],
                    "target": a.target or a.account.split(" -> ", 1)[-1],
                    "seconds": round(a.seconds, 3),
                    **a.counters.as_dict(),
                    "error": a.error,
                    "error_kind": a.error_kind,
                    "problems": [p.__dict__ for p in a.problems],
                }
                for a in self.accounts
            ],
        }


def account_key(req: SyncRequest, acc: Account) -> str:
    """The state's name for one source -> target mapping: the same mailbox synced to two targets is
    two mappings.  Built from the stores' identities (user and server, or the id the user pinned), never
    from port or scheme: a rerun through ``imaps://…:993`` instead of ``imap://…:143`` is the same mapping."""
    return f"{req.source.identity(acc.source_user)} -> {req.target.identity(acc.target_user)}"


def migrate_account_key(state, req: SyncRequest, acc: Account, *, rename: bool = True) -> str:
    """The account's name in ``state``, after moving a record kept under an earlier name to it.

    Earlier names: the one state files held before identities (``imap://ann@host:143 -> …``, from
    :meth:`StoreSpec.describe`), and the unpinned identity (a server id given for the first time).  A record
    is only moved when the current name holds nothing, so nothing is merged.  ``rename=False`` (a dry run)
    changes nothing and returns the name that holds the record.
    """
    name = account_key(req, acc)
    unpinned = [replace(spec, params={k: v for k, v in spec.params.items() if k != "id"})
                for spec in (req.source, req.target)]
    earlier = [f"{req.source.describe(acc.source_user)} -> {req.target.describe(acc.target_user)}",
               f"{unpinned[0].identity(acc.source_user)} -> {unpinned[1].identity(acc.target_user)}"]
    for old in dict.fromkeys(earlier):
        if old == name:
            continue
        if not rename:
            if not state.folders(name) and state.folders(old):
                return old
        elif state.rename_account(old, name):
            log.info("state: account %s is now named %s", old, name)
            break
    return name


def apply_preset_defaults(req: SyncRequest) -> None:
    """The provider presets' run-wide defaults (stores/presets.py): connections per account capped at what
    the provider allows, and, unless the user gave a bandwidth (0 included: no limit), a pace that keeps
    each account under the provider's daily IMAP transfer limit.  Idempotent: the fleet's submitter and the
    local runner both call it."""
    d = presets.run_defaults(req.source.params, req.target.params, max(1, min(req.jobs, len(req.accounts) or 1)))
    if d.connections_per_account:
        req.sync.connections = max(1, min(req.sync.connections, d.connections_per_account))
    if req.max_bandwidth is None and d.bytes_per_second:
        req.max_bandwidth = d.bytes_per_second
        log.info("provider preset: at most %.1f KiB/s to the target for this run (the provider's daily "
                 "IMAP transfer limit; --max-bandwidth overrides, 0 for none)", d.bytes_per_second / 1024)


def run_sync(req: SyncRequest) -> RunResult:
    apply_preset_defaults(req)
    if req.max_rate or req.max_bandwidth:
        # A file target's path may hold %u (no one server name): the local disk is the one "server".
        server = req.target.describe("") if req.target.kind == "imap" else f"{req.target.kind}:local"
        req.sync.target_limiter = Limits(req.max_rate, req.max_bandwidth).for_server(server)
    jobs = req.jobs
    if req.max_connections:
        # Each account holds up to `connections` per side: keep jobs x connections under the cap.
        jobs = max(1, min(jobs, req.max_connections))
        req.sync.connections = max(1, min(req.sync.connections, req.max_connections // jobs))
    req.jobs = jobs
    lock = RunLock(req.state_path) if req.state_factory is None else None
    if lock:
        lock.acquire()
    try:
        state = (req.state_factory or StateDB.open)(req.state_path)
        try:
            if req.jobs <= 1 or len(req.accounts) <= 1:
                results = [_one(req, acc, state) for acc in req.accounts]
            else:
                with ThreadPoolExecutor(max_workers=req.jobs, thread_name_prefix="mailmigrate-account") as pool:
                    results = list(pool.map(lambda a: _one(req, a, state), req.accounts))
        finally:
            state.close()
    finally:
        if lock:
            lock.release()
    return RunResult(results, req.state_path, req.sync.dry_run)


def login_for(run_password: Secret | None, own_password: Secret | None,
              options: StoreOptions) -> tuple[Secret | None, StoreOptions]:
    """The password and options one account logs in with on one side.

    With a master user the run's password is the master's and every account logs in through it.  An
    accounts-file line that holds the account's own password, in a run that was given no master password,
    logs that account in as itself: the line's password is the user's, and ignoring it left the account with
    no password at all ("target password missing").
    """
    if not options.master_user:
        return own_password or run_password, options
    if run_password is None and own_password is not None:
        return own_password, StoreOptions(**{**options.__dict__, "master_user": None})
    return run_password, options


def _one(req: SyncRequest, acc: Account, state: StateDB) -> AccountResult:
    r = _sync_one(req, acc, state, migrate_account_key(state, req, acc, rename=not req.sync.dry_run))
    r.account = account_key(req, acc)  # a dry run reads a record kept under an earlier name, reports this one
    r.source, r.target = req.source.describe(acc.source_user), req.target.describe(acc.target_user)
    return r


def _sync_one(req: SyncRequest, acc: Account, state: StateDB, name: str) -> AccountResult:
    if req.sync.stop_requested.is_set():
        r = AccountResult(name, error="not started: the run was stopped (Ctrl-C); run it again to continue",
                          error_kind="failure")
        req.sync.progress.account_done(name, r)
        return r
    try:
        src_pw, src_opts = login_for(req.source_password, acc.source_password, req.source_options)
        tgt_pw, tgt_opts = login_for(req.target_password, acc.target_password, req.target_options)
        source = build_store(
            req.source, user=acc.source_user, password=src_pw,
            options=src_opts, side="source",
        )
        target = build_store(
            req.target, user=acc.target_user, password=tgt_pw,
            options=StoreOptions(**{**tgt_opts.__dict__, "create": not req.sync.dry_run}),
            side="target",
        )
    except MailmigrateError as e:
        r = AccountResult(name, error=str(e), error_kind="configuration" if e.configuration else "failure")
        req.sync.progress.account_done(name, r)
        return r
    opts = req.sync
    if acc.rules:  # the accounts file's own rules for this account, on top of the run's
        opts = replace(opts, selection=opts.selection.with_rules(acc.rules))
    lock = getattr(state, "lock_account", None)
    if lock is None:
        return sync_account(source, target, account_name=name, state=state, options=opts)
    if not lock(name):
        if req.lock_wait > 0:
            log.warning("account %s is being synced by another process on this state; waiting up to %.0fs",
                        name, req.lock_wait)
        if req.lock_wait <= 0 or not lock(name, wait=req.lock_wait):
            r = AccountResult(name, error=f"another process (a fleet worker or another run on this state) is "
                                          f"syncing this account; nothing was done, run again when it finished",
                              error_kind="failure")
            req.sync.progress.account_done(name, r)
            return r
    try:
        return sync_account(source, target, account_name=name, state=state, options=opts)
    finally:
        state.unlock_account(name)
