"""CommuniGate Pro's calendars, contacts and task lists as a groupware source, read from its store on disk.

CommuniGate keeps them as ordinary mailboxes whose messages carry one text/calendar or text/vcard part each
(FACTS.md); ``account.info``'s ``"#Viewer"`` dictionary names the boxes (``CalendarBox``, ``ContactsBox``,
``TasksBox``), so a renamed one (``Kalender``) is still found; without it the usual names are looked for.
An item is that part's decoded body, as the client stored it: the message around it is CommuniGate's
envelope, not the item. An item's name is its UID (sanitised) with .ics/.vcf, so a target that files items
by name keeps them recognisable and a rerun finds the same names; its ETag is the SHA-256 of the item.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re

from ..errors import ConfigError, FolderFailed
from ..formats import communigate_settings as cgs
from ..formats.ical import item_info
from .communigate import CommuniGateStore
from .groupware import Collection, GroupwareStore, Item

ROLES = {"CalendarBox": ("calendar", ("VEVENT",), "Calendar"),
         "TasksBox": ("calendar", ("VTODO",), "Tasks"),
         "ContactsBox": ("addressbook", (), "Contacts")}
_TYPES = {"calendar": ("text/calendar",), "addressbook": ("text/vcard", "text/x-vcard", "text/directory")}


def item_from_message(raw: bytes, kind: str) -> bytes | None:
    """The first text/calendar (or vCard) part of a message, decoded from its transfer encoding."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_content_type() in _TYPES[kind]:
            data = part.get_payload(decode=True)
            if data:
                return data
    return None


def _name(uid: str | None, key: str, ext: str) -> str:
    base = re.sub(r"[^A-Za-z0-9@._+-]", "_", uid or f"cgp-{key}")[:120] or f"cgp-{key}"
    return base + ext


class CommuniGateGroupwareStore(GroupwareStore):
    writable = False

    def __init__(self, base_path, account: str, domain: str | None = None, *, kind: str = "calendar",
                 primary_domain: str | None = None):
        if kind not in ("calendar", "addressbook"):
            raise ConfigError(f"unknown groupware kind {kind}")
        self.kind = kind
        self.mail = CommuniGateStore(base_path, account, domain, primary_domain=primary_domain)
        self._items: dict[str, dict[str, tuple[str, bytes]]] = {}  # collection -> name -> (key, item bytes)
        self.problems: list[tuple[str, str]] = []

    def describe(self) -> str:
        return self.mail.describe() + f" ({'calendars' if self.kind == 'calendar' else 'contacts'})"

    def open(self) -> None:
        self.mail.open()

    def close(self) -> None:
        self.mail.close()

    def _boxes(self) -> dict[str, str]:
        info_path = self.mail.location.info_path
        info = {}
        if info_path is not None and info_path.is_file() and not info_path.is_symlink():
            value = cgs.parse_file(info_path)
            info = value if isinstance(value, dict) else {}
        named = cgs.groupware_boxes(info)
        folders = {"/".join(f.path) for f in self.mail.list_folders() if f.selectable}
        out = {}
        for role, (kind, _, default) in ROLES.items():
            if kind != self.kind:
                continue
            box = named.get(role) or default
            if box in folders:
                out[role] = box
        return out

    def collections(self) -> list[Collection]:
        out = []
        for role, box in sorted(self._boxes().items()):
            kind, comps, _ = ROLES[role]
            name = re.sub(r"[^A-Za-z0-9._-]", "-", box).strip("-").lower() or role.lower()
            out.append(Collection(name, kind, displayname=box, components=comps, extra={"box": box}))
        return out

    def _load(self, coll: Collection) -> dict[str, tuple[str, bytes]]:
        if coll.name in self._items:
            return self._items[coll.name]
        box = tuple(coll.extra["box"].split("/"))
        _, metas = self.mail.list_messages(box)
        items: dict[str, tuple[str, bytes]] = {}
        for meta, body in self.mail.fetch(box, [m.key for m in metas]):
            try:
                data = item_from_message(body.read(), self.kind)
            finally:
                body.close()
            if data is None:
                self.problems.append((f"{coll.extra['box']}/{meta.key}",
                                      f"message {meta.key} holds no {_TYPES[self.kind][0]} part"))
                continue
            name = _name(item_info(data).uid, meta.key, ".ics" if self.kind == "calendar" else ".vcf")
            while name in items:  # two items with one UID in one box: both kept, under distinct names
                name = name.rsplit(".", 1)[0] + "-2." + name.rsplit(".", 1)[1]
            items[name] = (meta.key, data)
        self._items[coll.name] = items
        return items

    def list_items(self, coll: Collection) -> dict[str, str]:
        return {n: '"' + hashlib.sha256(d).hexdigest()[:32] + '"' for n, (_, d) in self._load(coll).items()}

    def get(self, coll: Collection, name: str) -> Item:
        try:
            key, data = self._load(coll)[name]
        except KeyError:
            raise FolderFailed(f"{self.describe()}: no item {name} in {coll.name}") from None
        info = item_info(data)
        return Item(name, '"' + hashlib.sha256(data).hexdigest()[:32] + '"', data, info.content_type)

    def create_collection(self, coll):  # pragma: no cover - a source only
        raise ConfigError("CommuniGate is a source only")

    def put(self, coll, name, data, content_type, *, etag=None):  # pragma: no cover - a source only
        raise ConfigError("CommuniGate is a source only")

    def delete(self, coll, name, etag):  # pragma: no cover - a source only
        raise ConfigError("CommuniGate is a source only")
