"""The log of one migration event: every line to a file, and a summary of every ERROR and WARNING at the end.

The seed ends its procedure with "search for any ERROR string in /var/log/messages"; here each action's
notes are kept with the action's name, appended to a log file (one per event, appended per run, like
NS8's ``ns8-migration.log``) and handed back so the command can print them all at the end.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .rules import ERROR, INFO, WARNING, Note

log = logging.getLogger("mailmigrate.nethserver")

_LEVELS = {ERROR: logging.ERROR, WARNING: logging.WARNING, INFO: logging.INFO}


@dataclass
class Entry:
    action: str
    level: str
    text: str

    def line(self) -> str:
        return f"[{self.level}] {self.action}: {self.text}"


@dataclass
class EventLog:
    event: str
    path: Path | None = None
    entries: list[Entry] = field(default_factory=list)

    def note(self, action: str, level: str, text: str) -> None:
        e = Entry(action, level, text)
        self.entries.append(e)
        log.log(_LEVELS.get(level, logging.INFO), "%s", e.line())
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%dT%H:%M:%S ") + self.event + " " + e.line() + "\n")

    def notes(self, action: str, notes: list[Note]) -> None:
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
