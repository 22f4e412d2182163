"""Typed errors: each says how far its damage reaches, so the engine knows what to do next.

``scope`` is one of:
  * ``message`` – this message is reported and the run goes on with the next one;
  * ``folder``  – this folder is reported, the others go on;
  * ``account`` – this account stops and is reported, the other accounts go on;
  * ``run``     – nothing can go on (bad configuration, state database unusable).
``retryable`` errors (a lost connection, a server that says to come back later) are retried with
backoff and a fresh connection before they are reported; recovery after a retry is by fingerprint, so
a retry never duplicates a message.

Who decides the scope: the store that raises the error, since only it knows what its server's answer means
(an IMAP ``NO [TRYCREATE]`` is one missing mailbox, ``NO [OVERQUOTA]`` the whole account; see
stores/imap_refusals.py).  The engine reads ``scope`` and ``retryable`` and never a protocol's response code.
"""

from __future__ import annotations


class MailmigrateError(Exception):
    scope = "run"
    retryable = False
    #: the user's configuration is wrong (a password, a host name, a port, a certificate): no retry helps,
    #: and the run's exit status is 2 whatever else happened, so a script sees "fix the settings"
    configuration = False


class ConfigError(MailmigrateError):
    """The user's command or configuration is wrong (exit status 2)."""

    configuration = True


class FormatError(MailmigrateError):
    """A legacy file could not be parsed; names the file and line where it could."""

    scope = "folder"

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.path = path
        self.line = line
        where = ""
        if path:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + message)


class StoreError(MailmigrateError):
    scope = "account"


class ConnectionLost(StoreError):
    """The connection broke or timed out; the account can be resumed on a new connection."""

    retryable = True


class CommandTimedOut(ConnectionLost):
    """One command's exchange outlived its deadline (a floor plus time for the bytes moved): a server that
    trickles can hold a worker no longer than that.  The connection is dropped; a retry gets a fresh one."""


class ResponseTooLarge(StoreError):
    """A server sent more than one command may collect (an endless listing or flood of untagged data): the
    connection is dropped and the account stops, reported, instead of the process growing without limit.
    Not retried: the same server would do it again."""


class TemporaryFailure(StoreError):
    """The server asks to try later ([UNAVAILABLE], throttling, BYE on overload)."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationFailed(StoreError):
    """Login refused: the account stops, naming the side (source or target) and the user."""

    configuration = True


class HostNotFound(StoreError):
    """The host name does not resolve: a typo, or a name only another network knows. Not retried."""

    configuration = True


class TLSMismatch(StoreError):
    """TLS spoken to a port that does not (imaps:// on 143), or the reverse. Not retried; the message says
    which URL to use instead."""

    configuration = True


class ProtocolError(StoreError):
    """The peer said something that is not the protocol; the connection is not trusted any more."""

    retryable = True


class ServerRefused(StoreError):
    """A tagged NO or BAD; ``code`` is the response code (TRYCREATE, OVERQUOTA, TOOBIG, …) if any.

    Account-wide unless the store that raised it says otherwise (``scope``): the protocol layer cannot
    tell a refusal about one folder from one about the account, the store that sent the command can."""

    def __init__(self, message: str, *, code: str | None = None, command: str | None = None,
                 scope: str | None = None):
        super().__init__(message)
        self.code = code
        self.command = command
        if scope is not None:
            self.scope = scope


class FolderFailed(StoreError):
    scope = "folder"


class MessageRejected(StoreError):
    """The target refused this one message (too big, malformed); the run goes on."""

    scope = "message"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.code = code


class QuotaExceeded(StoreError):
    """[OVERQUOTA]: nothing more fits in this account on the target."""


class Interrupted(MailmigrateError):
    """The user asked to stop (Ctrl-C): the run ends at a batch boundary, with nothing half-written; the
    next run resumes from there."""


class StateError(MailmigrateError):
    """The state database cannot be used; never answered by silently starting over."""


class StateLocked(StateError):
    """Another mailmigrate run holds this state database."""


class StateUnreachable(StateError):
    """The state database cannot be reached (down, restarting, network): nothing about the account is
    known to be wrong, so the fleet tries again once it is back instead of failing the account."""

    retryable = True


class StateCorrupt(StateError):
    """The state database is damaged or is not a mailmigrate state database."""


class FleetError(MailmigrateError):
    """The fleet could not take a run (broker unreachable): the accounts it names were not enqueued, so
    nothing ran and the run can simply be started again."""
