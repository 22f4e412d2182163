"""One folder, read, planned and executed; a dry run reads and plans the same way and counts the plan.

The steps, in order: the target folder and the state's record of the folder (created if missing); an
unchanged folder passed over on its status alone; the folder read (sync/recovery.py: the source's changes or
listing, the rows after adoption, re-matching and recovery); the plan made (sync/plan.py); flags, copies
and deletes carried out (sync/changes.py, sync/copying.py); the change markers recorded for the next run.
In a dry run every step that would write is left out and the plan's numbers are counted instead, so the
dry run says what the same run then does.

An object of its own, one per run and worker (sync/engine.py), like the parts it drives: it is given the
stores, the state, the account, its options, the counters it adds to and the run's problem reporter, the
run's ``Recovery``, ``CopyPipeline`` and ``Changes``, the target's message size limit and the Gmail rule that
says which folder is a Gmail source's All Mail.  What the account shares with its workers and fills in place
(the target folders that exist, those this run created) is given to the constructor too; the target folders
a dry run would create are its own.  What changes as the account goes (the guard's reason) is passed to
:meth:`FolderRun.sync_folder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ..errors import ConfigError, FolderFailed, MailmigrateError, ServerRefused
from ..model import FolderPath, FolderStatus, MessageMeta, PermanentFlags
from .folders import FolderPlan, display
from .plan import FolderWork, flags_differ, new_messages, plan_folder
from .run_part import RunPart

log = logging.getLogger("mailmigrate.sync")

#: the status of a target folder a dry run would create: no UIDVALIDITY yet, nothing in it
_NOT_THERE = FolderStatus(None, None, None, 0)


class FolderRun(RunPart):
    def __init__(self, source, target, state, account: str, options, counters, problem, *, recovery, copying,
                 changes, target_paths: set, created_now: set, size_limit: int | None,
                 dedupes: Callable[[FolderPlan], bool]) -> None:
        super().__init__(source, target, state, account, options, counters, problem)
        self.recovery = recovery
        self.copying = copying
        self.changes = changes
        # target folders that exist, by folder_identity: the account's set, filled in place
        self.target_paths = target_paths
        self.created_now = created_now  # target folders this run created, by folder_identity (checked in LIST)
        self._dry_created: set = set()  # target folders a dry run would create, by folder_identity
        self.size_limit = size_limit
        self._dedupes = dedupes

    def _tid(self, path: FolderPath) -> object:
        """Which target folder ``path`` is (see Store.folder_identity): two paths, one folder."""
        return self.target.folder_identity(path)

    def sync_folder(self, plan: FolderPlan, src_status: FolderStatus | None,
                    tgt_status: FolderStatus | None = None, *, withheld: str | None) -> None:
        """One folder.  ``tgt_status`` is the target folder's status from the account's pipelined STATUS,
        when it was asked for: it saves a round trip per changed folder, and its UIDNEXT is a lower bound of
        the target's UIDNEXT now, which is all the intents' uid floor needs.  ``withheld`` is the reason the
        emptied-source guard withholds every delete of the account, or None."""
        src_path = plan.source.path
        name = display(src_path)
        dry = self.opt.dry_run
        fstate = self.state.folder(self.account, src_path)
        # Once a folder is mapped it stays mapped: moving half its mail elsewhere later would split it.
        target_path = fstate.target_path if fstate else plan.target_path
        if dry:
            if not self._target_there(target_path):
                tgt_status = _NOT_THERE
                if self._tid(target_path) not in self._dry_created:
                    self._dry_created.add(self._tid(target_path))
                    self.c.folders_created += 1
        else:
            fstate, created = self.ensure_target_folder(plan, fstate, target_path)
            if created:
                tgt_status = None
        if self.opt.selection.just_folders:
            # --just-folders: the tree is there; no message is read, copied or deleted, and no mark is
            # recorded, so that a later full run looks at every message.
            if not dry:
                self.opt.progress.folder_done(self.account, name)
            return
        if tgt_status is None:
            tgt_status = self._target_status(target_path)
        dedupe = self._dedupes(plan)
        if not dry:
            if dedupe:  # a Gmail source's All Mail (sync/gmail.py, loaded only for one)
                from . import gmail

                if gmail.release_orphans(self.state, self.account, fstate):
                    fstate = self.state.folder(self.account, src_path) or fstate
            if self.state.has_lost_intents(fstate.id) and not self.state.has_pending(fstate.id):
                # Intents an earlier run declared lost: their late copies may have arrived since.  (With
                # PENDING rows the sweep waits for recovery, which may claim such a copy, until the end of
                # the folder.)
                self.recovery.sweep(fstate, target_path)

        if src_status is not None and fstate is not None and self.recovery.unchanged(fstate, src_status, tgt_status):
            self.c.skipped += src_status.count or 0
            log.debug("account %s: folder %s unchanged", self.account, name)
            return

        status, metas, rows, vanished, source_count = self.recovery.read_folder(fstate, src_path, target_path, src_status,
                                                                        tgt_status)
        if not dry and fstate.source_validity is None:
            # Recorded before the first write: a run killed in this folder leaves rows keyed by these UIDs, and
            # the rerun must be able to tell when they no longer name the same messages.
            self.state.set_folder_marks(fstate.id, source_validity=status.validity, source_uidnext=None,
                                        source_modseq=None, source_count=None, target_validity=fstate.target_validity)
        if dry and (tgt_status is _NOT_THERE or not flags_differ(metas, rows)):
            perm = PermanentFlags()  # no flag to filter; what a copy would keep is the run's business
        else:
            perm = self.target.permanent_flags(target_path)
        opt = self.opt
        work = plan_folder(metas, rows, source_count=source_count, perm=perm, vanished=vanished,
                           selection=opt.selection, matched=self._search_matched(src_path, metas, rows),
                           size_limit=self.size_limit, delete=opt.delete, force_delete=opt.force_delete,
                           delete_guard=opt.delete_guard, withheld=withheld)
        self._report_left_out(src_path, work)
        new = work.copy
        if dedupe and new and not dry:
            from . import gmail

            kept = len(new)
            new = gmail.skip_in_label(self.state, self.account, fstate, self.source, src_path, new)
            self.c.skipped_in_label += kept - len(new)  # not "already there": counted apart
        self.c.skipped += work.skipped

        failures_before, deleted_before = self.c.failed, self.c.deleted
        if dry:
            self.c.flags_updated += len(work.flags.stores)
            self.c.copied += len(new)
            self.c.bytes_copied += sum(m.size or 0 for m in new)
        else:
            if work.flags.records:
                self.changes.apply_flags(fstate, target_path, work.flags)
            if new:
                self.copying.copy(fstate, src_path, target_path, new, perm, tgt_status)
        if work.withheld:
            self.changes.withhold(src_path, work.going, work.withheld, report=not withheld)
        elif work.gone and (not dry or tgt_status is not _NOT_THERE):
            self.changes.delete(fstate, target_path, work.gone, tgt_status.validity)
        if dry:
            # The plan, with -v: what the run would do in this folder.
            log.info("account %s, folder %s: would copy %d messages (%d bytes), update the flags of %d copies "
                     "and delete %d%s", self.account, name, len(new), sum(m.size or 0 for m in new),
                     len(work.flags.stores), self.c.deleted - deleted_before,
                     f" ({work.going} deletes withheld: {work.withheld})" if work.withheld else "")
            return
        self.recovery.sweep(fstate, target_path, settle=True)

        # The target's UIDVALIDITY recorded is the one from before the copy, not after: the keys recorded in
        # this run belong to it, so a change during the run shows up as a mismatch next time (and
        # re-matching), not hidden.  After failures, or with messages a rule or a size limit left out, the
        # validities are kept (the mapping is right) but the next run looks at every message again, so
        # that what failed is retried and reported rather than skipped as "unchanged", and what a rule
        # left out is let in when the rule (an age, say) lets it.
        complete = self.c.failed == failures_before and not work.left_out
        self.state.set_folder_marks(
            fstate.id,
            source_validity=status.validity,
            source_uidnext=status.uidnext if complete else None,
            source_modseq=status.highestmodseq if complete else None,
            source_count=source_count if complete else None,
            target_validity=tgt_status.validity,
        )
        self.opt.progress.folder_done(self.account, name)

    # --- which folders need a run: both sides' STATUS, pipelined ------------------------------------
    def source_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        try:
            return self.source.folder_statuses(paths)
        except MailmigrateError as e:
            if e.scope != "folder":
                raise
            out = {}
            for p in paths:  # one broken folder must not hide the others' status
                try:
                    out[p] = self.source.folder_status(p)
                except MailmigrateError as err:
                    if err.scope != "folder":
                        raise
            return out

    def target_statuses(self, plans: list[FolderPlan]) -> dict[FolderPath, FolderStatus]:
        """Target status of every mapped folder that exists, in one pipelined call, keyed by source path."""
        want = {}
        for p in plans:
            f = self.state.folder(self.account, p.source.path)
            if f is not None and self._tid(f.target_path) in self.target_paths:
                want[p.source.path] = f.target_path
        if not want:
            return {}
        try:
            st = self.target.folder_statuses(list(dict.fromkeys(want.values())))
        except (FolderFailed, ServerRefused):
            return {}
        return {sp: st[tp] for sp, tp in want.items() if tp in st}

    def skip_unchanged(self, plan: FolderPlan, s: FolderStatus | None, t: FolderStatus | None) -> bool:
        if s is None or t is None:
            return False
        f = self.state.folder(self.account, plan.source.path)
        if f is None or not self.recovery.unchanged(f, s, t) or self.state.has_lost_intents(f.id):
            return False
        self.c.skipped += s.count or 0
        return True

    def _target_status(self, target_path: FolderPath) -> FolderStatus:
        try:
            return self.target.folder_status(target_path)
        except (FolderFailed, ServerRefused):
            if not self.opt.dry_run:
                raise
            # Listed but not there (a Maildir target not made yet lists its INBOX): for a dry run a folder
            # that holds nothing yet, and none of its reads ask the target again.
            self.target_paths.discard(self._tid(target_path))
            self._dry_created.add(self._tid(target_path))
            return _NOT_THERE

    def _target_there(self, target_path: FolderPath) -> bool:
        """Whether the target folder exists now (a dry run creates none)."""
        return self._tid(target_path) in self.target_paths

    def _search_matched(self, src_path, metas: list[MessageMeta], rows) -> set[str] | None:
        """--search: the keys the source server's SEARCH matches, asked only when a new message passed the
        other rules."""
        sel = self.opt.selection
        if sel.search is None or not any(sel.wants_message(m) for m in new_messages(metas, rows)):
            return None
        if not self.source.searches:
            raise ConfigError("--search takes IMAP SEARCH keys: it works on IMAP sources only")
        return self.source.search_uids(src_path, sel.search)

    def _report_left_out(self, src_path, work: FolderWork) -> None:
        """Rules and the target's size limit: each message larger than the target takes is reported and
        counted, not sent (it would be refused on every run, never copied)."""
        self.c.skipped_by_rule += work.ruled
        for m in work.too_large:
            self.c.skipped_too_large += 1
            self._problem(src_path, m.key, f"not copied: {m.size} bytes is more than the target's message "
                          f"size limit of {self.size_limit} bytes (?max_message_size= on the target URL overrides "
                          f"it)", kind="skipped")

    def ensure_target_folder(self, plan: FolderPlan, fstate, target_path: FolderPath):
        """The folder's state record and its target folder, created if missing; (record, created now)."""
        if fstate is None:
            fstate = self.state.ensure_folder(self.account, plan.source.path, target_path)
        if self._tid(target_path) in self.target_paths:
            return fstate, False
        self.target.create_folder(target_path, plan.special_use)
        self.state.mark_created(fstate.id)
        self._created(target_path)
        return fstate, True

    def ensure_target_folders(self, folders: list[tuple[FolderPlan, object, FolderPath]]) -> None:
        """:meth:`ensure_target_folder` for each (plan, record or None, target path), with the missing records
        written in one transaction, the missing folders created together (``Store.create_folders``: on IMAP
        one round trip for all) and marked created in one more.  A folder the target refused is left as it is:
        its own folder run meets the refusal again and reports it with the folder."""
        new = iter(self.state.ensure_folders(self.account, [(plan.source.path, path)
                                                             for plan, fstate, path in folders if fstate is None]))
        missing = []
        for plan, fstate, target_path in folders:
            if fstate is None:
                fstate = next(new)
            if self._tid(target_path) not in self.target_paths:
                missing.append((plan, fstate, target_path))
        refusals = self.target.create_folders([(path, plan.special_use) for plan, _, path in missing])
        created = [(fstate, path) for (_, fstate, path), refused in zip(missing, refusals) if refused is None]
        self.state.mark_created(*(fstate.id for fstate, _ in created))
        for _, target_path in created:
            self._created(target_path)

    def _created(self, target_path: FolderPath) -> None:
        self.target_paths.add(self._tid(target_path))
        self.created_now.add(self._tid(target_path))
        self.c.folders_created += 1
        log.info("account %s: created target folder %s", self.account, display(target_path))

    def check_created_listed(self) -> None:
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
