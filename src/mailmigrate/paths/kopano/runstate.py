"""The Kopano runbook's run state: ``run-state.json`` under its work directory, one runbook at a time.

The steps whose result the system does not show (service stops and starts, package commands, the clean
log, the one-off start) are recorded here by the step runner (paths/runstate.py), so a rerun after a
failure does not issue their commands again.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..runstate import RunState as _RunState


class RunState(_RunState):
    NAME = "run-state.json"

    def __init__(self, work_dir: str | os.PathLike):
        work = Path(work_dir)
        # two runbooks on one work directory would stop and start the same services
        super().__init__(work / self.NAME, lock_path=work / "runbook.lock",
                         busy=f"another runbook is running with {work}")
