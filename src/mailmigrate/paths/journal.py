"""Where the step runner (plan.py) tells what each step did: the record an administrator reads afterwards.

The runner reports to one journal through two calls, :meth:`Journal.started` before a step and
:meth:`Journal.finished` after it, and the journal decides what of that is worth a line.  Three shapes
are in use, each kept because users and their scripts read it:

* :class:`RunLog` - one ``[plan] step: status`` line per step (the Kopano runbook's ``runbook.log``);
* :class:`EventLog` - the steps' own notes at a level, ``[LEVEL] step: text``, appended per run and
  summarised at the end with every ERROR and WARNING (the ``migration-import`` event, NS7 -> NS8);
* :class:`LoggerFile` - everything under the ``mailmigrate`` logger into a new file of its own, mode 0600
  from its first byte, every known password replaced by ``***`` (cg2kms's ``cg2kms_<datetime>.log``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import SECRETS, open_private
from ..errors import ConfigError

log = logging.getLogger("mailmigrate.plan")
_events = logging.getLogger("mailmigrate.nethserver")

ERROR, WARNING, INFO = "ERROR", "WARNING", "INFO"
_LEVELS = {ERROR: logging.ERROR, WARNING: logging.WARNING, INFO: logging.INFO}

#: the words a step's status is written with
STATUS_WORDS = {"done": "already done", "applied": "applied", "failed": "FAILED"}


class Journal:
    """A journal that keeps nothing: for a procedure whose steps write their own record."""

    def started(self, title: str, name: str, description: str) -> None:
        pass

    def finished(self, title: str, name: str, status: str, lines: list[str], error: BaseException | None,
                 trace: str | None) -> None:
        pass


class RunLog(Journal):
    """Append-only text log of what a plan did; the file is the record an administrator reads later."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None

    def finished(self, title, name, status, lines, error, trace):
        if status in STATUS_WORDS:
            self.write(title, name, STATUS_WORDS[status], [str(error)] if status == "failed" else lines)

    def write(self, title: str, step: str, status: str, lines: list[str] = ()) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        text = [f"{stamp} [{title}] {step}: {status}"] + [f"{stamp} [{title}]   {ln}" for ln in lines]
        # On the terminal (-v) one progress line per step; the step's lines are printed once, by the
        # command's summary, and are on the terminal again only at -vv (they were shown twice at -v).
        log.info("%s: %s", step, status)
        for t in text[1:]:
            log.debug("%s", t)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(text) + "\n")


@dataclass
class Entry:
    action: str
    level: str
    text: str

    def line(self) -> str:
        return f"[{self.level}] {self.action}: {self.text}"


@dataclass
class EventLog(Journal):
    """The log of one event: every note to a file (one per event, appended per run, like NS8's
    ``ns8-migration.log``), and kept so the command prints every ERROR and WARNING at the end instead of
    sending the administrator to grep a log file (the seeds end with "search for any ERROR string")."""

    event: str
    path: Path | None = None
    entries: list[Entry] = field(default_factory=list)

    def started(self, title, name, description):
        self.info(name, "start: " + description)

    def finished(self, title, name, status, lines, error, trace):
        if status != "failed":
            return
        if trace is None:
            self.error(name, f"action failed: {error}")
        else:  # a step's bug: the others still run, and the log keeps the trace
            self.error(name, f"action failed unexpectedly: {type(error).__name__}: {error}")
            self.info(name, trace.replace("\n", " | "))

    def note(self, action: str, level: str, text: str) -> None:
        e = Entry(action, level, text)
        self.entries.append(e)
        _events.log(_LEVELS.get(level, logging.INFO), "%s", e.line())
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + self.event + " " + e.line() + "\n")

    def notes(self, action: str, notes) -> None:
        """Notes with a ``level`` and a ``text`` each (nethserver.rules.Note)."""
        for n in notes:
            self.note(action, n.level, n.text)

    def info(self, action: str, text: str) -> None:
        self.note(action, INFO, text)

    def warning(self, action: str, text: str) -> None:
        self.note(action, WARNING, text)

    def error(self, action: str, text: str) -> None:
        self.note(action, ERROR, text)

    def of_level(self, level: str) -> list[Entry]:
        return [e for e in self.entries if e.level == level]

    @property
    def errors(self) -> list[Entry]:
        return self.of_level(ERROR)

    @property
    def warnings(self) -> list[Entry]:
        return self.of_level(WARNING)

    def summary(self) -> str:
        lines = [f"{self.event}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"]
        lines += ["  " + e.line() for e in self.errors]
        lines += ["  " + e.line() for e in self.warnings]
        return "\n".join(lines)


def exclusive_file(directory: Path, stem: str, suffix: str) -> tuple[Path, int]:
    """Create ``stem+suffix`` (or ``stem-N+suffix`` when taken) with mode 0600 from the first byte: a run's
    record is never readable by others, not even briefly, and never appended to another run's."""
    for n in range(1000):
        p = directory / (f"{stem}{suffix}" if n == 0 else f"{stem}-{n}{suffix}")
        try:
            return p, open_private(p, exclusive=True)
        except FileExistsError:
            continue
    raise ConfigError(f"{directory}: cannot create {stem}{suffix}: too many files of that name")


class LoggerFile(Journal):
    """Everything under the ``mailmigrate`` logger goes to a new file for the run, and nothing of it to the
    screen (the command shows its own lines); a context manager, so the logger is given back after."""

    def __init__(self, directory: Path, stem: str, suffix: str = ".log"):
        self.path, fd = exclusive_file(directory, stem, suffix)
        self.handler = logging.StreamHandler(os.fdopen(fd, "w", encoding="utf-8", buffering=1))
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.handler.setLevel(logging.INFO)
        self.handler.addFilter(SECRETS)  # every password this process has read is *** in the file
        self.logger = logging.getLogger("mailmigrate")

    def __enter__(self):
        self._saved = (self.logger.level, self.logger.propagate)
        if self.logger.getEffectiveLevel() > logging.INFO:
            self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
        self.handler.close()
