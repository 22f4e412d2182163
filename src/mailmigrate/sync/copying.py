"""The copy pipeline: a folder's new messages from the source to the target, one state transaction a batch.

How a message travels: the source's FETCH is read as the batches fill (no reader thread: see
:meth:`CopyPipeline._read`), each body fingerprinted as it arrives; the pipeline gathers a batch (the
target's APPEND limits, or a rate limiter's), records the batch's intent (PENDING rows) together with the
previous batch's completions in one transaction, sends the batch, and reads the next batch from the source
while the target stores this one; the target's answer is read before the next batch's intent is written,
and its keys are owed to that batch's transaction (:meth:`CopyPipeline._settle` writes what is left).
Bodies are never parsed or rewritten.  A refused batch is found on the target by content and sent again one
message at a time, so that only the refused message is left out.

An object of its own, one per run and worker (sync/engine.py), given by its constructor both stores, the
state, the account and its options, that run's counters, the problem reporter, the account's
per-target-folder locks, the run's :class:`~.recovery.Recovery` (a refused or interrupted batch is found on
the target by it) and the account's set of keyword drops already reported.  What it owes the state between
batches is its own.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Iterator

from ..errors import Interrupted, MessageRejected
from ..model import AppendItem, Body, FolderStatus, MessageMeta, PermanentFlags
from .folders import display
from .matching import fingerprints
from .plan import clean
from .run_part import RunPart
from .state import DONE, PENDING, FolderState, MessageRow

log = logging.getLogger("mailmigrate.sync")

_HIGH_BYTE = re.compile(rb"[\x80-\xff]")



class CopyPipeline(RunPart):
    def __init__(self, source, target, state, account: str, options, counters, problem, locks, recovery,
                 keyword_drops: set) -> None:
        super().__init__(source, target, state, account, options, counters, problem)
        self._locks = locks
        self.recovery = recovery
        self._reported_keyword_drops = keyword_drops
        # Set when a fetch stream was abandoned mid-response: the run reconnects the source after the folder.
        self.reopen_source_needed = False
        # Per folder id: (source key, target UID) pairs the target confirmed, written with the next batch's
        # intents in one transaction rather than in one of their own (_settle writes what is left).
        self._owed: dict[int, list[tuple[str, str | None]]] = {}
        # The batch sent whose answer is not read yet (_Sent), with its target folder's lock held.
        self._sent: _Sent | None = None

    def copy(self, f: FolderState, src_path, target_path, new: list[MessageMeta], perm: PermanentFlags,
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

        reading = self._read(src_path, [m.key for m in new])
        batch: list[tuple[MessageMeta, Body, str, str | None]] = []
        batch_bytes = 0
        try:
            for meta, body, fp, nfp in reading:
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
            self._answered()
            self._settle(f)
        finally:
            for _, body, _, _ in batch:
                body.close()
            if self._sent is not None:
                try:
                    self._answered()  # what went in is recorded, whatever stopped the folder
                except Exception as e:  # the error already on its way matters more; recovery finds these
                    log.warning("could not read the target's answer to the last batch of %s: %s", name, e)
            if self._owed.get(f.id):
                try:
                    self._settle(f)
                except Exception as e:  # the error already on its way matters more; recovery finds these
                    log.warning("could not record the last copied batch of %s: %s", name, e)
            if reading.gi_frame is not None:
                # Stopped before the source's answer ended (an error or a stop on this side): the source
                # connection is mid-response; the run uses a fresh one for the next folder.
                self.reopen_source_needed = True
                try:
                    reading.close()
                except Exception as e:  # the error already on its way matters more
                    log.debug("closing the source's fetch of %s: %s", name, e)
        for key, reason in self.source.fetch_problems():
            self._problem(src_path, key, f"could not be read from the source: {reason}")
            self.c.failed += 1

    def _read(self, src_path, keys: list[str]) -> Iterator[tuple[MessageMeta, Body, str, str | None]]:
        """The source's messages with their fingerprints, read as the batches are filled: in the thread that
        appends them. A reader thread ahead of the appender bought no wall time (the target is the slow side,
        and several folders are in flight anyway) and cost about a tenth of the copy's CPU in hand-offs and
        contention for the interpreter (bench/ab.py, docs/benchmarks.md)."""
        for meta, body in self.source.fetch(src_path, keys):
            exact, norm = fingerprints(body)
            yield meta, body, exact, norm

    def _flush(self, f: FolderState, src_path, target_path, batch, perm: PermanentFlags, uid_floor) -> None:
        """Send ``batch``, its intent recorded first; the answer to the batch sent before is read first."""
        self._answered()
        if self.opt.stop_requested.is_set():
            raise Interrupted("stopped by the user before the next batch; run the same command again to resume")
        if self.opt.checkpoint:
            self.opt.checkpoint("before-intent")
        # Held until the answer is read: a sweep of this target folder by another worker must not meet the
        # batch's copies before they are recorded (Recovery.sweep).
        lock = self._locks.of(self.target, target_path)
        lock.acquire()
        try:
            self._sent = self._send_locked(f, src_path, target_path, batch, perm, uid_floor, lock)
        finally:
            if self._sent is None:
                lock.release()

    def _send_locked(self, f: FolderState, src_path, target_path, batch, perm: PermanentFlags, uid_floor,
                     lock) -> "_Sent":
        rows = [
            MessageRow(meta.key, fp, nfp, body.size, clean(meta.flags), None, PENDING, uid_floor)
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
        # A batch has a handful of distinct flag sets (one shared object each) and a hundred messages: the
        # target's filter is worked out once per set.
        filtered: dict = {}
        for (meta, body, _, _), row in zip(batch, rows):
            got = filtered.get(row.source_flags)
            if got is None:
                got = filtered[row.source_flags] = perm.filter(row.source_flags)
            kept, dropped = got
            for kw in dropped:
                if (target_path, kw) not in self._reported_keyword_drops:
                    self._reported_keyword_drops.add((target_path, kw))
                    self._problem(src_path, None, f"target folder does not keep the flag {kw}; dropped", kind="flag")
            items.append(AppendItem(body, kept, meta.internaldate))
        answer = self.target.append_started(target_path, items)
        return _Sent(f, src_path, target_path, batch, rows, items, answer, lock)

    def _answered(self) -> None:
        """Read the target's answer to the batch sent last, record it, and let go of its folder's lock."""
        sent, self._sent = self._sent, None
        if sent is None:
            return
        try:
            self._record_answer(sent)
        finally:
            sent.lock.release()
            for _, body, _, _ in sent.batch:
                body.close()

    def _record_answer(self, sent: "_Sent") -> None:
        f, src_path, target_path, batch, rows, items = (sent.folder, sent.src_path, sent.target_path, sent.batch,
                                                        sent.rows, sent.items)
        try:
            keys = sent.answer()
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
            self.recovery.recover(f, target_path, self.state.messages(f.id), watch=False)
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
            found, _ = self.recovery.find_on_target(f, target_path, unknown)
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
            r = MessageRow(meta.key, fp, nfp, body.size, clean(meta.flags), None, PENDING,
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



class _Sent:
    """A batch sent to the target whose answer is not read yet, and what recording that answer needs."""

    __slots__ = ("folder", "src_path", "target_path", "batch", "rows", "items", "answer", "lock")

    def __init__(self, folder, src_path, target_path, batch, rows, items, answer, lock) -> None:
        self.folder, self.src_path, self.target_path = folder, src_path, target_path
        self.batch, self.rows, self.items, self.answer, self.lock = batch, rows, items, answer, lock


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
