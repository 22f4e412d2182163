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

from collections import Counter

from ..model import FolderInfo
from .selection import Selection
from .state import DONE, MessageRow, StateDB

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
