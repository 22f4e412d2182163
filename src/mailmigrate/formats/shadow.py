"""``/etc/shadow`` as found in a backup archive (SME Server / NethService keep users' hashes there).

``name:hash:lastchg:min:max:warn:inactive:expire:reserved``.  Only the name and the hash matter for a
migration; the other fields are kept as they were so a file can be written back unchanged.  The hash is
a crypt(3) string (``$6$salt$...``, ``$1$...``, DES) or a lock marker: ``!`` or ``*`` alone mean no
usable password, a ``!`` in front of a hash means a locked account whose hash is still there.  Hashes
never appear in a repr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import FormatError
from .lines import content_lines

_FIELDS = 9


@dataclass
class ShadowEntry:
    name: str
    hash: str = field(repr=False, default="")
    rest: list[str] = field(default_factory=list)  # lastchg ... reserved, as written

    @property
    def locked(self) -> bool:
        return self.hash.startswith("!") or self.hash.startswith("*")

    @property
    def crypt_hash(self) -> str | None:
        """The crypt(3) hash without a lock marker, or None when there is none (``*``, ``!``, empty, ``x``)."""
        h = self.hash.lstrip("!")
        if not h or h.startswith("*") or h in ("x", "NP", "LK"):
            return None
        return h


def parse_shadow(data: bytes, path: str | os.PathLike | None = None) -> list[ShadowEntry]:
    where = None if path is None else str(path)
    out: list[ShadowEntry] = []
    seen: set[str] = set()
    for lineno, line in content_lines(data):
        if "\r" in line:
            raise FormatError("carriage return inside a shadow line", path=where, line=lineno)
        fields = line.split(":")
        if len(fields) < 2 or not fields[0]:
            raise FormatError("expected 'name:hash:...'", path=where, line=lineno)
        if len(fields) > _FIELDS:
            raise FormatError(f"{len(fields)} fields, a shadow line has {_FIELDS}", path=where, line=lineno)
        if fields[0] in seen:
            raise FormatError(f"user {fields[0]!r} appears twice", path=where, line=lineno)
        seen.add(fields[0])
        rest = fields[2:] + [""] * (_FIELDS - len(fields))
        out.append(ShadowEntry(fields[0], fields[1], rest))
    return out


def dump_shadow(entries: list[ShadowEntry]) -> bytes:
    """The file text; a field holding ':' or a newline cannot be written and raises ValueError."""
    lines = []
    for e in entries:
        fields = [e.name, e.hash, *e.rest]
        if not e.name or any(":" in f or "\n" in f or "\r" in f for f in fields) or len(fields) > _FIELDS:
            raise ValueError(f"shadow entry for {e.name!r} cannot be written")
        if len(fields) < _FIELDS:
            fields += [""] * (_FIELDS - len(fields))
        lines.append(":".join(fields) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
