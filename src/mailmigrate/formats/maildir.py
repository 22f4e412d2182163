"""Maildir and Maildir++ names as Dovecot writes them: pure functions, no file access.

File name: ``<unique>[,S=<size>][,W=<vsize>]:2,<info>``; the info letters are the standard flags in ASCII
order (P passed = $Forwarded, R replied = \\Answered, S seen, T trashed = \\Deleted, D draft, F flagged) and
lower-case letters for keywords, which Dovecot maps through the folder's ``dovecot-keywords`` file
(``<index> <name>`` per line, a = 0).  Folder directories are ``.A.B`` with each component in modified
UTF-7; Maildir++ cannot hold a "." inside a name, so it is written as U+2024 "․" (and "/" as U+2215 "∕"),
the same escape the IMAP store uses.  The ``subscriptions`` file lists folders in the same storage form
(see :func:`parse_subscriptions`); all of this was checked against files Dovecot 2.3 writes itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FormatError
from . import mutf7

FLAG_TO_LETTER = {"$Forwarded": "P", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T", "\\Draft": "D",
                  "\\Flagged": "F"}
LETTER_TO_FLAG = {v: k for k, v in FLAG_TO_LETTER.items()}
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
DOT_ESCAPE = "\u2024"
SLASH_ESCAPE = "\u2215"


@dataclass(frozen=True)
class MaildirName:
    unique: str
    size: int | None
    info: str  # the letters after ":2," (flags + keyword letters + unknown ones), as found
    extra: str = ""  # other ",X=..." fields, kept verbatim so a rename loses nothing
    vsize: int | None = None  # W=: the size with CRLF line ends, which Dovecot caches in the name

    @property
    def key(self) -> str:
        return self.unique


def parse_name(name: str) -> MaildirName:
    """Split a Maildir file name; a name without ``:2,`` has no flags yet (it is still in new/)."""
    base, sep, info = name.partition(":2,")
    if not sep:
        base, info = name.partition(":")[0], ""
    if not base:
        raise FormatError(f"Maildir file name {name!r} has no unique part")
    parts = base.split(",")
    unique = parts[0]
    if not unique:
        raise FormatError(f"Maildir file name {name!r} has no unique part")
    size = vsize = None
    extra = []
    for p in parts[1:]:
        if p.startswith(("S=", "W=")) and p[2:].isascii() and p[2:].isdigit():
            if p[0] == "S":
                size = int(p[2:])
            else:
                vsize = int(p[2:])
        else:
            extra.append(p)
    return MaildirName(unique, size, info, ",".join(extra), vsize)


def build_name(unique: str, info: str, size: int | None = None, vsize: int | None = None, extra: str = "") -> str:
    """The file name Dovecot would write: S=, W=, then other fields, and the info letters in ASCII order."""
    if not unique or any(c in unique for c in ":/,\0"):
        raise FormatError(f"unique part {unique!r} must be non-empty without ':', '/', ',' or NUL")
    s = unique
    if size is not None:
        s += f",S={size}"
    if vsize is not None:
        s += f",W={vsize}"
    if extra:
        s += "," + extra
    return f"{s}:2,{''.join(sorted(set(info)))}"


def rebuild(n: MaildirName, info: str) -> str:
    """The same message's name with new info letters (a flag change keeps S=, W= and unknown fields)."""
    return build_name(n.unique, info, n.size, n.vsize, n.extra)


def info_to_flags(info: str, keywords: dict[int, str]) -> tuple[frozenset[str], str]:
    """(IMAP flags, letters that meant nothing known) — unknown letters are kept by the caller."""
    flags = set()
    unknown = []
    for ch in info:
        if ch in LETTER_TO_FLAG:
            flags.add(LETTER_TO_FLAG[ch])
        elif ch in KEYWORD_LETTERS:
            idx = KEYWORD_LETTERS.index(ch)
            if idx in keywords:
                flags.add(keywords[idx])
            else:
                unknown.append(ch)
        else:
            unknown.append(ch)
    return frozenset(flags), "".join(unknown)


def flags_to_info(flags, keywords: dict[str, int]) -> tuple[str, list[str]]:
    """(info letters, keywords that have no letter); ``keywords`` maps name -> index."""
    letters = []
    missing = []
    for f in flags:
        if f in FLAG_TO_LETTER:
            letters.append(FLAG_TO_LETTER[f])
        elif f.startswith("\\"):
            continue  # \Recent and unknown system flags are not stored
        elif f in keywords and keywords[f] < 26:
            letters.append(KEYWORD_LETTERS[keywords[f]])
        else:
            missing.append(f)
    return "".join(sorted(letters)), missing


def parse_keywords(data: bytes, path: str | None = None) -> dict[int, str]:
    """``dovecot-keywords``: ``<index> <name>`` per line, index 0 is letter "a".  A line whose index is not
    a decimal number is a FormatError (naming the line): guessing would put the wrong keywords on mail."""
    out = {}
    for lineno, raw in enumerate(data.decode("utf-8", "surrogateescape").split("\n"), 1):
        line = raw.strip("\r\n\t ")
        if not line:
            continue
        idx, _, name = line.partition(" ")
        if not (idx.isascii() and idx.isdigit() and len(idx) <= 6):
            raise FormatError(f"keyword index {idx[:20]!r} is not a number", path=path, line=lineno)
        if name:
            out[int(idx)] = name
    return out


def dump_keywords(kw: dict[int, str]) -> bytes:
    return "".join(f"{i} {n}\n" for i, n in sorted(kw.items())).encode("utf-8", "surrogateescape")


SUBSCRIPTIONS_V2_HEADER = b"V\t2\n\n"
_TAB_ESCAPES = {"\x01": "1", "\t": "t", "\r": "r", "\n": "n"}
_TAB_UNESCAPES = {v: k for k, v in _TAB_ESCAPES.items()}


def _tab_escape(s: str) -> str:
    return "".join("\x01" + _TAB_ESCAPES[c] if c in _TAB_ESCAPES else c for c in s)


def _tab_unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\x01" and i + 1 < len(s) and s[i + 1] in _TAB_UNESCAPES:
            out.append(_TAB_UNESCAPES[s[i + 1]])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _storage_component(raw: str) -> str:
    """A component as Dovecot stores it (mUTF-7, escaped "." and "/") back to the folder name; a component
    that is not valid mUTF-7 (written by another tool in UTF-8) is taken as it is rather than dropped."""
    try:
        return unescape_component(mutf7.decode(raw))
    except FormatError:
        return unescape_component(raw)


def parse_subscriptions(data: bytes, path: str | None = None) -> list[tuple[str, ...]]:
    """Dovecot's ``subscriptions`` file as folder paths.

    Version 2 (Dovecot 2.2+) starts with ``V<TAB>2`` and a blank line; each line is one mailbox whose
    hierarchy levels are separated by TAB, each level in its storage form (modified UTF-7) with TAB, CR, LF
    and 0x01 escaped as 0x01 followed by "t", "r", "n", "1".  Older files hold one storage name per line
    with Maildir++'s "." between levels.
    """
    v2 = data.startswith(SUBSCRIPTIONS_V2_HEADER)
    if v2:
        data = data[len(SUBSCRIPTIONS_V2_HEADER):]
    out: list[tuple[str, ...]] = []
    for lineno, raw in enumerate(data.split(b"\n"), 3 if v2 else 1):
        line = raw.rstrip(b"\r").decode("utf-8", "surrogateescape")
        if not line:
            continue  # a name of blanks is still a name: only an empty line is no subscription
        comps = [_tab_unescape(c) for c in line.split("\t")] if v2 else line.split(".")
        if any(not c for c in comps):
            continue  # an empty level cannot name a folder; Dovecot itself ignores such lines
        path_ = tuple(_storage_component(c) for c in comps)
        if path_[0].upper() == "INBOX":
            path_ = ("INBOX",) + path_[1:]
        out.append(path_)
    return out


def dump_subscriptions(paths: list[tuple[str, ...]]) -> bytes:
    """A version 2 file, as Dovecot 2.3 writes it: levels in modified UTF-7 joined by TAB."""
    lines = []
    for p in paths:
        if not p or any(not c for c in p):
            raise FormatError(f"cannot subscribe to a folder with an empty name component: {p!r}")
        lines.append("\t".join(_tab_escape(mutf7.encode(escape_component(c))) for c in p) + "\n")
    return SUBSCRIPTIONS_V2_HEADER + "".join(lines).encode("ascii")


def escape_component(name: str) -> str:
    return name.replace(".", DOT_ESCAPE).replace("/", SLASH_ESCAPE)


def unescape_component(name: str) -> str:
    return name.replace(DOT_ESCAPE, ".").replace(SLASH_ESCAPE, "/")


def folder_to_dirname(path: tuple[str, ...]) -> str:
    """("Work", "a.b") -> ".Work.a&IiQ-b" ; INBOX is the root and has no directory name."""
    if not path or (len(path) == 1 and path[0].upper() == "INBOX"):
        return ""
    comps = list(path)
    if comps[0].upper() == "INBOX":
        comps[0] = "INBOX"  # Dovecot keeps INBOX's children as ".INBOX.child"
    for c in comps:
        if not c:
            raise FormatError(f"folder {'/'.join(path)!r} has an empty name component")
    return "." + ".".join(mutf7.encode(escape_component(c)) for c in comps)


def dirname_to_folder(dirname: str) -> tuple[str, ...]:
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise FormatError(f"{dirname!r} is not a Maildir++ folder directory")
    comps = dirname[1:].split(".")
    if any(not c for c in comps):
        raise FormatError(f"{dirname!r} has an empty folder name component")
    return tuple(unescape_component(mutf7.decode(c)) for c in comps)


def dirname_to_folder_lenient(dirname: str) -> tuple[str, ...]:
    """The folder a directory that Dovecot would not have written most likely means, for a source that
    must not lose it (issue 19): ``.Entwürfe`` (raw UTF-8, not modified UTF-7) is ``("Entwürfe",)``,
    ``.R&D`` (a bare ``&``) is ``("R&D",)``, bytes that are not UTF-8 are kept as ``\\xNN`` text, and an empty
    component is a literal dot of the next one: ``.Trash..bak`` is ``("Trash", ".bak")``.  Stable, so a
    rerun finds the same folder.  Raises FormatError only for a name with no folder in it (``.``, ``...``).
    """
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise FormatError(f"{dirname!r} is not a Maildir++ folder directory")
    out: list[str] = []
    dots = ""
    for c in dirname[1:].split("."):
        if not c:
            dots += "."
            continue
        try:
            name = unescape_component(mutf7.decode(c))
        except FormatError:
            name = c.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        out.append(dots + name)
        dots = ""
    if dots:
        if not out:
            raise FormatError(f"{dirname!r} has no folder name")
        out[-1] += dots
    return tuple(out)
