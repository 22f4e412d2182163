"""Maildir and Maildir++ names as Dovecot writes them: pure functions, no file access.

File name: ``<unique>[,S=<size>][,W=<vsize>]:2,<info>``; the info letters are the standard flags in ASCII
order (P passed = $Forwarded, R replied = \\Answered, S seen, T trashed = \\Deleted, D draft, F flagged) and
lower-case letters for keywords, which Dovecot maps through the folder's ``dovecot-keywords`` file
(``<index> <name>`` per line, a = 0).  Folder directories are ``.A.B`` with each component in modified
UTF-7; Maildir++ cannot hold a "." inside a name, so it is written as U+2024 "․" (and "/" as U+2215 "∕"),
the same escape the IMAP store uses.
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
    extra: str = ""  # other ",X=..." fields, kept verbatim

    @property
    def key(self) -> str:
        return self.unique


def parse_name(name: str) -> MaildirName:
    base, sep, info = name.partition(":2,")
    if not sep:
        base, info = name.partition(":")[0], ""
    if not base:
        raise FormatError(f"Maildir file name {name!r} has no unique part")
    parts = base.split(",")
    unique = parts[0]
    if not unique:
        raise FormatError(f"Maildir file name {name!r} has no unique part")
    size = None
    extra = []
    for p in parts[1:]:
        if p.startswith("S="):
            try:
                size = int(p[2:])
            except ValueError:
                extra.append(p)
        else:
            extra.append(p)
    return MaildirName(unique, size, info, ",".join(extra))


def build_name(unique: str, info: str, size: int | None = None) -> str:
    if ":" in unique or "/" in unique or "," in unique:
        raise FormatError(f"unique part {unique!r} may not contain ':', '/' or ','")
    s = unique + (f",S={size}" if size is not None else "")
    return f"{s}:2,{''.join(sorted(set(info)))}"


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
    out = {}
    for lineno, raw in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        idx, _, name = line.partition(" ")
        try:
            i = int(idx)
        except ValueError:
            raise FormatError(f"keyword index {idx!r} is not a number", path=path, line=lineno) from None
        if name:
            out[i] = name
    return out


def dump_keywords(kw: dict[int, str]) -> bytes:
    return "".join(f"{i} {n}\n" for i, n in sorted(kw.items())).encode()


def parse_subscriptions(data: bytes) -> list[str]:
    """Dovecot's ``subscriptions``: an optional ``V\\t2`` header and blank line, then one name per line
    (version 2 separates hierarchy levels with TAB; older files use the namespace separator)."""
    lines = data.decode("utf-8", "replace").split("\n")
    if lines and lines[0].startswith("V\t"):
        lines = lines[1:]
    return [ln.replace("\t", "/") for ln in lines if ln.strip()]


def dump_subscriptions(names: list[str]) -> bytes:
    return ("V\t2\n\n" + "".join(n.replace("/", "\t") + "\n" for n in names)).encode()


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
