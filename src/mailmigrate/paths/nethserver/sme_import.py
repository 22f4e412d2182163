"""The SME Server / NethService -> NethServer import: one ``migration-import`` event over a backup.

``run_import(archive_or_dir, root)`` unpacks the archive (once) under the target root, then runs every
registered migrate action in priority order through the step runner (paths/plan.py), one import at a time
per target.  An action that fails is logged as an ERROR and the event goes on with the next one, as e-smith
events do; the result carries the log so the caller can print the summary of every ERROR and WARNING
instead of sending the administrator to grep a log file.  Running the event again changes nothing that is
already migrated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import sme_accounts, sme_config, sme_files, sme_services  # noqa: F401  (they register their actions)
from ..journal import EventLog
from .layout import NethServerTree, open_sme_source, skipped_links
from .registry import ACTIONS, Context

EVENT = "migration-import"


@dataclass
class ImportResult:
    log: EventLog
    actions: list[str]

    @property
    def ok(self) -> bool:
        return not self.log.errors


def run_import(source: str | os.PathLike, root: str | os.PathLike, *, dry_run: bool = False,
               only: list[str] | None = None) -> ImportResult:
    target = NethServerTree(Path(root))
    staging = target.root / "var/lib/migration"
    src = open_sme_source(source, staging)
    log_path = None if dry_run else target.log_dir / "mailmigrate-migration-import.log"
    log = EventLog(EVENT + (" (dry run)" if dry_run else ""), log_path)
    ctx = Context(src, target, log, dry_run=dry_run)
    for link in skipped_links(src.root):
        log.warning("unpack", f"symlink {link}: absolute or pointing out of the backup; not unpacked, not followed")
    # e-smith's events go on after a failed action, and so does this one: each action's error is its own
    plan = ACTIONS.plan(EVENT, ctx, only=only, dry_run=dry_run, keep_going=True, expected=(ValueError,),
                        lock=target.state_dir / "migration-import.lock",
                        busy=f"another {EVENT} is writing to {target.root}")
    result = plan.run(dry_run=dry_run, journal=log)
    for cmd in sme_services.pending_events(ctx):
        # NethServer's actions apply what they wrote through these events; here they are the host's to run
        log.warning(EVENT, f"pending on the NethServer host: {cmd}")
    return ImportResult(log, [o.name for o in result.outcomes])
