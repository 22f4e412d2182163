"""What a runbook has done that the system itself cannot tell afterwards.

Most runbook steps judge "done" from the system (a file's content, a dump that exists, an LDAP entry). A
few cannot: "the services were stopped" looks the same as "they were never running", a package command
leaves nothing the runbook could safely read back, a server log was found clean at one point in time.
Those steps record their completion here, in ``run-state.json`` under the runbook's work directory, so a
rerun after a failure does not issue their commands again.  The file is written atomically with mode
0600 and holds no secrets: step names, times, a log offset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from ...errors import StateCorrupt, StateLocked
from ..plan import write_atomic


class RunState:
    NAME = "run-state.json"

    def __init__(self, work_dir: str | os.PathLike):
        self.path = Path(work_dir) / self.NAME
        self._data = self._load()

    @contextlib.contextmanager
    def lock(self):
        """One runbook at a time per work directory: two would stop and start the same services."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name("runbook.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateLocked(f"another runbook is running with {self.path.parent}") from None
            self._data = self._load()  # what the other run recorded before it ended
            yield self
        finally:
            os.close(fd)

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
        write_atomic(self.path, (json.dumps(self._data, indent=1, sort_keys=True) + "\n").encode(), mode=0o600)

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
