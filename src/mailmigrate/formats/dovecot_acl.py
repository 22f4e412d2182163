"""Files of Dovecot's acl plugin: per-folder ``dovecot-acl`` files, the shared-mailbox dictionary and the
``Shared/<owner>/`` names of the shared namespace.

Moving mailboxes between systems that name accounts differently (SME's ``bob``, NethServer 7's
``bob@example.com``, NS8's ``bob`` again) means renaming the people these files name while leaving every other
byte to Dovecot as it was: a rewritten rights string, a lost comment or a reordered dictionary would be a
change nobody asked for.  So the functions here split a line into the name and the rest, let the caller
decide the new name, and put the line back together unchanged around it.

Formats (checked against Dovecot 2.3 on this machine):

* ``dovecot-acl``: one ``<identifier> <rights>`` per line; identifiers ``owner``, ``anyone``,
  ``authenticated``, ``user=<name>``, ``group=<name>``, ``group-override=<name>``; rights are letters, a
  leading ``-`` makes a negative entry; ``#`` starts a comment.
* the shared-mailbox dictionary with the ``file:`` driver: key and value on alternating lines; keys
  ``shared/shared-boxes/user/<grantee>/<owner>``, ``.../group/<group>/<owner>``, ``.../anyone/<owner>``.
* a subscription to a shared folder is kept in the subscriber's own ``subscriptions`` file under its full
  name, ``Shared/<owner>/<folder>``.  Dovecot writes a ``.`` inside the owner as a TAB in a version 2 file (it
  splits names at the Maildir++ separator); it reads the owner back the same whether written with ``.`` or TAB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

ACL_FILE = "dovecot-acl"
#: identifiers that carry a name after "="; owner, anyone and authenticated name nobody in particular
NAMED_KINDS = ("user", "group", "group-override")
SHARED_BOXES = "shared/shared-boxes/"
SHARED_PREFIX = "Shared/"


# -- dovecot-acl -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AclEntry:
    kind: str  # user, group, group-override, owner, anyone, authenticated (or whatever the file says)
    name: str  # "" for identifiers without a name
    rights: str  # as written: "lr", "-w", "" (the line had no rights)

    @property
    def identifier(self) -> str:
        return f"{self.kind}={self.name}" if self.kind in NAMED_KINDS else self.kind


def parse_acl_line(line: str) -> AclEntry | None:
    """One line of a ``dovecot-acl`` file; None for a blank line or a comment."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    ident, *rest = stripped.split(None, 1)
    rights = rest[0] if rest else ""
    kind, eq, name = ident.partition("=")
    if not eq or kind not in NAMED_KINDS:
        kind, name = ident, ""
    return AclEntry(kind, name, rights.strip())


def parse_acl(text: str) -> dict[str, str]:
    """identifier -> rights, for comparing what two ACL files grant."""
    out = {}
    for line in text.splitlines():
        e = parse_acl_line(line)
        if e is not None:
            out[e.identifier] = e.rights
    return out


def rename_acl(text: str, rename: Callable[[str, str], str]) -> str:
    """Each named identifier's name through ``rename(kind, name)``; every other byte of the file kept.

    A line whose name does not change is not touched at all, so renaming twice with an idempotent rename
    gives the same file as renaming once.
    """
    out = []
    for line in text.splitlines(keepends=True):
        e = parse_acl_line(line)
        if e is None or e.kind not in NAMED_KINDS:
            out.append(line)
            continue
        new = rename(e.kind, e.name)
        if new == e.name:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        rest = line.lstrip()[len(e.identifier):]
        out.append(f"{lead}{e.kind}={new}{rest}")
    return "".join(out)


# -- the shared-mailbox dictionary -------------------------------------------------------------------


def parse_dict_file(data: bytes) -> list[tuple[str, str]]:
    """Dovecot's ``file:`` dictionary: key and value on alternating lines."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [(lines[i], lines[i + 1] if i + 1 < len(lines) else "") for i in range(0, len(lines), 2)]


def dump_dict_file(pairs: list[tuple[str, str]]) -> bytes:
    return "".join(f"{k}\n{v}\n" for k, v in pairs).encode("utf-8", "surrogateescape")


def shared_key_names(key: str) -> list[tuple[str, str]] | None:
    """The people a ``shared/shared-boxes/`` key names, as (role, name): role ``user`` or ``group`` for the
    grantee, ``owner`` for the one who shares; None for any other key."""
    if not key.startswith(SHARED_BOXES):
        return None
    parts = key[len(SHARED_BOXES):].split("/")
    kind = parts[0]
    if kind in ("user", "group") and len(parts) == 3:
        return [(kind, parts[1]), ("owner", parts[2])]
    if kind == "anyone" and len(parts) == 2:
        return [("owner", parts[1])]
    return None


def rename_shared_key(key: str, rename: Callable[[str, str], str]) -> str:
    """A ``shared/shared-boxes/`` key with each name through ``rename(role, name)``; other keys unchanged."""
    names = shared_key_names(key)
    if names is None:
        return key
    parts = key[len(SHARED_BOXES):].split("/")
    return SHARED_BOXES + "/".join([parts[0]] + [rename(role, name) for role, name in names])


# -- the shared namespace in subscriptions -----------------------------------------------------------

_SHARED_LINE = re.compile(r"^(Shared/)([^/]+)(/.*)$", re.DOTALL)


def shared_subscription_owner(line: str) -> str | None:
    """The owner named by a subscriptions line ``Shared/<owner>/...`` (TABs in the owner read as the dots
    they stand for), or None when the line is no subscription to a shared folder."""
    m = _SHARED_LINE.match(line)
    return m.group(2).replace("\t", ".") if m else None


def rename_shared_subscription(line: str, rename: Callable[[str], str]) -> str:
    """``Shared/<owner>/<folder>`` with the owner through ``rename``; the folder part is kept as written and a
    line whose owner does not change is returned as it was."""
    m = _SHARED_LINE.match(line)
    if not m:
        return line
    owner = m.group(2).replace("\t", ".")
    new = rename(owner)
    if new == owner:
        return line
    return m.group(1) + new + m.group(3)
