"""CommuniGate Pro's textual object format, the syntax of every ``.settings``, ``.info`` and ``.data`` file.

A migration reads account names, passwords and aliases out of these files, so the parser must take all of
the syntax (an unreadable real name or alias would silently disappear on the target) and must fail with a
file and line on damaged input instead of guessing.  ``dump`` writes the same syntax back, which the sample
store generator and the round-trip tests rely on.

Values map to Python as follows:

* atom or ``"quoted string"`` (adjacent quoted strings ``"a" "b"`` are one) -> ``str`` (escapes ``\\" \\\\ \\r \\n \\t \\e`` and ``\\nnn`` decimal;
  ``\\e`` is the end of line, read as ``"\\n"``; an unknown escape is kept as written, backslash and all);
* ``[base64]`` data block -> ``bytes``;
* ``#123``, ``#-5`` -> ``int`` (``#1.5`` -> ``float``, leniently);
* ``#T31-12-2020_23:59:59`` -> aware UTC ``datetime``; ``#T31-12-2020`` -> ``date``;
  ``#TPAST`` / ``#TFUTURE`` -> :data:`PAST` / :data:`FUTURE`;
* ``#I[10.0.0.1]:25`` -> :class:`IPAddress`; ``#NULL#`` -> ``None``;
* ``( a, b )`` -> ``list``; ``{ key = value; }`` -> ``dict`` (keys are case-sensitive strings).

Whitespace and line breaks may stand between any two tokens.  A file holding only whitespace is an empty
dictionary (an account whose settings are all defaults).  XML objects are not supported and are reported.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from ..errors import FormatError

log = logging.getLogger("mailmigrate.formats.communigate_settings")

MAX_DEPTH = 200  # deeper nesting is hostile input, not a settings file


@dataclass(frozen=True)
class IPAddress:
    """A ``#I[...]`` network address, optionally with a port."""

    address: str
    port: int | None = None


@dataclass(frozen=True)
class Special:
    """A timestamp that is not a moment: ``#TPAST`` (earlier than anything) or ``#TFUTURE``."""

    name: str

    def __repr__(self) -> str:
        return f"#T{self.name}"


PAST = Special("PAST")
FUTURE = Special("FUTURE")

_WS = re.compile(r"\s*")
# Atoms are letters and digits (and in practice . _ - @ and more): anything up to a delimiter.
_ATOM = re.compile(r"[^\s{}()\[\]=;,\"<>#\\][^\s{}()\[\]=;,\"<>\\]*")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_DATETIME = re.compile(r"(\d{2})-(\d{2})-(\d{4})(?:_(\d{2}):(\d{2}):(\d{2}))?")
_SAFE_ATOM = re.compile(r"[A-Za-z0-9._]+\Z")
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "r": "\r", "n": "\n", "t": "\t", "e": "\n"}


class _Parser:
    def __init__(self, text: str, path: str | None):
        self.s = text
        self.n = len(text)
        self.i = 0
        self.path = path
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    def line(self, pos: int | None = None) -> int:
        return bisect.bisect_left(self._newlines, self.i if pos is None else pos) + 1

    def error(self, message: str, pos: int | None = None) -> FormatError:
        return FormatError(message, path=self.path, line=self.line(pos))

    def skip_ws(self) -> None:
        self.i = _WS.match(self.s, self.i).end()

    def peek(self) -> str:
        self.skip_ws()
        return self.s[self.i] if self.i < self.n else ""

    def expect(self, ch: str, what: str) -> None:
        if self.peek() != ch:
            found = repr(self.s[self.i]) if self.i < self.n else "the end of the file"
            raise self.error(f"expected {ch!r} {what}, found {found}")
        self.i += 1

    def value(self, depth: int = 0):
        if depth > MAX_DEPTH:
            raise self.error(f"objects nested more than {MAX_DEPTH} deep")
        c = self.peek()
        if not c:
            raise self.error("unexpected end of the file where a value was expected")
        if c == "{":
            return self.dictionary(depth)
        if c == "(":
            return self.array(depth)
        if c == '"':
            return self.strings()
        if c == "[":
            return self.datablock()
        if c == "#":
            return self.special()
        if c == "<":
            raise self.error("XML objects are not supported")
        m = _ATOM.match(self.s, self.i)
        if not m:
            raise self.error(f"unexpected {c!r} where a value was expected")
        self.i = m.end()
        return m.group()

    def key(self) -> str:
        c = self.peek()
        if c == '"':
            return self.strings()
        m = _ATOM.match(self.s, self.i)
        if not m:
            found = repr(c) if c else "the end of the file"
            raise self.error(f"expected a dictionary key, found {found}")
        self.i = m.end()
        return m.group()

    def dictionary(self, depth: int) -> dict:
        start = self.i
        self.i += 1
        out: dict = {}
        while True:
            c = self.peek()
            if c == "}":
                self.i += 1
                return out
            if not c:
                raise self.error(f"dictionary opened on line {self.line(start)} is not closed")
            k = self.key()
            self.expect("=", f"after the key {k!r}")
            out[k] = self.value(depth + 1)
            c = self.peek()
            if c == ";":
                self.i += 1
            elif not c:
                raise self.error(f"dictionary opened on line {self.line(start)} is not closed")
            elif c != "}":
                found = repr(c) if c else "the end of the file"
                raise self.error(f"expected ';' or '}}' after the value of {k!r}, found {found}")

    def array(self, depth: int) -> list:
        start = self.i
        self.i += 1
        out: list = []
        while True:
            c = self.peek()
            if c == ")":
                self.i += 1
                return out
            if not c:
                raise self.error(f"array opened on line {self.line(start)} is not closed")
            out.append(self.value(depth + 1))
            c = self.peek()
            if c == ",":
                self.i += 1
            elif not c:
                raise self.error(f"array opened on line {self.line(start)} is not closed")
            elif c != ")":
                found = repr(c) if c else "the end of the file"
                raise self.error(f"expected ',' or ')' in an array, found {found}")

    def strings(self) -> str:
        """Quoted strings standing next to each other, with only whitespace between, are one string (the
        grammar in the cgp2zarafa migration scripts, cgon.py, reads them so; CommuniGate breaks long values
        that way)."""
        parts = [self.quoted()]
        while self.peek() == '"':
            parts.append(self.quoted())
        return "".join(parts)

    def quoted(self) -> str:
        start = self.i
        self.i += 1
        s, n = self.s, self.n
        out: list[str] = []
        while True:
            j = self.i
            while j < n and s[j] != '"' and s[j] != "\\":
                j += 1
            out.append(s[self.i : j])
            if j >= n:
                raise self.error(f"quoted string opened on line {self.line(start)} is not closed", start)
            if s[j] == '"':
                self.i = j + 1
                return "".join(out)
            # a backslash
            if j + 1 >= n:
                raise self.error(f"quoted string opened on line {self.line(start)} is not closed", start)
            e = s[j + 1]
            if e in _SIMPLE_ESCAPES:
                out.append(_SIMPLE_ESCAPES[e])
                self.i = j + 2
            elif s[j + 1 : j + 4].isdigit() and len(s[j + 1 : j + 4]) == 3 and s[j + 1 : j + 4].isascii():
                out.append(chr(int(s[j + 1 : j + 4])))
                self.i = j + 4
            else:
                # Unknown escape: keep both characters so nothing is lost.
                out.append("\\" + e)
                self.i = j + 2

    def datablock(self) -> bytes:
        start = self.i
        end = self.s.find("]", self.i + 1)
        if end < 0:
            raise self.error("data block is not closed with ']'", start)
        text = "".join(self.s[self.i + 1 : end].split())
        try:
            data = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise self.error("data block is not valid base64", start) from None
        self.i = end + 1
        return data

    def special(self):
        start = self.i
        s = self.s
        if s.startswith("#NULL#", self.i):
            self.i += 6
            return None
        if s.startswith("#TPAST", self.i):
            self.i += 6
            return PAST
        if s.startswith("#TFUTURE", self.i):
            self.i += 8
            return FUTURE
        if s.startswith("#T", self.i):
            m = _DATETIME.match(s, self.i + 2)
            if not m:
                raise self.error("timestamp is not #TDD-MM-YYYY or #TDD-MM-YYYY_HH:MM:SS", start)
            d, mo, y = int(m.group(1)), int(m.group(2)), int(m.group(3))
            try:
                if m.group(4) is None:
                    value = date(y, mo, d)
                else:
                    value = datetime(y, mo, d, int(m.group(4)), int(m.group(5)), int(m.group(6)), tzinfo=timezone.utc)
            except ValueError as exc:
                raise self.error(f"timestamp is not a real date: {exc}", start) from None
            self.i = m.end()
            return value
        if s.startswith("#I[", self.i):
            end = s.find("]", self.i + 3)
            if end < 0 or any(ch.isspace() for ch in s[self.i + 3 : end]) or end == self.i + 3:
                raise self.error("network address is not #I[address] or #I[address]:port", start)
            addr = s[self.i + 3 : end]
            self.i = end + 1
            port = None
            if s.startswith(":", self.i):
                m = re.compile(r"\d{1,5}").match(s, self.i + 1)
                if not m:
                    raise self.error("network address port is not a number", start)
                port = int(m.group())
                self.i = m.end()
            return IPAddress(addr, port)
        m = _NUMBER.match(s, self.i + 1)
        if not m:
            raise self.error("'#' starts neither a number, a timestamp, an address nor #NULL#", start)
        self.i = m.end()
        return float(m.group()) if m.group(1) else int(m.group())


def decode_text(data: bytes) -> str:
    """Settings are UTF-8; files written by old servers in a local charset are read as Latin-1 rather
    than refused, so a real name with one odd byte does not cost the whole account."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("settings text is not UTF-8; reading it as Latin-1")
        return data.decode("latin-1")


def parse(data: bytes | str, *, path: str | None = None):
    """The one value a settings file holds (normally a dictionary)."""
    text = decode_text(data) if isinstance(data, (bytes, bytearray)) else data
    if text.startswith("\ufeff"):
        text = text[1:]
    p = _Parser(text, path)
    if not p.peek():
        return {}
    value = p.value()
    if p.peek():
        raise p.error(f"unexpected {p.s[p.i]!r} after the end of the value")
    return value


def parse_file(path) -> object:
    with open(path, "rb") as f:
        data = f.read()
    return parse(data, path=str(path))


# --- writing -------------------------------------------------------------------------------------------


def quote(s: str) -> str:
    """A string as CommuniGate writes it: an atom when it is one, else quoted with escapes."""
    if _SAFE_ATOM.match(s):
        return s
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\e")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 32 or ord(ch) == 127 or (0xD800 <= ord(ch) <= 0xDFFF):
            if ord(ch) > 999:
                raise ValueError(f"character U+{ord(ch):04X} cannot be written in a settings file")
            out.append(f"\\{ord(ch):03d}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _dump(value, out: list[str], indent: int, level: int) -> None:
    pad = " " * (indent * (level + 1)) if indent else ""
    nl = "\n" if indent else ""
    if isinstance(value, bool):
        raise TypeError("booleans have no settings form; CommuniGate writes YES/NO strings")
    if value is None:
        out.append("#NULL#")
    elif isinstance(value, str):
        out.append(quote(value))
    elif isinstance(value, (bytes, bytearray)):
        out.append("[" + base64.b64encode(bytes(value)).decode("ascii") + "]")
    elif isinstance(value, int):
        out.append(f"#{value}")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("settings numbers are finite")
        out.append(f"#{value!r}")
    elif isinstance(value, Special):
        out.append(f"#T{value.name}")
    elif isinstance(value, datetime):
        v = value.astimezone(timezone.utc) if value.tzinfo else value
        out.append(v.strftime("#T%d-%m-") + f"{v.year:04d}" + v.strftime("_%H:%M:%S"))
    elif isinstance(value, date):
        out.append(value.strftime("#T%d-%m-") + f"{value.year:04d}")
    elif isinstance(value, IPAddress):
        out.append(f"#I[{value.address}]" + (f":{value.port}" if value.port is not None else ""))
    elif isinstance(value, dict):
        out.append("{" + nl)
        for k, v in value.items():
            out.append(pad + quote(str(k)) + " = ")
            _dump(v, out, indent, level + 1)
            out.append(";" + (nl or " "))
        out.append((" " * (indent * level) if indent else "") + "}")
    elif isinstance(value, (list, tuple)):
        out.append("(")
        for n, v in enumerate(value):
            if n:
                out.append(", ")
            _dump(v, out, indent, level + 1)
        out.append(")")
    else:
        raise TypeError(f"{type(value).__name__} has no settings form")


def dump(value, *, indent: int = 2) -> bytes:
    """The settings text for ``value`` (UTF-8), dictionaries one key a line unless ``indent=0``."""
    out: list[str] = []
    _dump(value, out, indent, 0)
    return ("".join(out) + "\n").encode("utf-8")
