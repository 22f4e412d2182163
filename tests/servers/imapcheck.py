"""An independent reading of an IMAP account for the tests: Python's stdlib imaplib, not mailmigrate.

What a test compares is what any mail client would see: per folder the multiset of (exact bytes, flags,
INTERNALDATE), the folder names (decoded) and the subscriptions.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections import Counter
from datetime import datetime, timezone

from mailmigrate.formats import mutf7

_LIST = re.compile(rb'\((?P<attrs>[^)]*)\) (?:"(?P<sep>[^"]*)"|NIL) (?P<name>.*)$')


def connect(port: int, user: str, password: str) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, password)
    return c


def _name(raw: bytes) -> str:
    raw = raw.strip()
    if raw.startswith(b'"'):
        raw = raw[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return raw.decode("ascii")


def folders(c: imaplib.IMAP4) -> dict[str, set[str]]:
    """wire name -> attributes (lower-case)."""
    typ, data = c.list()
    out = {}
    i = 0
    while i < len(data):
        item = data[i]
        if isinstance(item, tuple):  # name sent as a literal
            m = _LIST.match(item[0].rsplit(b" {", 1)[0] + b" x")
            out[item[1].decode()] = set(m.group("attrs").decode().lower().split())
        elif item:
            m = _LIST.match(item)
            out[_name(m.group("name"))] = set(m.group("attrs").decode().lower().split())
        i += 1
    return out


def decoded(name: str) -> str:
    return mutf7.decode(name)


def subscriptions(c: imaplib.IMAP4) -> set[str]:
    typ, data = c.lsub()
    out = set()
    for item in data:
        if item:
            m = _LIST.match(item if isinstance(item, bytes) else item[0])
            out.add(_name(m.group("name")))
    return out


def messages(c: imaplib.IMAP4, wire_name: str) -> Counter:
    """Counter of (bytes, frozenset(flags), internaldate as UTC timestamp) in a folder."""
    typ, _ = c.select(_q(wire_name), readonly=True)
    assert typ == "OK", wire_name
    typ, data = c.uid("FETCH", "1:*", "(FLAGS INTERNALDATE BODY.PEEK[])")
    out = Counter()
    for item in data:
        if not isinstance(item, tuple):
            continue
        head, body = item
        flags = re.search(rb"FLAGS \(([^)]*)\)", head)
        fl = frozenset(f.decode() for f in flags.group(1).split() if f.lower() != b"\\recent") if flags else frozenset()
        date = re.search(rb'INTERNALDATE "([^"]+)"', head)
        ts = time.mktime(imaplib.Internaldate2tuple(b'INTERNALDATE "' + date.group(1) + b'"')) if date else None
        out[(body, fl, ts)] += 1
    return out


def account(port: int, user: str, password: str) -> dict[str, Counter]:
    """Every folder's messages, by decoded folder name."""
    c = connect(port, user, password)
    try:
        return {decoded(name): messages(c, name) for name, attrs in folders(c).items()
                if "\\noselect" not in attrs and "\\nonexistent" not in attrs}
    finally:
        c.logout()


def append(c: imaplib.IMAP4, wire_name: str, data: bytes, flags: str = "", when: datetime | None = None) -> None:
    when = when or datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    typ, resp = c.append(_q(wire_name), f"({flags})" if flags else None, imaplib.Time2Internaldate(when), data)
    assert typ == "OK", resp


def create(c: imaplib.IMAP4, wire_name: str, subscribe: bool = False) -> None:
    typ, resp = c.create(_q(wire_name))
    assert typ == "OK", resp
    if subscribe:
        c.subscribe(_q(wire_name))


def _q(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def myrights(c: imaplib.IMAP4, mailbox: str) -> set[str] | None:
    """The ACL rights (RFC 4314) the logged-in user holds on ``mailbox``; None where the server will not say
    (no such mailbox, or no right to look it up), which a test of who may see what needs apart from "none"."""
    typ, data = c._simple_command("MYRIGHTS", _q(mailbox))
    if typ != "OK":
        return None
    typ, data = c._untagged_response(typ, data, "MYRIGHTS")
    return set(data[-1].decode().rsplit(" ", 1)[1]) - {"c", "d"}  # RFC 2086 letters Dovecot adds for older clients


def _namespace(c: imaplib.IMAP4) -> tuple[str, str | None]:
    """(personal prefix, separator) from NAMESPACE, else ("", LIST's separator)."""
    typ, data = c._simple_command("NAMESPACE")
    if typ == "OK":
        typ, data = c._untagged_response(typ, data, "NAMESPACE")
        m = re.match(rb'\(\("([^"]*)" (?:"([^"]*)"|NIL)', data[-1] or b"")
        if m:
            return m.group(1).decode(), (m.group(2).decode() if m.group(2) else None)
    typ, data = c.list('""', '""')
    m = _LIST.match(data[0]) if data and data[0] else None
    return "", (m.group("sep") if m else "/")


def path_of(wire: str, prefix: str, sep: str | None) -> tuple[str, ...]:
    """A wire name as the components a user sees, on any server: the personal prefix (Cyrus's "INBOX.")
    dropped, split at the server's separator, modified UTF-7 decoded, mailmigrate's escapes of a separator
    inside a name ("∕" for "/", "․" for ".") undone."""
    if wire.upper() == "INBOX":
        return ("INBOX",)
    if prefix and wire.startswith(prefix):
        wire = wire[len(prefix):]
    comps = wire.split(sep) if sep else [wire]
    unescape = {"/": "\u2215", ".": "\u2024"}
    # and the stand-in for a character the server refuses in names (Cyrus: '"' as U+FF02)
    return tuple(decoded(x).replace(unescape.get(sep or "", "\0"), sep or "").replace("\uff02", '"').replace("\u2215", "/")
                 for x in comps)


def account_by_path(port: int, user: str, password: str) -> dict[tuple[str, ...], Counter]:
    """Every selectable folder's messages, keyed by its components: comparable across servers whose
    separators and namespaces differ."""
    c = connect(port, user, password)
    try:
        prefix, sep = _namespace(c)
        return {path_of(name, prefix, sep): messages(c, name) for name, attrs in folders(c).items()
                if "\\noselect" not in attrs and "\\nonexistent" not in attrs}
    finally:
        c.logout()


def wire_of(path: tuple[str, ...], prefix: str, sep: str) -> str:
    from mailmigrate.formats import mutf7

    if path == ("INBOX",):
        return "INBOX"
    return mutf7.encode(prefix + sep.join(path))


def populate_any(port: int, user: str, password: str, layout: dict, subscribe=(), t0: datetime | None = None) -> None:
    """Write {folder components: [(bytes, flags)]} into an account on any server, in its own namespace."""
    from datetime import timedelta

    c = connect(port, user, password)
    try:
        prefix, sep = _namespace(c)
        t0 = t0 or datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
        for path, items in layout.items():
            wire = wire_of(path, prefix, sep or "/")
            if path != ("INBOX",):
                create(c, wire, subscribe=path in subscribe)
            for i, (data, flags) in enumerate(items):
                append(c, wire, data, flags, t0 + timedelta(hours=i))
    finally:
        c.logout()
