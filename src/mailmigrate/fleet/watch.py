"""Waiting for the fleet: what a command that enqueued jobs says when no worker takes them, and when it stops
waiting.

Nothing but the job table tells the enqueuing command whether any worker is there (the broker does not
say who listens), so with none running it would wait in silence, possibly forever.  Both such commands
(``sync --executor celery`` and the project actions on the fleet) watch the run's counts the same way and
say the same words, so the text and the rule live here, once.
"""

from __future__ import annotations

import time
from typing import Callable

from ..sync.state_pg import redact_url

#: seconds without a worker taking a queued job before the warning, unless the command says otherwise
IDLE_WARNING = 60.0

#: why giving up on the wait loses nothing: the job stays on the broker and in the job table
STILL_RUNS = ("its job may still be running on a worker, or run when one takes it, copying nothing twice (the "
              "account lock keeps a new run from copying alongside)")


def idle_message(queued: int, idle: float, broker: str, state_url: str) -> str:
    """The warning, naming the worker command for this broker and state; their passwords masked, since
    the text goes to stderr and logs."""
    return (f"fleet: no worker has taken any of the {queued} queued job(s) for {idle:.0f} s; is a worker "
            f"running? Start workers with `mailmigrate worker --broker {redact_url(broker)} --state "
            f"{redact_url(state_url)}` and the accounts' passwords (docs/fleet.md), or check that the "
            f"running ones use this broker and are not busy with other runs")


class IdleWatch:
    """Says when jobs have sat queued with no worker taking any for ``after`` seconds: once per such
    stretch, so a long wait is not a flood of warnings, and again after a worker came and went.

    A worker's activity shows as running or waiting jobs, or as the queued count changing (a job taken
    and finished between two looks); anything else counts as idle."""

    def __init__(self, broker: str, state_url: str, after: float, clock: Callable[[], float] = time.monotonic):
        self.broker, self.state_url, self.after, self.clock = broker, state_url, after, clock
        self.idle_since = clock()
        self.queued_before: int | None = None
        self.warned = False

    def check(self, summary: dict) -> str | None:
        """The warning to give now, given the run's counts (``jobs.summary``), or None."""
        now = self.clock()
        queued = summary["queued"]
        if summary["running"] or summary["waiting"] or queued != self.queued_before:
            self.idle_since, self.warned = now, False
        self.queued_before = queued
        if queued and not self.warned and now - self.idle_since >= self.after:
            self.warned = True
            return idle_message(queued, now - self.idle_since, self.broker, self.state_url)
        return None


def timeout_message(timeout: float, statuses: list[str], total: int) -> str:
    """What stopping the wait leaves, as the job table says it (``statuses``: each unfinished account's)."""
    counts = {st: statuses.count(st) for st in ("queued", "waiting", "running") if statuses.count(st)}
    where = ", ".join(f"{n} {st}" for st, n in counts.items())
    return (f"fleet: timeout of {timeout:g} s reached with {len(statuses)} of {total} account(s) not finished"
            f"{f' ({where})' if where else ''}; stopped waiting. Running jobs go on on their workers, queued "
            f"ones run when a worker takes them; `mailmigrate fleet status` shows them and `mailmigrate fleet "
            f"requeue` sends a lost one again")


def timeout_reason(timeout: float, status: str) -> str:
    """An unfinished account's error after the timeout; ``status`` is its job's (queued, waiting, running)."""
    return f"fleet timeout ({timeout:g} s) reached while its job was {status}; stopped waiting; {STILL_RUNS}"
