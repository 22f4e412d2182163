"""Many accounts, one state database, N at a time: what `mailmigrate sync` and the workflow layer run.

The state database is shared by all accounts of a run (one SQLite file, WAL), and locked for the run so
that a second run on the same state is refused rather than allowed to race.  A PostgreSQL state is shared
by design (other runs, fleet workers), so there the lock is per account instead: the same advisory lock a
fleet worker takes, so a local run and a worker never copy one account at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import MailmigrateError
from ..model import Account, AccountResult, Counters
from ..stores import presets
from .engine import sync_account
from .limits import Limits
from .options import SyncOptions, SyncRequest  # noqa: F401  (imported from here by the workflow and tests)
from .session import (AccountBusy, account_key, login_for,  # noqa: F401  (the same)
                      migrate_account_key, open_account, open_run_state)
from .state import StateDB

log = logging.getLogger("mailmigrate.sync")


@dataclass
class RunResult:
    """Every account's result of a run, and what the run as a whole reports and exits with."""

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
    with open_run_state(req.state_path, req.state_factory) as state:
        if req.jobs <= 1 or len(req.accounts) <= 1:
            results = [_one(req, acc, state) for acc in req.accounts]
        else:
            from concurrent.futures import ThreadPoolExecutor  # accounts at once: not paid by a single account

            with ThreadPoolExecutor(max_workers=req.jobs, thread_name_prefix="mailmigrate-account") as pool:
                results = list(pool.map(lambda a: _one(req, a, state), req.accounts))
    return RunResult(results, req.state_path, req.sync.dry_run)


def _one(req: SyncRequest, acc: Account, state: StateDB) -> AccountResult:
    session = open_account(req, acc, state=state)
    r = _sync_one(req, session)
    r.account = session.key  # a dry run reads a record kept under an earlier name, reports this one
    r.source, r.target = req.source.describe(acc.source_user), req.target.describe(acc.target_user)
    return r


def _sync_one(req: SyncRequest, session) -> AccountResult:
    def failed(name: str, error: str, kind: str) -> AccountResult:
        r = AccountResult(name, error=error, error_kind=kind)
        req.sync.progress.account_done(name, r)
        return r

    if req.sync.stop_requested.is_set():
        return failed(session.key, "not started: the run was stopped (Ctrl-C); run it again to continue", "failure")
    try:
        with session:
            try:
                source, target = session.stores()
            except MailmigrateError as e:
                return failed(session.name, str(e), "configuration" if e.configuration else "failure")
            return sync_account(source, target, account_name=session.name, state=session.state,
                                options=session.options)
    except AccountBusy as e:
        return failed(session.name, str(e), "failure")


