"""Passwords and the files that hold them: where a password may come from, how it is kept out of sight, and
how a file holding one is checked and written.

One module, at the bottom of the layers, so that every command, path and worker reads a password the same
way, and so that every password read here is known to the one redaction filter (:data:`SECRETS`) before
anything can log it.  Passwords never come from argv (every user on the machine can read a process's
arguments): they come from the environment, from a file only its owner can read, from an accounts file
held to the same rule, or, for a run at a terminal given none of these, typed at a prompt that does not echo.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import threading
from pathlib import Path

from .errors import ConfigError

__all__ = ["ADMIN", "DAV", "NS7_DAV", "NS7_LDAP", "NS8_ADMIN", "NS8_DAV", "NS8_LDAP", "SECRETS", "SOURCE", "TARGET",
           "PasswordSource", "Secret", "SecretFilter", "check_private", "choose_password", "open_private",
           "password_from", "read_password_file", "write_private"]


class Secret:
    """A password that refuses to show itself in logs, reprs, tracebacks and JSON."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("secret", self._value))


# --- redaction ---------------------------------------------------------------------------------------------

class SecretFilter(logging.Filter):
    """Last line of defence: a known password that reaches a log record anyway is replaced by ``***``.

    One instance (:data:`SECRETS`) serves every output channel of the process (the command's terminal and
    log file, a path's run log, a fleet worker's log), and every password read through this module is added
    to it as it is read: a channel cannot miss a password because the code that read it did not know which
    filter that channel used.  Values shorter than 3 characters are not replaced (``***`` in place of every
    "a" would make a log unreadable and hide nothing)."""

    def __init__(self):
        super().__init__()
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, secret: Secret | str | None) -> None:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if not value or len(value) < 3:
            return
        with self._lock:
            if value not in self._values:
                # longest first: a password that contains another is replaced whole
                self._values = tuple(sorted((*self._values, value), key=len, reverse=True))

    def redact(self, text: str) -> str:
        for v in self._values:  # a tuple, replaced whole by add(): safe to read while another thread adds
            if v in text:
                text = text.replace(v, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            msg = record.getMessage()
            redacted = self.redact(msg)
            if record.args or redacted != msg:
                record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text and self._values:
            # a traceback's text may quote a password (an exception's message): format it once, redacted
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


#: the process's one redaction filter; handlers add it, password readers feed it
SECRETS = SecretFilter()


# --- where a password comes from --------------------------------------------------------------------------

def check_private(path: Path, what: str) -> None:
    """Refuse a file that holds a secret and that other users can read: someone may already have read it,
    and saying so is better than using it quietly."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is readable by other users (mode {stat.S_IMODE(mode):04o}); "
                          f"run chmod 600 {path}")


def read_password_file(path: str | os.PathLike, what: str) -> Secret:
    """The first line of a file only its owner can read (a trailing newline is not part of the password)."""
    p = Path(path)
    try:
        data = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{what} password file {p}: {e.strerror}") from None
    check_private(p, what + " password file")
    value = data.rstrip("\r\n")
    if not value:
        raise ConfigError(f"{what} password file {p} is empty")
    secret = Secret(value)
    SECRETS.add(secret)
    return secret


def password_from(env_name: str, file: str | os.PathLike | None, what: str) -> Secret | None:
    """A password from ``file`` when one is named (the file wins: it was said on this command line), else
    from the environment variable ``env_name``, else None."""
    if file:
        return read_password_file(file, what)
    value = os.environ.get(env_name)
    if not value:
        return None
    secret = Secret(value)
    SECRETS.add(secret)
    return secret


class PasswordSource:
    """A password the user gives by one environment variable or one file option, named once: the command
    line, the project file and the workflow read the same credential the same way, and say the same
    ``what`` when its file is refused."""

    __slots__ = ("env", "what")

    def __init__(self, env: str, what: str):
        self.env, self.what = env, what

    def read(self, file: str | os.PathLike | None = None) -> Secret | None:
        """From ``file`` when one is named, else from the environment, else None (see :func:`password_from`)."""
        return password_from(self.env, file, self.what)

    def ask(self, whose: str) -> Secret | None:
        """Typed at the terminal, not echoed, when neither the file nor the environment gave one: an
        administrator migrating one mailbox by hand should not have to write a password into a file or an
        environment variable first. None when no terminal is there to ask (a cron job, a pipe) or nothing was
        typed: the run then says which password is missing, as before."""
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            return None
        import getpass

        try:
            value = getpass.getpass(f"{self.what} password for {whose}: ")
        except EOFError:  # Ctrl-D: nothing typed (Ctrl-C goes on up: the user stops the run)
            print(file=sys.stderr)
            return None
        if not value:
            return None
        secret = Secret(value)
        SECRETS.add(secret)
        return secret

    def __repr__(self) -> str:
        return f"PasswordSource({self.env!r}, {self.what!r})"


#: the credentials mailmigrate's commands and projects take (docs: README, docs/nethserver.md, docs/communigate.md)
SOURCE = PasswordSource("MAILMIGRATE_SOURCE_PASSWORD", "source")
TARGET = PasswordSource("MAILMIGRATE_TARGET_PASSWORD", "target")
ADMIN = PasswordSource("MAILMIGRATE_ADMIN_PASSWORD", "administrator")
DAV = PasswordSource("MAILMIGRATE_DAV_PASSWORD", "DAV")
NS7_LDAP = PasswordSource("MAILMIGRATE_SOURCE_PASSWORD", "NS7 LDAP")
NS8_LDAP = PasswordSource("MAILMIGRATE_TARGET_PASSWORD", "NS8 LDAP")
NS8_ADMIN = PasswordSource("MAILMIGRATE_NS8_PASSWORD", "NS8 administrator")
NS7_DAV = PasswordSource("MAILMIGRATE_DAV_SOURCE_PASSWORD", "NS7 DAV")
NS8_DAV = PasswordSource("MAILMIGRATE_DAV_TARGET_PASSWORD", "NS8 DAV")


def choose_password(run_password: Secret | None, own_password: Secret | None,
                    master_user: str | None) -> tuple[Secret | None, str | None]:
    """The password one account logs in with on one side, and the master user it logs in through.

    With a master user the run's password is the master's and every account logs in through it.  An
    accounts-file line that holds the account's own password, in a run that was given no master password,
    logs that account in as itself: the line's password is the user's, and ignoring it left the account with
    no password at all ("target password missing").
    """
    if not master_user:
        return own_password or run_password, None
    if run_password is None and own_password is not None:
        return own_password, None
    return run_password, master_user


# --- files that hold secrets ------------------------------------------------------------------------------

def open_private(path: str | os.PathLike, *, exclusive: bool = False, append: bool = False) -> int:
    """A file descriptor for writing a file that holds secrets: mode 0600 from its creation, so it is never
    readable by others, not even for an instant; an existing file (not ``exclusive``) is narrowed to 0600
    before anything is written to it.  ``exclusive`` refuses an existing file (FileExistsError), ``append``
    keeps what it holds; otherwise it is emptied.  A symbolic link is refused, so a planted link cannot
    redirect a password into another file."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_EXCL if exclusive else 0
    flags |= os.O_APPEND if append else (0 if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: str | os.PathLike, data: bytes | str, *, exclusive: bool = False,
                  append: bool = False) -> None:
    """Write ``data`` to a 0600 file (see :func:`open_private`) and fsync it: the caller reports the file
    written, or hands the secret to someone else, at once."""
    fd = open_private(path, exclusive=exclusive, append=append)
    try:
        view = memoryview(data.encode("utf-8") if isinstance(data, str) else data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
