"""mbox: splitting a file of messages at their ``From `` lines, streaming, never the whole file in memory.

Variants: *mboxrd* (a body line ``>From `` with one or more ``>`` was escaped by adding one ``>``; reading
removes one) and *mboxo* (only ``From `` was escaped to ``>From ``, ambiguously; reading turns ``>From `` back
into ``From ``).  The blank line before a separator belongs to the file, not to the message.  The date on
the ``From `` line becomes the message's INTERNALDATE; it has no zone by convention and is read as UTC
unless the line carries a numeric offset.  ``Status:``/``X-Status:`` headers tell flags; the bytes are
returned untouched.

Lines are read in bounded pieces (:data:`LINE_PIECE`), so a file with no line breaks at all costs no more
memory than a normal one; only the start of a real line can be a separator or an escaped ``>From``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from ..model import BodyWriter

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:
    from typing import BinaryIO

LINE_PIECE = 1 << 16
LINE_HEAD = 4096  # the start of a line that is always read whole before it is judged
VARIANTS = ("mboxrd", "mboxo")

_FROM = re.compile(rb"^From \S*\s+(.*?)\s*$")
_ESCAPED_RD = re.compile(rb"^>+From ")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}
_BLANK = (b"\n", b"\r\n")


def is_separator(line: bytes) -> bool:
    """A ``From `` line that carries a date: a body line starting "From " without one is not a separator."""
    if not line.startswith(b"From "):
        return False
    return parse_from_date(line) is not None or line.rstrip(b"\r\n") == b"From " or _looks_like_from(line)


def _looks_like_from(line: bytes) -> bool:
    parts = line.split()
    return len(parts) >= 3 and parts[2][:3].decode("latin-1") in _DAYS


def parse_from_date(line: bytes) -> datetime | None:
    """The date of a From_ line: asctime (``From sender Mon Jan  4 10:00:00 2021``) with the usual
    variants (a numeric zone or a zone name before or after the year, no seconds), or an RFC 2822 date as
    some writers put there.  None when there is no date to be read."""
    m = _FROM.match(line.rstrip(b"\r\n"))
    if not m:
        return None
    rest = m.group(1).decode("latin-1")
    toks = rest.split()
    if len(toks) < 4 or toks[0][:3] not in _DAYS:
        return None
    try:
        month = _MONTHS[toks[1][:3]]
        day = int(toks[2])
        hms = [int(x) for x in toks[3].split(":")]
        years = [int(t) for t in toks[4:] if t.isascii() and t.isdigit() and len(t) == 4]
        if not years or not 2 <= len(hms) <= 3:
            raise ValueError("no year")
        offset = 0
        for t in toks[4:]:
            if len(t) == 5 and t[0] in "+-" and t[1:].isascii() and t[1:].isdigit():
                offset = (1 if t[0] == "+" else -1) * (int(t[1:3]) * 3600 + int(t[3:5]) * 60)
        hms += [0] * (3 - len(hms))
        dt = datetime(years[0], month, day, hms[0], hms[1], hms[2], tzinfo=timezone.utc)
        return datetime.fromtimestamp(dt.timestamp() - offset, timezone.utc)
    except (KeyError, ValueError, OverflowError, OSError):
        pass
    try:
        dt = parsedate_to_datetime(rest)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(timezone.utc)
    except (TypeError, ValueError, IndexError, OverflowError, OSError):
        return None


def unescape(line: bytes, variant: str) -> bytes:
    """One line (from its start) as the message had it before the mbox writer escaped it."""
    if variant == "mboxrd":
        if _ESCAPED_RD.match(line):
            return line[1:]
    elif variant == "mboxo":
        if line.startswith(b">From "):
            return line[1:]
    return line


@dataclass(slots=True)
class MboxEntry:
    """Where one message is in the file and what its separator said: no content.

    ``sha256`` and ``size`` describe the unescaped message (what a fetch returns), so a store can key and
    list a folder in the same single pass that finds the messages.
    """

    offset: int  # of the first byte after the From_ line
    length: int  # raw bytes in the file (escaped, without the separator blank line)
    date: datetime | None
    flags: frozenset[str]
    from_line: bytes
    problems: list[str] = field(default_factory=list)
    sha256: str = ""
    size: int = 0


_STATUS_FLAGS = {"R": "\\Seen"}
_XSTATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}


def header_flags(head: bytes) -> frozenset[str]:
    """Flags from the ``Status:`` (R = read) and ``X-Status:`` (A, F, T, D) headers mail clients write."""
    flags = set()
    for line in head.split(b"\n"):
        low = line[:10].lower()
        if low.startswith(b"status:"):
            for ch in line[7:].strip().decode("latin-1"):
                if ch in _STATUS_FLAGS:
                    flags.add(_STATUS_FLAGS[ch])
        elif low.startswith(b"x-status:"):
            for ch in line[9:].strip().decode("latin-1"):
                if ch in _XSTATUS_FLAGS:
                    flags.add(_XSTATUS_FLAGS[ch])
    return frozenset(flags)


def _pieces(f: BinaryIO, limit: int, left: int | None = None) -> Iterator[tuple[bytes, bool]]:
    """(piece, starts a line), reading at most ``left`` bytes when given.

    A line longer than ``limit`` comes in several pieces, but its first piece holds at least
    :data:`LINE_HEAD` bytes of it (or the whole line), so a separator or an escape is always decided on
    the real start of a line, whatever the piece size.
    """
    at_start = True
    while left is None or left > 0:
        want = limit if left is None else min(limit, left)
        piece = f.readline(want)
        if not piece:
            return
        if at_start:
            while not piece.endswith(b"\n") and len(piece) < LINE_HEAD and (left is None or len(piece) < left):
                more = f.readline(min(LINE_HEAD - len(piece), limit) if left is None
                                  else min(LINE_HEAD - len(piece), limit, left - len(piece)))
                if not more:
                    break
                piece += more
        if left is not None:
            left -= len(piece)
        yield piece, at_start
        at_start = piece.endswith(b"\n")


class _Message:
    """The message being scanned: its hash is fed as lines arrive, except a blank line, which is held back
    until it is known not to be the separator's."""

    def __init__(self, entry: MboxEntry, variant: str):
        self.entry = entry
        self.variant = variant
        self.hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        self.in_head = True
        self.held = b""

    def feed(self, piece: bytes, at_start: bool) -> None:
        if self.held:
            self._hash(self.held)
            self.held = b""
        if at_start and piece in _BLANK:
            self.held = piece
            self.in_head = False
            return
        if self.in_head and len(self.head) < 65536:
            self.head += piece
        self._hash(unescape(piece, self.variant) if at_start else piece)

    def _hash(self, data: bytes) -> None:
        self.hash.update(data)
        self.size += len(data)

    def finish(self, end: int) -> MboxEntry:
        e = self.entry
        e.length = max(0, end - e.offset - len(self.held))
        e.flags = header_flags(bytes(self.head))
        e.sha256 = self.hash.hexdigest()
        e.size = self.size
        return e


def scan(f: BinaryIO, variant: str = "mboxrd", *, limit: int = LINE_PIECE) -> Iterator[MboxEntry]:
    """Index an mbox in one streaming pass: offsets, dates, flags and content hashes, no bodies kept.

    A separator is a ``From `` line at the start of the file or after a blank line; a line with a complete
    date is a separator even without the blank line (a writer that forgot it), since every mbox writer
    escapes such a line inside a body.
    """
    if variant not in VARIANTS:
        raise ValueError(f"mbox variant must be one of {VARIANTS}, not {variant!r}")
    pos = 0
    cur: _Message | None = None
    started = False
    last = b""
    for piece, at_start in _pieces(f, limit):
        n = len(piece)
        if at_start and piece.startswith(b"From ") and is_separator(piece):
            blank_before = not started or (cur is not None and cur.held) or cur is None
            date = parse_from_date(piece)
            if blank_before or date is not None:
                if cur is not None:
                    yield cur.finish(pos)
                entry = MboxEntry(pos + n, 0, date, frozenset(), piece.rstrip(b"\r\n")[:1000])
                if date is None:
                    entry.problems.append(f"unreadable date on the From line {piece[:80]!r}")
                cur = _Message(entry, variant)
                started = True
                pos += n
                last = piece
                continue
        if cur is None:
            started = True
            if piece.strip():
                # Not an mbox separator at the start: the file is taken as one message with no From line.
                entry = MboxEntry(pos, 0, None, frozenset(), b"")
                entry.problems.append("the file does not start with a From line")
                cur = _Message(entry, variant)
            else:
                pos += n
                continue
        cur.feed(piece, at_start)
        pos += n
        last = piece
    if cur is not None:
        if not last.endswith(b"\n"):
            cur.entry.problems.append("the file ends in the middle of a line: the last message may be truncated")
        elif not cur.held and cur.entry.offset < pos:
            cur.entry.problems.append("no blank line after the last message: the file may be truncated")
        yield cur.finish(pos)


def read_message(f: BinaryIO, entry: MboxEntry, variant: str = "mboxrd", *, limit: int = LINE_PIECE) -> BodyWriter:
    """The message's bytes, unescaped, streamed into a BodyWriter."""
    f.seek(entry.offset)
    w = BodyWriter()
    for piece, at_start in _pieces(f, limit, entry.length):
        w.write(unescape(piece, variant) if at_start else piece)
    return w


def escape_body(data: bytes) -> bytes:
    """mboxrd escaping for writing: every line matching ``>*From `` gets one more ``>``."""
    lines = data.split(b"\n")
    return b"\n".join(b">" + ln if (ln.startswith(b"From ") or _ESCAPED_RD.match(ln)) else ln for ln in lines)


def from_line(sender: str = "MAILER-DAEMON", date: datetime | None = None) -> bytes:
    """``From sender Mon Jan  4 10:00:00 2021`` in UTC, with English names whatever the locale."""
    d = (date or datetime(2000, 1, 1, tzinfo=timezone.utc)).astimezone(timezone.utc)
    return (f"From {sender or 'MAILER-DAEMON'} {_DAYS[d.weekday()]} {_MONTH_NAMES[d.month - 1]} {d.day:2d} "
            f"{d:%H:%M:%S} {d.year}\n").encode()


def write_message(data: bytes, sender: str = "MAILER-DAEMON", date: datetime | None = None) -> bytes:
    """One mboxrd entry: From_ line, escaped message, and the separating blank line.  A message that does
    not end with a line break gets one, since mbox cannot tell where such a message ends."""
    body = escape_body(data)
    if not body.endswith(b"\n"):
        body += b"\n"
    return from_line(sender, date) + body + b"\n"
