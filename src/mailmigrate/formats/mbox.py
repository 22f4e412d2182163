"""mbox: splitting a file of messages at their ``From `` lines, streaming, never the whole file in memory.

Variants: *mboxrd* (a body line ``>From `` with one or more ``>`` was escaped by adding one ``>``; reading
removes one) and *mboxo* (only ``From `` was escaped to ``>From ``, ambiguously; reading turns ``>From `` back
into ``From ``).  The blank line before a separator belongs to the file, not to the message.  The date on
the ``From `` line becomes the message's INTERNALDATE.  ``Status:``/``X-Status:`` headers tell flags; the
bytes are returned untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from ..model import BodyWriter

_FROM = re.compile(rb"^From \S*\s+(.*?)\s*$")
_ESCAPED_RD = re.compile(rb"^>+From ")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}


def is_separator(line: bytes) -> bool:
    """A ``From `` line that carries a date: a body line starting "From " without one is not a separator."""
    if not line.startswith(b"From "):
        return False
    return parse_from_date(line) is not None or line.rstrip(b"\r\n") == b"From " or _looks_like_from(line)


def _looks_like_from(line: bytes) -> bool:
    parts = line.split()
    return len(parts) >= 3 and parts[2][:3].decode("latin-1") in _DAYS


def parse_from_date(line: bytes) -> datetime | None:
    """The asctime date of a From_ line (``From sender Mon Jan  4 10:00:00 2021`` and common variants:
    a numeric zone or a zone name before or after the year)."""
    m = _FROM.match(line.rstrip(b"\r\n"))
    if not m:
        return None
    toks = m.group(1).decode("latin-1").split()
    if len(toks) < 5 or toks[0][:3] not in _DAYS:
        return None
    try:
        month = _MONTHS[toks[1][:3]]
        day = int(toks[2])
        hms = [int(x) for x in toks[3].split(":")]
        rest = toks[4:]
        year = next(int(t) for t in rest if t.isdigit() and len(t) == 4)
        offset = 0
        for t in rest:
            if len(t) == 5 and t[0] in "+-" and t[1:].isdigit():
                offset = (1 if t[0] == "+" else -1) * (int(t[1:3]) * 3600 + int(t[3:5]) * 60)
        while len(hms) < 3:
            hms.append(0)
        dt = datetime(year, month, day, hms[0], hms[1], hms[2], tzinfo=timezone.utc)
        return datetime.fromtimestamp(dt.timestamp() - offset, timezone.utc)
    except (KeyError, ValueError, StopIteration, OverflowError):
        return None


def unescape(line: bytes, variant: str) -> bytes:
    if variant == "mboxrd":
        if _ESCAPED_RD.match(line):
            return line[1:]
    elif variant == "mboxo":
        if line.startswith(b">From "):
            return line[1:]
    return line


@dataclass
class MboxEntry:
    """Where one message is in the file and what its separator said: no content."""

    offset: int  # of the first byte after the From_ line
    length: int  # raw bytes in the file (escaped, without the separator blank line)
    date: datetime | None
    flags: frozenset[str]
    from_line: bytes
    problems: list[str] = field(default_factory=list)


_STATUS_FLAGS = {"R": "\\Seen"}
_XSTATUS_FLAGS = {"A": "\\Answered", "F": "\\Flagged", "T": "\\Draft", "D": "\\Deleted"}


def header_flags(head: bytes) -> frozenset[str]:
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


def scan(f: BinaryIO) -> Iterator[MboxEntry]:
    """Index an mbox in one streaming pass: offsets, dates and flags, no bodies kept."""
    pos = 0
    cur: MboxEntry | None = None
    head = bytearray()
    in_head = False
    pending_blank = 0  # length of a blank line that may be the separator's
    first = True
    for line in f:
        n = len(line)
        if is_separator(line) and (first or pending_blank or cur is None):
            if cur is not None:
                cur.length = pos - cur.offset - pending_blank
                cur.flags = header_flags(bytes(head))
                yield cur
            cur = MboxEntry(pos + n, 0, parse_from_date(line), frozenset(), line.rstrip(b"\r\n"))
            if cur.date is None:
                cur.problems.append(f"unreadable date on the From line {line[:80]!r}")
            head = bytearray()
            in_head = True
            pending_blank = 0
            first = False
            pos += n
            continue
        if first and cur is None:
            first = False
            if line.strip():
                # Not an mbox separator at the start: treat the file as one message with no From line.
                cur = MboxEntry(0, 0, None, frozenset(), b"")
                cur.problems.append("the file does not start with a From line")
                in_head = True
        if in_head:
            if line in (b"\n", b"\r\n"):
                in_head = False
            elif len(head) < 65536:
                head += line
        pending_blank = n if line in (b"\n", b"\r\n") else 0
        pos += n
    if cur is not None:
        # The last message: its trailing blank line is the file's, when there is one.
        cur.length = pos - cur.offset - pending_blank
        if cur.length < 0:
            cur.length = 0
        cur.flags = header_flags(bytes(head))
        yield cur


def read_message(f: BinaryIO, entry: MboxEntry, variant: str = "mboxrd") -> BodyWriter:
    """The message's bytes, unescaped, streamed into a BodyWriter."""
    f.seek(entry.offset)
    left = entry.length
    w = BodyWriter()
    while left > 0:
        line = f.readline(min(left, 1 << 20))
        if not line:
            break
        left -= len(line)
        w.write(unescape(line, variant))
    return w


def escape_body(data: bytes) -> bytes:
    """mboxrd escaping for writing: every line matching ``>*From `` gets one more ``>``."""
    out = []
    for line in data.splitlines(keepends=True):
        if _ESCAPED_RD.match(line) or line.startswith(b"From "):
            line = b">" + line
        out.append(line)
    return b"".join(out)


def write_message(data: bytes, sender: str = "MAILER-DAEMON", date: datetime | None = None) -> bytes:
    date = date or datetime(2000, 1, 1, tzinfo=timezone.utc)
    sep = f"From {sender} {date.astimezone(timezone.utc).strftime('%a %b %e %H:%M:%S %Y')}\n".encode()
    body = escape_body(data)
    if not body.endswith(b"\n"):
        body += b"\n"
    return sep + body + b"\n"
