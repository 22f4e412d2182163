"""Dovecot passwd-file: ``user:password:uid:gid:(gecos):home:(shell):extra_fields``.

The password field is ``{SCHEME}hash``, or a bare crypt(3) hash (Dovecot's default scheme), or empty for
a user that has none.  ``extra_fields`` is the rest of the line after the seventh colon (so values may
hold colons, as ``userdb_mail=maildir:~/Maildir`` does), a space-separated list of ``key=value``.
Blank lines and lines starting with ``#`` are comments.  Fields a line leaves out are empty.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import FormatError
from .lines import content_lines


@dataclass
class PasswdEntry:
    user: str
    password: str = field(repr=False, default="")
    uid: str = ""
    gid: str = ""
    gecos: str = ""
    home: str = ""
    shell: str = ""
    extra: list[str] = field(default_factory=list)  # "key=value" items, in order

    def extra_dict(self) -> dict[str, str]:
        out = {}
        for item in self.extra:
            k, _, v = item.partition("=")
            out[k] = v
        return out


def parse_passwd_file(data: bytes, path: str | os.PathLike | None = None) -> list[PasswdEntry]:
    where = None if path is None else str(path)
    out: list[PasswdEntry] = []
    seen: set[str] = set()
    for lineno, line in content_lines(data):
        fields = line.split(":", 7)
        user = fields[0]
        if not user:
            raise FormatError("line without a user name", path=where, line=lineno)
        if user in seen:
            raise FormatError(f"user {user!r} appears twice (Dovecot uses the first)", path=where, line=lineno)
        seen.add(user)
        fields += [""] * (8 - len(fields))
        extra = fields[7].split()
        out.append(PasswdEntry(user, fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], extra))
    return out


def dump_passwd_file(entries: list[PasswdEntry]) -> bytes:
    """The file text; trailing empty fields are kept (``user:{SCHEME}hash::::::``) for readability by humans."""
    lines = []
    for e in entries:
        fixed = [e.user, e.password, e.uid, e.gid, e.gecos, e.home, e.shell]
        if not e.user or e.user.startswith("#") or any(":" in f or "\n" in f or "\r" in f for f in fixed):
            raise ValueError(f"passwd-file entry for {e.user!r} cannot be written")
        if any(not x or any(c.isspace() for c in x) for x in e.extra):
            raise ValueError(f"extra field of {e.user!r} is empty or holds white space")
        lines.append(":".join(fixed) + ":" + " ".join(e.extra) + "\n")
    return "".join(lines).encode("utf-8", "surrogateescape")
