"""Zarafa/Kopano ``.cfg`` files: ``name = value`` lines, ``#`` comments, ``!include``/``!propmap`` lines.

The files are edited in place, never re-serialised: an administrator's comments, order and spacing stay
as they were, and only the lines that change are touched.  A commented-out directive (``#name = value``)
is how the shipped defaults document an option, so those count as "known" names and are where a newly
set directive is inserted.
"""

from __future__ import annotations

import re

_ACTIVE = re.compile(r"^[ \t]*([A-Za-z0-9_]+)[ \t]*=[ \t]*(.*?)[ \t]*$")
_COMMENTED = re.compile(r"^[ \t]*#+[ \t]*([a-z0-9_]+)[ \t]*=(.*)$")


def _split(line: str) -> tuple[str, str]:
    body = line.rstrip("\r\n")
    return body, line[len(body):]


def active(text: str) -> dict[str, str]:
    """The directives in effect: the last line for a name wins, as in Kopano's own parser."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _ACTIVE.match(line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def known(text: str) -> set[str]:
    """Names set or documented (commented out) in a file."""
    names = set(active(text))
    for line in text.splitlines():
        m = _COMMENTED.match(line)
        if m:
            names.add(m.group(1))
    return names


def set_directive(text: str, name: str, value: str, note: str | None = None) -> str:
    """``text`` with ``name = value`` in effect.

    The last active line for the name is rewritten (earlier ones are shadowed anyway); else the line is
    inserted after the commented-out default; else appended.  Doing it twice gives the same text.
    """
    lines = text.splitlines(keepends=True)
    last = None
    for i, line in enumerate(lines):
        m = _ACTIVE.match(_split(line)[0])
        if m and m.group(1) == name:
            last = i
    if last is not None:
        body, eol = _split(lines[last])
        m = _ACTIVE.match(body)
        if m.group(2) == value:
            return text
        head = body[: m.start(2)]
        if not m.group(2) and not head.endswith((" ", "\t")):
            head += " "
        lines[last] = head + value + body[m.end(2):] + eol
        return "".join(lines)
    for i, line in enumerate(lines):
        m = _COMMENTED.match(_split(line)[0])
        if m and m.group(1) == name:
            if not line.endswith("\n"):
                lines[i] += "\n"
            lines.insert(i + 1, f"{name} = {value}\n")
            return "".join(lines)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if note:
        lines.append(f"# {note}\n")
    lines.append(f"{name} = {value}\n")
    return "".join(lines)


def comment_out(text: str, name: str) -> str:
    """Every active line of ``name`` turned into a comment: the program's default applies again."""
    out = []
    for line in text.splitlines(keepends=True):
        body, eol = _split(line)
        m = _ACTIVE.match(body)
        out.append(f"#{body.lstrip()}{eol}" if m and m.group(1) == name else line)
    return "".join(out)


def rename_directive(text: str, old: str, new: str) -> str:
    """Rename every active line of ``old`` to ``new``, keeping its value and layout."""
    out = []
    for line in text.splitlines(keepends=True):
        body, eol = _split(line)
        m = _ACTIVE.match(body)
        if m and m.group(1) == old:
            line = body[: m.start(1)] + new + body[m.end(1):] + eol
        out.append(line)
    return "".join(out)


def includes(text: str) -> list[str]:
    """The files an active ``!include`` line names, in order."""
    out = []
    for line in text.splitlines():
        body = line.strip()
        if body.startswith("!include"):
            out.append(body[len("!include"):].strip())
    return out


def map_values(text: str, fn) -> str:
    """Apply ``fn(name, value) -> value`` to every active directive (and the argument of ``!include`` and
    ``!propmap``: Kopano must read its own propmap, not Zarafa's, whose attributes the LDAP migration renames)."""
    out = []
    for line in text.splitlines(keepends=True):
        body, eol = _split(line)
        m = _ACTIVE.match(body)
        if m:
            new = fn(m.group(1), m.group(2))
            if new != m.group(2):
                line = body[: m.start(2)] + new + body[m.end(2):] + eol
        elif body.lstrip().startswith(("!include", "!propmap")):
            word = "!include" if body.lstrip().startswith("!include") else "!propmap"
            head, _, arg = body.partition(word)
            new = fn(word, arg.strip())
            if new != arg.strip():
                line = f"{head}{word} {new}{eol}"
        out.append(line)
    return "".join(out)


SECRET_NAME = re.compile(r"pass|secret|_key$", re.I)
_DIFF_LINE = re.compile(r"^([-+ ]?[ \t]*#*[ \t]*)([A-Za-z0-9_]+)([ \t]*=[ \t]*)(\S.*)$")


def mask_secret(line: str) -> str:
    """A config or diff line with the value of a password-like directive replaced by ``***``."""
    m = _DIFF_LINE.match(line)
    if m and SECRET_NAME.search(m.group(2)) and not m.group(4).startswith("/"):
        return m.group(1) + m.group(2) + m.group(3) + "***"
    return line
