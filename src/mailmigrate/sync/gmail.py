"""Gmail as a source: labels are folders, and ``[Gmail]/All Mail`` holds every message once more.

On Gmail a message with two labels is listed in both label folders and in All Mail; a message the user
archived has no label left and is listed *only* in All Mail.  Copying All Mail like any folder doubles
every labelled message on the target; leaving it out (what most tools advise) loses the archive.

So with ``?preset=gmail`` on the source (``--gmail-all-mail=dedupe``, the default): All Mail is synced
after every other folder of the account, and a message in it whose fingerprint (SHA-256 of the exact
bytes, as the engine records for every copy) was already copied from another folder of the same account,
in this run or an earlier one, is not copied again: its row in the state says so (:data:`IN_LABEL`).  What
is left is the archive, and it goes to the target's Archive folder.  The copy is counted per folder, so two
identical messages (twins) in a label are matched by two in All Mail, not one.

When a labelled message later loses its last label (archived after the first run) and ``--delete`` removes
its copy from the label's target folder, the All Mail rows that leaned on that copy are let go
(:func:`orphaned`) and the next look at All Mail copies the message into the archive.

``[Gmail]/Important`` and ``[Gmail]/Starred`` are views too (\\Important, \\Flagged): not copied, since the
\\Flagged flag already travels with each message.  ``--gmail-all-mail=copy`` copies everything as plain
folders (the raw behaviour); ``skip`` leaves All Mail out (and the archive with it).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable

from ..model import FolderInfo, FolderPath, MessageMeta
from .folders import FolderPlan, display
from .matching import fingerprints
from .selection import Selection
from .state import DONE, FolderState, MessageRow, StateDB

log = logging.getLogger("mailmigrate.sync")

#: the uid_floor of a DONE row for an All Mail message that was not copied because a label folder's copy of
#: it exists (like ADOPTED, below any real floor, so it cannot be mistaken); its target_key is NULL
IN_LABEL = -2

ALL = "\\All"


def role(sel: Selection, info: FolderInfo) -> str | None:
    """The folder's role as the source says it, or as ``--special-use`` overrides it."""
    given, r = sel.role_override(info.path)
    return r if given else info.special_use


def left_out(sel: Selection, info: FolderInfo, virtual_roles: tuple[str, ...]) -> str | None:
    """Why a Gmail source folder is not copied at all, or None when it is."""
    if sel.gmail_all_mail == "copy":
        return None
    r = role(sel, info)
    if r in virtual_roles:
        return f"a Gmail view ({r}) of messages in other folders; its flag travels with each message"
    if r == ALL and sel.gmail_all_mail == "skip":
        return "Gmail's All Mail, left out by --gmail-all-mail=skip (archived mail is not copied)"
    return None


def is_all_mail(sel: Selection, info: FolderInfo) -> bool:
    """The folder to deduplicate against the labels (only with --gmail-all-mail=dedupe)."""
    return sel.gmail_all_mail == "dedupe" and role(sel, info) == ALL


def label_copies(state: StateDB, account: str, all_mail_id: int) -> tuple[Counter, set[int]]:
    """How many copies of each fingerprint the account's other folders hold (the most any one folder
    holds: a message in INBOX and a label is one message), and their sizes for a cheap first filter."""
    best: Counter = Counter()
    sizes: set[int] = set()
    for f in state.folders(account):
        if f.id == all_mail_id:
            continue
        here = Counter()
        for r in state.messages(f.id).values():
            if r.state == DONE and r.uid_floor != IN_LABEL:
                here[r.fingerprint] += 1
                sizes.add(r.size)
        for fp, n in here.items():
            if n > best[fp]:
                best[fp] = n
    return best, sizes


def in_label_rows(rows: dict[str, MessageRow]) -> list[MessageRow]:
    return [r for r in rows.values() if r.state == DONE and r.uid_floor == IN_LABEL]


def orphaned(rows: dict[str, MessageRow], available: Counter) -> list[str]:
    """Source keys of All Mail rows no label copy stands for any more: their messages must be copied."""
    by_fp: dict[str, list[str]] = {}
    for r in in_label_rows(rows):
        by_fp.setdefault(r.fingerprint, []).append(r.source_key)
    out = []
    for fp, keys in by_fp.items():
        extra = len(keys) - available.get(fp, 0)
        if extra > 0:
            out += sorted(keys)[:extra]
    return out


# --- what the engine asks (sync/engine.py) ------------------------------------------------------------
def copied_folders(folders: list[FolderInfo], sel: Selection, virtual_roles: tuple[str, ...],
                   account: str) -> list[FolderInfo]:
    """A Gmail source's folders without its views (Important, Starred; All Mail with
    --gmail-all-mail=skip), each said once in the log."""
    out = []
    for f in folders:
        why = left_out(sel, f, virtual_roles)
        if why is None:
            out.append(f)
        else:
            log.info("account %s: folder %s not copied: %s", account, display(f.path), why)
    return out


def archive_plans(plans: list[FolderPlan], target: list[FolderInfo], sel: Selection,
                  identity: Callable[[FolderPath], object]) -> list[FolderPlan]:
    """All Mail, deduplicated, holds the archive: it goes to the target's \\Archive folder, or to a new
    "Archive" when the target has none (--map or --rename, applied later, still choose another name)."""
    out = []
    for p in plans:
        if not is_all_mail(sel, p.source):
            out.append(p)
            continue
        archive = next((f for f in target if f.selectable and f.special_use == "\\Archive"), None)
        path = archive.path if archive is not None else ("Archive",)
        exists = archive is not None or any(identity(f.path) == identity(path) for f in target if f.selectable)
        out.append(FolderPlan(p.source, path, None if archive is not None else "\\Archive", exists))
    return out


def not_into_views(plans: list[FolderPlan], target: list[FolderInfo], virtual_roles: tuple[str, ...],
                   identity: Callable[[FolderPath], object]) -> tuple[list[FolderPlan], list[FolderPlan]]:
    """(kept, dropped): a Gmail target's All Mail, Important and Starred are views of its labels, not
    folders to copy into (a message appended to a label shows in All Mail by itself)."""
    views = {identity(f.path) for f in target if f.special_use in (ALL,) + virtual_roles}
    kept = [p for p in plans if identity(p.target_path) not in views]
    return kept, [p for p in plans if identity(p.target_path) in views]


def release_orphans(state: StateDB, account: str, f: FolderState) -> int:
    """Drop the All Mail rows whose label copy is gone (deleted by --delete after the message lost its
    last label), so that the run copies those messages into the archive; how many."""
    rows = state.messages(f.id)
    if not in_label_rows(rows):
        return 0
    available, _ = label_copies(state, account, f.id)
    keys = orphaned(rows, available)
    if keys:
        state.drop(f.id, keys)
        state.forget_change_marks(f.id)
        log.info("account %s, folder %s: %d messages lost their last label copy; copying them to the archive",
                 account, display(f.source_path), len(keys))
    return len(keys)


def skip_in_label(state: StateDB, account: str, f: FolderState, source, src_path: FolderPath,
                  new: list[MessageMeta]) -> list[MessageMeta]:
    """``new`` without the All Mail messages a label folder's copy stands for, which are recorded
    (IN_LABEL rows, no copy).  Only messages of a size some label copy has are read to compare."""
    available, sizes = label_copies(state, account, f.id)
    for r in in_label_rows(state.messages(f.id)):
        available[r.fingerprint] -= 1
    cands = [m for m in new if m.size is None or m.size in sizes]
    if not cands:
        return new
    by_key = {m.key: m for m in new}
    found: list[MessageRow] = []
    for meta, body in source.fetch(src_path, [m.key for m in cands]):
        try:
            fp, nfp = fingerprints(body)
            size = body.size
        finally:
            body.close()
        if available.get(fp, 0) > 0 and meta.key in by_key:
            available[fp] -= 1
            flags = frozenset(x for x in by_key[meta.key].flags if x.lower() != "\\recent")
            found.append(MessageRow(meta.key, fp, nfp, size, flags, None, DONE, IN_LABEL))
    source.fetch_problems()  # an unreadable message is reported when its copy is tried
    state.adopt(f.id, found, mark=IN_LABEL)
    done = {r.source_key for r in found}
    return [m for m in new if m.key not in done]
