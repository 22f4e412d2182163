"""IMAP4rev1 response parsing (RFC 3501 §9): bytes in, values out.

A response arrives as text segments with literals between them (the connection reads ``{n}`` literals
itself, streaming large ones to disk); :func:`parse_response` turns such a list into a :class:`Response`.
Values: ``bytes`` for atoms, numbers and quoted strings, ``None`` for NIL, ``list`` for parenthesised lists,
and the literal objects as the connection handed them (``bytes`` or a :class:`~mailmigrate.model.Body`).

Pure and strict: anything that is not IMAP raises ProtocolError, because a misread response could
attribute one message's flags or UID to another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..errors import ProtocolError
from ..model import printable

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:
    from typing import Any

_LITERAL_AT_END = re.compile(rb"~?\{(\d+)(\+?)\}\r?\n?$")
_ATOM_RUN = re.compile(rb'[^ ()\r\n"{\[\x00-\x1f\x7f]*')


@dataclass
class Response:
    """One parsed server response.  (A docstring also spares @dataclass writing one from the signature, with
    inspect, at every start-up.)"""

    kind: str  # "tagged" | "untagged" | "continuation"
    tag: bytes | None = None
    status: bytes | None = None  # OK NO BAD BYE PREAUTH for status responses, upper-case
    code: bytes | None = None  # response code name, upper-case: UIDVALIDITY, APPENDUID, TRYCREATE, ...
    code_args: list = field(default_factory=list)
    text: bytes = b""
    number: int | None = None  # "* 23 EXISTS" -> 23
    name: bytes | None = None  # EXISTS, FETCH, LIST, STATUS, CAPABILITY, ... upper-case
    data: list = field(default_factory=list)

    def text_str(self) -> str:
        """The server's human-readable text, safe to print (control characters escaped)."""
        return printable(self.text.decode("utf-8", "replace"))


class _Literal:
    """Marks where a literal sat in the token stream."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def literal_size(line: bytes) -> int | None:
    """If a response line ends with a literal announcement ``{n}``, its size."""
    # Called for every line read: most end in no "}", and an announcement can only begin at the last "{"
    # (or a "~" just before it), so the regex needs neither to scan the whole line nor to run at all.
    if line.rstrip(b"\r\n")[-1:] != b"}":
        return None
    m = _LITERAL_AT_END.search(line, max(0, line.rfind(b"{") - 1))
    return int(m.group(1)) if m else None


class _Tokens:
    __slots__ = ("parts", "i", "buf", "pos")

    def __init__(self, parts: list):
        self.parts = parts
        self.i = 0
        self.buf = b""
        self.pos = 0
        self._load()

    def _load(self):
        while self.i < len(self.parts):
            p = self.parts[self.i]
            if isinstance(p, (bytes, bytearray)):
                self.buf = bytes(p)
                self.pos = 0
                self.i += 1
                return
            break
        else:
            self.buf, self.pos = b"", 0

    def at_end(self) -> bool:
        self._skip_spaces()
        return self.pos >= len(self.buf) and self.i >= len(self.parts)

    def _skip_spaces(self):
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in b" \r\n":
                self.pos += 1
            if self.pos < len(self.buf):
                return
            if self.i < len(self.parts) and isinstance(self.parts[self.i], (bytes, bytearray)):
                self._load()
                continue
            return

    def rest_of_line(self) -> bytes:
        out = self.buf[self.pos:].rstrip(b"\r\n")
        self.pos = len(self.buf)
        return out

    def peek(self) -> int | None:
        self._skip_spaces()
        if self.pos < len(self.buf):
            return self.buf[self.pos]
        return None

    def value(self) -> Any:
        self._skip_spaces()
        if self.pos >= len(self.buf):
            # A literal is next: the previous text segment ended with its "{n}" announcement.
            if self.i < len(self.parts) and not isinstance(self.parts[self.i], (bytes, bytearray)):
                lit = self.parts[self.i]
                self.i += 1
                self._load()
                return lit.value if isinstance(lit, _Literal) else lit
            raise ProtocolError("response ended where a value was expected")
        b = self.buf
        c = b[self.pos]
        if c == 0x28:  # (
            self.pos += 1
            items = []
            while True:
                nxt = self.peek()
                if nxt is None and self.i >= len(self.parts):
                    raise ProtocolError("unterminated parenthesised list")
                if nxt == 0x29:  # )
                    self.pos += 1
                    return items
                items.append(self.value())
        if c == 0x22:  # "
            return self._quoted()
        if c == 0x7B or (c == 0x7E and b.startswith(b"{", self.pos + 1)):
            # {n} or ~{n} (literal8): the announcement ends its line and the literal follows as a part.  A
            # "~" elsewhere is an atom's first character: RFC 3501 allows a mailbox named "~archive".
            end = b.find(b"}", self.pos)
            if end < 0 or b[end + 1:].strip(b"\r\n"):
                raise ProtocolError("broken literal announcement")
            self.pos = len(b)  # the rest of this segment is the announcement's line end
            if self.i < len(self.parts) and not isinstance(self.parts[self.i], (bytes, bytearray)):
                lit = self.parts[self.i]
                self.i += 1
                self._load()
                return lit.value if isinstance(lit, _Literal) else lit
            raise ProtocolError("literal announced but not supplied")
        if c == 0x29:
            raise ProtocolError("unexpected ')'")
        return self._atom()

    def _quoted(self) -> bytes:
        b = self.buf
        i = self.pos + 1
        # Most quoted strings (every INTERNALDATE of a listing) hold no escape: one find, one slice.
        end = b.find(b'"', i)
        if end >= 0:
            s = b[i:end]
            if b"\\" not in s and b"\r" not in s and b"\n" not in s:
                self.pos = end + 1
                return s
        out = bytearray()
        while i < len(b):
            ch = b[i]
            if ch == 0x5C:  # backslash
                if i + 1 >= len(b):
                    break
                out.append(b[i + 1])
                i += 2
                continue
            if ch == 0x22:
                self.pos = i + 1
                return bytes(out)
            if ch in (0x0D, 0x0A):
                break
            out.append(ch)
            i += 1
        raise ProtocolError("unterminated quoted string")

    def _atom(self) -> Any:
        b = self.buf
        start = self.pos
        # The plain run of atom bytes in one regex step; a section ("[") or a control byte goes on below.
        i = _ATOM_RUN.match(b, start).end()
        n = len(b)
        while i < n:
            ch = b[i]
            if ch == 0x5B:  # [ : a section such as BODY[HEADER.FIELDS (A B)] belongs to the atom
                depth = 1
                i += 1
                while i < n and depth:
                    if b[i] == 0x5B:
                        depth += 1
                    elif b[i] == 0x5D:
                        depth -= 1
                    i += 1
                if depth:
                    raise ProtocolError("unterminated '[' in atom")
                if i < n and b[i] == 0x3C:  # <origin>
                    j = b.find(b">", i)
                    if j < 0:
                        raise ProtocolError("unterminated '<' in atom")
                    i = j + 1
                continue
            if ch in b" ()\r\n\"{":
                break
            if ch < 0x20 or ch == 0x7F:
                raise ProtocolError(f"control character {ch:#x} in atom")
            i += 1
        if i == start:
            raise ProtocolError(f"unexpected byte {b[start:start + 1]!r}")
        self.pos = i
        tok = b[start:i]
        if tok.upper() == b"NIL":
            return None
        return tok


def parse_response(parts: list) -> Response:
    """Parse one response given as [text, literal, text, literal, ..., text]."""
    parts = [p if isinstance(p, (bytes, bytearray)) else (p if isinstance(p, _Literal) else _Literal(p))
             for p in parts]
    if not parts or not isinstance(parts[0], (bytes, bytearray)):
        raise ProtocolError("empty response")
    first = bytes(parts[0])
    if first.startswith(b"+"):
        return Response("continuation", text=first[1:].strip())
    sp = first.find(b" ")
    if sp <= 0:
        raise ProtocolError(f"malformed response {first[:60]!r}")
    tag = first[:sp]
    rest = first[sp + 1:]
    parts = [rest] + parts[1:]
    if tag == b"*":
        m = _FETCH_HEAD.match(rest)
        if m:
            r = _fast_fetch_pairs(parts, m) or _fast_fetch(parts, m)
            if r is not None:
                return r
    t = _Tokens(parts)
    if tag == b"*":
        return _untagged(t)
    if not re.fullmatch(rb"[\x21-\x7e]+", tag) or tag == b"+":
        raise ProtocolError(f"malformed tag {tag[:20]!r}")
    status = _word(t)
    if status not in (b"OK", b"NO", b"BAD"):
        raise ProtocolError(f"tagged response with status {status[:20]!r}")
    r = Response("tagged", tag=tag, status=status)
    _code_and_text(t, r)
    return r


_FETCH_HEAD = re.compile(rb"(\d+) (?i:FETCH) \(")
# One token of a plain FETCH attribute list: "(", ")", a quoted string without escapes, an atom (with one
# unnested section and origin, as BODY[]<0>, ending where an atom must end) or a literal announcement.
_FETCH_TOKEN = re.compile(
    rb' *(?:(\()|(\))|"([^"\\\r\n]*)"'
    rb'|([^ ()"{\[\]\r\n\x00-\x1f\x7f~]+(?:\[[^\[\]\r\n]*\](?:<[^>]*>)?(?=[ ()"{\r\n]|\Z))?)'
    rb'|(\{\d+\}\r?\n?\Z))')


# One "NAME value" pair of a FETCH: the name an atom with an optional unnested section and origin (BODY[]<0>);
# the value an atom, a quoted string without escapes, a list of atoms (FLAGS) or a literal announcement that
# ends the text segment. The same character classes as _FETCH_TOKEN, so whatever this takes, that reads alike.
_FETCH_PAIR = re.compile(
    rb'([A-Za-z0-9.]+(?:\[[^\[\]\r\n]*\](?:<[^>]*>)?)?) '
    rb'(?:([^ ()"{\[\]\r\n\x00-\x1f\x7f~]+)|"([^"\\\r\n]*)"|\(([^()"{\[\]\r\n\x00-\x1f\x7f~]*)\)'
    rb'|\{(\d+)\}\r?\n?\Z)')


# The body FETCH a copy reads by the thousand, as Dovecot and Courier answer the copy's own request "(UID
# FLAGS INTERNALDATE BODY.PEEK[])", and as Cyrus does (FLAGS first): read by Connection.fetch_stream(shape=
# "body") with one match and no Response, when the literal is followed by ")" alone. Their character classes
# are _FETCH_PAIR's, so whatever they take the general parser reads alike (tests/test_imap_protocol.py
# compares them); any other order or shape goes the general way. Groups by name: n, uid, flags, date, size.
_UID = rb'UID (?P<uid>\d+)'
_FLAGS = rb'FLAGS \((?P<flags>[^()"{\[\]\r\n\x00-\x1f\x7f~]*)\)'
_DATE = rb'INTERNALDATE "(?P<date>[^"\\\r\n]*)"'
_BODY_END = rb' BODY\[\] \{(?P<size>\d+)\}\r\n\Z'
_LISTING_END = rb' RFC822\.SIZE (?P<size>\d+)\)\r\n\Z'
BODY_FETCH_HEAD = re.compile(rb'\* (?P<n>\d+) FETCH \(' + _UID + b' ' + _FLAGS + b' ' + _DATE + _BODY_END)
BODY_FETCH_HEAD_FLAGS_FIRST = re.compile(rb'\* (?P<n>\d+) FETCH \(' + _FLAGS + b' ' + _UID + b' ' + _DATE + _BODY_END)
# The same for a listing line, the answer to "(UID FLAGS INTERNALDATE RFC822.SIZE)".
LISTING_FETCH = re.compile(rb'\* (?P<n>\d+) FETCH \(' + _UID + b' ' + _FLAGS + b' ' + _DATE + _LISTING_END)
LISTING_FETCH_FLAGS_FIRST = re.compile(rb'\* (?P<n>\d+) FETCH \(' + _FLAGS + b' ' + _UID + b' ' + _DATE
                                       + _LISTING_END)


def _nil(tok: bytes):
    return None if len(tok) == 3 and tok.upper() == b"NIL" else tok


def atom_list(text: bytes) -> list:
    """The inside of a parenthesised list of atoms (FLAGS), as the parser reads it: NIL is None."""
    return [_nil(x) for x in text.split()]


def _fast_fetch_pairs(parts: list, head: re.Match) -> Response | None:
    """The commonest FETCH, a flat list of "NAME value" pairs (a listing line, or a message with its
    literal), read with one regex match per pair; None for anything else, which _fast_fetch then reads.

    A copy reads two such responses per message (the listing and the body): per token, as _fast_fetch does,
    they were the biggest share of the parser's CPU.
    """
    buf = parts[0]
    pos = head.end()
    i = 1
    n = len(parts)
    out: list = []
    match = _FETCH_PAIR.match
    while True:
        m = match(buf, pos)
        if m is None:
            return None
        name, atom, quoted, items, _ = m.groups()
        if len(name) == 3 and name.upper() == b"NIL":
            return None
        out.append(name)
        if atom is not None:
            out.append(_nil(atom))
        elif quoted is not None:
            out.append(quoted)
        elif items is not None:
            out.append(atom_list(items))
        else:  # a literal: the next part, then the text after it
            if i + 1 >= n or not isinstance(parts[i], _Literal) or not isinstance(parts[i + 1], (bytes, bytearray)):
                return None
            out.append(parts[i].value)
            buf = bytes(parts[i + 1])
            i += 2
            m = None
        pos = m.end() if m is not None else 0
        c = buf[pos:pos + 1]
        if c == b")":
            return Response("untagged", number=parse_number(head.group(1), "a message number"), name=b"FETCH",
                            data=out)
        if c != b" ":
            return None
        pos += 1


def _fast_fetch(parts: list, head: re.Match) -> Response | None:
    """A FETCH response read with one regex match per token, or None to leave it to the general parser.

    A listing is a FETCH line per message and a copy a FETCH with a literal per message: token by token in
    Python these cost more CPU than anything else the client does but hashing. Only the common shapes are
    taken (no escapes, no nested sections, no line breaks outside literals); anything else, well-formed or
    not, goes to _Tokens, so what is accepted, refused and returned is the same either way.
    """
    stack: list[list] = []
    cur: list = []
    buf = parts[0]
    pos = head.end()
    i = 1
    n = len(parts)
    match = _FETCH_TOKEN.match
    while True:
        m = match(buf, pos)
        if m is None:
            return None
        pos = m.end()
        g = m.lastindex
        if g == 4:
            tok = m.group(4)
            cur.append(None if len(tok) == 3 and tok.upper() == b"NIL" else tok)
        elif g == 3:
            cur.append(m.group(3))
        elif g == 1:
            stack.append(cur)
            cur = []
        elif g == 2:
            if not stack:
                return Response("untagged", number=parse_number(head.group(1), "a message number"), name=b"FETCH",
                                data=cur)
            outer = stack.pop()
            outer.append(cur)
            cur = outer
        else:  # a literal: the next part, then the text after it
            if i + 1 >= n or not isinstance(parts[i], _Literal) or not isinstance(parts[i + 1], (bytes, bytearray)):
                return None
            cur.append(parts[i].value)
            buf = bytes(parts[i + 1])
            pos = 0
            i += 2


def _word(t: _Tokens) -> bytes:
    v = t.value()
    if not isinstance(v, bytes):
        raise ProtocolError("expected a word")
    return v.upper()


def _code_and_text(t: _Tokens, r: Response) -> None:
    t._skip_spaces()
    b = t.buf
    if t.pos < len(b) and b[t.pos] == 0x5B:  # [
        end = b.find(b"]", t.pos)
        if end < 0:
            raise ProtocolError("unterminated response code")
        inner = b[t.pos + 1:end]
        t.pos = end + 1
        name, _, args = inner.partition(b" ")
        r.code = name.upper()
        if args:
            try:
                sub = _Tokens([args])
                while not sub.at_end():
                    r.code_args.append(sub.value())
            except ProtocolError:
                r.code_args = [args]
    r.text = t.rest_of_line().strip()


def _untagged(t: _Tokens) -> Response:
    first = t.value()
    if not isinstance(first, bytes):
        raise ProtocolError("malformed untagged response")
    if first.isdigit():
        r = Response("untagged", number=parse_number(first, "a message number"), name=_word(t))
        if r.name == b"FETCH":
            v = t.value()
            if not isinstance(v, list):
                raise ProtocolError("FETCH without its attribute list")
            r.data = v
        else:
            while not t.at_end():
                r.data.append(t.value())
        return r
    word = first.upper()
    if word in (b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"):
        r = Response("untagged", status=word, name=word)
        _code_and_text(t, r)
        return r
    r = Response("untagged", name=word)
    if word in (b"CAPABILITY", b"ENABLED", b"SEARCH", b"SORT", b"ESEARCH"):
        r.data = t.rest_of_line().split()
        return r
    while not t.at_end():
        r.data.append(t.value())
    return r


def fetch_items(data: list) -> dict[bytes, Any]:
    """FETCH attribute list -> {NAME: value}; names upper-cased (BODY[] stays BODY[])."""
    if len(data) % 2:
        raise ProtocolError("odd FETCH attribute list")
    out = {}
    for i in range(0, len(data), 2):
        k = data[i]
        if not isinstance(k, bytes):
            raise ProtocolError("FETCH attribute name is not an atom")
        out[k.upper()] = data[i + 1]
    return out


def uid_set_parts(text: bytes | str) -> list[tuple[int, int]]:
    """"5:7,9" -> [(5, 7), (9, 9)], each part as written (no ``*``: it is not valid in a response)."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    parts = []
    for part in text.split(","):
        a, sep, b = part.partition(":")
        try:
            lo = int(a)
            hi = int(b) if sep else lo
        except ValueError:
            raise ProtocolError(f"bad UID set {text[:60]!r}") from None
        parts.append((lo, hi))
    return parts


def parse_uid_set(text: bytes | str) -> list[int]:
    """"5:7,9" -> [5, 6, 7, 9] (ranges ascending, as RFC 4315 APPENDUID assigns them in order)."""
    out = []
    for lo, hi in uid_set_parts(text):
        if lo > hi:
            lo, hi = hi, lo
        if hi - lo > 10_000_000:
            raise ProtocolError("UID set range too large")
        out.extend(range(lo, hi + 1))
    return out


_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                                       "NOV", "DEC"), 1)}


#: RFC 3501 "number" and "nz-number" are unsigned 32-bit; RFC 7162's mod-sequence-value is 63-bit.
NUMBER_MAX = 2**32 - 1
MODSEQ_MAX = 2**63 - 1


def parse_number(value: Any, what: str, limit: int = NUMBER_MAX) -> int:
    """A number the server sent, checked against its RFC range at the edge: a UIDVALIDITY of 2^64 or a UID
    of -1 is the server's fault and must fail the folder it belongs to with a sentence, not crash a state
    database (SQLite integers stop at 2^63) or compare wrongly later."""
    if isinstance(value, (bytes, bytearray)) and value.isdigit() and len(value) <= 20:
        n = int(value)
        if n <= limit:
            return n
    shown = bytes(value[:24]) if isinstance(value, (bytes, bytearray)) else type(value).__name__
    raise ProtocolError(f"the server sent {what} {shown!r}, not a number from 0 to {limit}")


_ZONES: dict[str, timezone] = {}  # "-0700" -> its tzinfo: a listing has few zones and many dates


_DATES: dict[bytes, datetime] = {}  # INTERNALDATE text -> its value, for the second reading of each message's date
_DATES_MAX = 8192


def parse_internaldate(value: bytes) -> datetime:
    """"17-Jul-1996 02:44:25 -0700" (day may be space-padded) -> aware datetime.

    A copy reads each message's date twice, in the listing and with the body: the second reading is a look-up
    (datetimes are immutable, so one value serves both), within a few thousand dates (a folder's listing and
    its copy, as the folders at work at once go)."""
    got = _DATES.get(value) if type(value) is bytes else None
    if got is not None:
        return got
    try:
        s = value.decode("ascii").strip()
        date, time_, zone = s.split()
        d, mon, y = date.split("-")
        hh, mm, ss = time_.split(":")
        tz = _ZONES.get(zone)
        if tz is None:
            if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
                raise ValueError(zone)
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * sign)
            if len(_ZONES) < 64:
                _ZONES[zone] = tz
        got = datetime(int(y), _MONTHS[mon.upper()], int(d), int(hh), int(mm), int(ss), tzinfo=tz)
    except (ValueError, KeyError, IndexError, UnicodeDecodeError):
        raise ProtocolError(f"bad INTERNALDATE {value[:40]!r}") from None
    if type(value) is bytes:
        if len(_DATES) >= _DATES_MAX:
            _DATES.clear()
        _DATES[value] = got
    return got


_MONTH_NAMES = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
# utcoffset -> "+hhmm": an APPEND batch has few zones and many dates; a naive datetime counts as UTC
_ZONE_TEXTS: dict[timedelta | None, bytes] = {None: b"+0000"}


def internaldate_arg(dt: datetime) -> bytes:
    """APPEND's quoted date-time for ``dt`` in its own zone (an instant in another zone is another text).

    Made straight as bytes, one formatting per message: each message's date is a value of its own, so a
    memo of the texts (as there was) only cost a look-up and an insert per message."""
    off = dt.utcoffset()
    zone = _ZONE_TEXTS.get(off)
    if zone is None:
        sign = b"-" if off < _ZERO else b"+"
        a = abs(off)
        zone = b"%s%02d%02d" % (sign, a.seconds // 3600, (a.seconds // 60) % 60)
        if len(_ZONE_TEXTS) < 64:
            _ZONE_TEXTS[off] = zone
    return b'"%02d-%s-%04d %02d:%02d:%02d %s"' % (dt.day, _MONTH_NAMES[dt.month - 1], dt.year, dt.hour, dt.minute,
                                                 dt.second, zone)


_ZERO = timedelta(0)


def split_raw(data: bytes) -> list[list]:
    """Split a byte string holding whole responses (literals inline) into response part lists; for tests
    and fuzzing — the connection does the same incrementally from the socket."""
    out = []
    pos = 0
    n = len(data)
    while pos < n:
        parts: list = []
        while True:
            end = data.find(b"\n", pos)
            if end < 0:
                raise ProtocolError("response without line end")
            line = data[pos:end + 1]
            pos = end + 1
            size = literal_size(line)
            if size is None:
                parts.append(line)
                break
            parts.append(line)
            if pos + size > n:
                raise ProtocolError("literal runs past the end of the data")
            parts.append(_Literal(data[pos:pos + size]))
            pos += size
        out.append(parts)
    return out
