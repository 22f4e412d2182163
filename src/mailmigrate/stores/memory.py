"""A mail store held in memory, for tests that drive the engine through thousands of runs in a second.

Why a store of its own rather than a mock: it keeps every promise of :class:`~.base.Store` the way an IMAP
server with UIDPLUS, CONDSTORE and QRESYNC keeps them (UIDs that never repeat within a UIDVALIDITY, a
validity that changes when a folder is made anew, a change log for ``changes_since``, atomic batch appends
that return the new UIDs), and the contract suite (tests/contract) holds it to them like every other store.
So a property test over the engine can run on it and what it finds is the engine's doing, not the store's.

The mail lives in a :class:`MemoryMailbox` (one account on one server); a :class:`MemoryStore` is one
connection to it, so ``clone()`` gives the engine a second connection to the same mail.  The mailbox also
plays the people around a migration, through methods no engine calls: a delivery, a user's flag change or
expunge, a folder renamed in a mail client.  And it can go wrong on purpose (:class:`Faults`): refuse the
messages it is told to, fail the Nth write before or after it takes effect (a crash, a reply lost with the
connection), break a fetch at its Nth message, or drop every connection.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import ConnectionLost, FolderFailed, MessageRejected, StoreError
from ..formats.specialuse import guess_special_use
from ..model import AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta, PermanentFlags
from .base import FolderChanges, Store

#: UIDVALIDITY values are unique within the process, so a folder made anew (or renamed onto a name the
#: state remembers) never passes for the folder it replaces, as on a server that derives them from a clock.
_validities = itertools.count(1000)


def _norm(path: FolderPath) -> FolderPath:
    path = tuple(path)
    if path and path[0].upper() == "INBOX":
        return ("INBOX",) + path[1:]
    return path


def _clean(flags: Iterable[str]) -> frozenset[str]:
    return frozenset(f for f in flags if f.lower() != "\\recent")


@dataclass
class _Message:
    uid: int
    data: bytes
    flags: frozenset[str]
    internaldate: datetime
    modseq: int


@dataclass
class _Folder:
    validity: int
    uidnext: int = 1
    highestmodseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)  # by UID, in UID order
    #: (uid, modseq of the expunge): what QRESYNC's VANISHED (EARLIER) reports
    vanished: list[tuple[int, int]] = field(default_factory=list)
    special_use: str | None = None

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq


@dataclass
class _WriteFault:
    at: int  # the write number (counted over every connection) that fails
    error: Callable[[], BaseException]
    applied: bool  # True: the write takes effect, then the error (a reply lost); False: nothing happens


class Faults:
    """What a test wants to go wrong, counted over every connection to one mailbox.

    Writes are the calls that change the mailbox: ``append`` (one per call, whatever the batch), ``set_flags``,
    ``delete_messages``, ``create_folder``, ``subscribe``, ``delete_folder``.  Every fault fires once.
    """

    def __init__(self) -> None:
        self.writes = 0
        self._write_faults: list[_WriteFault] = []
        self._refuse: list[Callable[[bytes], bool]] = []
        self.fetched = 0
        self._fetch_faults: list[tuple[int, Callable[[], BaseException]]] = []

    def fail_write(self, n: int, error: BaseException | Callable[[], BaseException], *, applied: bool) -> None:
        """The ``n``-th write from now raises ``error``; ``applied``: after taking effect (the server did
        it, the reply was lost) or before (a crash before the command left)."""
        make = error if callable(error) and not isinstance(error, BaseException) else (lambda: error)
        self._write_faults.append(_WriteFault(self.writes + n, make, applied))

    def fail_fetch(self, n: int, error: BaseException | Callable[[], BaseException]) -> None:
        """The ``n``-th message fetched from now (over every connection) raises ``error`` instead of arriving,
        in the middle of a fetch's stream, as a connection that breaks mid-response."""
        make = error if callable(error) and not isinstance(error, BaseException) else (lambda: error)
        self._fetch_faults.append((self.fetched + n, make))

    def refuse(self, which: Callable[[bytes], bool]) -> None:
        """Every message whose bytes ``which`` picks is refused until :meth:`clear`, and with it its whole
        batch (MULTIAPPEND is all or nothing), as a server refuses a message too big or malformed for it;
        the error names the message's index in the batch."""
        self._refuse.append(which)

    def clear(self) -> None:
        self._write_faults.clear()
        self._refuse.clear()
        self._fetch_faults.clear()

    def _due(self) -> _WriteFault | None:
        for f in self._write_faults:
            if f.at == self.writes:
                self._write_faults.remove(f)
                return f
        return None


class MemoryMailbox:
    """One account's mail in memory: folders, subscriptions, faults; shared by every MemoryStore on it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.folders: dict[FolderPath, _Folder] = {("INBOX",): _Folder(next(_validities))}
        self.subscribed: set[FolderPath] = set()
        self.faults = Faults()
        #: bumped by drop_connections(): a connection opened before it is dead
        self.generation = 0

    # --- what happens around a migration (never called by the engine) ------------------------------
    def deliver(self, path: FolderPath, data: bytes, flags: Iterable[str] = (), date: datetime | None = None) -> str:
        """A message arriving as an MTA or a user's client would put it there; the folder is made if
        missing.  Returns its key."""
        with self.lock:
            f = self.folders.get(_norm(path)) or self._make(_norm(path))
            return self._store(f, data, _clean(flags), date)

    def make_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        with self.lock:
            if _norm(path) not in self.folders:
                self._make(_norm(path), special_use)

    def change_flags(self, path: FolderPath, key: str, flags: Iterable[str]) -> None:
        """A user's client setting a message's flags to exactly ``flags``."""
        with self.lock:
            f = self._folder(path)
            m = f.messages[int(key)]
            m.flags = _clean(flags)
            m.modseq = f.bump()

    def expunge(self, path: FolderPath, key: str) -> None:
        with self.lock:
            f = self._folder(path)
            del f.messages[int(key)]
            f.vanished.append((int(key), f.bump()))

    def rename_folder(self, old: FolderPath, new: FolderPath) -> None:
        """A mail client's RENAME: the folder keeps its UIDVALIDITY and UIDs under the new name (Dovecot
        does), and its sub-folders move with it."""
        old, new = _norm(old), _norm(new)
        with self.lock:
            if old == ("INBOX",) or new in self.folders:
                raise FolderFailed(f"cannot rename {old} to {new}")
            for p in sorted(self.folders):
                if p[:len(old)] == old:
                    self.folders[new + p[len(old):]] = self.folders.pop(p)
                    if p in self.subscribed:
                        self.subscribed.discard(p)
                        self.subscribed.add(new + p[len(old):])

    def renumber(self, path: FolderPath) -> None:
        """The folder's index rebuilt: a new UIDVALIDITY and new UIDs for the same messages."""
        with self.lock:
            old = self._folder(path)
            f = _Folder(next(_validities), special_use=old.special_use)
            for m in old.messages.values():
                self._store(f, m.data, m.flags, m.internaldate)
            self.folders[_norm(path)] = f

    def contents(self, path: FolderPath) -> list[tuple[str, bytes, frozenset[str]]]:
        """(key, bytes, flags) of every message, in key order: what a test compares."""
        with self.lock:
            return [(str(m.uid), m.data, m.flags) for m in self._folder(path).messages.values()]

    def paths(self) -> list[FolderPath]:
        with self.lock:
            return sorted(self.folders)

    def drop_connections(self) -> None:
        """The server drops every session: each connection's next call is a ConnectionLost, until it
        reconnects."""
        with self.lock:
            self.generation += 1

    # --- inside ----------------------------------------------------------------------------------
    def _make(self, path: FolderPath, special_use: str | None = None) -> _Folder:
        f = self.folders[path] = _Folder(next(_validities), special_use=special_use)
        return f

    def _folder(self, path: FolderPath) -> _Folder:
        f = self.folders.get(_norm(path))
        if f is None:
            raise FolderFailed(f"folder {'/'.join(path)} does not exist")
        return f

    @staticmethod
    def _store(f: _Folder, data: bytes, flags: frozenset[str], date: datetime | None) -> str:
        uid = f.uidnext
        f.uidnext += 1
        when = (date or datetime.now(timezone.utc)).replace(microsecond=0)
        f.messages[uid] = _Message(uid, bytes(data), flags, when, f.bump())
        return str(uid)

    def _write(self, do: Callable[[], object]):
        """One write through a connection, with the faults a test armed."""
        self.faults.writes += 1
        fault = self.faults._due()
        if fault is not None and not fault.applied:
            raise fault.error()
        result = do()
        if fault is not None:
            raise fault.error()
        return result


class MemoryStore(Store):
    """One connection to a :class:`MemoryMailbox`, with an IMAP server's promises (UIDPLUS, CONDSTORE,
    QRESYNC, MULTIAPPEND).  ``uidplus=False`` plays a server without UIDPLUS: ``append`` cannot say which
    keys it made, and the engine must find its copies by content."""

    kind = "memory"
    writable = True
    ordered_keys = True

    def __init__(self, mailbox: MemoryMailbox | None = None, *, batch: tuple[int, int] = (16, 1 << 20),
                 name: str = "memory", uidplus: bool = True):
        self.uidplus = uidplus
        self.mailbox = mailbox if mailbox is not None else MemoryMailbox()
        self.batch = batch
        self.name = name
        self._generation: int | None = None  # None: not connected

    def describe(self) -> str:
        return f"memory:{self.name}"

    def clone(self) -> "MemoryStore":
        return MemoryStore(self.mailbox, batch=self.batch, name=self.name, uidplus=self.uidplus)

    # --- life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        with self.mailbox.lock:
            self._generation = self.mailbox.generation

    def close(self) -> None:
        self._generation = None

    def _live(self) -> MemoryMailbox:
        mb = self.mailbox
        if self._generation is None:
            raise ConnectionLost(f"{self.describe()}: not connected")
        if self._generation != mb.generation:
            self._generation = None
            raise ConnectionLost(f"{self.describe()}: connection dropped by the server")
        return mb

    # --- folders ----------------------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        mb = self._live()
        with mb.lock:
            out = {}
            for p, f in mb.folders.items():
                use = f.special_use or (None if p == ("INBOX",) else guess_special_use(p))
                out[p] = FolderInfo(p, use, p in mb.subscribed, True)
            for p in list(out):
                for i in range(1, len(p)):
                    if p[:i] not in out:  # a level of the hierarchy only, as IMAP lists it (\Noselect)
                        out[p[:i]] = FolderInfo(p[:i], None, p[:i] in mb.subscribed, False)
            return [out[p] for p in sorted(out)]

    def folder_status(self, path: FolderPath) -> FolderStatus:
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)
            return FolderStatus(f.validity, f.uidnext, f.highestmodseq, len(f.messages))

    # --- reading ----------------------------------------------------------------------------------
    @staticmethod
    def _meta(m: _Message) -> MessageMeta:
        return MessageMeta(str(m.uid), m.flags, m.internaldate, len(m.data), m.uid)

    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)
            status = FolderStatus(f.validity, f.uidnext, f.highestmodseq, len(f.messages))
            return status, [self._meta(m) for m in f.messages.values() if min_uid is None or m.uid >= min_uid]

    def changes_since(self, path: FolderPath, before: FolderStatus) -> FolderChanges | None:
        """As QRESYNC answers a SELECT with the state's markers: every message whose modseq or UID is newer,
        and the UIDs expunged since."""
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)
            if f.validity != before.validity or before.highestmodseq is None or before.uidnext is None:
                return None
            status = FolderStatus(f.validity, f.uidnext, f.highestmodseq, len(f.messages))
            changed = [self._meta(m) for m in f.messages.values()
                       if m.modseq > before.highestmodseq or m.uid >= before.uidnext]
            vanished = frozenset(str(uid) for uid, ms in f.vanished if ms > before.highestmodseq)
            return FolderChanges(status, changed, vanished, "memory")

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)
            found = [f.messages[int(k)] for k in keys if k.isdigit() and int(k) in f.messages]
            out = [(self._meta(m), m.data) for m in found]
        for meta, data in out:
            with mb.lock:
                mb.faults.fetched += 1
                due = [f for f in mb.faults._fetch_faults if f[0] == mb.faults.fetched]
                for f in due:
                    mb.faults._fetch_faults.remove(f)
            if due:
                raise due[0][1]()
            yield meta, Body.from_bytes(data)

    # --- writing ----------------------------------------------------------------------------------
    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        mb = self._live()
        path = _norm(path)
        with mb.lock:
            def do():
                if path not in mb.folders:
                    mb._make(path, special_use)
            mb._write(do)

    def subscribe(self, path: FolderPath) -> None:
        mb = self._live()
        with mb.lock:
            mb._write(lambda: mb.subscribed.add(_norm(path)))

    def permanent_flags(self, path: FolderPath) -> PermanentFlags:
        return PermanentFlags()

    def append_batch_limit(self) -> tuple[int, int]:
        return self.batch

    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)
            for i, it in enumerate(items):
                if any(which(it.body.read()) for which in mb.faults._refuse):
                    e = MessageRejected("message refused by the test's fault", code="TOOBIG")
                    e.index = i
                    raise e

            def do():
                return [mb._store(f, it.body.read(), _clean(it.flags), it.internaldate) for it in items]
            keys = mb._write(do)
            return keys if self.uidplus else [None] * len(keys)

    def set_flags(self, path: FolderPath, changes: Iterable[tuple[str, frozenset[str], frozenset[str]]]) -> None:
        mb = self._live()
        changes = list(changes)
        with mb.lock:
            f = mb._folder(path)

            def do():
                for key, add, remove in changes:
                    m = f.messages.get(int(key)) if key.isdigit() else None
                    if m is None:
                        continue
                    new = _clean((m.flags | add) - remove)
                    if new != m.flags:
                        m.flags = new
                        m.modseq = f.bump()
            mb._write(do)

    def delete_folder(self, path: FolderPath) -> None:
        mb = self._live()
        path = _norm(path)
        with mb.lock:
            if path == ("INBOX",):
                raise StoreError("INBOX cannot be deleted")
            f = mb._folder(path)
            if f.messages:
                raise FolderFailed(f"folder {'/'.join(path)} is not empty")

            def do():
                del mb.folders[path]
                mb.subscribed.discard(path)
            mb._write(do)

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        mb = self._live()
        with mb.lock:
            f = mb._folder(path)

            def do():
                for k in keys:
                    if k.isdigit() and int(k) in f.messages:
                        del f.messages[int(k)]
                        f.vanished.append((int(k), f.bump()))
            mb._write(do)
