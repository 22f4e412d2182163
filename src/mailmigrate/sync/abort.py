"""Undo a migration of one account on the target: only what mailmigrate put there, never the source.

The state says which target messages are copies mailmigrate made and which folders it created; exactly
those are removed (folders only when nothing else is left in them), then the account's mapping is
forgotten so that a later start copies afresh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..errors import MailmigrateError
from ..stores.base import Store
from .folders import display
from .state import StateDB

log = logging.getLogger("mailmigrate.sync")


@dataclass
class AbortResult:
    account: str
    messages_removed: int = 0
    folders_removed: list[str] = field(default_factory=list)
    folders_kept: list[str] = field(default_factory=list)  # created by us but holding other mail


def abort_account(target: Store, state: StateDB, account: str) -> AbortResult:
    res = AbortResult(account)
    folders = state.folders(account)
    created = state.created_folders(account)
    target.open()
    try:
        for f in folders:
            keys = [r.target_key for r in state.messages(f.id).values() if r.target_key is not None]
            if keys:
                target.delete_messages(f.target_path, keys)
                res.messages_removed += len(keys)
        # Deepest first, so a created parent can go once its created children are gone.
        for f in sorted(folders, key=lambda f: -len(f.target_path)):
            if f.id not in created:
                continue
            try:
                _, left = target.list_messages(f.target_path)
            except MailmigrateError:
                continue
            if left:
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
