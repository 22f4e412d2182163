"""The one interface every mail store implements, so the sync engine never knows which store it talks to.

A store is opened for one account.  Folders are named by :data:`~mailmigrate.model.FolderPath` (decoded
components), never by a store's own separator or encoding; each store translates at its edge.

Identity: within a folder whose ``validity`` has not changed, a message's ``key`` never changes and is
never reused.  The engine keys its state on (folder, validity, key), and recognises content by SHA-256 of
the exact bytes, so the store must return bytes exactly as stored.

Targets: ``append`` returns the new keys when the store can tell (IMAP UIDPLUS, Maildir) and ``None``
entries when it cannot; the engine then finds the copies by fingerprint above the folder's uid floor.

Reruns: ``changes_since`` lets a store that keeps a change log (IMAP CONDSTORE/QRESYNC) say what moved since
the state's markers, so a folder where one flag changed does not cost a listing of every message.  A store
that cannot tell returns None and the engine lists the folder.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigError, FolderFailed, MailmigrateError, ServerRefused
from ..model import AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta, PermanentFlags


@dataclass
class FolderChanges:
    """What moved in a folder since a known status, as far as the store can prove it.

    ``changed`` holds every message added or whose flags may have changed since then (more is harmless: the
    engine compares flags with its state); messages that are new to the state carry their date and size.
    ``vanished`` answers "is this key gone since then?" for the keys the state knows; it may also hold keys
    the state never saw (IMAP servers report UIDs expunged since, whoever added them).  ``status`` is the
    folder's status at the moment the changes were read, the markers the engine records for the next run.
    """

    status: FolderStatus
    changed: list[MessageMeta] = field(default_factory=list)
    vanished: Container[str] = frozenset()
    #: how the store found out, for logs: "qresync", "condstore", "condstore+uids", ...
    method: str = ""


class Store(ABC):
    # --- capabilities: declared here, read by the URL registry, the CLI and the engine; never guessed
    # from a store's kind or probed with hasattr -------------------------------------------------------
    #: Short name used in logs and reports ("imap", "maildir", "mbox", "communigate").
    kind: str = "store"
    #: True when the store can be a target: append, flags, create, delete (the CLI refuses others as one).
    writable: bool = False
    #: True when message keys are increasing integers (IMAP UIDs) so ``min_uid`` narrows a listing.
    ordered_keys: bool = False
    #: True when the server searches for the user (``search_uids``, ``sync --search``).
    searches: bool = False
    #: the provider preset the URL named (stores/presets.py): "gmail", "m365" or None
    preset: str | None = None
    #: the largest message this store takes as a target, in bytes (a provider's limit), or None
    max_message_size: int | None = None

    # --- life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        """Connect / check the path.  Raises AuthenticationFailed, ConnectionLost, ConfigError."""

    def close(self) -> None:
        """Release connections and files; never raises."""

    def reconnect(self) -> None:
        """A fresh connection in place of one that cannot be reused (a fetch abandoned mid-response).

        Its own method rather than close() and open(), so that a wrapper holding a share of a limited
        resource for this store (the fleet's connection slots) can keep it across the swap instead of
        giving it back and queueing for it again while its partner store holds its own."""
        try:
            self.close()
        except Exception:  # the old connection is given up either way
            pass
        self.open()

    def abort(self) -> None:
        """Cut the connection from another thread (the fleet lost this store's slot), so that a read blocked
        on it ends as a lost connection; close() still follows.  Stores without a connection have nothing
        to cut."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def clone(self) -> "Store | None":
        """A new, unopened store for the same account (another connection), or None when the store
        cannot have more than one: the engine then works on one connection."""
        return None

    def describe(self) -> str:
        """Where this store is, for logs (never with a password)."""
        return self.kind

    # --- folders ---------------------------------------------------------------------------------
    def folder_identity(self, path: FolderPath) -> object:
        """Which folder of this store ``path`` names: two paths with one identity are one folder.

        Why: a store's own naming can make two paths one folder (an IMAP server with an ``INBOX.`` personal
        namespace stores both ("Projects",) and ("INBOX", "Projects") as ``INBOX.Projects``); the engine asks
        this before copying so that it never merges two source folders.  By default paths differ unless
        they differ only in the case of INBOX.
        """
        if path and path[0].upper() == "INBOX":
            return ("INBOX",) + tuple(path[1:])
        return tuple(path)

    @abstractmethod
    def list_folders(self) -> list[FolderInfo]:
        """Every folder, with special use and subscription; INBOX is ("INBOX",)."""

    @abstractmethod
    def folder_status(self, path: FolderPath) -> FolderStatus:
        """Validity and change markers, as cheaply as the store can (IMAP STATUS)."""

    def folder_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        """Many at once; stores that can batch (pipelined STATUS) override this."""
        return {p: self.folder_status(p) for p in paths}

    # --- reading ---------------------------------------------------------------------------------
    @abstractmethod
    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        """Status and every message's metadata (key, flags, internaldate, size), in key order.

        ``min_uid``: where ``ordered_keys`` is true, only messages with uid >= min_uid; other stores may
        ignore it and list everything.
        """

    def changes_since(self, path: FolderPath, before: FolderStatus) -> FolderChanges | None:
        """Changes since ``before`` (the status recorded after the last complete run of this folder), or None
        when the store cannot prove what changed: the engine then lists the folder in full.

        Only called when ``before`` is complete (validity, uidnext, highestmodseq, count) and the engine's
        record of the folder holds every message the source had at that point.  Must return None when the
        folder's validity is no longer ``before.validity``.
        """
        return None

    def search_uids(self, path: FolderPath, keys: str) -> set[str]:
        """The keys in ``path`` that the server's own search answers for the user's search keys, written as
        the user wrote them; only where ``searches`` is declared."""
        raise ConfigError("--search takes IMAP SEARCH keys: it works on IMAP sources only")

    @abstractmethod
    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        """The exact bytes of the given messages, streamed one at a time, in any order.

        A key that no longer exists is silently absent from the output (the engine notices).  A message
        that cannot be read raises MessageRejected-like errors only through ``fetch_errors``; see
        :meth:`fetch_problems`.
        """

    def fetch_problems(self) -> list[tuple[str, str]]:
        """(key, reason) for messages the last ``fetch`` could not read (damaged files); then cleared."""
        return []

    # --- writing (targets) -----------------------------------------------------------------------
    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        raise NotImplementedError(f"{self.kind} store is read-only")

    def subscribe(self, path: FolderPath) -> None:
        raise NotImplementedError(f"{self.kind} store is read-only")

    def create_folders(self, folders: Sequence[tuple[FolderPath, str | None]]) -> list[MailmigrateError | None]:
        """:meth:`create_folder` for each (path, special use), in order: None where the folder now exists, else
        the refusal it met (FolderFailed, ServerRefused) while the others go on; any other error is raised.

        Why: an IMAP store sends them all before it reads an answer, one round trip for the lot instead of one
        each (an account's folders before its first copy, over a WAN)."""
        return _each(self.create_folder, folders)

    def subscribe_folders(self, paths: Sequence[FolderPath]) -> list[MailmigrateError | None]:
        """:meth:`subscribe` for each path, as :meth:`create_folders` creates (and for the same reason)."""
        return _each(self.subscribe, [(p,) for p in paths])

    def permanent_flags(self, path: FolderPath) -> PermanentFlags:
        return PermanentFlags()

    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        """Store the messages in order; returns the new keys (None where the store cannot tell).

        All-or-nothing for a batch where the store can promise it (IMAP MULTIAPPEND is atomic); a
        MessageRejected names the refused message by its index in ``items`` (attribute ``index``) when
        known.
        """
        raise NotImplementedError(f"{self.kind} store is read-only")

    def append_started(self, path: FolderPath, items: Sequence[AppendItem]) -> Callable[[], list[str | None]]:
        """``append`` in two halves: begin storing the batch now, and return the function that waits for the
        outcome and gives what ``append`` gives (the keys, or its error).

        Why: a copy reads its next batch from the source while the target stores this one (sync/copying.py);
        on one connection the two took turns.  An error may come from either half.  Between the two the
        caller makes no other call on this store.  A store with nothing to wait for appends here and hands
        over the outcome, its error included, from the second half.
        """
        try:
            keys = self.append(path, items)
        except MailmigrateError as e:
            error = e  # the name ``e`` is gone once the except block ends

            def failed() -> list[str | None]:
                raise error
            return failed
        return lambda: keys

    def append_batch_limit(self) -> tuple[int, int]:
        """(max messages, max bytes) the store likes in one ``append`` call."""
        return (1, 1 << 30)

    def set_flags(self, path: FolderPath, changes: Iterable[tuple[str, frozenset[str], frozenset[str]]]) -> None:
        """Apply (key, flags to add, flags to remove) for many messages."""
        raise NotImplementedError(f"{self.kind} store is read-only")

    def delete_folder(self, path: FolderPath) -> None:
        """Remove an empty folder (used only by abort, for folders mailmigrate created)."""
        raise NotImplementedError(f"{self.kind} store cannot delete folders")

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        """Remove exactly these messages (never others: IMAP uses UID EXPUNGE or refuses)."""
        raise NotImplementedError(f"{self.kind} store is read-only")


def _each(method: Callable, calls: Sequence[tuple]) -> list[MailmigrateError | None]:
    out: list[MailmigrateError | None] = []
    for args in calls:
        try:
            method(*args)
        except (FolderFailed, ServerRefused) as e:
            out.append(e)
        else:
            out.append(None)
    return out
