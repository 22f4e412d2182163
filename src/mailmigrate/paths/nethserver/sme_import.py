"""The SME Server / NethService -> NethServer import: one ``migration-import`` event over a backup.

``run_import(archive_or_dir, root)`` unpacks the archive (once) under the target root, then runs every
registered migrate action in priority order.  An action that fails is logged as an ERROR and the event
goes on with the next one, as e-smith events do; the result carries the log so the caller can print the
summary of every ERROR and WARNING instead of sending the administrator to grep a log file.  Running the
event again changes nothing that is already migrated.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path

from ...errors import MailmigrateError
from . import sme_accounts, sme_config, sme_files, sme_services  # noqa: F401  (they register their actions)
from .eventlog import EventLog
from .layout import NethServerTree, open_sme_source, skipped_links
from .registry import Context, ordered

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
    ran = []
    for act in ordered():
        if only and act.name not in only:
            continue
        log.info(act.name, "start: " + act.doc)
        try:
            act.func(ctx)
        except (MailmigrateError, OSError, ValueError) as e:
            log.error(act.name, f"action failed: {e}")
        except Exception as e:  # an action's bug must not stop the others; the log keeps the trace
            log.error(act.name, f"action failed unexpectedly: {type(e).__name__}: {e}")
            log.info(act.name, traceback.format_exc().replace("\n", " | "))
        ran.append(act.name)
    for cmd in sme_services.pending_events(ctx):
        # NethServer's actions apply what they wrote through these events; here they are the host's to run
        log.warning(EVENT, f"pending on the NethServer host: {cmd}")
    return ImportResult(log, ran)
