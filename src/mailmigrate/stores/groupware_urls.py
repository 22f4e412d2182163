"""From a groupware URL to a store, for one account:

    caldav://[USER@]HOST[:PORT][/PATH][?tls=none][&cafile=PATH]      CalDAV server (HTTPS unless tls=none)
    carddav://[USER@]HOST[:PORT][/PATH][?tls=none][&cafile=PATH]     CardDAV server
    vdir:PATH                                                       local calendars/address books (vdir)
    communigate:PATH?groupware=calendars|contacts  (source)         CommuniGate's calendar/contact mailboxes

File paths may hold ``%u``, ``%n``, ``%d`` like the mail stores'.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..model import Secret

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:  # a mail sync asks is_groupware_url() only: the groupware stores load when one is opened
    from .groupware import GroupwareStore

KINDS = ("caldav", "carddav", "vdir")


def is_groupware_url(text: str) -> bool:
    kind = text.split(":", 1)[0].lower()
    return kind in KINDS or (kind == "communigate" and "groupware=" in text)


def _expand(path: str, user: str | None, text: str) -> str:
    if "%" in path:
        if not user:
            raise ConfigError(f"{text}: the path has %u/%n/%d but no user is known for this account")
        local, _, domain = user.partition("@")
        path = path.replace("%u", user).replace("%n", local).replace("%d", domain)
    return str(Path(path).expanduser())


def open_groupware_store(text: str, *, user: str | None, password: Secret | None, insecure: bool = False,
                         allow_plaintext: bool = False, target: bool = False,
                         home_from_path: bool = False) -> GroupwareStore:
    kind = text.split(":", 1)[0].lower()
    if kind in ("caldav", "carddav"):
        from .dav import parse_dav_url

        return parse_dav_url(text, user, password, insecure=insecure, allow_plaintext=allow_plaintext,
                             home_from_path=home_from_path)
    if kind == "vdir":
        from .vdir import VdirStore

        path = text.split(":", 1)[1]
        path = path[2:] if path.startswith("//") else path
        if not path:
            raise ConfigError(f"{text}: no path given")
        return VdirStore(_expand(path, user, text), create=target)
    if kind == "communigate":
        from urllib.parse import parse_qs

        from .communigate_groupware import CommuniGateGroupwareStore

        if target:
            raise ConfigError(f"{text}: CommuniGate is a source only")
        path, _, query = text.split(":", 1)[1].partition("?")
        q = {k: v[-1] for k, v in parse_qs(query).items()}
        what = q.get("groupware")
        if what not in ("calendars", "contacts"):
            raise ConfigError(f"{text}: groupware must be calendars or contacts")
        if not user:
            raise ConfigError(f"{text}: which account? give it in --accounts (user@domain)")
        name, _, domain = user.partition("@")
        return CommuniGateGroupwareStore(_expand(path[2:] if path.startswith("//") else path, user, text), name,
                                         domain or None, kind="calendar" if what == "calendars" else "addressbook",
                                         primary_domain=q.get("primary_domain"))
    raise ConfigError(f"{text}: not a groupware store (caldav://, carddav://, vdir:, communigate:…?groupware=)")
