"""What changed in an IMAP folder since the last run (RFC 7162), so that a rerun reads the changes and not
every message's metadata.

Three levels, from the best a server offers:

* QRESYNC: one EXAMINE carrying the recorded (UIDVALIDITY HIGHESTMODSEQ) makes the server answer with the
  flags changed since that mod-sequence and the UIDs expunged since (``VANISHED (EARLIER)``), which is what
  ``--delete`` and a true state need; new mail is then one ``UID FETCH <old UIDNEXT>:*``.
* CONDSTORE alone: flag changes come from ``UID FETCH 1:<old UIDNEXT - 1> (FLAGS) (CHANGEDSINCE n)``, but
  expunges are silent.  They are proved absent by counting: the folder must now hold exactly the recorded
  count plus the new UIDs.  Only when it does not are the surviving UIDs asked for (UIDs only, no flags,
  dates or sizes: ESEARCH ranges, or ``UID FETCH (UID)``) and the missing ones reported as vanished.
* neither, or anything unexpected (UIDVALIDITY changed, mod-sequences went backwards, the server refused
  the QRESYNC parameter): None, and the engine lists the folder as it always did.

Why a recorded status can be trusted here: mod-sequences only grow, every flag change and every new
message gets one above the old HIGHESTMODSEQ, and UIDs below the old UIDNEXT are never handed out again.
"""

from __future__ import annotations

import bisect
import logging

from ..errors import FolderFailed, ProtocolError
from ..imap.parser import fetch_items, parse_internaldate, parse_number, uid_set_parts
from ..model import FolderPath, FolderStatus, MessageMeta, intern_flags
from .base import FolderChanges

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py

if TYPE_CHECKING:
    from .imap import ImapStore

log = logging.getLogger("mailmigrate.stores.imap")

#: largest UID span asked of ESEARCH: "1,3,5,…" over 100,000 UIDs is about 300 KB, well under a line's 1 MiB
ESEARCH_SPAN = 100_000


class UidRanges:
    """A set of UIDs held as sorted, merged ranges.

    A server may report a vanished range such as ``1:4000000`` (RFC 7162 allows UIDs that never existed in
    it), so the set must never be expanded into numbers.  Membership is asked with message keys (decimal
    text); keys that are not UIDs (``gone:…`` rows) are never members.
    """

    __slots__ = ("_lo", "_hi")

    def __init__(self, ranges=()):
        merged: list[list[int]] = []
        for lo, hi in sorted((min(a, b), max(a, b)) for a, b in ranges):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self._lo = [r[0] for r in merged]
        self._hi = [r[1] for r in merged]

    @classmethod
    def parse(cls, texts) -> "UidRanges":
        """From sequence-set texts such as ``b"3,5:9"``; ``*`` is not valid in a response and is refused."""
        ranges = []
        for text in texts:
            ranges.extend(uid_set_parts(text if isinstance(text, bytes) else str(text)))
        return cls(ranges)

    def _has(self, uid: int) -> bool:
        i = bisect.bisect_right(self._lo, uid) - 1
        return i >= 0 and uid <= self._hi[i]

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            if not key.isdigit():
                return False
            key = int(key)
        return isinstance(key, int) and self._has(key)

    def __bool__(self) -> bool:
        return bool(self._lo)

    def __repr__(self) -> str:
        return "UidRanges(" + ",".join(f"{a}:{b}" if a != b else str(a) for a, b in zip(self._lo, self._hi)) + ")"


class AbsentBelow:
    """UIDs below ``limit`` that are not in ``present``: the expunged ones, when a UID search listed the
    survivors (CONDSTORE without QRESYNC)."""

    __slots__ = ("present", "limit")

    def __init__(self, present: UidRanges, limit: int):
        self.present = present
        self.limit = limit

    def __contains__(self, key) -> bool:
        if isinstance(key, str):
            if not key.isdigit():
                return False
            key = int(key)
        return isinstance(key, int) and 0 < key < self.limit and key not in self.present


def changes_since(store: "ImapStore", path: FolderPath, before: FolderStatus) -> FolderChanges | None:
    c = store._c
    if "CONDSTORE" not in c.capabilities or "incremental" in c.disabled:
        return None
    if before.highestmodseq is None or before.uidnext is None or before.count is None:
        return None
    qresync = store.qresync
    # A fresh EXAMINE, as for a full listing: a mailbox selected earlier may not show what arrived since.
    store.selected = None
    try:
        info = store._select(path, readonly=True,
                             qresync=(before.validity, before.highestmodseq) if qresync else None)
    except FolderFailed:
        if not qresync:
            raise
        # The server would not resynchronise this folder (e.g. it keeps no mod-sequences for it): list it.
        log.info("%s: EXAMINE %s with QRESYNC refused; listing it in full", store.host, "/".join(path))
        store.selected = None
        return None
    validity, modseq = info.get("uidvalidity"), info.get("highestmodseq")
    if validity != before.validity or modseq is None or modseq < before.highestmodseq:
        return None
    old_next = before.uidnext
    status = FolderStatus(validity, info.get("uidnext"), modseq, info["exists"])
    changed: dict[int, MessageMeta] = {}
    new: dict[int, MessageMeta] = {}
    vanished_texts: list = []
    malformed: list[str] = []

    def take(data) -> None:
        try:
            _take(data)
        except ProtocolError as e:  # read on to the end; then the full listing reports it properly
            malformed.append(str(e))

    def _take(data) -> None:
        it = fetch_items(data)
        uid = it.get(b"UID")
        if uid is None or b"FLAGS" not in it:
            return  # not about flags (or without a UID we could not say whose)
        uid = parse_number(uid, "UID")
        flags = intern_flags(frozenset(f.decode("utf-8", "replace") for f in (it.get(b"FLAGS") or [])
                                       if isinstance(f, bytes) and f.lower() != b"\\recent"))
        if uid < old_next:
            changed[uid] = MessageMeta(key=str(uid), flags=flags, uid=uid)
            return
        date, size = it.get(b"INTERNALDATE"), it.get(b"RFC822.SIZE")
        had = new.get(uid)
        if date is None and had is not None:
            new[uid] = MessageMeta(had.key, flags, had.internaldate, had.size, uid)  # a later flag update
        elif date is not None:
            new[uid] = MessageMeta(key=str(uid), flags=flags, internaldate=parse_internaldate(date),
                                   size=parse_number(size, "RFC822.SIZE") if size is not None else None, uid=uid)

    if qresync:
        vanished_texts += info.get("vanished", [])
        for data in info.get("fetched", []):
            take(data)
    cmds = []
    if not qresync and modseq > before.highestmodseq and old_next > 1:
        cmds.append((b"UID", b"FETCH", b"1:%d" % (old_next - 1), b"(UID FLAGS)",
                     b"(CHANGEDSINCE %d)" % before.highestmodseq))
    if info["exists"] and (status.uidnext is None or status.uidnext > old_next):
        cmds.append((b"UID", b"FETCH", b"%d:*" % old_next, b"(UID FLAGS INTERNALDATE RFC822.SIZE)"))
    exists = info["exists"]
    if cmds:
        for r in c.fetch_stream(cmds, window=2):
            take(r.data)
        for u in c.untagged:
            if u.name == b"EXISTS":
                exists = u.number
            elif u.name == b"EXPUNGE":
                exists -= 1
            elif u.name == b"VANISHED" and u.data:
                vanished_texts.append(u.data[-1])
    if malformed:
        log.warning("%s %s: %s; listing the folder in full", store.describe(), "/".join(path), malformed[0])
        return None
    # FETCHes for messages that arrived (the server announces them) carry no date: those come from the
    # UIDNEXT fetch; a new UID seen only in a flag update is left to the next run, whose UIDNEXT covers it.
    new = {u: m for u, m in new.items() if m.internaldate is not None}
    if qresync:
        method = "qresync"
        vanished = UidRanges.parse(vanished_texts)
    elif exists == before.count + len(new):
        method = "condstore"
        vanished = UidRanges()
    else:
        # Something was expunged (or the count moved under us): the surviving UIDs settle it.
        method = "condstore+uids"
        vanished = AbsentBelow(_surviving_uids(store, old_next), old_next)
    sizes = store._sizes.setdefault(path, {})
    for uid, m in new.items():
        sizes[uid] = m.size or 0
    store.listed += len(changed) + len(new)
    metas = sorted([*changed.values(), *new.values()], key=lambda m: m.uid)
    log.info("%s %s: %d changed and %d new since MODSEQ %d (%s)", store.describe(), "/".join(path),
             len(changed), len(new), before.highestmodseq, method)
    return FolderChanges(status, metas, vanished, method)


def _surviving_uids(store: "ImapStore", below: int) -> UidRanges:
    """The UIDs under ``below`` that still exist.

    ESEARCH answers in one line of ranges; a line must stay under the connection's 1 MiB limit, so it is
    used only while the UID span is small enough that even the most fragmented answer fits.  Otherwise a
    ``UID FETCH (UID)`` streams one short line per message.
    """
    c = store._c
    if below <= 1:
        return UidRanges()
    want = b"1:%d" % (below - 1)
    if "ESEARCH" in c.capabilities and below <= ESEARCH_SPAN:
        c.check(c.command(b"UID", b"SEARCH", b"RETURN", b"(ALL)", b"UID", want), "UID SEARCH")
        for u in c.untagged:
            if u.name == b"ESEARCH":
                words = list(u.data)
                for i, w in enumerate(words[:-1]):
                    if w.upper() == b"ALL":
                        return UidRanges.parse([words[i + 1]])
        return UidRanges()  # no ALL: no message matched
    uids = []
    for r in c.fetch_stream([(b"UID", b"FETCH", want, b"(UID)")], window=1):
        uid = fetch_items(r.data).get(b"UID")
        if isinstance(uid, bytes) and uid.isdigit() and int(uid) < below:
            uids.append(int(uid))
    return UidRanges((u, u) for u in uids)
