"""Reading a folder for its plan, and recovery: what the state says, made true again before anything is decided.

Why here and not in the planner: each step reads a store (the target's messages, fetched bodies) to find
out which rows still hold.  In a dry run every step computes the same rows without recording them, so the
plan made from them (sync/plan.py) is the one the run would make:

  * PENDING rows (intent written, outcome unknown) are resolved by fingerprint on the target before anything
    else happens in that folder, so an interrupted APPEND is never repeated blindly;
  * what recovery cannot find is copied again but watched: a killed client's last APPEND may still be
    committed by the server afterwards, and such a late copy is removed again (:meth:`Recovery.sweep`);
  * a changed UIDVALIDITY on either side is answered by re-matching content, not by re-copying;
  * a folder the state does not know whose target folder holds mail has its copies adopted, not doubled.

An object of its own, one per run and worker (sync/engine.py), given by its constructor what it reads and
writes: both stores, the state, the account and its options, that run's counters, the problem reporter, the
account's per-target-folder locks and the set of target folders that exist (both shared with the workers).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from ..errors import ServerRefused
from ..model import FolderStatus, MessageMeta
from ..stores.base import FolderChanges
from .copying import describe_message
from .folders import display
from .matching import fingerprints, hash_messages, match_multiset, match_rows
from .plan import clean
from .run_part import RunPart
from .state import ADOPTED, DONE, PENDING, FolderState, LostIntent, MessageRow

log = logging.getLogger("mailmigrate.sync")


class Recovery(RunPart):
    def __init__(self, source, target, state, account: str, options, counters, problem, locks,
                 target_paths: set) -> None:
        super().__init__(source, target, state, account, options, counters, problem)
        self._locks = locks
        self._target_paths = target_paths

    def _target_there(self, target_path) -> bool:
        """Whether the target folder exists now (a dry run creates none)."""
        return self.target.folder_identity(target_path) in self._target_paths

    def _sharing(self, target_path) -> list[FolderState]:
        """This account's source folders that land in the target folder ``target_path``."""
        tid = self.target.folder_identity(target_path)
        return [g for g in self.state.folders(self.account) if self.target.folder_identity(g.target_path) == tid]

    def read_folder(self, f: FolderState | None, src_path, target_path, src_status: FolderStatus | None,
                     tgt_status: FolderStatus):
        """What a folder's plan is made from: (status, messages, rows, vanished, source count).

        The source's changes since the last complete run when the store can tell them (then ``vanished``
        says which keys left), else its full listing; the rows after adoption, re-matching and recovery."""
        changes = self._changes_since(f, src_status, tgt_status) if f is not None else None
        if changes is not None:
            # Only what moved since the last complete run: the state holds everything older.
            return changes.status, changes.changed, self.state.messages(f.id), changes.vanished, changes.status.count
        status, metas = self.source.list_messages(src_path)
        rows = self.state.messages(f.id) if f is not None else {}
        if (not rows and metas and (tgt_status.count or 0) > 0
                and not (f is not None and self.state.has_lost_intents(f.id))):
            rows = self._adopt(f, src_path, target_path, metas)
        if f is None:  # a dry run's folder new to the state: adopted rows at most
            return status, metas, rows, None, len(metas)
        if rows and f.source_validity is not None and status.validity != f.source_validity:
            rows = self._rematch_source(f, src_path, metas, rows)
        if rows and f.target_validity is not None and tgt_status.validity != f.target_validity:
            rows = self._rematch_target(f, target_path, rows)
        if any(r.state == PENDING for r in rows.values()):
            rows = self.recover(f, target_path, rows)
        return status, metas, rows, None, len(metas)

    def _changes_since(self, f: FolderState, s: FolderStatus | None, t: FolderStatus) -> FolderChanges | None:
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

    def unchanged(self, f: FolderState, s: FolderStatus, t: FolderStatus) -> bool:
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

    def find_on_target(self, f: FolderState, target_path, rows: list[MessageRow],
                        claimed: set[str] | None = None) -> tuple[dict[str, str], FolderStatus]:
        """Source key -> target key for rows whose copies are found; also the target's status as listed.
        ``claimed``: the target keys rows hold (default: as the state records them)."""
        floors = [r.uid_floor for r in rows if r.uid_floor is not None]
        min_uid = min(floors) if (floors and self.target.ordered_keys and len(floors) == len(rows)) else None
        status, metas = self.target.list_messages(target_path, min_uid=min_uid)
        if claimed is None:
            claimed = self.state.all_target_keys(f.id)
        sizes = {r.size for r in rows}
        any_norm = any(r.norm_fingerprint for r in rows)
        cands = [
            m for m in metas
            if m.key not in claimed and (any_norm or m.size is None or m.size in sizes)
        ]
        if not cands:
            return {}, status
        return match_rows(self.target, target_path, cands, rows), status

    def recover(self, f: FolderState, target_path, rows: dict[str, MessageRow],
                 watch: bool = True) -> dict[str, MessageRow]:
        pending = [r for r in rows.values() if r.state == PENDING]
        if not pending:
            return rows
        if self.opt.dry_run:
            # Without recording: an interrupted copy found on the target is there, one that is not is
            # copied again (so it is no row here).
            # The rows as the run would hold them by now (re-keyed, unrecorded) claim their copies.
            claimed = {r.target_key for r in rows.values() if r.target_key is not None}
            found = (self.find_on_target(f, target_path, pending, claimed)[0] if self._target_there(target_path)
                     else {})
            self.c.recovered += len(found)
            return {k: dataclasses.replace(r, state=DONE, target_key=found[k]) if k in found else r
                    for k, r in rows.items() if r.state != PENDING or k in found}
        found, status = self.find_on_target(f, target_path, pending)
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

    def sweep(self, f: FolderState, target_path, settle: bool = False) -> None:
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
        with self._locks.of(self.target, target_path):
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
        if self.opt.dry_run:
            return {r.source_key: r for r in self._pair_with_target(src_path, target_path, metas)[0]}
        with self._locks.of(self.target, target_path):
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
            rows = [MessageRow(sk, source[sk][0], source[sk][1], source[sk][2], clean(by_key[sk].flags), tk,
                               DONE, ADOPTED) for sk, tk in pairs.items()]
        self.c.adopted += len(rows)
        self.c.target_only += len(cands) - len(rows)
        return rows, len(cands) - len(rows)

    def _rematch_target(self, f: FolderState, target_path, rows: dict[str, MessageRow]) -> dict[str, MessageRow]:
        log.warning("account %s: target folder %s changed its UIDVALIDITY; re-matching %d messages by content",
                    self.account, display(target_path), len(rows))
        found = {}
        if self._target_there(target_path):
            _, metas = self.target.list_messages(target_path)
            found = match_rows(self.target, target_path, metas, rows.values())
        if self.opt.dry_run:  # as rekey_target does: a row whose copy is not found is forgotten
            self.c.rematched += len(found)
            return {k: dataclasses.replace(r, target_key=found[k]) for k, r in rows.items() if k in found}
        self.state.rekey_target(f.id, {k: found.get(k) for k in rows})
        self.c.rematched += len(found)
        return self.state.messages(f.id)

    def _rematch_source(self, f: FolderState, src_path, metas: list[MessageMeta],
                        rows: dict[str, MessageRow]) -> dict[str, MessageRow]:
        if self.opt.dry_run:
            self._problem(src_path, None, "source UIDVALIDITY changed: re-matching by content, as a real run does",
                          kind="warning")
        else:
            log.warning("account %s: source folder %s changed its UIDVALIDITY; re-matching %d messages by "
                        "content", self.account, display(src_path), len(rows))
        sizes = {r.size for r in rows.values()}
        cands = [m for m in metas if m.size is None or m.size in sizes]
        # Here the rows are the candidates' counterpart: each old row claims one new source message.
        found = match_rows(self.source, src_path, cands, rows.values())
        renames = dict(found)
        stamp = f.source_validity
        for k in rows:
            if k not in renames:
                # The message left the source: keep the row (it owns a target copy) under a key no new
                # source message can have, so that --delete can still remove that copy.
                renames[k] = f"gone:{stamp}:{k}"
        self.c.rematched += len(found)
        if self.opt.dry_run:
            return {renames[k]: dataclasses.replace(r, source_key=renames[k]) for k, r in rows.items()}
        self.state.rekey_source(f.id, renames)
        return self.state.messages(f.id)
