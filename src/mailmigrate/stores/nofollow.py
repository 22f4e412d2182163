"""Reading a store's files without ever following a symbolic link inside it (issue 19).

A migration usually runs as root over every user's mailbox, and a user can plant files in their own
mailbox: a link ``cur/x:2,S -> /etc/shadow`` or a folder ``.Stolen -> /home/bob/Maildir``.  Followed, the
link would copy any file the migration can read into the planter's mailbox on the new server.  So every
local store checks entries with ``lstat`` and opens files with ``O_NOFOLLOW`` (a link planted between the
listing and the read fails with ``ELOOP`` instead of being read), and lists each link it finds as a
stand-in message under a ``symlink:`` key: the store's ``fetch`` reports that key as not copied, naming the
link and where it points, so the run's summary, its report and ``project finish`` all show it while the
rest of the folder migrates.  The store's own root is the administrator's choice and is followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..model import MessageMeta

#: Keys of the stand-ins for symbolic links: listed so that a fetch reports them, never mail.
LINK_KEY_PREFIX = "symlink:"

_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def open_nofollow(path: str | os.PathLike):
    """A binary file object for ``path``; OSError (ELOOP) when its last component is a symbolic link."""
    return os.fdopen(os.open(path, _FLAGS), "rb")


def read_nofollow(path: str | os.PathLike) -> bytes:
    """The bytes of a small file (keywords, subscriptions, validity) without following a link."""
    with open_nofollow(path) as f:
        return f.read()


def is_link(path: str | os.PathLike) -> bool:
    return os.path.islink(path)


def link_key(rel: str | os.PathLike) -> str:
    return f"{LINK_KEY_PREFIX}{rel}"


def is_link_key(key: str) -> bool:
    return key.startswith(LINK_KEY_PREFIX)


def link_meta(key: str) -> MessageMeta:
    """The listing's stand-in for a link: no flags, no date, no size (nothing of its target is read)."""
    return MessageMeta(key=key, flags=frozenset(), internaldate=None, size=0)


def link_reason(link: str | os.PathLike) -> str:
    """What the report says about a link: its name and where it points (the link's text, never followed)."""
    try:
        where = os.readlink(link)
    except OSError:
        where = "?"
    return f"{Path(link)} is a symbolic link (to {where}): not followed, not copied"
