"""A store whose errors know which side of the migration they came from.

Why: the engine talks to two stores at once, often of one kind (IMAP to IMAP), and a report that says
"connection lost" without "source" or "target" sends the user to the wrong server.  The side is written on
the error as it leaves the store (``_mm_side``), once: an error the other side's call re-raises keeps its own.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import MailmigrateError
from .base import Store
from .wrapper import StoreWrapper


def side_of(e: BaseException) -> str:
    """"source", "target", or "" for an error that did not come from a sided store."""
    return getattr(e, "_mm_side", "")


def _tag(e: MailmigrateError, side: str) -> None:
    if not hasattr(e, "_mm_side"):
        e._mm_side = side


class SidedStore(StoreWrapper):
    """Wraps a store so that every error it raises, also from a stream it returned, names its side."""

    def __init__(self, store: Store, side: str):
        super().__init__(store)
        self.side = side

    @property
    def _store(self) -> Store:
        """The wrapped store, by the name the engine's folder workers use to clone it."""
        return self._inner

    def _call(self, method: Callable, *args, **kwargs):
        try:
            r = method(*args, **kwargs)
        except MailmigrateError as e:
            _tag(e, self.side)
            raise
        if hasattr(r, "__next__"):
            return _sided_iter(r, self.side)
        return r


def _sided_iter(it, side: str):
    try:
        yield from it
    except MailmigrateError as e:
        _tag(e, side)
        raise
