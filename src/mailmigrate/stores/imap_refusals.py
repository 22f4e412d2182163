"""What an IMAP server's refusal means for the run, decided once, where the command was sent.

The connection (imap/connection.py) already types the answers whose meaning does not depend on the
command: [OVERQUOTA] is QuotaExceeded (the account), [TOOBIG]/[LIMIT] MessageRejected (one message),
[UNAVAILABLE] and throttling TemporaryFailure (retried).  What is left is a plain ServerRefused, and
whether it stops one folder or the whole account depends on the response code (RFC 5530):

* no code, TRYCREATE, NONEXISTENT, CANNOT, CLIENTBUG: about the mailbox or the command the store sent
  for it (a folder that is not there, a name the server cannot hold, a command it will not take for that
  folder) — the folder is reported and the others go on;
* any other code (NOPERM, AUTHORIZATIONFAILED, EXPIRED, PRIVACYREQUIRED, …): about the user or the
  server — the account stops, reported.

The store's public methods are wrapped (``scopes_refusals``) so that no refusal leaves an ImapStore without
its scope, whichever of its commands met it, including one met while a fetch was streaming or in the second
half of an ``append_started``.
"""

from __future__ import annotations

import functools
import inspect

from ..errors import ServerRefused
from .base import Store

#: response codes of a refusal that concerns one folder (None: the server gave no code)
FOLDER_CODES = frozenset({None, "TRYCREATE", "NONEXISTENT", "CANNOT", "CLIENTBUG"})


def scope_of(err: ServerRefused) -> str:
    return "folder" if err.code in FOLDER_CODES else "account"


def _scoped(err: ServerRefused) -> None:
    if "scope" not in vars(err):  # a scope the raiser gave stays
        err.scope = scope_of(err)


def _wrap(method):
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def streaming(*args, **kwargs):
            try:
                yield from method(*args, **kwargs)
            except ServerRefused as e:
                _scoped(e)
                raise
        return streaming

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            r = method(*args, **kwargs)
        except ServerRefused as e:
            _scoped(e)
            raise
        # A call in two halves (append_started) hands back its second half: that one's refusals too.
        return _wrap(r) if callable(r) else r
    return call


def scopes_refusals(cls: type[Store]) -> type[Store]:
    """Class decorator: every method of the Store interface that ``cls`` defines gives its refusals a scope."""
    for name, value in vars(Store).items():
        if name.startswith("_") or not callable(value) or name not in vars(cls):
            continue
        setattr(cls, name, _wrap(vars(cls)[name]))
    return cls
