"""What a procedure has done that the system itself cannot tell afterwards, and the one lock of its runs.

Most steps judge "done" from the system (a file's content, a dump that exists, an LDAP entry, a record an
earlier run wrote). A few cannot: "the services were stopped" looks the same as "they were never running",
a package command leaves nothing that could safely be read back, a server log was found clean at one point
in time.  Those steps (``Step(record=True)``) have their completion recorded in a JSON file, so a rerun
after a failure does not issue their commands again.  The file is written atomically with mode 0600 and
holds no secrets: step names, times, a few values.

Two runs of one procedure on one system would stop and start the same services or write the same
databases: :func:`hold_lock` lets one run at a time, and a second one fails at once instead of waiting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import StateCorrupt, StateLocked
from ..formats.atomic import replace_file


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, busy: str = "", *, wait: bool = False):
    """Hold an exclusive lock on ``path`` for the block; ``busy`` is the error when another run has it, or,
    with ``wait``, the block waits for it (a short read-modify-write, never a whole run).  The kernel drops
    the lock with the process, so a killed run never leaves a stale one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateLocked(busy or f"{p} is held by another run") from None
        yield
    finally:
        os.close(fd)


class RunState:
    """Recorded completions (``done``) and values a later step needs (``values``) of one procedure."""

    def __init__(self, path: str | os.PathLike, *, lock_path: str | os.PathLike | None = None,
                 busy: str | None = None):
        self.path = Path(path)
        self.lock_path = Path(lock_path) if lock_path else self.path.with_name(self.path.name + ".lock")
        self.busy = busy or f"another run is using {self.path}"
        self._data = self._load()

    @contextlib.contextmanager
    def lock(self):
        with hold_lock(self.lock_path, self.busy):
            self._data = self._load()  # what the other run recorded before it ended
            yield self

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"done": {}, "values": {}}
        except (OSError, ValueError) as e:
            raise StateCorrupt(f"{self.path}: unreadable run state ({e}); move it aside to start over") from None
        if not isinstance(data, dict):
            raise StateCorrupt(f"{self.path}: not a run state")
        data.setdefault("done", {})
        data.setdefault("values", {})
        return data

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(self.path, (json.dumps(self._data, indent=1, sort_keys=True) + "\n").encode(), 0o600,
                     suffix=".mm-tmp")

    def done(self, key: str) -> bool:
        return key in self._data["done"]

    def mark(self, key: str) -> None:
        self._data["done"][key] = time.strftime("%Y-%m-%dT%H:%M:%S")
        self._save()

    def unmark(self, key: str) -> None:
        if self._data["done"].pop(key, None) is not None:
            self._save()

    def get(self, key: str, default=None):
        return self._data["values"].get(key, default)

    def set(self, key: str, value) -> None:
        self._data["values"][key] = value
        self._save()
