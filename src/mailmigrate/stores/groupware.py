"""The groupware store interface, beside the mail store's: calendars, address books and task lists.

A collection holds items; an item is named within its collection (the last part of its URL on a DAV server,
its file name in a vdir) and carries an ETag that changes whenever the item does. Items are fetched and put
as the bytes the server holds: the engine never re-serialises an event or a contact.

Why names and not UIDs as keys: DAV servers address items by URL and compare ETags by URL, and one UID may
legitimately appear in two calendars. UIDs still matter (a calendar refuses a second item with one UID, and
invitations find events by it), so the engine reads them with formats.ical and never creates a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ItemExists(Exception):
    """A create found the name taken (HTTP 412 on If-None-Match: *), or the collection already holds the
    UID under another name (CalDAV no-uid-conflict); ``name`` is that other item when the server said."""

    def __init__(self, message: str, name: str | None = None):
        super().__init__(message)
        self.name = name


class ItemChanged(Exception):
    """An update or delete found another ETag than the one recorded: someone changed the item on the
    target since it was copied, and it is not overwritten or deleted."""


class ItemRefused(Exception):
    """The target refused this one item (malformed for it, too big, unsupported component)."""


@dataclass
class Collection:
    name: str  # the collection's name within the account's home: the last part of its URL or directory
    kind: str  # "calendar" | "addressbook"
    displayname: str | None = None
    color: str | None = None
    description: str | None = None
    components: tuple[str, ...] = ()  # VEVENT, VTODO, … a calendar accepts (empty: the server's default)
    #: a value that changes whenever anything in the collection changes (CTag, sync-token), if offered
    version: str | None = None
    #: the RFC 6578 sync-token, when the server offers sync-collection reports (a DAV server's collection)
    sync_token: str | None = None
    extra: dict = field(default_factory=dict)

    def props(self) -> dict:
        return {"displayname": self.displayname, "color": self.color, "description": self.description,
                "components": list(self.components)}


@dataclass
class Changes:
    """What changed in a collection since a sync-token (RFC 6578): the items added or changed with their
    ETags, the names removed, and the token to ask from next time."""

    token: str
    changed: dict[str, str]
    removed: set[str]


class TokenInvalid(Exception):
    """The server no longer knows the sync-token (RFC 6578 ``valid-sync-token``: too old, or the collection
    was rebuilt): the collection must be listed whole."""


@dataclass
class Item:
    name: str
    etag: str
    data: bytes
    content_type: str = "text/calendar"


class GroupwareStore:
    """One account's groupware. Implementations: stores.dav (CalDAV/CardDAV), stores.vdir (local files),
    stores.communigate_groupware (CommuniGate's calendar and contacts mailboxes, read only)."""

    writable = True

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def open(self) -> None:
        """Connect, log in, find the account's collections; errors name the side and the user."""

    def close(self) -> None:
        """Release connections."""

    def collections(self) -> list[Collection]:  # pragma: no cover - interface
        raise NotImplementedError

    def list_items(self, coll: Collection) -> dict[str, str]:  # pragma: no cover - interface
        """name -> ETag of every item in a collection."""
        raise NotImplementedError

    def changes_since(self, coll: Collection, token: str) -> Changes | None:
        """The items changed and removed since ``token``, or None where the store cannot say (then the
        engine lists the collection whole).  Raises TokenInvalid when the server refuses the token."""
        return None

    def get(self, coll: Collection, name: str) -> Item:  # pragma: no cover - interface
        raise NotImplementedError

    def create_collection(self, coll: Collection) -> Collection:  # pragma: no cover - interface
        raise NotImplementedError

    def put(self, coll: Collection, name: str, data: bytes, content_type: str, *,
            etag: str | None = None) -> str:  # pragma: no cover - interface
        """Create (``etag`` None: only if the name is free, else ItemExists) or replace (only if the item
        still has ``etag``, else ItemChanged); returns the new ETag, or "" where the server gave none."""
        raise NotImplementedError

    def delete(self, coll: Collection, name: str, etag: str) -> None:  # pragma: no cover - interface
        """Delete only if the item still has ``etag`` (else ItemChanged)."""
        raise NotImplementedError

    def delete_collection(self, coll: Collection) -> bool:  # pragma: no cover - interface
        """Remove a collection only if it holds no item (an abort takes back a collection it created, never
        one someone has put something into since); True if it is gone."""
        raise NotImplementedError

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()
