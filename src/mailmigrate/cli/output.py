"""Terminal output shared by the commands: logging set-up (every handler redacted by credentials.SECRETS and
kept to one line a record), progress bars, summaries."""

from __future__ import annotations

import logging
import sys
import threading

# SECRETS: the process's one redaction filter (credentials.py), on every handler set up here
from ..credentials import SECRETS, Secret, SecretFilter, password_from  # noqa: F401
from ..model import printable
from ..sync.options import Progress


class OneLine(logging.Filter):
    """Text from servers and files (folder names, errors) may hold CR, LF or ESC: one record stays one line
    and never drives the terminal (issue 19)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = printable(record.getMessage()), None
        return True


ONE_LINE = OneLine()


def secret_from(env_name: str, file: str | None, what: str) -> "Secret | None":
    """A password from a file (must be mode 0600) or the environment (credentials.password_from: known to
    the redaction filter as it is read)."""
    return password_from(env_name, file, what)


def setup_logging(verbose: int = 0, log_file: str | None = None) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger("mailmigrate")
    root.setLevel(logging.DEBUG if log_file else level)
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(level)
    err.setFormatter(fmt)
    err.addFilter(SECRETS)
    err.addFilter(ONE_LINE)
    root.addHandler(err)
    if log_file:
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)
        fh.setFormatter(fmt)
        fh.addFilter(SECRETS)
        fh.addFilter(ONE_LINE)
        root.addHandler(fh)
    root.propagate = False


class PlainProgress(Progress):
    """For logs and pipes: one line when a folder starts copying and one per account at the end (names of
    folders and accounts are the user's text: redacted like a log record)."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self._lock = threading.Lock()

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        with self._lock:
            print(SECRETS.redact(f"{account}: {folder}: copying {to_copy} messages ({_mib(bytes_to_copy)})"),
                  file=self.stream, flush=True)

    def account_done(self, account, result):
        c = result.counters
        status = "FAILED (why: see the summary)" if result.error else ("done" if result.ok else "done with failures")
        with self._lock:
            print(SECRETS.redact(f"{account}: {status} — copied {c.copied}, flags {c.flags_updated}, deleted "
                                 f"{c.deleted}, failed {c.failed}"), file=self.stream, flush=True)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"
