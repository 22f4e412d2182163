"""The sync engine: one account, source to target, incremental and loss-free.

How a message travels (docs/ARCHITECTURE.md has the picture): the source store streams (meta, Body) from
a producer thread; the consumer fingerprints each body, records the batch's intent in the state database,
appends the batch to the target, and records the target keys.  Bodies are never parsed or rewritten.

What makes reruns safe:
  * a source message is copied when the state has no row for its key — never because a header differs;
  * PENDING rows (intent written, outcome unknown) are resolved by fingerprint on the target before
    anything else happens in that folder, so an interrupted APPEND is never repeated blindly;
  * what recovery cannot find is copied again but watched: a killed client's last APPEND may still be
    committed by the server afterwards, and such a late copy is removed again (:meth:`_AccountRun._sweep`);
  * a changed UIDVALIDITY on either side is answered by re-matching content, not by re-copying;
  * ``--delete`` only removes target messages that a row says mailmigrate put there.

Errors are handled by scope (see :mod:`mailmigrate.errors`): a refused message is reported and skipped, a
broken folder is reported and the next one goes on, a lost connection is retried with backoff on fresh
connections, and anything else stops this account only.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import (ConfigError, FolderFailed, FormatError, Interrupted, MailmigrateError, MessageRejected,
                      ServerRefused)
from ..model import (
    AccountResult,
    AppendItem,
    Body,
    FolderPath,
    FolderStatus,
    MessageMeta,
    PermanentFlags,
    Problem,
)
from ..stores import presets
from ..stores.base import Store
from .deletes import check_copies, guard_refusal
from .folders import FolderPlan, display, plan_folders, separate_collisions
from . import gmail
from .selection import Selection
from .limits import RateLimiter
from .matching import Fingerprinter, fingerprints, hash_messages, match_multiset
from .state import ADOPTED, DONE, PENDING, FolderState, LostIntent, MessageRow, StateDB

log = logging.getLogger("mailmigrate.sync")

#: a row's flags while a STORE of new flags is in flight (engine._apply_flags): the flags before, each as
#: "(was)FLAG", and after, each as "(now)FLAG", plus the marker; parentheses cannot occur in an IMAP flag or
#: keyword, nor in a Maildir or mbox flag, so no message's flags are ever mistaken for these
_IN_FLIGHT = "(in-flight)"


def in_flight(before: frozenset[str], after: frozenset[str]) -> frozenset[str]:
    return frozenset({_IN_FLIGHT} | {"(was)" + x for x in before} | {"(now)" + x for x in after})


def from_in_flight(recorded: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(before, after) of a row's recorded flags: the same set twice unless a STORE was in flight."""
    if _IN_FLIGHT not in recorded:
        return recorded, recorded
    return (frozenset(x[5:] for x in recorded if x.startswith("(was)")),
            frozenset(x[5:] for x in recorded if x.startswith("(now)")))
_HIGH_BYTE = re.compile(rb"[\x80-\xff]")

_END = object()


# SyncOptions travel (fleet jobs, projects): their home is sync/options.py, with their serialisation
from .options import Progress, SyncOptions  # noqa: E402,F401


def _side(e: BaseException) -> str:
    return getattr(e, "_mm_side", "")


class _Sided:
    """Wraps a store so that every error it raises knows whether it came from the source or the target."""

    def __init__(self, store: Store, side: str):
        self._store = store
        self._side = side

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr
        side = self._side

        def call(*a, **kw):
            try:
                r = attr(*a, **kw)
            except MailmigrateError as e:
                if not hasattr(e, "_mm_side"):
                    e._mm_side = side
                raise
            if hasattr(r, "__next__"):
                return _sided_iter(r, side)
            return r

        return call


def _sided_iter(it, side):
    try:
        yield from it
    except MailmigrateError as e:
        if not hasattr(e, "_mm_side"):
            e._mm_side = side
        raise


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


def _backoff(attempt: int, options: SyncOptions, suggested: float | None) -> float:
    if suggested:
        return min(float(suggested), options.backoff_max * 4)
    base = min(options.backoff_max, options.backoff_base * (2 ** (attempt - 1)))
    return base * (0.5 + random.random() / 2)  # jitter: many accounts retrying must not stampede


class _AccountRun:
    def __init__(self, source, target, account: str, state: StateDB, options: SyncOptions, result: AccountResult):
        self.source = source
        self.target = target
        self.account = account
        self.state = state
        self.opt = options
        self.result = result
        self.c = result.counters
        self.finished: set[FolderPath] = set()
        self._open = False
        self._subscriptions_done = False
        self._reported_keyword_drops: set[tuple[FolderPath, str]] = set()
        self._reopen_source_needed = False
        # Per folder id: (source key, target UID) pairs the target confirmed, written with the next batch's
        # intents in one transaction rather than in one of their own (_settle writes what is left).
        self._owed: dict[int, list[tuple[str, str | None]]] = {}
        self.target_paths: set = set()  # target folders that exist, by folder_identity
        self.created_now: set = set()  # target folders this run created, by folder_identity (checked in LIST)
        # One per target folder, shared by the folder workers: a sweep must not see another source folder's
        # fresh copy into the same target folder before that copy is recorded (see _sweep).
        self._target_locks: dict[FolderPath, threading.RLock] = {}
        self._target_locks_guard = threading.Lock()
        # Set when the emptied-source guard withholds every delete of the account this run: the reason.
        self._withheld: str | None = None
        self._guarded = False
        # What the URLs' provider presets say (stores/presets.py), read here once: a clone of a store is a
        # plain connection and does not carry them.
        self.source_preset = presets.get(getattr(source, "preset", None))
        self.target_preset = presets.get(getattr(target, "preset", None))
        self.size_limit: int | None = getattr(target, "max_message_size", None)

    def _tid(self, path: FolderPath) -> object:
        """Which target folder ``path`` is (see Store.folder_identity): two paths, one folder."""
        return self.target.folder_identity(path)

    def _sharing(self, target_path: FolderPath) -> list[FolderState]:
        """This account's source folders that land in the target folder ``target_path``."""
        return [g for g in self.state.folders(self.account) if self._tid(g.target_path) == self._tid(target_path)]

    # --- connections ----------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        _both(self.source.open, self.target.open)
        self._open = True

    def close(self) -> None:
        for s in (self.source, self.target):
            try:
                s.close()
            except Exception:  # closing must never hide the real error
                pass
        self._open = False

    def _reopen_source(self) -> None:
        """After a fetch stream was abandoned mid-response the connection cannot be reused."""
        self.source.reconnect()

    # --- the account ----------------------------------------------------------------------------
    def sync_all(self) -> None:
        src_folders, tgt_folders = _both(self.source.list_folders, self._target_folders)
        # A \Noselect name is no mailbox: a server leaves one behind when a folder with children is deleted
        # (an abort, say), and such a folder must be created again, not asked for its STATUS.
        self.target_paths = {self._tid(f.path) for f in tgt_folders if f.selectable}
        sel = self.opt.selection
        all_src_folders = src_folders
        src_folders = [f for f in src_folders if sel.wants_folder(f.path)]
        if self._gmail_source():
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
        plans, collisions = separate_collisions(plans, self._tid, recorded, tgt_folders)
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
        statuses, tgt_statuses = _both(lambda: self._source_statuses([p.source.path for p in todo]),
                                       lambda: self._target_statuses(todo))
        if self.opt.delete and not self._guarded:
            self._guarded = True
            self._guard_account(all_src_folders, statuses)  # a folder left out by a rule is not gone
        # Unchanged folders are settled here, on this connection, before any other connection is opened:
        # a rerun with nothing to do costs one pipelined STATUS per side.
        work, last = [], []
        for plan in todo:
            if self._dedupes(plan):
                last.append(plan)  # after every label folder, which it is checked against (sync.gmail)
            elif not self.opt.dry_run and self._skip_unchanged(plan, statuses.get(plan.source.path),
                                                                tgt_statuses.get(plan.source.path)):
                self.finished.add(plan.source.path)
            else:
                work.append(plan)
        if len(work) > 1 and self.opt.connections > 1 and not self.opt.dry_run:
            self._create_before_parallel(work)
            self._parallel(work, statuses, tgt_statuses)
        else:
            for plan in work:
                self._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
        gone_done = False
        if last and self.opt.delete and not sel.just_folders:
            # A Gmail label removed on the source takes its copies with it here, before All Mail: the
            # messages only that label held reach the archive in this same run (sync.gmail).
            self._delete_gone_folders({f.path for f in all_src_folders if f.selectable})
            gone_done = True
        for plan in last:
            self._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
        if not self.opt.dry_run:
            self._check_created_listed()
        tgt_subscribed = {f.path for f in tgt_folders if f.subscribed}
        if not self.opt.dry_run and not self._subscriptions_done:
            for plan in plans:
                if plan.source.subscribed and plan.target_path not in tgt_subscribed:
                    try:
                        self.target.subscribe(plan.target_path)
                    except ServerRefused as e:
                        self._problem(plan.source.path, None, f"could not subscribe on target: {e}", kind="warning")
            self._subscriptions_done = True
        if self.opt.delete and not sel.just_folders and not gone_done:
            # Every listed source folder, excluded ones too: a folder left out by a rule is not gone.
            self._delete_gone_folders({f.path for f in all_src_folders if f.selectable})

    # --- provider presets (stores/presets.py); Gmail's own rules are in sync/gmail.py -------------------
    def _gmail_source(self) -> bool:
        return self.source_preset is not None and self.source_preset.name == "gmail"

    def _dedupes(self, plan: FolderPlan) -> bool:
        return self._gmail_source() and gmail.is_all_mail(self.opt.selection, plan.source)

    def _gmail_plans(self, plans: list[FolderPlan], tgt_folders, *, source: bool) -> list[FolderPlan]:
        if source:
            return gmail.archive_plans(plans, tgt_folders, self.opt.selection, self._tid)
        plans, dropped = gmail.not_into_views(plans, tgt_folders, self.target_preset.virtual_roles, self._tid)
        for p in dropped:
            self._problem(p.source.path, None, f"not copied: the target folder {display(p.target_path)} is a "
                          "Gmail view of other folders; choose a label with --map", kind="warning")
        return plans

    def _fits_target(self, src_path, metas: list[MessageMeta]) -> list[MessageMeta]:
        """The messages the target provider takes; each larger one is reported and counted, not sent (it
        would be refused on every run, never copied)."""
        limit = self.size_limit
        if not limit:
            return metas
        out = []
        for m in metas:
            if m.size is not None and m.size > limit:
                self.c.skipped_too_large += 1
                self._problem(src_path, m.key, f"not copied: {m.size} bytes is more than the target's message "
                              f"size limit of {limit} bytes (?max_message_size= on the target URL overrides it)",
                              kind="skipped")
            else:
                out.append(m)
        return out

    def _apply_renames(self, plans: list[FolderPlan], tgt_folders) -> tuple[list[FolderPlan], set[FolderPath]]:
        """--map / --rename: the user's name wins over the planned one (special use included); a renamed
        folder asks for no role, since the user chose where it goes."""
        existing = {self._tid(f.path) for f in tgt_folders if f.selectable}
        out, renamed = [], set()
        for p in plans:
            tp = self.opt.selection.target_name(p.source.path, p.target_path)
            if tp is None or tp == p.target_path:
                out.append(p)
                continue
            renamed.add(p.source.path)
            out.append(FolderPlan(p.source, tp, None, self._tid(tp) in existing))
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
            self.sync_folder(plan, status, tgt_status)
        except (FolderFailed, FormatError) as e:
            self._problem(path, None, str(e), kind="folder")
            self.c.failed += 1
        except ServerRefused as e:
            if e.code not in (None, "TRYCREATE", "NONEXISTENT", "CANNOT", "CLIENTBUG"):
                raise
            # A folder the server will not create or open: report it, go on with the rest.
            self._problem(path, None, f"{_side(e) or 'server'} refused: {e}", kind="folder")
            self.c.failed += 1
        if self._reopen_source_needed:
            self._reopen_source_needed = False
            self._reopen_source()
        self.finished.add(path)

    def _target_statuses(self, plans: list[FolderPlan]) -> dict[FolderPath, FolderStatus]:
        """Target status of every mapped folder that exists, in one pipelined call, keyed by source path."""
        want = {}
        for p in plans:
            f = self.state.folder(self.account, p.source.path)
            if f is not None and self._tid(f.target_path) in self.target_paths:
                want[p.source.path] = f.target_path
        if not want or self.opt.dry_run:
            return {}
        try:
            st = self.target.folder_statuses(list(dict.fromkeys(want.values())))
        except (FolderFailed, ServerRefused):
            return {}
        return {sp: st[tp] for sp, tp in want.items() if tp in st}

    def _skip_unchanged(self, plan: FolderPlan, s: FolderStatus | None, t: FolderStatus | None) -> bool:
        if s is None or t is None:
            return False
        f = self.state.folder(self.account, plan.source.path)
        if f is None or not self._unchanged(f, s, t) or self.state.has_lost_intents(f.id):
            return False
        self.c.skipped += s.count or 0
        return True

    def _parallel(self, work: list[FolderPlan], statuses, tgt_statuses) -> None:
        """Several folders at once, each worker on its own pair of connections (issue: the latency of one
        connection, not bandwidth or CPU, bounds a single-connection copy)."""
        order = sorted(work, key=lambda p: -((statuses.get(p.source.path).count or 0)
                                             if statuses.get(p.source.path) else 0))
        q: queue.Queue = queue.Queue()
        for p in order:
            q.put(p)
        errors: list[BaseException] = []
        clones = []
        for _ in range(min(self.opt.connections, len(work)) - 1):
            src = getattr(self.source._store, "clone", lambda: None)()
            tgt = getattr(self.target._store, "clone", lambda: None)()
            if src is None or tgt is None:
                break
            clones.append(self._fork(src, tgt))

        def worker(run: "_AccountRun") -> None:
            try:
                if run is not self:
                    try:
                        run.open()
                    except MailmigrateError as e:
                        # The server may limit connections per user: fewer workers, not a failure.  The
                        # side that did open is let go now, not when the account ends: on the fleet it holds
                        # a connection slot other accounts are waiting for.
                        run.close()
                        log.info("account %s: an extra connection was refused (%s); going on with fewer",
                                 self.account, e)
                        return
                while not errors:
                    try:
                        plan = q.get_nowait()
                    except queue.Empty:
                        return
                    run._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
            except BaseException as e:  # handed to the account's retry logic below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(r,), name="mailmigrate-folder", daemon=True)
                   for r in clones]
        for t in threads:
            t.start()
        worker(self)
        for t in threads:
            t.join()
        for r in clones:
            r.close()
            self.c.add(r.c)
            self.finished |= r.finished
        if errors:
            raise errors[0]

    def _fork(self, source: Store, target: Store) -> "_AccountRun":
        """A worker sharing this account's state, options and report, with its own connections and counters."""
        run = _AccountRun(_Sided(source, "source"), _Sided(target, "target"), self.account, self.state, self.opt,
                          self.result)
        run.c = type(self.c)()
        run.target_paths = self.target_paths
        run.created_now = self.created_now
        run._reported_keyword_drops = self._reported_keyword_drops
        run._target_locks = self._target_locks
        run._target_locks_guard = self._target_locks_guard
        run._withheld = self._withheld
        run.source_preset, run.target_preset, run.size_limit = self.source_preset, self.target_preset, self.size_limit
        return run

    def _target_lock(self, target_path: FolderPath) -> threading.RLock:
        with self._target_locks_guard:
            return self._target_locks.setdefault(self._tid(target_path), threading.RLock())

    def _source_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        try:
            return self.source.folder_statuses(paths)
        except (FolderFailed, FormatError, ServerRefused):
            out = {}
            for p in paths:  # one broken folder must not hide the others' status
                try:
                    out[p] = self.source.folder_status(p)
                except (FolderFailed, FormatError, ServerRefused):
                    pass
            return out

    def _ensure_target_folder(self, plan: FolderPlan, fstate, target_path: FolderPath):
        """The folder's state record and its target folder, created if missing; (record, created now)."""
        if fstate is None:
            fstate = self.state.ensure_folder(self.account, plan.source.path, target_path)
        if self._tid(target_path) in self.target_paths:
            return fstate, False
        self.target.create_folder(target_path, plan.special_use)
        self.state.mark_created(fstate.id)
        self.target_paths.add(self._tid(target_path))
        self.created_now.add(self._tid(target_path))
        self.c.folders_created += 1
        log.info("account %s: created target folder %s", self.account, display(target_path))
        return fstate, True

    def _create_before_parallel(self, work: list[FolderPlan]) -> None:
        """The target folders the parallel workers need, created here, one after the other on this
        connection.  Dovecot 2.3 with its mailbox list index (the default) lost one of two folders created at
        the same moment by two sessions of one user: the folder and its mail were on disk, and LIST never
        showed it again (tests/test_fleet.py found it under load)."""
        for plan in work:
            fstate = self.state.folder(self.account, plan.source.path)
            target_path = fstate.target_path if fstate else plan.target_path
            try:
                self._ensure_target_folder(plan, fstate, target_path)
            except (FolderFailed, ServerRefused):
                continue  # the folder's own worker meets it again and reports it with the folder

    def _check_created_listed(self) -> None:
        """Every folder created in this run must be in the target's LIST: a folder the server holds but does
        not list is mail its users cannot see, so it is reported, never passed over."""
        if not self.created_now:
            return
        try:
            listed = {self._tid(f.path) for f in self.target.list_folders()}
        except MailmigrateError:
            return
        for g in self.state.folders(self.account):
            if self._tid(g.target_path) in self.created_now and self._tid(g.target_path) not in listed:
                self._problem(g.source_path, None,
                              f"target folder {display(g.target_path)} was created and holds its copies, but the "
                              "target does not list it (a stale mailbox list index: on Dovecot run `doveadm "
                              "force-resync -u USER '*'`); its users cannot see it until then", kind="folder")
                self.c.failed += 1

    # --- one folder -----------------------------------------------------------------------------
    def sync_folder(self, plan: FolderPlan, src_status: FolderStatus | None,
                    tgt_status: FolderStatus | None = None) -> None:
        """One folder.  ``tgt_status`` is the target folder's status from the account's pipelined STATUS,
        when it was asked for: it saves a round trip per changed folder, and its UIDNEXT is a lower bound of
        the target's UIDNEXT now, which is all the intents' uid floor needs."""
        src_path = plan.source.path
        name = display(src_path)
        fstate = self.state.folder(self.account, src_path)
        # Once a folder is mapped it stays mapped: moving half its mail elsewhere later would split it.
        target_path = fstate.target_path if fstate else plan.target_path
        if self.opt.dry_run:
            return self._dry_run_folder(plan, fstate, target_path)

        fstate, created = self._ensure_target_folder(plan, fstate, target_path)
        if created:
            tgt_status = None
        if self.opt.selection.just_folders:
            # --just-folders: the tree is there; no message is read, copied or deleted, and no mark is
            # recorded, so that a later full run looks at every message.
            self.opt.progress.folder_done(self.account, name)
            return
        if tgt_status is None:
            tgt_status = self.target.folder_status(target_path)
        dedupe = self._dedupes(plan)
        if dedupe and gmail.release_orphans(self.state, self.account, fstate):
            fstate = self.state.folder(self.account, src_path) or fstate
        if self.state.has_lost_intents(fstate.id) and not self.state.has_pending(fstate.id):
            # Intents an earlier run declared lost: their late copies may have arrived since.  (With PENDING
            # rows the sweep waits for recovery, which may claim such a copy, until the end of the folder.)
            self._sweep(fstate, target_path)

        if src_status is not None and self._unchanged(fstate, src_status, tgt_status):
            self.c.skipped += src_status.count or 0
            log.debug("account %s: folder %s unchanged", self.account, name)
            return

        changes = self._changes_since(fstate, src_status, tgt_status)
        if changes is not None:
            # Only what moved since the last complete run: the state holds everything older.
            status, metas = changes.status, changes.changed
            rows = self.state.messages(fstate.id)
            gone = [r for k, r in rows.items() if k in changes.vanished]
            source_count = status.count
        else:
            status, metas = self.source.list_messages(src_path)
            rows = self.state.messages(fstate.id)
            if not rows and metas and (tgt_status.count or 0) > 0 and not self.state.has_lost_intents(fstate.id):
                rows = self._adopt(fstate, src_path, target_path, metas)
            if rows and fstate.source_validity is not None and status.validity != fstate.source_validity:
                rows = self._rematch_source(fstate, src_path, metas, rows)
            if rows and fstate.target_validity is not None and tgt_status.validity != fstate.target_validity:
                rows = self._rematch_target(fstate, target_path, rows)
            if any(r.state == PENDING for r in rows.values()):
                rows = self._recover(fstate, target_path, rows)
            by_key = {m.key: m for m in metas}
            gone = [r for k, r in rows.items() if k not in by_key]
            source_count = len(metas)

        if fstate.source_validity is None:
            # Recorded before the first write: a run killed in this folder leaves rows keyed by these UIDs, and
            # the rerun must be able to tell when they no longer name the same messages.
            self.state.set_folder_marks(fstate.id, source_validity=status.validity, source_uidnext=None,
                                        source_modseq=None, source_count=None, target_validity=fstate.target_validity)
        sel = self.opt.selection
        new = [m for m in metas if m.key not in rows]
        ruled = 0
        if sel.has_message_rules:
            # Left out by a rule: counted as such, never failed; and still listed above, so the rows of
            # its earlier copies are not "gone" and --delete leaves them alone.
            wanted = self._wanted(src_path, new)
            ruled = len(new) - len(wanted)
            new = wanted
            self.c.skipped_by_rule += ruled
        kept = len(new)
        new = self._fits_target(src_path, new)
        ruled += kept - len(new)  # like a rule: a larger limit next run lets them in
        in_label = 0
        if dedupe and new:
            kept = len(new)
            new = gmail.skip_in_label(self.state, self.account, fstate, self.source, src_path, new)
            in_label = kept - len(new)  # not "already there": counted apart
            self.c.skipped_in_label += in_label
        flag_changes = []
        for m in metas:
            r = rows.get(m.key)
            if r is not None and r.state == DONE:
                flags = _clean(m.flags)
                if flags != r.source_flags:
                    flag_changes.append((m, r, flags))
        self.c.skipped += max(0, (source_count or 0) - len(new) - ruled - in_label)

        failures_before = self.c.failed
        perm = self.target.permanent_flags(target_path)
        if flag_changes:
            self._apply_flags(fstate, target_path, flag_changes, perm)
        if new:
            self._copy(fstate, src_path, target_path, new, perm, tgt_status)
        if gone and self.opt.delete:
            copies = sum(1 for r in rows.values() if r.state == DONE and r.target_key is not None)
            going = sum(1 for r in gone if r.state == DONE and r.target_key is not None)
            why = self._withheld or (None if self.opt.force_delete else
                                     guard_refusal(copies, going, source_count, self.opt.delete_guard))
            if why:
                self._withhold(src_path, going, why, report=not self._withheld)
            else:
                self._delete(fstate, target_path, gone, tgt_status.validity)
        self._sweep(fstate, target_path, settle=True)

        # The target's UIDVALIDITY recorded is the one from before the copy, not after: the keys recorded in
        # this run belong to it, so a change during the run shows up as a mismatch next time (and
        # re-matching), not hidden.
        if self.c.failed == failures_before and not ruled:
            self.state.set_folder_marks(
                fstate.id,
                source_validity=status.validity,
                source_uidnext=status.uidnext,
                source_modseq=status.highestmodseq,
                source_count=source_count,
                target_validity=tgt_status.validity,
            )
        else:
            # Keep validities (the mapping is right) but make the next run look at every message again,
            # so that what failed is retried and reported rather than skipped as "unchanged".
            # Likewise when a rule left messages out: an age rule lets them in as time passes, and the
            # rules may be different next run.
            self.state.set_folder_marks(
                fstate.id,
                source_validity=status.validity,
                source_uidnext=None,
                source_modseq=None,
                source_count=None,
                target_validity=tgt_status.validity,
            )
        self.opt.progress.folder_done(self.account, name)

    def _changes_since(self, f: FolderState, s: FolderStatus | None, t: FolderStatus):
        """The source's changes since the last complete run, or None to list the folder in full.

        Full listing whenever the state cannot be completed from changes alone: a changed UIDVALIDITY on
        either side (re-matching needs every message), PENDING rows (recovery may send messages back to
        "new"), markers left empty by a run with failures, and with ``--delete`` rows that no longer match
        the source's count (messages that left while an earlier run did not delete: only a listing finds
        them now, the change log has moved past them).
        """
        marks = (f.source_validity, f.source_uidnext, f.source_modseq, f.source_count)
        if s is None or s.highestmodseq is None or None in marks or f.target_validity is None:
            return None
        if s.validity != f.source_validity or t.validity != f.target_validity:
            return None
        if self.state.has_pending(f.id):
            return None
        if self.opt.delete and self.state.count(f.id) != f.source_count:
            return None
        return self.source.changes_since(f.source_path, FolderStatus(*marks))

    def _unchanged(self, f: FolderState, s: FolderStatus, t: FolderStatus) -> bool:
        """A folder can be skipped without listing it only when the store gives a change marker that
        covers flag changes too (HIGHESTMODSEQ or the store's equivalent)."""
        if s.highestmodseq is None or s.uidnext is None or s.count is None:
            return False
        if (f.source_validity, f.source_uidnext, f.source_modseq, f.source_count, f.target_validity) != (
            s.validity, s.uidnext, s.highestmodseq, s.count, t.validity
        ):
            return False
        if self.opt.delete and self.state.count(f.id) != s.count:
            # Rows for messages that left the source while an earlier run did not delete: act on them now.
            return False
        return not self.state.has_pending(f.id)

    # --- copying --------------------------------------------------------------------------------
    def _copy(self, f: FolderState, src_path, target_path, new: list[MessageMeta], perm: PermanentFlags,
              tgt_status: FolderStatus) -> None:
        name = display(src_path)
        total_bytes = sum(m.size or 0 for m in new)
        self.opt.progress.folder_start(self.account, name, len(new), total_bytes)
        max_n, max_bytes = self.target.append_batch_limit()
        lim = self.opt.target_limiter
        if lim is not None and lim.active:
            # Small batches under a rate limit, so that the limit is kept within a run and not only on average.
            if lim.mps:
                max_n = max(1, min(max_n, int(lim.mps // 4)))
            if lim.bps:
                max_bytes = max(1, min(max_bytes, int(lim.bps // 4)))
        uid_floor = tgt_status.uidnext if self.target.ordered_keys else None
        wanted = {m.key: m for m in new}

        q: queue.Queue = queue.Queue(maxsize=self.opt.read_ahead)
        stop = threading.Event()
        producer = threading.Thread(
            target=self._produce, args=(src_path, [m.key for m in new], q, stop), name="mailmigrate-fetch",
            daemon=True,
        )
        producer.start()
        batch: list[tuple[MessageMeta, Body, str, str | None]] = []
        batch_bytes = 0
        finished = False
        try:
            while True:
                item = q.get()
                if item is _END:
                    finished = True
                    break
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                meta, body, fp, nfp = item
                if meta.key not in wanted:
                    body.close()
                    continue
                # The listing's flags and date win over what a FETCH of the body may say: they were read
                # together with the key the state records.
                listed = wanted[meta.key]
                if listed.internaldate is None and meta.internaldate is not None:
                    # Known only from a change report (flags): the date comes with the body.
                    listed = dataclasses.replace(listed, internaldate=meta.internaldate)
                batch.append((listed, body, fp, nfp))
                batch_bytes += body.size
                if len(batch) >= max_n or batch_bytes >= max_bytes:
                    self._flush(f, src_path, target_path, batch, perm, uid_floor)
                    batch, batch_bytes = [], 0
            if batch:
                self._flush(f, src_path, target_path, batch, perm, uid_floor)
                batch = []
            self._settle(f)
        finally:
            for _, body, _, _ in batch:
                body.close()
            if self._owed.get(f.id):
                try:
                    self._settle(f)
                except Exception as e:  # the error already on its way matters more; recovery finds these
                    log.warning("could not record the last copied batch of %s: %s", name, e)
            if not finished:
                # The source connection is mid-response: stop the reader and use a fresh connection for
                # the next folder.
                stop.set()
                _drain(q)
                producer.join(timeout=5)
                self._reopen_source_needed = True
            else:
                producer.join()
        for key, reason in self.source.fetch_problems():
            self._problem(src_path, key, f"could not be read from the source: {reason}")
            self.c.failed += 1

    def _produce(self, src_path, keys: list[str], q: queue.Queue, stop: threading.Event) -> None:
        try:
            for meta, body in self.source.fetch(src_path, keys):
                fp = Fingerprinter()
                for chunk in body.chunks():
                    fp.update(chunk)
                exact, norm = fp.result()
                while not stop.is_set():
                    try:
                        q.put((meta, body, exact, norm), timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    body.close()
                    return
            q.put(_END)
        except BaseException as e:  # forwarded: the consumer decides what it means
            if not stop.is_set():
                q.put(e)

    def _flush(self, f: FolderState, src_path, target_path, batch, perm: PermanentFlags, uid_floor) -> None:
        if self.opt.stop_requested.is_set():
            raise Interrupted("stopped by the user before the next batch; run the same command again to resume")
        if self.opt.checkpoint:
            self.opt.checkpoint("before-intent")
        with self._target_lock(target_path):
            self._flush_locked(f, src_path, target_path, batch, perm, uid_floor)

    def _flush_locked(self, f: FolderState, src_path, target_path, batch, perm: PermanentFlags, uid_floor) -> None:
        rows = [
            MessageRow(meta.key, fp, nfp, body.size, _clean(meta.flags), None, PENDING, uid_floor)
            for meta, body, fp, nfp in batch
        ]
        if self.opt.target_limiter is not None:
            self.opt.target_limiter.acquire(len(batch), sum(b.size for _, b, _, _ in batch))
        done = self._owed.pop(f.id, [])
        try:
            self.state.record_intents(f.id, rows, done)
        except BaseException:
            self._owed.setdefault(f.id, [])[:0] = done
            raise
        if self.opt.checkpoint:
            self.opt.checkpoint("before-append")
        items = []
        for meta, body, _, _ in batch:
            kept, dropped = perm.filter(_clean(meta.flags))
            for kw in dropped:
                if (target_path, kw) not in self._reported_keyword_drops:
                    self._reported_keyword_drops.add((target_path, kw))
                    self._problem(src_path, None, f"target folder does not keep the flag {kw}; dropped", kind="flag")
            items.append(AppendItem(body, kept, meta.internaldate))
        try:
            keys = self.target.append(target_path, items)
        except MessageRejected as e:
            if len(items) == 1:
                # A tagged NO: nothing was stored, so the intent is void.
                meta, body, _, _ = batch[0]
                self.state.drop(f.id, [meta.key])
                self._rejected(src_path, meta, body, e)
                return
            # Part of the batch may have gone in (a store may fall back to one-by-one): find what did by
            # content, then send the rest one at a time so that only the refused message is left out.  The
            # server answered every APPEND, so nothing of this batch can still arrive: no watch.
            self._settle(f)
            self._recover(f, target_path, self.state.messages(f.id), watch=False)
            self._one_by_one(f, src_path, target_path, batch, items)
            return
        if self.opt.checkpoint:
            self.opt.checkpoint("after-append")
        self._record_appended(f, target_path, rows, keys)
        self._check_rewritten(src_path, target_path, batch, keys)
        nbytes = sum(b.size for _, b, _, _ in batch)
        self.c.copied += len(batch)
        self.c.bytes_copied += nbytes
        self.opt.progress.copied(self.account, display(src_path), len(batch), nbytes)
        for _, body, _, _ in batch:
            body.close()

    def _check_rewritten(self, src_path, target_path, batch, keys) -> None:
        """Read back the copies whose header holds raw 8-bit bytes or that hold a NUL, the bytes servers
        rewrite (Cyrus's munge8bit turns each 8-bit header byte into "X", Dovecot serves each NUL as 0x80, both
        keeping the size): a copy that differs is reported for that message and
        counted, not passed off as exact. Recovery still finds it by its normalised fingerprint. Only such
        messages are read back, so a clean copy costs nothing."""
        suspects = {}
        for (meta, body, _, nfp), key in zip(batch, keys):
            if key is None or nfp is None:
                continue
            head = next(body.chunks(1 << 16), b"")
            end = head.find(b"\r\n\r\n")
            if _HIGH_BYTE.search(head[: end if end >= 0 else len(head)]):
                suspects[key] = (meta, body, "8-bit header bytes")
            elif any(b"\0" in c for c in body.chunks(1 << 16)):
                suspects[key] = (meta, body, "NUL bytes")  # Dovecot serves each as 0x80
        if not suspects:
            return
        for tmeta, copy in self.target.fetch(target_path, list(suspects)):
            try:
                meta, body, what = suspects[tmeta.key]
                same = copy.size == body.size and b"".join(copy.chunks()) == b"".join(body.chunks())
            finally:
                copy.close()
            if not same:
                self.c.rewritten += 1
                self._problem(src_path, meta.key, f"the target rewrote {what} of this message "
                                                  f"(stored as {'/'.join(target_path)}, UID {tmeta.key}); its "
                                                  f"copy is not byte-exact", kind="warning")

    def _settle(self, f: FolderState) -> None:
        """Write the completions still owed for this folder (the last batch's, or before the state is read)."""
        done = self._owed.pop(f.id, None)
        if done:
            self.state.complete(f.id, done)

    def _record_appended(self, f: FolderState, target_path, rows: list[MessageRow], keys: list[str | None]) -> None:
        """Every UID known (UIDPLUS): the completions go with the next batch's intents, one transaction per
        batch. A crash before that leaves the batch PENDING, as a crash between APPEND and its own commit
        did: recovery finds the copies by fingerprint above the floor. Unknown UIDs are looked for by content
        among unclaimed target messages, so everything owed is written first: an earlier batch's copies must
        be claimed before they could be taken for this one's."""
        known = [(r.source_key, k) for r, k in zip(rows, keys) if k is not None]
        unknown = [r for r, k in zip(rows, keys) if k is None]
        if not unknown:
            self._owed.setdefault(f.id, []).extend(known)
            return
        self._settle(f)
        if known:
            self.state.complete(f.id, known)
        if unknown:
            # No UIDPLUS: the server did not say which UIDs it made.  Find them by content above the
            # floor recorded with the intent; the rows stay PENDING until found.
            found, _ = self._find_on_target(f, target_path, unknown)
            if found:
                self.state.complete(f.id, list(found.items()))
            missing = [r for r in unknown if r.source_key not in found]
            if missing:
                # Appended (the server said OK) but not recognisable: the server changed the bytes.  Mark
                # done without a target key so that no rerun copies it again.
                self.state.complete(f.id, [(r.source_key, None) for r in missing])
                for r in missing:
                    self._problem(f.source_path, r.source_key,
                                  "copied, but the target changed its bytes so it cannot be matched later "
                                  "(flag changes and --delete will not reach this copy)", kind="warning")

    def _one_by_one(self, f: FolderState, src_path, target_path, batch, items) -> None:
        current = self.state.messages(f.id)
        for (meta, body, fp, nfp), item in zip(batch, items):
            row = current.get(meta.key)
            if row is not None and row.state == DONE:
                self.c.copied += 1
                self.c.bytes_copied += body.size
                body.close()
                continue
            r = MessageRow(meta.key, fp, nfp, body.size, _clean(meta.flags), None, PENDING,
                           row.uid_floor if row else None)
            self.state.record_intents(f.id, [r])
            try:
                keys = self.target.append(target_path, [item])
            except MessageRejected as e:
                self.state.drop(f.id, [meta.key])
                self._rejected(src_path, meta, body, e)
                continue
            self._record_appended(f, target_path, [r], keys)
            self.c.copied += 1
            self.c.bytes_copied += body.size
            self.opt.progress.copied(self.account, display(src_path), 1, body.size)
            body.close()

    def _rejected(self, src_path, meta: MessageMeta, body: Body, e: Exception) -> None:
        self._problem(src_path, meta.key, f"target refused it ({describe_message(body)}): {e}")
        self.c.failed += 1
        body.close()

    # --- recovery and re-matching ---------------------------------------------------------------
    def _find_on_target(self, f: FolderState, target_path,
                        rows: list[MessageRow]) -> tuple[dict[str, str], FolderStatus]:
        """Source key -> target key for rows whose copies are found; also the target's status as listed."""
        floors = [r.uid_floor for r in rows if r.uid_floor is not None]
        min_uid = min(floors) if (floors and self.target.ordered_keys and len(floors) == len(rows)) else None
        status, metas = self.target.list_messages(target_path, min_uid=min_uid)
        claimed = self.state.all_target_keys(f.id)
        sizes = {r.size for r in rows}
        any_norm = any(r.norm_fingerprint for r in rows)
        cands = [
            m for m in metas
            if m.key not in claimed and (any_norm or m.size is None or m.size in sizes)
        ]
        if not cands:
            return {}, status
        return _match_rows(self.target, target_path, cands, rows), status

    def _recover(self, f: FolderState, target_path, rows: dict[str, MessageRow],
                 watch: bool = True) -> dict[str, MessageRow]:
        pending = [r for r in rows.values() if r.state == PENDING]
        if not pending:
            return rows
        found, status = self._find_on_target(f, target_path, pending)
        if found:
            self.state.complete(f.id, list(found.items()))
        lost = [r for r in pending if r.source_key not in found]
        # Not on the target now.  Copied again as new; but the server may still be finishing the APPEND of
        # a killed client, so on a target with ordered keys the intents are watched from the UIDNEXT seen
        # now (a later commit gets a UID at or above it).  A store without ordered keys is written by this
        # process itself (Maildir's rename is the commit), so nothing of a dead run can land later.
        floor = status.uidnext if watch and self.target.ordered_keys else None
        if lost and floor is not None:
            self.state.declare_lost(f.id, lost, uid_floor=floor, at=time.time())
        elif lost:
            self.state.drop(f.id, [r.source_key for r in lost])
        self.c.recovered += len(found)
        log.info("account %s, folder %s: recovered %d interrupted copies by content, %d to copy again",
                 self.account, display(f.source_path), len(found), len(lost))
        return self.state.messages(f.id)

    def _sweep(self, f: FolderState, target_path, settle: bool = False) -> None:
        """Remove late copies of intents declared lost, once their messages have been copied again.

        Why: a client killed right after sending a whole APPEND leaves the server to commit it, and under load
        that can happen after the next run's recovery looked and found nothing (observed: ~0.4 s after the
        kill).  Recovery then copies the messages again, and the late commit becomes a second copy no row
        claims.  Such a copy is mailmigrate's own, so it is removed — by content, like recovery: a watched
        intent whose row is DONE again with its own target key matches at most one unclaimed target message
        of the same bytes above the watch's floor.  Twins are two rows with two claimed copies and two
        watches, so both survive.  ``settle``: at the end of a folder, wait out ``late_commit_grace`` for
        intents declared lost moments ago, so the usual late commit is settled by this run; later ones are
        found by the next run's sweep, until ``late_commit_window`` has passed.
        """
        watches = self.state.lost_intents(f.id)
        if not watches:
            return
        left = self._sweep_once(f, target_path, watches)
        if settle and left:
            wait = max(w.lost_at for w in left) + self.opt.late_commit_grace - time.time()
            if wait > 0:
                time.sleep(wait)
                self._sweep_once(f, target_path, self.state.lost_intents(f.id))
        cutoff = time.time() - self.opt.late_commit_window
        expired = [w.id for w in self.state.lost_intents(f.id) if w.lost_at < cutoff]
        if expired:
            self.state.forget_lost(f.id, expired)

    def _sweep_once(self, f: FolderState, target_path, watches: list[LostIntent]) -> list[LostIntent]:
        """One look at the target; returns the watches that could match but found nothing yet."""
        with self._target_lock(target_path):
            # Every source folder of this account that lands in the same target folder: their copies are
            # claimed too, and while any of them has PENDING rows an unclaimed copy may be theirs.
            sharing = self._sharing(target_path)
            if any(self.state.has_pending(g.id) for g in sharing):
                return []
            rows = self.state.messages(f.id)
            ready = []
            for w in watches:
                r = rows.get(w.source_key)
                if (w.uid_floor is not None and r is not None and r.state == DONE and r.target_key is not None
                        and r.fingerprint == w.fingerprint):
                    ready.append(w)
            if not ready:
                return []
            _, metas = self.target.list_messages(target_path, min_uid=min(w.uid_floor for w in ready))
            claimed: set[str] = set()
            for g in sharing:
                claimed |= self.state.all_target_keys(g.id)
            sizes = {w.size for w in ready}
            any_norm = any(w.norm_fingerprint for w in ready)
            cands = [m for m in metas if m.key not in claimed and (any_norm or m.size is None or m.size in sizes)]
            if not cands:
                return ready
            hashed, described = [], {}
            for meta, body in self.target.fetch(target_path, [m.key for m in cands]):
                try:
                    fp, nfp = fingerprints(body)
                    described[meta.key] = describe_message(body)
                finally:
                    body.close()
                hashed.append((meta.key, fp, nfp))
            order = {m.key: i for i, m in enumerate(cands)}
            hashed.sort(key=lambda t: order.get(t[0], 0))
            late = match_multiset(((str(w.id), w.fingerprint, w.norm_fingerprint) for w in ready), hashed)
            if not late:
                return ready
            by_id = {str(w.id): w for w in ready}
            try:
                self.target.delete_messages(target_path, list(late.values()))
            except ServerRefused as e:
                # No UIDPLUS: EXPUNGE could also remove messages someone else marked \Deleted.  Name each
                # copy instead, once (its watch is dropped below).
                for wid, key in late.items():
                    self._problem(f.source_path, by_id[wid].source_key,
                                  f"the target holds a second copy (target key {key}, {described.get(key, '')}) "
                                  f"that a killed run's server committed after it was copied again; "
                                  f"not removed: {e}", kind="warning")
            else:
                self.c.late_duplicates_removed += len(late)
                log.warning("account %s, folder %s: removed %d late duplicates of an interrupted run",
                            self.account, display(f.source_path), len(late))
            self.state.forget_lost(f.id, [by_id[wid].id for wid in late])
            return [w for w in ready if str(w.id) not in late]

    def _adopt(self, f: FolderState, src_path, target_path, metas: list[MessageMeta]) -> dict[str, MessageRow]:
        """The state knows nothing of this folder but the target folder holds mail: recognise the copies.

        Why: a lost or deleted state file, a trial ``sync`` before a project, an earlier migration with
        another tool, or the same source reached by another spelling all leave a target that already holds
        the mail; copying by "no row" would put every message there twice.  Source and target messages are
        paired by content, as recovery does (exact bytes, then CRLF-normalised), each target message at most
        once (twins need twin copies); the pairs become DONE rows and only the rest is copied.  Target
        messages that pair with nothing are the user's and stay untouched.
        """
        with self._target_lock(target_path):
            rows, others = self._pair_with_target(src_path, target_path, metas)
            self.state.adopt(f.id, rows)
        log.info("account %s, folder %s: the target folder %s already held %d of its messages (adopted, not "
                 "copied again) and %d messages of its own (left alone)", self.account, display(src_path),
                 display(target_path), len(rows), others)
        return self.state.messages(f.id)

    def _pair_with_target(self, src_path, target_path, metas: list[MessageMeta]) -> tuple[list[MessageRow], int]:
        """DONE rows for the source messages whose copies the target folder holds (no row claims them yet),
        and how many target messages are no such copy; counted as adopted and target-only."""
        _, tmetas = self.target.list_messages(target_path)
        claimed: set[str] = set()
        for g in self._sharing(target_path):
            claimed |= self.state.all_target_keys(g.id)
        cands = [m for m in tmetas if m.key not in claimed]
        rows: list[MessageRow] = []
        if cands:
            order = {m.key: i for i, m in enumerate(cands)}
            hashed = sorted(hash_messages(self.target.fetch(target_path, [m.key for m in cands])),
                            key=lambda t: order.get(t[0], 0))
            by_key = {m.key: m for m in metas}
            source: dict[str, tuple[str, str | None, int]] = {}
            for meta, body in self.source.fetch(src_path, list(by_key)):
                try:
                    source[meta.key] = (*fingerprints(body), body.size)
                finally:
                    body.close()
            self.source.fetch_problems()  # an unreadable message is reported when its copy is tried
            pairs = match_multiset(((k, fp, nfp) for k, (fp, nfp, _) in sorted(source.items())), hashed)
            rows = [MessageRow(sk, source[sk][0], source[sk][1], source[sk][2], _clean(by_key[sk].flags), tk,
                               DONE, ADOPTED) for sk, tk in pairs.items()]
        self.c.adopted += len(rows)
        self.c.target_only += len(cands) - len(rows)
        return rows, len(cands) - len(rows)

    def _rematch_target(self, f: FolderState, target_path, rows: dict[str, MessageRow]) -> dict[str, MessageRow]:
        log.warning("account %s: target folder %s changed its UIDVALIDITY; re-matching %d messages by content",
                    self.account, display(target_path), len(rows))
        _, metas = self.target.list_messages(target_path)
        found = _match_rows(self.target, target_path, metas, rows.values())
        self.state.rekey_target(f.id, {k: found.get(k) for k in rows})
        self.c.rematched += len(found)
        return self.state.messages(f.id)

    def _rematch_source(self, f: FolderState, src_path, metas: list[MessageMeta],
                        rows: dict[str, MessageRow]) -> dict[str, MessageRow]:
        log.warning("account %s: source folder %s changed its UIDVALIDITY; re-matching %d messages by content",
                    self.account, display(src_path), len(rows))
        sizes = {r.size for r in rows.values()}
        cands = [m for m in metas if m.size is None or m.size in sizes]
        # Here the rows are the candidates' counterpart: each old row claims one new source message.
        found = _match_rows(self.source, src_path, cands, rows.values())
        renames = dict(found)
        stamp = f.source_validity
        for k in rows:
            if k not in renames:
                # The message left the source: keep the row (it owns a target copy) under a key no new
                # source message can have, so that --delete can still remove that copy.
                renames[k] = f"gone:{stamp}:{k}"
        self.state.rekey_source(f.id, renames)
        self.c.rematched += len(found)
        return self.state.messages(f.id)

    # --- flags and deletions --------------------------------------------------------------------
    def _apply_flags(self, f: FolderState, target_path, changes, perm: PermanentFlags) -> None:
        """The source's flag changes onto the copies, as additions and removals relative to the flags the
        state recorded (so what a user changed on the target alone stays).

        A run killed between the STORE and recording its result would leave the state with the old flags and
        the copy with the new ones; if the source then changed back, nothing would differ from the state and
        the copy would keep the flags for good.  So each row is first marked in flight with both sets
        (:func:`in_flight`): the next run, not knowing which of the two the copy holds, adds what the source
        has beyond either and removes what either had beyond the source, which is right for both."""
        ops = []
        updates = []
        marks = []
        for meta, row, flags in changes:
            before, after = from_in_flight(row.source_flags)
            add = (flags - before) | (flags - after)
            remove = (before - flags) | (after - flags)
            add, _ = perm.filter(add)
            remove, _ = perm.filter(remove)
            if row.target_key is not None and (add or remove):
                ops.append((row.target_key, add, remove))
                # the copy may hold ``before``, ``after`` (a run killed earlier) or ``flags``: two sets whose
                # intersection and union are those of all three keep the next run's change right for each
                marks.append((meta.key, in_flight((before & after) | ((before | after) - flags), flags)))
            updates.append((meta.key, flags))
        if ops:
            self.state.set_flags(f.id, marks)  # before the STORE: see the docstring
            self.target.set_flags(target_path, ops)
        self.state.set_flags(f.id, updates)
        self.c.flags_updated += len(ops)

    def _delete(self, f: FolderState, target_path, gone: list[MessageRow], validity: int | None) -> None:
        """Delete the copies of messages that left the source, each checked first (sync.deletes): what is no
        longer the copy mailmigrate made stays and is reported.  The rows go either way: their source
        message is gone."""
        self._delete_checked(f, target_path, gone, validity)
        self.state.drop(f.id, [r.source_key for r in gone])

    def _delete_checked(self, f: FolderState, target_path, rows: list[MessageRow], validity: int | None) -> None:
        checked = check_copies(self.target, target_path, rows, validity)
        if checked.matching:
            self.target.delete_messages(target_path, [r.target_key for r in checked.matching])
        self.c.deleted += len(checked.matching)
        for r, why in checked.refused:
            self._problem(f.source_path, r.source_key, f"left on the target, not deleted: {why}", kind="warning")

    def _withhold(self, folder: FolderPath | None, copies: int, why: str, report: bool = True) -> None:
        self.c.deletes_withheld += copies
        if report:
            self._problem(folder, None, f"{copies} copies not deleted: {why}; if that is right, run again with "
                                        f"--force-delete", kind="delete")

    def _guard_account(self, src_folders, statuses: dict[FolderPath, FolderStatus]) -> None:
        """The emptied-source guard over the whole account, before any folder deletes: a source that lists
        no mail at all, or lost more than the set share of the copies since the last run (estimated from the
        counts: rows per folder against the source's message count, a folder gone counting whole)."""
        if self.opt.force_delete:
            return
        listed = {f.path for f in src_folders if f.selectable}
        copies = going = 0
        for f in self.state.folders(self.account):
            n = self.state.count(f.id)
            copies += n
            st = statuses.get(f.source_path)
            if f.source_path not in listed:
                going += n
            elif st is not None and st.count is not None:
                going += max(0, n - st.count)
        counts = [st.count for st in statuses.values() if st is not None and st.count is not None]
        why = guard_refusal(copies, going, sum(counts) if counts else None, self.opt.delete_guard)
        if why:
            self._withheld = f"the account's source looks emptied: {why}"
            self._problem(None, None, f"no deletes in this account this run: {self._withheld}; if that is right, "
                                      f"run again with --force-delete", kind="delete")

    def _delete_gone_folders(self, listed: set[FolderPath]) -> None:
        """``--delete`` for source folders that are gone: mailmigrate's copies in their target folders are
        deleted (each checked, as in :meth:`_delete`), then the target folder itself when mailmigrate created
        it and nothing else is left in it.  Anything else stays and is reported."""
        created = self.state.created_folders(self.account)
        gone = [f for f in self.state.folders(self.account) if f.source_path not in listed]
        for f in sorted(gone, key=lambda f: -len(f.target_path)):  # children before their parents
            rows = [r for r in self.state.messages(f.id).values() if r.state == DONE and r.target_key is not None]
            name = display(f.source_path)
            if self._withheld:
                self._withhold(f.source_path, len(rows), self._withheld, report=False)
                continue
            if self.opt.dry_run:
                self.c.deleted += len(rows)
                continue
            if self._tid(f.target_path) not in self.target_paths:
                self.state.forget_folder(f.id)  # the target folder is gone too: nothing left to do
                continue
            try:
                # Before the first delete, the folder's marks go and its rows move to keys no source message
                # can have ("gone:", as for messages that left a renumbered folder): a folder that comes back
                # (renamed back: the same UIDVALIDITY and UIDs) after a run killed anywhere in here is listed
                # in full and copied again, instead of passed over by rows that claim copies already deleted;
                # the rows still own their copies, so a later --delete removes what is left of them.
                self.state.set_folder_marks(f.id, source_validity=f.source_validity, source_uidnext=None,
                                            source_modseq=None, source_count=None, target_validity=f.target_validity)
                renames = {r.source_key: r.source_key if r.source_key.startswith("gone:")
                           else f"gone:{f.source_validity}:{r.source_key}" for r in rows}
                self.state.rekey_source(f.id, renames)
                rows = [dataclasses.replace(r, source_key=renames[r.source_key]) for r in rows]
                self._delete_checked(f, f.target_path, rows, f.target_validity)
                self.state.drop(f.id, [r.source_key for r in rows])
                _, left = self.target.list_messages(f.target_path)
                if f.id in created and not left:
                    self.target.delete_folder(f.target_path)
                    self.target_paths.discard(self._tid(f.target_path))
                    log.info("account %s: source folder %s is gone; removed its target folder %s", self.account,
                             name, display(f.target_path))
                else:
                    why = (f"holds {len(left)} messages mailmigrate did not copy" if left
                           else "mailmigrate did not create it")
                    self._problem(f.source_path, None, f"source folder is gone; its copies were deleted, the target "
                                  f"folder {display(f.target_path)} stays: {why}", kind="warning")
            except (FolderFailed, ServerRefused, NotImplementedError) as e:
                self._problem(f.source_path, None, f"source folder is gone, but its copies could not be deleted "
                              f"from {display(f.target_path)}: {e}", kind="folder")
                self.c.failed += 1
                continue
            self.state.forget_folder(f.id)

    def _wanted(self, src_path, metas: list[MessageMeta]) -> list[MessageMeta]:
        """The messages the user's message rules keep (sync.selection); --search asks the source server."""
        sel = self.opt.selection
        out = [m for m in metas if sel.wants_message(m)]
        if sel.search is not None and out:
            search = getattr(self.source, "search_uids", None)
            if search is None:
                raise ConfigError("--search takes IMAP SEARCH keys: it works on IMAP sources only")
            matched = search(src_path, sel.search)
            out = [m for m in out if m.key in matched]
        return out

    # --- dry run --------------------------------------------------------------------------------
    def _dry_run_folder(self, plan: FolderPlan, fstate: FolderState | None, target_path) -> None:
        """Count what a real run would do, touching neither the target nor the state."""
        status, metas = self.source.list_messages(plan.source.path)
        rows = self.state.messages(fstate.id) if fstate else {}
        if rows and fstate.source_validity is not None and status.validity != fstate.source_validity:
            # as _rematch_source, without rekeying: the rows under the keys their messages have now, the
            # others under keys no source message has (the real run keeps them so, for --delete)
            self._problem(plan.source.path, None, "source UIDVALIDITY changed: re-matching by content, as a real "
                          "run does", kind="warning")
            sizes = {r.size for r in rows.values()}
            found = _match_rows(self.source, plan.source.path,
                                [m for m in metas if m.size is None or m.size in sizes], rows.values())
            renamed = {k: found.get(k, f"gone:{fstate.source_validity}:{k}") for k in rows}
            rows = {renamed[k]: dataclasses.replace(r, source_key=renamed[k]) for k, r in rows.items()}
            self.c.rematched += len(found)
        if any(r.state == PENDING for r in rows.values()) and self._tid(target_path) in self.target_paths:
            # as _recover, without recording: an interrupted copy found on the target is there, one that is
            # not is copied again (so it is no row here)
            pending = [r for r in rows.values() if r.state == PENDING]
            found, _ = self._find_on_target(fstate, target_path, pending)
            rows = {k: dataclasses.replace(r, state=DONE, target_key=found[k]) if k in found else r
                    for k, r in rows.items() if r.state != PENDING or k in found}
            self.c.recovered += len(found)
        by_key = {m.key for m in metas}
        if not rows and metas and self._tid(target_path) in self.target_paths:
            try:
                if (self.target.folder_status(target_path).count or 0) > 0:
                    rows = {r.source_key: r for r in self._pair_with_target(plan.source.path, target_path, metas)[0]}
            except (FolderFailed, ServerRefused):
                pass  # a target that is not there yet holds nothing to adopt
        new = [m for m in metas if m.key not in rows]
        sel = self.opt.selection
        if sel.just_folders:
            new = []
        elif sel.has_message_rules:
            wanted = self._wanted(plan.source.path, new)
            self.c.skipped_by_rule += len(new) - len(wanted)
            self.c.skipped -= len(new) - len(wanted)
            new = wanted
        if not sel.just_folders:
            fits = self._fits_target(plan.source.path, new)
            self.c.skipped -= len(new) - len(fits)
            new = fits
        self.c.copied += len(new)
        self.c.bytes_copied += sum(m.size or 0 for m in new)
        self.c.skipped += len(metas) - len(new)
        self.c.flags_updated += sum(
            1 for m in metas if m.key in rows and rows[m.key].state == DONE and _clean(m.flags) != rows[m.key].source_flags
        )
        if self.opt.delete:
            self.c.deleted += sum(1 for k, r in rows.items() if k not in by_key and r.target_key)
        if self._tid(target_path) not in self.target_paths:
            self.c.folders_created += 1
            self.target_paths.add(self._tid(target_path))

    def _problem(self, folder: FolderPath | None, message: str | None, reason: str, kind: str = "message") -> None:
        p = Problem(self.account, display(folder) if folder is not None else None, message, reason, kind)
        self.result.problems.append(p)
        (log.warning if kind in ("warning", "flag") else log.error)("%s", p.describe())


def _match_rows(store, path, cands: list[MessageMeta], rows) -> dict[str, str]:
    """Source key -> key in ``store`` for each row whose content is among ``cands``.

    Recovery and both re-matchings must pair rows with messages the same way: candidates hashed in the
    order the store listed them (lowest UID first, so the oldest copy is claimed), rows in source-key
    order, so that a rerun on the same folder makes the same pairs.
    """
    hashed = list(hash_messages(store.fetch(path, [m.key for m in cands])))
    order = {m.key: i for i, m in enumerate(cands)}
    hashed.sort(key=lambda t: order.get(t[0], 0))
    return match_multiset(
        ((r.source_key, r.fingerprint, r.norm_fingerprint) for r in sorted(rows, key=lambda r: r.source_key)),
        hashed,
    )


def _clean(flags) -> frozenset[str]:
    return frozenset(f for f in flags if f.lower() != "\\recent")


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, tuple) and len(item) == 4 and isinstance(item[1], Body):
            item[1].close()


def describe_message(body: Body, limit: int = 16384) -> str:
    """A short human description (size, Subject, Message-ID) for error reports; never the content."""
    head = b""
    for chunk in body.chunks(limit):
        head = chunk
        break
    end = head.find(b"\r\n\r\n")
    if end < 0:
        end = head.find(b"\n\n")
    if end >= 0:
        head = head[:end]
    found = {}
    for line in head.splitlines():
        low = line[:12].lower()
        for name in (b"subject:", b"message-id:"):
            if low.startswith(name) and name not in found:
                found[name] = line[len(name):].strip()[:120].decode("utf-8", "replace")
    parts = [f"{body.size} bytes"]
    if b"subject:" in found:
        parts.append(f"Subject: {found[b'subject:']!r}")
    if b"message-id:" in found:
        parts.append(f"Message-ID: {found[b'message-id:']}")
    return ", ".join(parts)
