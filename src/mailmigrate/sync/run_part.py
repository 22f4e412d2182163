"""What every part of one account's run is built from, said once.

The recovery, the copy pipeline, the changes on the target and the folder run that drives them (recovery.py,
copying.py, changes.py, folder_run.py) each work on the same account with the same stores, state, options,
counters and problem report; a worker of parallel folders builds its own parts on its own connections and
counters.  One constructor keeps the parts from drifting apart in what they are given and how they name it.
"""

from __future__ import annotations


class RunPart:
    def __init__(self, source, target, state, account: str, options, counters, problem) -> None:
        self.source = source
        self.target = target
        self.state = state
        self.account = account
        self.opt = options
        self.c = counters
        self._problem = problem
