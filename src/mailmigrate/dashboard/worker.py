"""One background thread that runs the actions pressed on the dashboard, one after another."""

from __future__ import annotations

import logging
import queue
import threading

from ..workflow.actions import Workflow
from ..workflow.project import load_project

log = logging.getLogger("mailmigrate.dashboard")


class ActionWorker:
    def __init__(self, project_file: str, actor: str = "dashboard"):
        self.project_file = project_file
        self.actor = actor
        self.q: queue.Queue = queue.Queue()
        self.pending: set[tuple[str, str]] = set()
        self.last: dict[str, str] = {}  # unit -> last outcome sentence
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mailmigrate-dashboard-worker", daemon=True)
        self._thread.start()

    def submit(self, unit: str, action: str) -> bool:
        with self._lock:
            if (unit, action) in self.pending:
                return False
            self.pending.add((unit, action))
        self.q.put((unit, action))
        return True

    def busy(self) -> set[str]:
        with self._lock:
            return {u for u, _ in self.pending}

    def _run(self) -> None:
        wf = Workflow(load_project(self.project_file), actor=self.actor)
        while True:
            unit, action = self.q.get()
            try:
                if action == "verify":
                    check = wf.verify_unit(unit)
                    msg = "verified" if check.ok else f"verification: {check.totals()['missing']} missing"
                else:
                    out = wf.act(unit, action)
                    said = "failed" if not out.ok else "incomplete" if out.incomplete else "ok"
                    msg = f"{action}: {said} — {out.message}"
            except Exception as e:  # the worker must survive anything one action does
                log.exception("dashboard action %s on %s", action, unit)
                msg = f"{action}: error {e}"
            with self._lock:
                self.pending.discard((unit, action))
                self.last[unit] = msg
