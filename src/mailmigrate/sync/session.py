"""One account opened for syncing: its passwords, its two stores, the state database and the account's lock.

The command line's runner, a fleet worker and a project's actions all do the same before they copy an
account: pick the password each side logs in with (the run's, the account's own, a master's), build the
two stores, open the state and find the account's record in it (renaming one kept under an earlier name),
and make sure no other process copies the account meanwhile.  Done in three places it drifted (which
password wins, which lock, how long to wait); :func:`open_account` is the one way, as a context manager
that gives back the lock and closes what it opened, whatever happens inside.

Locks: a SQLite state is held by one run at a time (:class:`~.state.RunLock`, taken by
:func:`open_run_state`); a PostgreSQL state is shared by design (other runs, fleet workers), so each
account is held with the state's advisory lock instead, the same one a fleet worker takes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from ..credentials import Secret, choose_password
from ..errors import StateLocked
from ..model import Account
from ..stores.base import Store
from ..stores.registry import StoreOptions, build_store
from .options import SyncOptions, SyncRequest
from .state import RunLock, StateDB

log = logging.getLogger("mailmigrate.sync")


class AccountBusy(StateLocked):
    """Another process (a fleet worker, another run on a shared state) holds the account."""


# --- names -------------------------------------------------------------------------------------------------

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


# --- passwords ---------------------------------------------------------------------------------------------

def login_for(run_password: Secret | None, own_password: Secret | None,
              options: StoreOptions) -> tuple[Secret | None, StoreOptions]:
    """The password and options one account logs in with on one side (the rule: credentials.choose_password):
    an account that logs in as itself rather than through the master gets options without the master."""
    password, master = choose_password(run_password, own_password, options.master_user)
    if master == options.master_user:
        return password, options
    return password, replace(options, master_user=master)


# --- the state ---------------------------------------------------------------------------------------------

@contextlib.contextmanager
def open_run_state(where: Path | str, factory: Callable[[Path], StateDB] | None = None) -> Iterator:
    """The state database for a run: a SQLite file locked for the run (a second run on it is refused, not
    raced), or, through ``factory`` or a ``postgresql://`` URL, a shared state whose accounts are locked one
    by one (:class:`AccountSession`)."""
    if factory is None and isinstance(where, str) and where.startswith(("postgresql://", "postgres://")):
        from .state_pg import PgStateDB

        factory = PgStateDB.open
    lock = RunLock(Path(where)) if factory is None else None
    if lock:
        lock.acquire()
    try:
        state = (factory or StateDB.open)(where)
        try:
            yield state
        finally:
            state.close()
    finally:
        if lock:
            lock.release()


# --- the account -------------------------------------------------------------------------------------------

class AccountSession:
    """An account of a request, opened: use it as ``with open_account(req, acc) as s:``.

    Entering it opens the state (unless the run's is given: ``state=``), finds the account's name in it and
    takes the account's lock (:class:`AccountBusy` when another process holds it past ``lock_wait``
    seconds); leaving it gives the lock back and closes a state it opened.  :meth:`stores` builds the two
    stores with the passwords that apply; they are not opened (the engine opens and closes them)."""

    def __init__(self, req: SyncRequest, acc: Account, *, state=None, lock_wait: float | None = None,
                 rename: bool | None = None):
        self.req, self.account = req, acc
        self.key = account_key(req, acc)  # the name results are reported under
        self.name = self.key  # the state's name for it, once entered (a dry run may read an earlier one)
        self.state = state
        self.lock_wait = req.lock_wait if lock_wait is None else lock_wait
        self.rename = (not req.sync.dry_run) if rename is None else rename
        self._own_state: contextlib.ExitStack | None = None
        self._locked = False

    @property
    def options(self) -> SyncOptions:
        """The run's sync options, with the account's own rules (accounts file, 5th column) on top."""
        opts = self.req.sync
        if self.account.rules:
            opts = replace(opts, selection=opts.selection.with_rules(self.account.rules))
        return opts

    def logins(self) -> tuple[tuple[Secret | None, StoreOptions], tuple[Secret | None, StoreOptions]]:
        """(password, options) for the source and for the target."""
        req, acc = self.req, self.account
        return (login_for(req.source_password, acc.source_password, req.source_options),
                login_for(req.target_password, acc.target_password, req.target_options))

    def store(self, side: str, *, create: bool | None = None) -> Store:
        """The ``side`` ("source" or "target") store, not opened; the target may create its mailbox unless
        the run is a dry run (``create`` says otherwise).  Needs no state: ``sync --just-login`` builds
        stores of sessions it never enters."""
        src, tgt = self.logins()
        if side == "source":
            return build_store(self.req.source, user=self.account.source_user, password=src[0], options=src[1],
                               side="source")
        create = (not self.req.sync.dry_run) if create is None else create
        return build_store(self.req.target, user=self.account.target_user, password=tgt[0],
                           options=replace(tgt[1], create=create), side="target")

    def stores(self, *, create: bool | None = None) -> tuple[Store, Store]:
        """The source and target stores (see :meth:`store`)."""
        return self.store("source"), self.store("target", create=create)

    def __enter__(self) -> "AccountSession":
        try:
            if self.state is None:
                self._own_state = contextlib.ExitStack()
                self.state = self._own_state.enter_context(open_run_state(self.req.state_path,
                                                                          self.req.state_factory))
            self.name = migrate_account_key(self.state, self.req, self.account, rename=self.rename)
            self._lock()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _lock(self) -> None:
        lock = getattr(self.state, "lock_account", None)
        if lock is None:  # SQLite: the whole state is the run's (open_run_state)
            return
        if not lock(self.name):
            if self.lock_wait > 0:
                log.warning("account %s is being synced by another process on this state; waiting up to %.0fs",
                            self.name, self.lock_wait)
            if self.lock_wait <= 0 or not lock(self.name, wait=self.lock_wait):
                raise AccountBusy("another process (a fleet worker or another run on this state) is syncing this "
                                  "account; nothing was done, run again when it finished")
        self._locked = True

    def _close(self) -> None:
        try:
            if self._locked:
                self._locked = False
                self.state.unlock_account(self.name)
        finally:
            if self._own_state is not None:
                own, self._own_state = self._own_state, None
                self.state = None
                own.close()


def open_account(req: SyncRequest, acc: Account, *, state=None, lock_wait: float | None = None,
                 rename: bool | None = None) -> AccountSession:
    """One account of ``req``, opened for syncing (see :class:`AccountSession`): ``state`` is the run's
    state when it has one open (:func:`open_run_state`), else the session opens and closes its own."""
    return AccountSession(req, acc, state=state, lock_wait=lock_wait, rename=rename)
