"""From a groupware URL to a store, for one account:

    caldav://[USER@]HOST[:PORT][/PATH][?tls=none][&cafile=PATH]      CalDAV server (HTTPS unless tls=none)
    carddav://[USER@]HOST[:PORT][/PATH][?tls=none][&cafile=PATH]     CardDAV server
    vdir:PATH                                                       local calendars/address books (vdir)
    communigate:PATH  (source)                                      CommuniGate's calendar/contact mailboxes

File paths may hold ``%u``, ``%n``, ``%d`` like the mail stores'.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..model import Secret
from .groupware import GroupwareStore

KINDS = ("caldav", "carddav", "vdir")


def is_groupware_url(text: str) -> bool:
    return text.split(":", 1)[0].lower() in KINDS


def _expand(path: str, user: str | None, text: str) -> str:
    if "%" in path:
        if not user:
            raise ConfigError(f"{text}: the path has %u/%n/%d but no user is known for this account")
        local, _, domain = user.partition("@")
        path = path.replace("%u", user).replace("%n", local).replace("%d", domain)
    return str(Path(path).expanduser())


def open_groupware_store(text: str, *, user: str | None, password: Secret | None, insecure: bool = False,
                         allow_plaintext: bool = False, target: bool = False) -> GroupwareStore:
    kind = text.split(":", 1)[0].lower()
    if kind in ("caldav", "carddav"):
        from .dav import parse_dav_url

        return parse_dav_url(text, user, password, insecure=insecure, allow_plaintext=allow_plaintext)
    if kind == "vdir":
        from .vdir import VdirStore

        path = text.split(":", 1)[1]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise ConfigError(f"{text}: no path given")
        return VdirStore(_expand(path, user, text), create=target)
    raise ConfigError(f"{text}: not a groupware store (caldav://, carddav://, vdir:)")
