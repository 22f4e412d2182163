"""CommuniGate Pro mailbox files: the text mailbox (``.mbox``) and the one-file-per-message ``.mdir``.

Text mailbox: each message follows a separator line ``From <return-path> (flags-UID) <timestamp>``.  The
part in parentheses is CommuniGate's own: status letters, then the message's UID after the last ``-``.
CommuniGate's public documentation does not list the letters, so the table in :data:`LETTER_FLAGS` is our
reading and is marked UNVERIFIED in docs/communigate.md: a letter we do not know becomes the keyword
``$CGP_<letter>`` (kept, and reported by the caller) rather than being dropped.

Boundaries: a line is a separator only in CommuniGate's real shape and position - ``From``, a return-path,
a parenthesised group of status letters ending in ``-<decimal UID>``, a timestamp - and only at the start
of the file, right after an empty line or right after another separator (an empty message, reported).  Anything doubtful stays body: ``From Paris (France)
with love`` in a body never splits a message (it has no UID and no timestamp), and a line that has the
whole shape but does not follow an empty line is kept as body and reported as a warning.  A file whose
first separator has letters but no UID (``(S)``, a form seen in older samples, UNVERIFIED) is read in that
form throughout, with the same timestamp and position rules.  A file whose first line lacks the group is
read as a classic mbox (separator = a ``From `` line with a date after a blank line).

Escaping: we found no evidence that CommuniGate adds ``>`` to body lines starting with ``From ``, so bytes
are returned exactly as stored, never unescaped.

One empty line just before a separator (and at the end of the file) belongs to the file, as in every
mbox.  A message cut off inside its header is reported as truncated; a last message whose file simply ends
without a line break is complete and copied as it is.  A separator followed by no message at all is a
boundary error, reported as such.  A UW-IMAP "Mail System Internal Data" pseudo-message at the head of the
file (left by a mailbox that once was a UW-IMAP one; the cgp2zarafa importer skips it too) is marked
``internal`` and is not mail.

``.mdir``: one file per message named ``<id>-<flags>-<yyyymmddhhmmss>`` (GMT); the id is the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import BinaryIO, Iterator

from ..errors import FormatError
from ..model import BodyWriter

#: Status letters -> IMAP flags (UNVERIFIED; see the module docstring).  "-" and "_" are placeholders.
LETTER_FLAGS = {
    "S": "\\Seen",
    "R": "\\Seen",
    "A": "\\Answered",
    "F": "\\Flagged",
    "D": "\\Deleted",
    "T": "\\Draft",
    "M": "$MDNSent",
    "J": "$Junk",
    "W": "$Forwarded",
}
#: The letter written for each flag (the inverse the generator uses).
FLAG_LETTERS = {"\\Seen": "S", "\\Answered": "A", "\\Flagged": "F", "\\Deleted": "D", "\\Draft": "T",
                "$MDNSent": "M", "$Junk": "J", "$Forwarded": "W"}
UNKNOWN_PREFIX = "$CGP_"
_PLACEHOLDERS = "-_ "

#: ``From <rp> (<letters>-<UID>) <timestamp>``: the letters are printable ASCII without space or parentheses
#: (the table is UNVERIFIED, so an unknown letter is kept, not a reason to reject the line).
_CGP_SEP = re.compile(rb"^From (\S+) \(([\x21-\x27\x2a-\x7e]*?)-?([0-9]{1,18})\) +([^\r\n]+?)\s*$")
_CGP_SEP_NO_UID = re.compile(rb"^From (\S+) \(([A-Za-z_-]+)\) +([^\r\n]+?)\s*$")
#: The From header of a UW-IMAP folder's internal-data pseudo-message.
_INTERNAL_FROM = re.compile(rb"^From:[ \t]*\"?Mail System Internal Data", re.IGNORECASE)
_CLASSIC_SEP = re.compile(rb"^From \S* +([^\r\n]*?)\s*$")
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                       "nov", "dec"), 1)}
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_MDIR_DATE = re.compile(r"\d{14}\Z")


def flags_from_letters(letters: str) -> tuple[frozenset[str], list[str]]:
    """(IMAP flags, letters we did not know) for a status-letter string."""
    flags, unknown = set(), []
    for ch in letters:
        if ch in _PLACEHOLDERS:
            continue
        f = LETTER_FLAGS.get(ch)
        if f is None:
            if ch.isalnum():
                f = UNKNOWN_PREFIX + ch
            else:
                f = UNKNOWN_PREFIX + f"{ord(ch):02X}"
            unknown.append(ch)
        flags.add(f)
    return frozenset(flags), unknown


def letters_from_flags(flags) -> str:
    """Status letters for IMAP flags; flags with no letter are left out (the generator never uses them)."""
    out = []
    for f in sorted(flags):
        if f in FLAG_LETTERS:
            out.append(FLAG_LETTERS[f])
        elif f.startswith(UNKNOWN_PREFIX) and len(f) == len(UNKNOWN_PREFIX) + 1:
            out.append(f[-1])
    return "".join(sorted(set(out)))


def parse_timestamp(text: str) -> datetime | None:
    """The separator's date.  Accepted: asctime (``Mon Jan  4 10:00:00 2021`` with an optional zone before
    or after the year), RFC 2822 style (``Mon, 4 Jan 2021 10:00:00 +0100``), IMAP style
    (``04-Jan-2021 10:00:00 +0100``) and CommuniGate's own ``#T04-01-2021_10:00:00``.  None when unreadable."""
    t = text.strip()
    try:
        if t.startswith("#T"):
            return datetime.strptime(t[2:], "%d-%m-%Y_%H:%M:%S").replace(tzinfo=timezone.utc)
        toks = t.replace(",", " ").split()
        if not toks:
            return None
        if toks[0][:3].lower() in _DAYS:
            toks = toks[1:]
        offset = 0
        zone = [x for x in toks if len(x) == 5 and x[0] in "+-" and x[1:].isdigit()]
        if zone:
            z = zone[0]
            offset = (1 if z[0] == "+" else -1) * (int(z[1:3]) * 3600 + int(z[3:5]) * 60)
        toks = [x for x in toks if x not in zone and not x.isalpha() or x[:3].lower() in _MONTHS]
        if len(toks) == 2 and toks[0].count("-") == 2:  # IMAP 04-Jan-2021 10:00:00
            d, mon, y = toks[0].split("-")
            toks = [d, mon, y, toks[1]]
        if toks[0][:3].lower() in _MONTHS:  # asctime: Jan 4 10:00:00 2021
            mon, d, hms, y = toks[0], toks[1], toks[2], toks[3]
        else:  # 4 Jan 2021 10:00:00
            d, mon, y, hms = toks[0], toks[1], toks[2], toks[3]
        parts = [int(x) for x in hms.split(":")]
        while len(parts) < 3:
            parts.append(0)
        dt = datetime(int(y), _MONTHS[mon[:3].lower()], int(d), parts[0], parts[1], parts[2], tzinfo=timezone.utc)
        return datetime.fromtimestamp(dt.timestamp() - offset, timezone.utc)
    except (ValueError, KeyError, IndexError, OverflowError, OSError):
        return None


def format_timestamp(when: datetime) -> str:
    """The date as the generator writes it: asctime in GMT with an explicit zone."""
    w = when.astimezone(timezone.utc)
    return w.strftime("%a %b ") + f"{w.day:2d}" + w.strftime(" %H:%M:%S %Y +0000")


@dataclass
class Separator:
    return_path: str
    letters: str
    uid: int | None
    date: datetime | None
    cgp: bool  # True: CommuniGate's own (flags-UID) form; False: a classic From_ line


def parse_separator(line: bytes, *, uid_required: bool = True) -> Separator | None:
    """The CommuniGate separator ``From <rp> (flags-UID) date``, or None when the line is not one.

    Every part must be there: a body line that only resembles a separator (``From Paris (France) with
    love``) is not one.  With its numeric UID the line is unmistakable, so an unreadable date there costs
    only the date (the caller warns); ``uid_required=False`` also takes ``(letters)`` without a UID, and
    then only with a date that parses.
    """
    m = _CGP_SEP.match(line)
    if m:
        letters, uid, stamp = m.group(2).decode("ascii"), int(m.group(3)), m.group(4)
    elif not uid_required and (m := _CGP_SEP_NO_UID.match(line)):
        letters, uid, stamp = m.group(2).decode("ascii"), None, m.group(3)
    else:
        return None
    date = parse_timestamp(stamp.decode("latin-1"))
    if date is None and uid is None:
        return None
    return Separator(m.group(1).decode("utf-8", "replace").strip("<>"), letters, uid, date, True)


def parse_classic_separator(line: bytes) -> Separator | None:
    m = _CLASSIC_SEP.match(line)
    if not m:
        return None
    date = parse_timestamp(m.group(1).decode("latin-1"))
    if date is None:
        return None
    rp = line[5:].split(None, 1)[0].decode("utf-8", "replace") if len(line) > 5 and line[5:].split() else ""
    return Separator(rp.strip("<>"), "", None, date, False)


def format_separator(return_path: str, letters: str, uid: int | None, when: datetime) -> bytes:
    inner = f"{letters or '-'}-{uid}" if uid is not None else (letters or "-")
    return f"From <{return_path}> ({inner}) {format_timestamp(when)}\n".encode("utf-8")


@dataclass
class Entry:
    """Where one message of a text mailbox is and what its separator said; no content."""

    offset: int  # first byte after the separator line
    length: int  # bytes of the message as stored
    line: int  # line number of the separator (1-based); the message starts on the next line
    separator: Separator | None
    flags: frozenset[str] = frozenset()
    unknown_letters: list[str] = field(default_factory=list)
    problem: str | None = None  # set when the message cannot be trusted (truncated, no message at all)
    warnings: list[str] = field(default_factory=list)
    internal: bool = False  # a UW-IMAP "Mail System Internal Data" pseudo-message: not mail

    @property
    def uid(self) -> int | None:
        return self.separator.uid if self.separator else None

    @property
    def date(self) -> datetime | None:
        return self.separator.date if self.separator else None


def scan(f: BinaryIO, *, path: str | None = None) -> Iterator[Entry]:
    """Index a text mailbox in one streaming pass (offsets, separators), keeping no bodies.

    Raises FormatError (with the line) when the file does not start with a separator: nothing in it can be
    told apart safely then.  A damaged message (cut inside its header, or a separator with no message
    after it) is returned with ``problem`` set, not raised, so the other messages still migrate.
    """
    pos = 0
    lineno = 0
    mode: str | None = None  # "cgp" (UIDs), "cgp-nouid" or "classic", decided by the first separator
    cur: Entry | None = None
    pending_blank = 0
    prev_blank = True
    in_header = False
    first_header: list[bytes] | None = None  # the first message's header, to spot UW-IMAP's pseudo-message
    for line in f:
        lineno += 1
        n = len(line)
        if mode is None:
            if not line.strip():
                pos += n
                continue  # leading blank lines are the file's
            sep = parse_separator(line)
            mode = "cgp"
            if sep is None:
                sep = parse_separator(line, uid_required=False)
                mode = "cgp-nouid"
            if sep is None:
                sep = parse_classic_separator(line)
                mode = "classic"
            if sep is None:
                raise FormatError("the mailbox does not start with a 'From ' separator line", path=path, line=lineno)
            first_header = []
        else:
            sep = None
            if line.startswith(b"From "):
                if mode == "classic":
                    sep = parse_classic_separator(line) if prev_blank else None
                else:
                    sep = parse_separator(line, uid_required=mode == "cgp")
                    right_after_separator = cur.offset == pos  # an empty message: a boundary error, below
                    if sep is not None and not prev_blank and not right_after_separator:
                        cur.warnings.append(f"line {lineno} has the shape of a separator but does not follow an "
                                            f"empty line: kept as part of the message starting on line "
                                            f"{cur.line + 1}")
                        sep = None
        if sep is not None:
            if cur is not None:
                yield _close(cur, pos - cur.offset - pending_blank, lineno)
            cur = Entry(pos + n, 0, lineno, sep)
            cur.flags, cur.unknown_letters = flags_from_letters(sep.letters)
            if sep.date is None:
                cur.warnings.append(f"line {lineno}: unreadable date on the separator line")
            in_header = True
            pending_blank = 0
            prev_blank = False
            pos += n
            continue
        blank = line in (b"\n", b"\r\n")
        if in_header:
            if blank:
                in_header = False
                if first_header is not None:
                    cur.internal = any(_INTERNAL_FROM.match(h) for h in first_header)
                    first_header = None
            elif first_header is not None and len(first_header) < 200:
                first_header.append(line)
        elif first_header is not None:
            first_header = None
        pending_blank = n if blank else 0
        prev_blank = blank
        pos += n
    if cur is not None:
        cur = _close(cur, max(0, pos - cur.offset - pending_blank), None)
        if cur.problem is None and in_header and cur.length > 0:
            # Only the last message: a header that never ends there means the file was cut short.
            cur.problem = f"message starting on line {cur.line + 1} is truncated: its header never ends"
        yield cur


def _close(entry: Entry, length: int, next_line: int | None) -> Entry:
    entry.length = length
    if length == 0:
        after = f"the next separator on line {next_line}" if next_line else "the end of the file"
        entry.problem = (f"boundary error: the separator on line {entry.line} is followed directly by "
                         f"{after}, with no message between them")
    return entry


def read_message(f: BinaryIO, entry: Entry) -> BodyWriter:
    """The stored bytes of one message, streamed into a BodyWriter (no unescaping: see module docstring)."""
    f.seek(entry.offset)
    left = entry.length
    w = BodyWriter()
    while left > 0:
        chunk = f.read(min(left, 1 << 18))
        if not chunk:
            break
        left -= len(chunk)
        w.write(chunk)
    return w


def write_message(data: bytes, return_path: str, flags, uid: int | None, when: datetime) -> bytes:
    """One message as the generator stores it: separator, bytes, closing empty line."""
    if not data.endswith(b"\n"):
        raise ValueError("a text-mailbox message must end with a line break")
    return format_separator(return_path, letters_from_flags(flags), uid, when) + data + b"\n"


# --- .mdir ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MdirName:
    id: str
    letters: str
    date: datetime | None


def parse_mdir_name(name: str) -> MdirName | None:
    """``<id>-<flags>-<yyyymmddhhmmss>``; None for a name that is not a message file."""
    if name.startswith(".") or not name:
        return None
    parts = name.rsplit("-", 2)
    if len(parts) == 3 and _MDIR_DATE.match(parts[2]) and parts[0]:
        try:
            when = datetime.strptime(parts[2], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            when = None
        return MdirName(parts[0], parts[1], when)
    if len(parts) >= 2 and parts[0]:
        return MdirName(parts[0], parts[1] if len(parts) == 2 else "-".join(parts[1:]), None)
    return MdirName(name, "", None)


def format_mdir_name(msg_id: str, flags, when: datetime) -> str:
    if "-" in msg_id or "/" in msg_id:
        raise ValueError("an .mdir message id cannot hold '-' or '/'")
    return f"{msg_id}-{letters_from_flags(flags) or '_'}-{when.astimezone(timezone.utc):%Y%m%d%H%M%S}"
