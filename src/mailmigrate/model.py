"""Values shared by every layer.

Messages are opaque bytes: a :class:`Body` is never parsed or re-serialised on its way from a source store
to a target store, so a copy is byte-exact by construction.  Large bodies live in a spooled temporary file,
which keeps memory flat whatever the message size.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from .credentials import Secret  # noqa: F401  (its home is credentials.py; many modules import it from here)

#: typing.TYPE_CHECKING without importing typing, as the modules a sync loads do: typing costs some 3 ms of every
#: run's start-up, and with ``from __future__ import annotations`` its names are needed by type checkers only
#: (the abstract types come from collections.abc).  Type checkers take any TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import BinaryIO

#: A folder is named by its decoded (Unicode) components, independent of any store's separator or
#: encoding; ("INBOX",) is the inbox and ("Work", "a/b") is a sub-folder whose own name holds a "/".
FolderPath = tuple[str, ...]

INBOX: FolderPath = ("INBOX",)

#: IMAP system flags, spelled as IMAP spells them.  ``\Recent`` is deliberately absent: it is
#: session state of the server and is never copied.
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})

#: RFC 6154 special-use attributes that mailmigrate maps between stores.
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged", "\\Important")

SPOOL_THRESHOLD = 1 << 20  # bodies above 1 MiB go to a temporary file


class Body:
    """The raw bytes of one message, held in memory when small and in a temporary file when large."""

    __slots__ = ("_data", "_file", "size")

    def __init__(self, data: bytes | None = None, file: BinaryIO | None = None, size: int | None = None):
        if (data is None) == (file is None):
            raise ValueError("Body needs exactly one of data or file")
        self._data = data
        self._file = file
        if data is not None:
            self.size = len(data)
        else:
            if size is None:
                file.seek(0, io.SEEK_END)
                size = file.tell()
            self.size = size

    @classmethod
    def from_bytes(cls, data: bytes) -> "Body":
        return cls(data=bytes(data))

    @classmethod
    def spooled(cls) -> "BodyWriter":
        """A writer that decides memory or disk by size; call ``finish()`` for the Body."""
        return BodyWriter()

    def chunks(self, chunk_size: int = 1 << 18) -> Iterator[bytes]:
        if self._data is not None:
            if type(self._data) is bytes and len(self._data) <= chunk_size:
                yield self._data  # immutable: no copy (most mail is one chunk, read by hashing and sending)
                return
            mv = memoryview(self._data)
            for i in range(0, len(mv), chunk_size) or [0]:
                yield bytes(mv[i : i + chunk_size])
            return
        self._file.seek(0)
        while True:
            chunk = self._file.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def read(self) -> bytes:
        """All bytes at once; use only where the caller knows the body is small or must be whole."""
        if self._data is not None:
            return self._data
        self._file.seek(0)
        return self._file.read()

    def fingerprint(self) -> str:
        return fingerprint_chunks(self.chunks())

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    @property
    def file(self) -> BinaryIO | None:
        """The temporary file of a spooled body (None in memory): a plain socket sends it with sendfile,
        from the page cache, never read into Python."""
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __repr__(self) -> str:  # never show content
        return f"<Body {self.size} bytes>"


class BodyWriter:
    """Accumulates a body chunk by chunk, spilling to a temporary file past :data:`SPOOL_THRESHOLD`."""

    def __init__(self, threshold: int = SPOOL_THRESHOLD):
        self._threshold = threshold
        self._buf = bytearray()
        self._file: BinaryIO | None = None
        self._size = 0

    def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._file is not None:
            self._file.write(chunk)
            return
        self._buf += chunk
        if len(self._buf) > self._threshold:
            self._file = spool_file()
            self._file.write(self._buf)
            self._buf = bytearray()

    def finish(self) -> Body:
        if self._file is None:
            return Body(data=bytes(self._buf))
        self._file.flush()
        return Body(file=self._file, size=self._size)


def spool_file() -> BinaryIO:
    """The temporary file a large body spills to: without a name (gone when closed, or when the process dies),
    in $TMPDIR, else /tmp.  Opened with O_TMPFILE where the system has it, as tempfile would: the tempfile module
    costs 3-4 ms at its first file (its imports, random's among them, and a probe of each directory it could
    use), paid by every run that meets a large message.  Elsewhere, or when that fails, tempfile."""
    flag = getattr(os, "O_TMPFILE", None)
    if flag is not None:
        try:
            return open(os.open(os.environ.get("TMPDIR") or "/tmp", os.O_RDWR | os.O_CLOEXEC | flag, 0o600), "w+b")
        except OSError:
            pass
    import tempfile  # here, where a body spills: a run of small mail need not load it (nor random)

    return tempfile.TemporaryFile(prefix="mailmigrate-")


# hashlib is imported where a message is hashed: it loads OpenSSL's libcrypto, some 2.5 ms of a start-up, and a
# rerun with nothing to copy hashes nothing (with TLS, ssl loads the library anyway, the module still costs).
def fingerprint_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def fingerprint_chunks(chunks) -> str:
    import hashlib

    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


@dataclass(frozen=True)
class FolderInfo:
    """A folder as a store lists it."""

    path: FolderPath
    special_use: str | None = None  # one of SPECIAL_USES, from the store or from a well-known name
    subscribed: bool = False
    selectable: bool = True  # False for \Noselect / \NonExistent hierarchy-only nodes


@dataclass(frozen=True, slots=True)
class FolderStatus:
    """What a store says about a folder before its messages are listed.

    ``validity`` is IMAP's UIDVALIDITY or the store's equivalent: when it changes, every key the store
    handed out for the folder before is void.  ``uidnext``/``highestmodseq``/``count`` let a rerun skip an
    unchanged folder without listing it; a store that cannot tell leaves them None.
    """

    validity: int
    uidnext: int | None = None
    highestmodseq: int | None = None
    count: int | None = None


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """One message's identity and metadata within a folder (not its content).

    ``key`` is stable while the folder's validity holds: the UID (as decimal text) on IMAP, the unique
    part of the file name in Maildir, a content-derived key in mbox.
    """

    key: str
    flags: frozenset[str] = frozenset()
    internaldate: datetime | None = None
    size: int | None = None
    uid: int | None = None  # numeric, ordered identity where the store has one (IMAP)


@dataclass
class AppendItem:
    """A message on its way into a target folder."""

    body: Body
    flags: frozenset[str] = frozenset()
    internaldate: datetime | None = None


def remembered(kind: type, limit: int = 1024):
    """A decorator: its function of one value, remembered per value of type ``kind`` (up to ``limit`` of them);
    a value of another type is answered afresh. A copy asks the same few questions of each message's flags
    (what the state records, what APPEND sends, what a FETCH's FLAGS text means), and a folder has a handful of
    distinct flag sets and texts but a message each."""

    def wrap(fn):
        seen: dict = {}

        def of(key):
            got = seen.get(key) if type(key) is kind else None
            if got is None:
                got = fn(key)
                if type(key) is kind and len(seen) < limit:
                    seen[key] = got
            return got

        of.__doc__, of.__name__, of.__wrapped__ = fn.__doc__, fn.__name__, fn
        return of

    return wrap


def intern_flags(flags: frozenset[str], _cache: dict = {}) -> frozenset[str]:
    """One shared object per distinct flag set: a folder of 100,000 messages has a handful of flag sets, and
    a frozenset per message would be most of a listing's memory."""
    got = _cache.get(flags)
    if got is None:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[flags] = got = flags
    return got


@dataclass(frozen=True)
class PermanentFlags:
    """Which flags a target folder keeps (IMAP PERMANENTFLAGS)."""

    flags: frozenset[str] = SYSTEM_FLAGS
    any_keyword: bool = True

    def filter(self, flags: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """Split ``flags`` into (kept, dropped) for this target; ``\\Recent`` is always dropped."""
        kept, dropped = set(), set()
        for f in flags:
            if f.lower() == "\\recent":
                continue
            if f in self.flags or (self.any_keyword and not f.startswith("\\")):
                kept.add(f)
            else:
                dropped.add(f)
        return frozenset(kept), frozenset(dropped)


@dataclass
class Account:
    """One mailbox to move: who it is on each side and how to get in.

    Passwords are held in :class:`Secret` so that no repr, log line or exception shows them.
    """

    source_user: str | None
    target_user: str | None
    source_password: "Secret | None" = None
    target_password: "Secret | None" = None
    #: this account's own folder and message rules, in sync's option syntax (accounts file's 5th column;
    #: sync.selection.Selection.with_rules); never a secret
    rules: str | None = None

    @property
    def name(self) -> str:
        return self.source_user or self.target_user or "(default)"


@dataclass
class Problem:
    """Something that was not copied or not done, for the report: always names where it happened."""

    account: str
    folder: str | None
    message: str | None
    reason: str
    kind: str = "message"  # message | folder | account | flag | warning | delete (deletes withheld)

    def describe(self) -> str:
        where = [f"account {self.account}"]
        if self.folder is not None:
            where.append(f"folder {self.folder}")
        if self.message is not None:
            where.append(f"message {self.message}")
        return printable(", ".join(where) + f": {self.reason}")


@dataclass
class Counters:
    """What one account's run did, field by field, for the summary, the JSON report and the exit status;
    adding counters (:meth:`total`) makes the run's totals."""

    copied: int = 0
    skipped: int = 0
    #: messages a --min/--max-age/-size rule left out (sync.selection): neither copied nor failed
    skipped_by_rule: int = 0
    flags_updated: int = 0
    deleted: int = 0
    failed: int = 0
    bytes_copied: int = 0
    folders_created: int = 0
    folders: int = 0
    recovered: int = 0
    rematched: int = 0
    #: target copies a killed run's server committed after recovery had declared them lost (engine._sweep)
    late_duplicates_removed: int = 0
    #: copies the target stored other than sent (Cyrus's munge8bit on 8-bit header bytes), each reported
    rewritten: int = 0
    #: target messages found to be copies of source messages when the state knew nothing of the folder
    #: (state lost, an earlier tool, another spelling of the server): recorded, not copied again
    adopted: int = 0
    #: target messages in such folders that are no copy of a source message (left alone)
    target_only: int = 0
    #: copies not deleted because the emptied-source guard withheld the deletes (sync.deletes)
    deletes_withheld: int = 0
    #: messages larger than the target's message size limit (a provider preset or ?max_message_size=): not
    #: sent, each reported; neither copied nor failed
    skipped_too_large: int = 0
    #: Gmail All Mail messages already copied from a label folder of the account (sync.gmail): not doubled
    skipped_in_label: int = 0

    @classmethod
    def total(cls, many) -> "Counters":
        """The sum of many counters (the accounts of a run)."""
        t = cls()
        for c in many:
            t.add(c)
        return t

    def add(self, other: "Counters") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class AccountResult:
    """One account's outcome: its counters and problems, and why it stopped when it did not finish."""

    account: str
    counters: Counters = field(default_factory=Counters)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None  # set when the whole account failed
    #: why: "configuration" (login refused, unknown host, TLS or certificate mismatch, a bad URL: no retry
    #: helps, exit status 2) or "failure" (anything else that stopped the account)
    error_kind: str | None = None
    #: wall-clock seconds the account took, retries included
    seconds: float = 0.0
    #: the two sides as the user spelled them (scheme, port and all; never a password); ``account`` is the
    #: state's identity, which leaves the spelling out so another spelling finds the same record
    source: str | None = None
    target: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.counters.failed == 0 and self.counters.deletes_withheld == 0


_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]}


def printable(text: str) -> str:
    """Text from a server or a file (a folder name, an error) as it may reach a terminal or a log line:
    control characters — CR and LF that would forge a log line, ESC that would drive the terminal, NUL —
    become visible ``\\xNN`` escapes (issue 19).  Everything else, non-ASCII letters included, stays."""
    return text.translate(_CONTROL) if not text.isprintable() else text
