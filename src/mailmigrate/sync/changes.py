"""The source's changes carried to the copies: flag updates and ``--delete``, with the emptied-source guard.

What is decided lives in sync/plan.py (which flags, which rows are gone, whether the guard withholds); what
is here touches the target: each delete is checked against the copy first (sync/deletes.py), and a source
folder that is gone takes its copies (and a folder mailmigrate made) with it.

An object of its own, one per run and worker (sync/engine.py): it needs the target, the state, the account
and its options, the counters it adds to and the run's problem reporter, all given to its constructor.  What
the account shares and changes as it goes (the target folders that exist, the guard's reason) is passed to
the calls that read it.
"""

from __future__ import annotations

import dataclasses
import logging

from ..errors import FolderFailed, ServerRefused
from ..model import FolderPath, FolderStatus
from .folders import display
from .plan import FlagWork
from .run_part import RunPart
from .state import DONE, FolderState, MessageRow

log = logging.getLogger("mailmigrate.sync")


class Changes(RunPart):
    """Flags and deletes on the target; it reads nothing from the source (``source`` is None)."""

    def __init__(self, target, state, account: str, options, counters, problem) -> None:
        super().__init__(None, target, state, account, options, counters, problem)

    def apply_flags(self, f: FolderState, target_path, work: FlagWork) -> None:
        """The planned flag updates (sync.plan.flag_updates): rows marked in flight before the STOREs, the
        source's flags recorded after them."""
        if work.stores:
            self.state.set_flags(f.id, work.marks)  # before the STORE: see flag_updates
            self.target.set_flags(target_path, work.stores)
        self.state.set_flags(f.id, work.records)
        self.c.flags_updated += len(work.stores)

    def delete(self, f: FolderState, target_path, gone: list[MessageRow], validity: int | None) -> None:
        """Delete the copies of messages that left the source, each checked first (sync.deletes): what is no
        longer the copy mailmigrate made stays and is reported.  The rows go either way: their source
        message is gone."""
        self.delete_checked(f, target_path, gone, validity)
        if not self.opt.dry_run:
            self.state.drop(f.id, [r.source_key for r in gone])

    def delete_checked(self, f: FolderState, target_path, rows: list[MessageRow], validity: int | None) -> None:
        """Delete the rows' copies that are still the copies mailmigrate made; a dry run counts them (the
        check only reads), so that a copy already gone (a run killed between its delete and recording it)
        is no delete in either."""
        from .deletes import check_copies  # loaded by a run that deletes only: a copy or rerun need not

        checked = check_copies(self.target, target_path, rows, validity)
        if checked.matching and not self.opt.dry_run:
            self.target.delete_messages(target_path, [r.target_key for r in checked.matching])
        self.c.deleted += len(checked.matching)
        for r, why in checked.refused:
            self._problem(f.source_path, r.source_key, f"left on the target, not deleted: {why}", kind="warning")

    def withhold(self, folder: FolderPath | None, copies: int, why: str, report: bool = True) -> None:
        self.c.deletes_withheld += copies
        if report:
            self._problem(folder, None, f"{copies} copies not deleted: {why}; if that is right, run again with "
                                        f"--force-delete", kind="delete")

    def guard_account(self, src_folders, statuses: dict[FolderPath, FolderStatus]) -> str | None:
        """The emptied-source guard over the whole account, before any folder deletes: a source that lists
        no mail at all, or lost more than the set share of the copies since the last run (estimated from the
        counts: rows per folder against the source's message count, a folder gone counting whole)."""
        if self.opt.force_delete:
            return None
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
        from .deletes import guard_refusal

        why = guard_refusal(copies, going, sum(counts) if counts else None, self.opt.delete_guard)
        if not why:
            return None
        withheld = f"the account's source looks emptied: {why}"
        self._problem(None, None, f"no deletes in this account this run: {withheld}; if that is right, "
                                  f"run again with --force-delete", kind="delete")
        return withheld

    def delete_gone_folders(self, listed: set[FolderPath], target_paths: set, withheld: str | None) -> None:
        """``--delete`` for source folders that are gone: mailmigrate's copies in their target folders are
        deleted (each checked, as in :meth:`delete`), then the target folder itself when mailmigrate created
        it and nothing else is left in it.  Anything else stays and is reported."""
        created = self.state.created_folders(self.account)
        gone = [f for f in self.state.folders(self.account) if f.source_path not in listed]
        for f in sorted(gone, key=lambda f: -len(f.target_path)):  # children before their parents
            rows = [r for r in self.state.messages(f.id).values() if r.state == DONE and r.target_key is not None]
            name = display(f.source_path)
            if withheld:
                self.withhold(f.source_path, len(rows), withheld, report=False)
                continue
            if self.target.folder_identity(f.target_path) not in target_paths:
                if not self.opt.dry_run:
                    self.state.forget_folder(f.id)  # the target folder is gone too: nothing left to do
                continue
            if self.opt.dry_run:
                try:
                    self.delete_checked(f, f.target_path, rows, f.target_validity)
                except (FolderFailed, ServerRefused, NotImplementedError):
                    pass  # the run reports it
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
                self.delete_checked(f, f.target_path, rows, f.target_validity)
                self.state.drop(f.id, [r.source_key for r in rows])
                _, left = self.target.list_messages(f.target_path)
                if f.id in created and not left:
                    self.target.delete_folder(f.target_path)
                    target_paths.discard(self.target.folder_identity(f.target_path))
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
