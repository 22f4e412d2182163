"""The one base for a store that wraps another store (the engine's side tag, the fleet's connection slots).

Why every method is written out rather than passed on by ``__getattr__``: a wrapper that forwards by name
forwards what the wrapped store happens to have, and one that forwards by hand forgets what was added to
:class:`~.base.Store` after it was written (the NethServer paths' escaping wrapper left out ``changes_since``
and ``reconnect``: behind it a rerun listed every folder in full, and a reconnect fell back to Store's close-
and-open). Here each method of the interface is forwarded once, through :meth:`StoreWrapper._call`, so a
subclass changes how calls are made in one place and overrides only what it does differently;
tests/test_store_wrappers.py fails when a method of ``Store`` is not forwarded.

The wrapped object needs to be a Store only as far as it is used: the fleet's tests wrap a bare connection
that only opens and closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from ..model import AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta, PermanentFlags
from .base import FolderChanges, Store


class StoreWrapper(Store):
    """Forwards the whole :class:`Store` interface, capabilities included, to ``inner``."""

    def __init__(self, inner: Store):
        self._inner = inner

    @property
    def inner(self) -> Store:
        return self._inner

    def _call(self, method: Callable, *args, **kwargs):
        """How every forwarded call is made; a subclass that acts on every call (the side tag) overrides this."""
        return method(*args, **kwargs)

    # --- capabilities: what the wrapped store declares --------------------------------------------------
    @property
    def kind(self) -> str:
        return self._inner.kind

    @property
    def writable(self) -> bool:
        return self._inner.writable

    @property
    def ordered_keys(self) -> bool:
        return self._inner.ordered_keys

    @property
    def searches(self) -> bool:
        return self._inner.searches

    @property
    def preset(self) -> str | None:
        return self._inner.preset

    @property
    def max_message_size(self) -> int | None:
        return self._inner.max_message_size

    # --- life cycle -------------------------------------------------------------------------------------
    def open(self) -> None:
        return self._call(self._inner.open)

    def close(self) -> None:
        return self._call(self._inner.close)

    def reconnect(self) -> None:
        return self._call(self._inner.reconnect)

    def abort(self) -> None:
        return self._call(self._inner.abort)

    def clone(self) -> Store | None:
        return self._call(self._inner.clone)

    def describe(self) -> str:
        return self._call(self._inner.describe)

    # --- folders ----------------------------------------------------------------------------------------
    def folder_identity(self, path: FolderPath) -> object:
        return self._call(self._inner.folder_identity, path)

    def list_folders(self) -> list[FolderInfo]:
        return self._call(self._inner.list_folders)

    def folder_status(self, path: FolderPath) -> FolderStatus:
        return self._call(self._inner.folder_status, path)

    def folder_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        return self._call(self._inner.folder_statuses, paths)

    # --- reading ----------------------------------------------------------------------------------------
    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        return self._call(self._inner.list_messages, path, min_uid=min_uid)

    def changes_since(self, path: FolderPath, before: FolderStatus) -> FolderChanges | None:
        return self._call(self._inner.changes_since, path, before)

    def search_uids(self, path: FolderPath, keys: str) -> set[str]:
        return self._call(self._inner.search_uids, path, keys)

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        return self._call(self._inner.fetch, path, keys)

    def fetch_problems(self) -> list[tuple[str, str]]:
        return self._call(self._inner.fetch_problems)

    # --- writing ----------------------------------------------------------------------------------------
    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        return self._call(self._inner.create_folder, path, special_use)

    def subscribe(self, path: FolderPath) -> None:
        return self._call(self._inner.subscribe, path)

    def create_folders(self, folders: Sequence[tuple[FolderPath, str | None]]) -> list:
        return self._call(self._inner.create_folders, folders)

    def subscribe_folders(self, paths: Sequence[FolderPath]) -> list:
        return self._call(self._inner.subscribe_folders, paths)

    def permanent_flags(self, path: FolderPath) -> PermanentFlags:
        return self._call(self._inner.permanent_flags, path)

    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        return self._call(self._inner.append, path, items)

    def append_started(self, path: FolderPath, items: Sequence[AppendItem]) -> Callable[[], list[str | None]]:
        finish = self._call(self._inner.append_started, path, items)
        return lambda: self._call(finish)  # the second half is a call of the store's too

    def append_batch_limit(self) -> tuple[int, int]:
        return self._call(self._inner.append_batch_limit)

    def set_flags(self, path: FolderPath, changes: Iterable[tuple[str, frozenset[str], frozenset[str]]]) -> None:
        return self._call(self._inner.set_flags, path, changes)

    def delete_folder(self, path: FolderPath) -> None:
        return self._call(self._inner.delete_folder, path)

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        return self._call(self._inner.delete_messages, path, keys)
