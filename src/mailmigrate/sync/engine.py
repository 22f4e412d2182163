"""The sync engine: one account, source to target, incremental and loss-free.

The account's run (:class:`_AccountRun`, here) lists both sides, maps folders (sync/folders.py), guards
deletes and hands each folder to its folder run (sync/folder_run.py), several at a time on their own
connections (sync/parallel.py).  A folder is read (sync/recovery.py), planned (sync/plan.py: a value, no
I/O) and the plan executed (sync/copying.py, sync/changes.py); a dry run reads the same way without
recording and counts the same plan.  Each of these parts is an object the account's run makes, and each
worker makes its own, given what it uses; the run inherits from none of them.  docs/ARCHITECTURE.md ("How a
message flows") tells how a message travels.

What makes reruns safe:
  * a source message is copied when the state has no row for its key — never because a header differs;
  * PENDING rows (intent written, outcome unknown) are resolved by fingerprint on the target before
    anything else happens in that folder, so an interrupted APPEND is never repeated blindly;
  * what recovery cannot find is copied again but watched, and a late commit of it removed again;
  * a changed UIDVALIDITY on either side is answered by re-matching content, not by re-copying;
  * ``--delete`` only removes target messages that a row says mailmigrate put there.

Errors are handled by scope (see :mod:`mailmigrate.errors`): a refused message is reported and skipped, a
broken folder is reported and the next one goes on, a lost connection is retried with backoff on fresh
connections, and anything else stops this account only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError, MailmigrateError, ServerRefused
from ..model import AccountResult, FolderPath, FolderStatus, Problem
from ..stores import presets
from ..stores.base import Store
from ..stores.sided import SidedStore as _Sided
from ..stores.sided import side_of as _side
from .changes import Changes
from .copying import CopyPipeline, describe_message  # noqa: F401  (describe_message: part of the engine's API)
from .folder_run import FolderRun
from .folders import FolderPlan, display, plan_folders, separate_collisions
from .limits import RateLimiter
from .parallel import TargetLocks, sync_parallel
from .plan import from_in_flight, in_flight  # noqa: F401  (part of the engine's API)
from .recovery import Recovery
from .selection import Selection
from .state import StateDB

log = logging.getLogger("mailmigrate.sync")


# SyncOptions travel (fleet jobs, projects): their home is sync/options.py, with their serialisation
from .options import Progress, SyncOptions  # noqa: E402,F401


def sync_account(
    source: Store,
    target: Store,
    *,
    account_name: str,
    state: StateDB,
    options: SyncOptions | None = None,
) -> AccountResult:
    """Bring the target up to date with the source for one account; safe to call again at any time."""
    options = options or SyncOptions()
    result = AccountResult(account_name)
    started = time.monotonic()
    run = _AccountRun(_Sided(source, "source"), _Sided(target, "target"), account_name, state, options, result)
    options.progress.account_start(account_name)
    attempt = 0
    while True:
        try:
            run.open()
            run.sync_all()
            break
        except MailmigrateError as e:
            side = _side(e)
            where = f"{side}: " if side else ""
            if e.retryable and attempt + 1 < options.max_attempts:
                attempt += 1
                delay = _backoff(attempt, options, getattr(e, "retry_after", None))
                log.warning("account %s: %s%s; retrying in %.1fs (attempt %d of %d)", account_name, where, e,
                            delay, attempt + 1, options.max_attempts)
                run.close()
                time.sleep(delay)
                continue
            if e.retryable:
                result.error = f"{where}{e} (gave up after {attempt + 1} attempts)"
            else:
                result.error = f"{where}{e}"
            result.error_kind = "configuration" if e.configuration else "failure"
            # said once on screen, by the summary (and the progress line names the account); the log keeps it
            log.info("account %s failed: %s", account_name, result.error)
            break
        except BaseException:
            # Not the account's own trouble (the state database or the fleet's Redis went away, an
            # interrupt): the caller decides; the connections are let go now, not when the process ends —
            # on a fleet each holds a server's connection slot.
            run.close()
            raise
    run.close()
    result.seconds = time.monotonic() - started
    options.progress.account_done(account_name, result)
    return result


def _both(on_source: Callable[[], object], on_target: Callable[[], object]) -> tuple:
    """Run the source's and the target's step at the same time: each waits on its own server, so a run
    with nothing to copy (connect, log in, list, status on both sides) takes the slower side's round trips,
    not their sum — most of a cutover rerun against servers a few milliseconds away.

    The source's step runs on a helper thread, the target's here.  Errors come out as the steps were run
    one after the other did: the source's first.  Each store is still used by one thread at a time.
    """
    box: dict[str, object] = {}

    def source_step():
        try:
            box["result"] = on_source()
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    helper = threading.Thread(target=source_step, name="mm-source-step", daemon=True)
    helper.start()
    try:
        target_result = on_target()
    except BaseException:
        helper.join()
        if "error" in box:
            raise box["error"]
        raise
    helper.join()
    if "error" in box:
        raise box["error"]
    return box["result"], target_result


def _quietly(close: Callable[[], object]) -> None:
    try:
        close()
    except Exception:  # closing must never hide the real error
        pass


def _backoff(attempt: int, options: SyncOptions, suggested: float | None) -> float:
    if suggested:
        return min(float(suggested), options.backoff_max * 4)
    import random  # here, where a retry waits: a run with no retry need not load it

    base = min(options.backoff_max, options.backoff_base * (2 ** (attempt - 1)))
    return base * (0.5 + random.random() / 2)  # jitter: many accounts retrying must not stampede


class _AccountRun:
    """One account's run: both sides' connections, the folder mapping, and what the folder runs share."""

    def __init__(self, source, target, account: str, state: StateDB, options: SyncOptions, result: AccountResult,
                 lead: "_AccountRun | None" = None):
        """``lead``: for a worker of parallel folders, the account's run that made it (``_fork``).  A worker has
        connections and counters of its own (added up at the end) and shares the rest with its lead: the
        report, the sets below, the per-folder locks, the guard's reason and the presets."""
        self.source = source
        self.target = target
        self.account = account
        self.state = state
        self.opt = options
        self.result = result
        self.c = result.counters if lead is None else type(lead.c)()
        self.finished: set[FolderPath] = set()
        self._open = False
        self._subscriptions_done = False
        self._reported_keyword_drops: set[tuple[FolderPath, str]] = \
            set() if lead is None else lead._reported_keyword_drops
        # target folders that exist, by folder_identity: filled in place (the workers, recovery and the folder run
        # hold it)
        self.target_paths: set = set() if lead is None else lead.target_paths
        # target folders this run created, by folder_identity (checked in LIST): shared with the workers too
        self.created_now: set = set() if lead is None else lead.created_now
        # One per target folder, shared by the folder workers: a sweep must not see another source folder's
        # fresh copy into the same target folder before that copy is recorded (see Recovery.sweep).
        self._target_locks = TargetLocks() if lead is None else lead._target_locks
        # Set when the emptied-source guard withholds every delete of the account this run: the reason.
        self._withheld: str | None = None if lead is None else lead._withheld
        self._guarded = False
        # What the URLs' provider presets say (stores/presets.py), read here once: a clone of a store is a
        # plain connection and does not carry them, so a worker takes the lead run's, and its size limit.
        if lead is not None:
            self.source_preset, self.target_preset = lead.source_preset, lead.target_preset
            self.size_limit = lead.size_limit
        else:
            self.source_preset = presets.get(getattr(source, "preset", None))
            self.target_preset = presets.get(getattr(target, "preset", None))
            self.size_limit = getattr(target, "max_message_size", None)
        self.changes = Changes(target, state, account, options, self.c, self._problem)
        self.recovery = Recovery(source, target, state, account, options, self.c, self._problem,
                                 self._target_locks, self.target_paths)
        self.copying = CopyPipeline(source, target, state, account, options, self.c, self._problem,
                                    self._target_locks, self.recovery, self._reported_keyword_drops)
        self.folder_run = FolderRun(source, target, state, account, options, self.c, self._problem,
                                    recovery=self.recovery, copying=self.copying, changes=self.changes,
                                    target_paths=self.target_paths, created_now=self.created_now,
                                    size_limit=self.size_limit, dedupes=self._dedupes)

    # --- connections ----------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        _both(self.source.open, self.target.open)
        self._open = True

    def close(self) -> None:
        """Both sides let go at once: an IMAP LOGOUT waits for its server's answer, a round trip each over a
        WAN at the end of every account (and of every folder worker)."""
        _both(lambda: _quietly(self.source.close), lambda: _quietly(self.target.close))
        self._open = False

    def _reopen_source(self) -> None:
        """After a fetch stream was abandoned mid-response the connection cannot be reused."""
        self.source.reconnect()

    # --- the account ----------------------------------------------------------------------------
    def sync_all(self) -> None:
        src_folders, tgt_folders = _both(self.source.list_folders, self._target_folders)
        # A \Noselect name is no mailbox: a server leaves one behind when a folder with children is deleted
        # (an abort, say), and such a folder must be created again, not asked for its STATUS.
        self.target_paths.clear()
        self.target_paths.update(self.target.folder_identity(f.path) for f in tgt_folders if f.selectable)
        sel = self.opt.selection
        all_src_folders = src_folders
        src_folders = [f for f in src_folders if sel.wants_folder(f.path)]
        if self._gmail_source():
            from . import gmail

            src_folders = gmail.copied_folders(src_folders, sel, self.source_preset.virtual_roles, self.account)
        plans = plan_folders(src_folders, tgt_folders, special_use=sel.special_use,
                             override=sel.role_override if sel.special_uses else None)
        if self._gmail_source():
            plans = self._gmail_plans(plans, tgt_folders, source=True)
        renamed: set[FolderPath] = set()
        if sel.renames_folders:
            plans, renamed = self._apply_renames(plans, tgt_folders)
        if self.target_preset is not None and self.target_preset.name == "gmail":
            plans = self._gmail_plans(plans, tgt_folders, source=False)
        recorded = {f.source_path: f.target_path for f in self.state.folders(self.account)}
        plans, collisions = separate_collisions(plans, self.target.folder_identity, recorded, tgt_folders)
        merged = [c for c in collisions if c.source in renamed or c.kept_by in renamed]
        if merged:
            # A rename the user asked for that lands two folders in one is a mistake in the rules, not a
            # name clash to settle with " (2)": refused before anything is copied.
            c = merged[0]
            raise ConfigError(f"folder rules would merge source folders {display(c.kept_by)} and "
                              f"{display(c.source)} into target folder {display(c.target_path)}; nothing copied")
        for col in collisions:
            # Decided once, before anything is copied, and recorded so that every later run keeps it.
            if not self.opt.dry_run:
                self.state.ensure_folder(self.account, col.source, col.new_path)
            self._problem(col.source, None, f"would land in the same target folder {display(col.target_path)} as "
                          f"source folder {display(col.kept_by)}; copied to {display(col.new_path)} instead",
                          kind="warning")
        self.c.folders = len(plans)
        todo = [p for p in plans if p.source.path not in self.finished]
        statuses, tgt_statuses = _both(lambda: self.folder_run.source_statuses([p.source.path for p in todo]),
                                       lambda: self.folder_run.target_statuses(todo))
        if self.opt.delete and not self._guarded:
            self._guarded = True
            # a folder left out by a rule is not gone
            self._withheld = self.changes.guard_account(all_src_folders, statuses)
        # Unchanged folders are settled here, on this connection, before any other connection is opened:
        # a rerun with nothing to do costs one pipelined STATUS per side.
        work, last = [], []
        for plan in todo:
            if self._dedupes(plan):
                last.append(plan)  # after every label folder, which it is checked against (sync.gmail)
            elif self.folder_run.skip_unchanged(plan, statuses.get(plan.source.path),
                                                tgt_statuses.get(plan.source.path)):
                self.finished.add(plan.source.path)
            else:
                work.append(plan)
        if len(work) > 1 and self.opt.connections > 1 and not self.opt.dry_run:
            sync_parallel(self, work, statuses, tgt_statuses)  # creates the target folders first
        else:
            for plan in work:
                self._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
        gone_done = False
        if last and self.opt.delete and not sel.just_folders:
            # A Gmail label removed on the source takes its copies with it here, before All Mail: the
            # messages only that label held reach the archive in this same run (sync.gmail).
            self.changes.delete_gone_folders({f.path for f in all_src_folders if f.selectable},
                                             self.target_paths, self._withheld)
            gone_done = True
        for plan in last:
            self._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
        if not self.opt.dry_run:
            self.folder_run.check_created_listed()
        tgt_subscribed = {f.path for f in tgt_folders if f.subscribed}
        if not self.opt.dry_run and not self._subscriptions_done:
            wanted = [p for p in plans if p.source.subscribed and p.target_path not in tgt_subscribed]
            for plan, refused in zip(wanted, self.target.subscribe_folders([p.target_path for p in wanted])):
                if refused is not None:
                    self._problem(plan.source.path, None, f"could not subscribe on target: {refused}",
                                  kind="warning")
            self._subscriptions_done = True
        if self.opt.delete and not sel.just_folders and not gone_done:
            # Every listed source folder, excluded ones too: a folder left out by a rule is not gone.
            self.changes.delete_gone_folders({f.path for f in all_src_folders if f.selectable},
                                             self.target_paths, self._withheld)

    # --- provider presets (stores/presets.py); Gmail's own rules are in sync/gmail.py -------------------
    # sync/gmail.py is imported where a side is Gmail: a run between other servers need not load it.
    def _gmail_source(self) -> bool:
        return self.source_preset is not None and self.source_preset.name == "gmail"

    def _dedupes(self, plan: FolderPlan) -> bool:
        if not self._gmail_source():
            return False
        from . import gmail

        return gmail.is_all_mail(self.opt.selection, plan.source)

    def _gmail_plans(self, plans: list[FolderPlan], tgt_folders, *, source: bool) -> list[FolderPlan]:
        from . import gmail

        if source:
            return gmail.archive_plans(plans, tgt_folders, self.opt.selection, self.target.folder_identity)
        plans, dropped = gmail.not_into_views(plans, tgt_folders, self.target_preset.virtual_roles,
                                              self.target.folder_identity)
        for p in dropped:
            self._problem(p.source.path, None, f"not copied: the target folder {display(p.target_path)} is a "
                          "Gmail view of other folders; choose a label with --map", kind="warning")
        return plans

    def _apply_renames(self, plans: list[FolderPlan], tgt_folders) -> tuple[list[FolderPlan], set[FolderPath]]:
        """--map / --rename: the user's name wins over the planned one (special use included); a renamed
        folder asks for no role, since the user chose where it goes."""
        existing = {self.target.folder_identity(f.path) for f in tgt_folders if f.selectable}
        out, renamed = [], set()
        for p in plans:
            tp = self.opt.selection.target_name(p.source.path, p.target_path)
            if tp is None or tp == p.target_path:
                out.append(p)
                continue
            renamed.add(p.source.path)
            out.append(FolderPlan(p.source, tp, None, self.target.folder_identity(tp) in existing))
        return out, renamed

    def _target_folders(self) -> list:
        try:
            return self.target.list_folders()
        except MailmigrateError:
            if not self.opt.dry_run:
                raise
            return []  # a dry run against a target that does not exist yet

    def _sync_one(self, plan: FolderPlan, status: FolderStatus | None,
                  tgt_status: FolderStatus | None = None) -> None:
        path = plan.source.path
        try:
            self.folder_run.sync_folder(plan, status, tgt_status, withheld=self._withheld)
        except MailmigrateError as e:
            if e.scope != "folder":
                raise  # the account's trouble (or the run's): sync_account decides, retrying what it can
            # This folder's trouble (the store said so): report it, go on with the rest.
            self._problem(path, None, f"{_side(e) or 'server'} refused: {e}" if isinstance(e, ServerRefused)
                          else str(e), kind="folder")
            self.c.failed += 1
        if self.copying.reopen_source_needed:
            self.copying.reopen_source_needed = False
            self._reopen_source()
        self.finished.add(path)

    def _fork(self, source: Store, target: Store) -> "_AccountRun":
        """A worker sharing this account's state, options and report, with its own connections and counters."""
        return _AccountRun(_Sided(source, "source"), _Sided(target, "target"), self.account, self.state, self.opt,
                           self.result, lead=self)

    def _problem(self, folder: FolderPath | None, message: str | None, reason: str, kind: str = "message") -> None:
        p = Problem(self.account, display(folder) if folder is not None else None, message, reason, kind)
        self.result.problems.append(p)
        (log.warning if kind in ("warning", "flag") else log.error)("%s", p.describe())


