"""Ordered, resumable, logged steps: the one way every path runs a procedure.

The seeds describe procedures as shell commands run once by hand, and e-smith's events as actions run
by priority.  Here each command or action becomes a :class:`Step`, and :meth:`Plan.run` is the only
runner:

* **order** - the steps run in the order they were added; a :class:`StepRegistry` hands out its
  registered steps ordered by (priority, name), as e-smith's ``event_actions`` does;
* **dry run** - a step says *exactly* what it would change before changing anything (``changes()``);
  a step whose own code leaves the writes out in a dry run (``dry=True``, built with a dry-run
  context) is run instead and notes what it would do;
* **resumable** - a step tells from the system itself whether it is done (``done()``, by default "no
  changes left"), so a rerun after an interruption skips the finished steps and nothing is kept in a
  side file that could disagree with the system; a step whose completion the system cannot show
  (``record=True``) is done once recorded in the plan's :class:`~.runstate.RunState`; a step that
  finds its own earlier work (an idempotent action) simply runs again;
* **one lock** - a real run holds the plan's lock, so two runs never interleave;
* **logged** - every step is reported to one journal (journal.py) in the format its users read.

A failed step stops the plan (later steps usually depend on earlier ones) unless the plan keeps going,
as an e-smith event does; then even a step's bug is its own failure, with the trace in the journal.
A step that overwrites a file calls :func:`backup_file` first, which keeps the *first* original so a
rerun never replaces the real original with an already migrated copy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import MailmigrateError
from ..formats.atomic import replace_file
from .journal import Journal, RunLog
from .runstate import RunState, hold_lock

BACKUP_SUFFIX = ".mailmigrate-orig"

__all__ = ["BACKUP_SUFFIX", "Plan", "PlanResult", "Registered", "RunLog", "RunState", "Step", "StepOutcome",
           "StepRegistry", "backup_file", "write_atomic"]


@dataclass
class Step:
    """One unit of work.

    ``changes`` lists, one line each, what applying would change *now*; an empty list means there is
    nothing to do.  ``done`` defaults to "no changes left", which is the right test for any step whose
    changes are computed from the current state of the system; a step with neither runs every time (its
    own work finds what an earlier run did).
    """

    name: str
    description: str
    changes: Callable[[], list[str]] | None = None
    apply: Callable[[], list[str] | None] | None = None
    done: Callable[[], bool] | None = None
    #: its completion cannot be read from the system: done once recorded in the plan's run state
    record: bool = False
    #: ``apply`` leaves the writes out itself in a dry run, so a dry run runs it instead of ``changes``
    dry: bool = False

    def pending(self) -> list[str]:
        return self.changes() if self.changes is not None else []

    def is_done(self, state: RunState | None = None) -> bool:
        if self.record:
            if state is None:
                raise MailmigrateError(f"step {self.name}: its completion is recorded, but the plan has no run state")
            if state.done(self.name):
                return True
            return self.done() if self.done is not None else False
        if self.done is not None:
            return self.done()
        if self.changes is None:
            return False
        return not self.changes()


@dataclass
class StepOutcome:
    name: str
    status: str  # "done" (already), "applied", "planned" (dry run), "after" (dry run, see Plan.run), "failed"
    lines: list[str] = field(default_factory=list)
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass
class PlanResult:
    title: str
    outcomes: list[StepOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(o.status != "failed" for o in self.outcomes)

    def raise_failure(self) -> None:
        """For a caller whose own callers expect the step's error itself, not a report of it."""
        for o in self.outcomes:
            if o.status == "failed" and o.exception is not None:
                raise o.exception

    def render(self) -> str:
        head = f"{self.title} (dry run: nothing changed)" if self.dry_run else self.title
        out = [head]
        for o in self.outcomes:
            label = {"done": "already done", "applied": "applied", "planned": "will change",
                     "after": "runs after the steps above (what it changes depends on them)",
                     "failed": "FAILED"}[o.status]
            out.append(f"- {o.name}: {label}")
            out += [f"    {line}" for line in o.lines]
            if o.error:
                out.append(f"    error: {o.error}")
        return "\n".join(out)


class Plan:
    """Steps in order.  ``state``: where ``record`` steps' completions are kept; ``lock``: the file whose
    lock a real run holds (``busy`` is the error a second run gets); ``keep_going``: a failed step does
    not stop the others, and a step's bug (any exception) is that step's failure only."""

    #: the errors a step reports as its failure; anything else is a bug
    EXPECTED = (MailmigrateError, OSError)

    def __init__(self, title: str, steps: list[Step] | None = None, *, state: RunState | None = None,
                 lock: str | os.PathLike | None = None, busy: str | None = None, keep_going: bool = False,
                 expected: tuple[type[BaseException], ...] = ()):
        self.title = title
        self.steps: list[Step] = list(steps or [])
        self.state = state
        self.lock = lock
        self.busy = busy or f"another run of {title} is under way ({lock})"
        self.keep_going = keep_going
        self.expected = self.EXPECTED + tuple(expected)

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def _locked(self):
        if self.lock is not None:
            return hold_lock(self.lock, self.busy)
        if self.state is not None and self.state.lock_path is not None:
            return self.state.lock()
        return contextlib.nullcontext()

    def run(self, *, dry_run: bool, log_path: str | os.PathLike | None = None,
            stop_on_failure: bool = True, journal: Journal | None = None, lock: bool = True) -> PlanResult:
        """Dry run: every step's pending changes; otherwise apply the unfinished steps in order.

        The journal defaults to a :class:`RunLog` at ``log_path`` (none in a dry run).  A real run holds the
        plan's lock (its ``lock`` file, else its run state's), unless the caller holds it already and says
        ``lock=False``.  A failed step is reported and journaled, and the same command run again resumes
        with it.
        """
        if journal is None:
            journal = RunLog(None if dry_run else log_path)
        stop = stop_on_failure and not self.keep_going
        with (self._locked() if lock and not dry_run else contextlib.nullcontext()):
            return self._run(dry_run, journal, stop)

    def _run(self, dry_run: bool, journal: Journal, stop: bool) -> PlanResult:
        result = PlanResult(self.title, dry_run=dry_run)
        pending = False  # a dry run has shown a step that would change something
        for step in self.steps:
            try:
                if dry_run and step.dry:
                    journal.started(self.title, step.name, step.description)
                    outcome = StepOutcome(step.name, "planned", list(step.apply() or []))
                elif dry_run and pending:
                    # A later step judges itself by the system as it is now, before the earlier steps ran:
                    # "nothing to change" then means "nothing yet", not "already done".
                    changes = step.pending()
                    outcome = StepOutcome(step.name, "planned" if changes else "after", changes)
                elif step.is_done(self.state):
                    outcome = StepOutcome(step.name, "done")
                elif dry_run:
                    outcome = StepOutcome(step.name, "planned", step.pending())
                    pending = True
                else:
                    journal.started(self.title, step.name, step.description)
                    planned = step.pending()
                    extra = (step.apply() or []) if step.apply is not None else []
                    if step.record:
                        self.state.mark(step.name)
                    outcome = StepOutcome(step.name, "applied", planned + list(extra))
            except self.expected as e:
                outcome = StepOutcome(step.name, "failed", error=str(e), exception=e)
                journal.finished(self.title, step.name, "failed", [], e, None)
            except Exception as e:
                if not self.keep_going:
                    raise
                outcome = StepOutcome(step.name, "failed", error=f"{type(e).__name__}: {e}", exception=e)
                journal.finished(self.title, step.name, "failed", [], e, traceback.format_exc())
            else:
                if outcome.status in ("done", "applied"):
                    journal.finished(self.title, step.name, outcome.status, outcome.lines, None, None)
            result.outcomes.append(outcome)
            if outcome.status == "failed" and stop:
                break
        return result


@dataclass(frozen=True)
class Registered:
    """A step registered under a name and a priority: ``func`` is called with the run's context."""

    name: str
    priority: int
    func: Callable
    doc: str


class StepRegistry:
    """Named steps with priorities, run in (priority, name) order like e-smith's ``event_actions``, so a
    module adds its steps where they belong without a central list to edit."""

    def __init__(self, what: str = "step"):
        self.what = what
        self.steps: dict[str, Registered] = {}

    def register(self, name: str, priority: int):
        def add(func):
            if name in self.steps:
                raise ValueError(f"{self.what} {name} registered twice")
            self.steps[name] = Registered(name, priority, func, (func.__doc__ or "").strip().split("\n")[0])
            return func

        return add

    def ordered(self) -> list[Registered]:
        return sorted(self.steps.values(), key=lambda a: (a.priority, a.name))

    def plan(self, title: str, context, *, only: list[str] | None = None, dry_run: bool = False,
             **plan_args) -> Plan:
        """The registered steps (those named in ``only``, when given) as a plan over ``context``.  Each one
        finds its own earlier work, so it runs on every rerun; in a dry run it runs with the context's
        writes left out."""
        return Plan(title, [Step(r.name, r.doc, apply=lambda r=r: r.func(context), dry=dry_run)
                            for r in self.ordered() if not only or r.name in only], **plan_args)


def backup_file(path: str | os.PathLike) -> Path | None:
    """Keep the first original of ``path`` beside it before it is overwritten; later calls keep it."""
    p = Path(path)
    if not p.exists() and not p.is_symlink():
        return None
    b = p.with_name(p.name + BACKUP_SUFFIX)
    if b.exists() or b.is_symlink():
        return b
    if p.is_symlink():
        os.symlink(os.readlink(p), b)
    elif p.is_dir():
        shutil.copytree(p, b, symlinks=True)
    else:
        shutil.copy2(p, b)
    return b


def write_atomic(path: str | os.PathLike, data: bytes, *, mode: int | None = None) -> None:
    """Write through a temporary file in the same directory and rename, so a crash leaves the old file
    or the new one, never half of either."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if mode is None and p.exists():
        mode = p.stat().st_mode & 0o7777
    replace_file(p, data, mode, suffix=".mm-tmp")
