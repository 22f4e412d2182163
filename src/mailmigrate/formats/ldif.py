"""LDIF content records (RFC 2849): what ``slapcat`` and ``ldapsearch -L`` write and ``slapadd`` reads.

Directories are moved through LDIF exports (Zarafa's LDAP tree, NethServer's OpenLDAP backup), so the
parser must take what real tools write: optional ``version: 1``, CRLF or LF, comments (which may be
folded too), folded lines (a line starting with one space continues the previous one), ``::`` base64
values, attribute options such as ``;binary`` or ``;lang-de``.  Values are bytes, because LDAP values are
(``jpegPhoto``, ``userPassword``).  ``:<`` URL values would make a parser read files or fetch URLs named by
the data, so they are refused with a FormatError, as are change records (``changetype:``): this module
holds content, not modifications.

Attributes keep their order of first appearance and the spelling they were first written with; a later
line for the same attribute in another case adds to the same list, because LDAP attribute names are
case-insensitive.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field

from ..errors import FormatError

FOLD_AT = 76
_ATTR_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-.]*(;[A-Za-z0-9\-]+)*$")


@dataclass
class LdifEntry:
    dn: str
    attributes: dict[str, list[bytes]] = field(default_factory=dict)

    def get(self, name: str) -> list[bytes]:
        """All values of an attribute, matched case-insensitively; [] when absent."""
        low = name.lower()
        for k, v in self.attributes.items():
            if k.lower() == low:
                return v
        return []

    def first(self, name: str, default: str | None = None) -> str | None:
        """The first value decoded as UTF-8 (invalid bytes replaced), or ``default``."""
        vals = self.get(name)
        return vals[0].decode("utf-8", "replace") if vals else default

    def texts(self, name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in self.get(name)]

    def add(self, name: str, value: bytes) -> None:
        low = name.lower()
        for k in self.attributes:
            if k.lower() == low:
                self.attributes[k].append(value)
                return
        self.attributes[name] = [value]


def _logical_lines(data: bytes):
    """Unfold physical lines into (first physical line number, text) pairs; blank lines yield (n, b"")."""
    cur: bytearray | None = None
    start = 0
    for n, raw in enumerate(data.split(b"\n"), 1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw.startswith(b" ") and cur is not None:
            cur += raw[1:]
            continue
        if cur is not None:
            yield start, bytes(cur)
        if raw.startswith(b" "):
            # a continuation with nothing to continue: RFC 2849 has no such line
            raise FormatError("continuation line without a line to continue", line=n)
        cur, start = bytearray(raw), n
    if cur is not None:
        yield start, bytes(cur)


def parse_ldif(data: bytes, path: str | os.PathLike | None = None) -> list[LdifEntry]:
    where = None if path is None else str(path)
    entries: list[LdifEntry] = []
    cur: LdifEntry | None = None
    first_record = True
    try:
        lines = list(_logical_lines(data))
    except FormatError as e:
        raise FormatError(str(e).split(": ", 1)[-1], path=where, line=e.line) from None
    for lineno, line in lines:
        if line == b"":
            if cur is not None:
                entries.append(cur)
                cur = None
            continue
        if line.startswith(b"#"):
            continue
        name, value = _attr_value(line, where, lineno)
        if cur is None:
            if first_record and name.lower() == "version":
                if value.strip() != b"1":
                    raise FormatError(f"unsupported LDIF version {value!r}", path=where, line=lineno)
                first_record = False
                continue
            first_record = False
            if name.lower() != "dn":
                raise FormatError(f"record starts with {name!r}, not dn", path=where, line=lineno)
            try:
                dn = value.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError("dn is not UTF-8", path=where, line=lineno) from None
            cur = LdifEntry(dn)
            continue
        low = name.lower()
        if low == "changetype" or low == "control":
            raise FormatError("LDIF change records are not supported, only content records",
                              path=where, line=lineno)
        if low == "dn":
            raise FormatError("second dn in one record (missing blank line?)", path=where, line=lineno)
        cur.add(name, value)
    if cur is not None:
        entries.append(cur)
    return entries


def _attr_value(line: bytes, where, lineno) -> tuple[str, bytes]:
    colon = line.find(b":")
    if colon <= 0:
        raise FormatError(f"expected 'attribute: value', got {line[:40]!r}", path=where, line=lineno)
    try:
        name = line[:colon].decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("attribute name is not ASCII", path=where, line=lineno) from None
    if not _ATTR_RE.match(name):
        raise FormatError(f"invalid attribute name {name[:40]!r}", path=where, line=lineno)
    rest = line[colon + 1 :]
    if rest.startswith(b":"):
        b64 = rest[1:].strip(b" ")
        try:
            return name, base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError(f"invalid base64 value of {name}", path=where, line=lineno) from None
    if rest.startswith(b"<"):
        raise FormatError(f"URL value (':<') of {name} is not supported: put the value in the file",
                          path=where, line=lineno)
    return name, rest.lstrip(b" ")


def _is_safe(value: bytes) -> bool:
    """RFC 2849 SAFE-STRING, minus a trailing space (which the RFC asks to base64, as tools strip it)."""
    if not value:
        return True
    if value[0] in b" :<" or value[-1:] == b" ":
        return False
    return all(0 < c < 128 and c not in (10, 13) for c in value)


def _line(name: str, value: bytes) -> str:
    if _is_safe(value):
        return f"{name}: {value.decode('ascii')}"
    return f"{name}:: {base64.b64encode(value).decode('ascii')}"


def _fold(line: str) -> str:
    if len(line) <= FOLD_AT:
        return line
    parts = [line[:FOLD_AT]]
    rest = line[FOLD_AT:]
    while rest:
        parts.append(" " + rest[: FOLD_AT - 1])
        rest = rest[FOLD_AT - 1 :]
    return "\n".join(parts)


def dump_ldif(entries) -> bytes:
    """LDIF text for ``entries``: base64 where a value is not a safe string, lines folded at 76 characters."""
    out = []
    for e in entries:
        lines = [_fold(_line("dn", e.dn.encode("utf-8")))]
        for name, values in e.attributes.items():
            if not _ATTR_RE.match(name):
                raise ValueError(f"invalid attribute name {name!r}")
            for v in values:
                lines.append(_fold(_line(name, bytes(v))))
        out.append("\n".join(lines) + "\n")
    return "\n".join(out).encode("ascii")
