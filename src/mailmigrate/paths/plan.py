"""Ordered, idempotent steps: shown as a dry run, then applied, logged, and safe to rerun.

The seeds describe procedures as shell commands run once by hand.  Here each command becomes a
:class:`Step` that can say *exactly* what it would change before changing anything (``changes()``), and
that can tell from the system itself whether it has already been done (``done()``).  A rerun after an
interruption therefore skips the finished steps and continues with the first unfinished one; nothing is
kept in a side state file that could disagree with the system.

Every step outcome is appended to a run log (one line each, with a timestamp), and a step that overwrites
a file calls :func:`backup_file` first, which keeps the *first* original so a rerun never replaces the
real original with an already migrated copy.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import MailmigrateError
from ..formats.atomic import replace_file

log = logging.getLogger("mailmigrate.plan")

BACKUP_SUFFIX = ".mailmigrate-orig"


@dataclass
class Step:
    """One unit of work.

    ``changes`` lists, one line each, what applying would change *now*; an empty list means there is
    nothing to do.  ``done`` defaults to "no changes left", which is the right test for any step whose
    changes are computed from the current state of the system.
    """

    name: str
    description: str
    changes: Callable[[], list[str]]
    apply: Callable[[], list[str] | None]
    done: Callable[[], bool] | None = None

    def is_done(self) -> bool:
        if self.done is not None:
            return self.done()
        return not self.changes()


@dataclass
class StepOutcome:
    name: str
    status: str  # "done" (already), "applied", "planned" (dry run), "after" (dry run, see Plan.run), "failed"
    lines: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PlanResult:
    title: str
    outcomes: list[StepOutcome] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(o.status != "failed" for o in self.outcomes)

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


class RunLog:
    """Append-only text log of what a plan did; the file is the record an administrator reads later."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = Path(path) if path else None

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


class Plan:
    def __init__(self, title: str, steps: list[Step] | None = None):
        self.title = title
        self.steps: list[Step] = list(steps or [])

    def add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    def run(self, *, dry_run: bool, log_path: str | os.PathLike | None = None,
            stop_on_failure: bool = True) -> PlanResult:
        """Dry run: every step's pending changes; otherwise apply the unfinished steps in order.

        A failed step stops the plan (later steps usually depend on earlier ones); its error is
        reported and logged, and the same command run again resumes with it.
        """
        runlog = RunLog(None if dry_run else log_path)
        result = PlanResult(self.title, dry_run=dry_run)
        pending = False  # a dry run has shown a step that would change something
        for step in self.steps:
            try:
                if dry_run and pending:
                    # A later step judges itself by the system as it is now, before the earlier steps ran:
                    # "nothing to change" then means "nothing yet", not "already done".
                    changes = step.changes()
                    result.outcomes.append(StepOutcome(step.name, "planned" if changes else "after", changes))
                    continue
                if step.is_done():
                    result.outcomes.append(StepOutcome(step.name, "done"))
                    runlog.write(self.title, step.name, "already done")
                    continue
                if dry_run:
                    result.outcomes.append(StepOutcome(step.name, "planned", step.changes()))
                    pending = True
                    continue
                planned = step.changes()
                extra = step.apply() or []
                result.outcomes.append(StepOutcome(step.name, "applied", planned + list(extra)))
                runlog.write(self.title, step.name, "applied", planned + list(extra))
            except (MailmigrateError, OSError) as e:
                result.outcomes.append(StepOutcome(step.name, "failed", error=str(e)))
                runlog.write(self.title, step.name, "FAILED", [str(e)])
                if stop_on_failure:
                    break
        return result


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
