"""Undo a migration of one account on the target: only what mailmigrate put there, never the source.

The state says which target messages are copies mailmigrate made and which folders it created; exactly
those are removed (folders only when nothing else is left in them), each message only after the target
confirmed it is still that copy (same UIDVALIDITY, same bytes: sync.deletes), then the account's mapping is
forgotten so that a later start copies afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import MailmigrateError
from ..stores.base import Store
from .deletes import check_copies
from .folders import display
from .state import ADOPTED, StateDB

log = logging.getLogger("mailmigrate.sync")


@dataclass
class AbortResult:
    account: str
    messages_removed: int = 0
    folders_removed: list[str] = field(default_factory=list)
    folders_kept: list[str] = field(default_factory=list)  # created by us but holding other mail
    #: copies the state names that are not (or no longer provably) mailmigrate's: left, with the reason
    messages_kept: list[str] = field(default_factory=list)
    #: copies mailmigrate found on the target (adopted) instead of making them: left where they were
    adopted_kept: int = 0


def abort_account(target: Store, state: StateDB, account: str) -> AbortResult:
    res = AbortResult(account)
    folders = state.folders(account)
    created = state.created_folders(account)
    target.open()
    try:
        for f in folders:
            # Each copy is checked before it goes (sync.deletes): after a user re-created the folder, the keys
            # the state holds name the user's own new mail.
            rows = list(state.messages(f.id).values())
            # Copies found on the target rather than made (adopted) were there before mailmigrate: they stay.
            res.adopted_kept += sum(1 for r in rows if r.uid_floor == ADOPTED and r.target_key is not None)
            rows = [r for r in rows if r.uid_floor != ADOPTED]
            try:
                checked = check_copies(target, f.target_path, rows, f.target_validity)
            except MailmigrateError as e:
                res.messages_kept.append(f"folder {display(f.target_path)}: could not be checked ({e}); "
                                         f"nothing deleted there")
                continue
            for r, why in checked.refused:
                res.messages_kept.append(f"folder {display(f.target_path)}: {why}")
            if checked.matching:
                target.delete_messages(f.target_path, [r.target_key for r in checked.matching])
                res.messages_removed += len(checked.matching)
        # Deepest first, so a created parent can go once its created children are gone.
        for f in sorted(folders, key=lambda f: -len(f.target_path)):
            if f.id not in created:
                continue
            try:
                status, left = target.list_messages(f.target_path)
            except MailmigrateError:
                continue
            if left or (f.target_validity is not None and status.validity != f.target_validity):
                # Holding other mail, or no longer the folder mailmigrate made (re-created since).
                res.folders_kept.append(display(f.target_path))
                continue
            try:
                target.delete_folder(f.target_path)
                res.folders_removed.append(display(f.target_path))
            except (MailmigrateError, NotImplementedError) as e:
                log.warning("account %s: could not remove folder %s: %s", account, display(f.target_path), e)
                res.folders_kept.append(display(f.target_path))
    finally:
        target.close()
    state.forget_account(account)
    return res
