"""Proof that nothing was lost: every source message has a copy on the target, checked against both stores.

Counting messages on both sides is not proof (a duplicate hides a loss), so verification goes message by
message: each source message must have a DONE row in the state whose target key is present on the target
with the same size.  Target messages that no row claims (mail delivered to the new server, or written by
the user) are counted separately and never called errors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..errors import MailmigrateError
from ..model import FolderPath
from ..stores import presets
from ..stores.base import Store
from . import gmail
from .folders import display
from .selection import Selection
from .state import DONE, StateDB


@dataclass
class FolderCheck:
    source: str
    target: str
    source_messages: int = 0
    source_bytes: int = 0
    target_messages: int = 0  # copies of source messages found on the target
    target_bytes: int = 0
    target_other: int = 0  # target messages mailmigrate did not put there
    missing: list[str] = field(default_factory=list)  # source keys without a verified copy
    size_mismatch: list[str] = field(default_factory=list)
    error: str | None = None
    skipped_by_rule: int = 0  # source messages the run's rules leave out: not checked, not missing
    #: larger than the target's message size limit (a provider preset): never sent, so not missing
    skipped_too_large: int = 0
    #: Gmail All Mail messages whose copy is the one of a label folder (sync.gmail), checked there
    in_label: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.size_mismatch


@dataclass
class AccountCheck:
    account: str
    folders: list[FolderCheck] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.ok for f in self.folders)

    def totals(self) -> dict:
        keys = ("source_messages", "source_bytes", "target_messages", "target_bytes", "target_other",
                "skipped_by_rule", "skipped_too_large", "in_label")
        t = {k: sum(getattr(f, k) for f in self.folders) for k in keys}
        t["missing"] = sum(len(f.missing) for f in self.folders)
        return t

    def as_dict(self) -> dict:
        return {"account": self.account, "ok": self.ok, "error": self.error, "totals": self.totals(),
                "folders": [{**asdict(f), "ok": f.ok} for f in self.folders]}


def verify_account(source: Store, target: Store, state: StateDB, account: str,
                   selection: Selection | None = None) -> AccountCheck:
    """``selection``: the rules the copies were made under; what they leave out is not missing."""
    selection = selection or Selection()
    check = AccountCheck(account)
    try:
        source.open()
        target.open()
    except MailmigrateError as e:
        check.error = str(e)
        return check
    try:
        mapped = {f.source_path: f for f in state.folders(account)}
        preset = presets.get(getattr(source, "preset", None))
        views = preset.virtual_roles if preset is not None and preset.name == "gmail" else None
        for info in source.list_folders():
            if not info.selectable or not selection.wants_folder(info.path):
                continue
            if views is not None and gmail.left_out(selection, info, views):
                continue  # a Gmail view the sync does not copy (sync.gmail)
            f = mapped.get(info.path)
            check.folders.append(_verify_folder(source, target, state, info.path, f, selection))
    except MailmigrateError as e:
        check.error = str(e)
    finally:
        source.close()
        target.close()
    return check


def _verify_folder(source: Store, target: Store, state: StateDB, path: FolderPath, f,
                   selection: Selection) -> FolderCheck:
    fc = FolderCheck(display(path), display(f.target_path) if f else "(not mapped)")
    try:
        _, smetas = source.list_messages(path)
    except MailmigrateError as e:
        fc.error = f"source: {e}"
        return fc
    if selection.has_message_rules:
        rows_ = state.messages(f.id) if f is not None else {}
        # a message a rule leaves out is not missing, unless it was copied before (then it is checked)
        found = (source.search_uids(path, selection.search)
                 if selection.search is not None and source.searches else None)
        kept = [m for m in smetas if m.key in rows_ or (selection.wants_message(m)
                                                        and (found is None or m.key in found))]
        fc.skipped_by_rule = len(smetas) - len(kept)
        smetas = kept
    fc.source_messages = len(smetas)
    fc.source_bytes = sum(m.size or 0 for m in smetas)
    if f is None:
        fc.missing = [m.key for m in smetas]
        return fc
    rows = state.messages(f.id)
    try:
        _, tmetas = target.list_messages(f.target_path)
    except MailmigrateError as e:
        fc.error = f"target: {e}"
        return fc
    tsize = {m.key: m.size for m in tmetas}
    limit = getattr(target, "max_message_size", None)
    for m in smetas:
        r = rows.get(m.key)
        if r is not None and r.state == DONE and r.uid_floor == gmail.IN_LABEL:
            fc.in_label += 1
            continue
        if r is None and limit and m.size is not None and m.size > limit:
            fc.skipped_too_large += 1
            continue
        if r is None or r.state != DONE or r.target_key is None or r.target_key not in tsize:
            fc.missing.append(m.key)
            continue
        size = tsize[r.target_key]
        fc.target_messages += 1
        fc.target_bytes += size or 0
        if size is not None and size != r.size and not r.norm_fingerprint:
            fc.size_mismatch.append(m.key)
    owned = {r.target_key for r in rows.values() if r.target_key is not None}
    fc.target_other = sum(1 for k in tsize if k not in owned)
    return fc
