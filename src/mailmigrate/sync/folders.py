"""Which source folder goes to which target folder.

Names travel as decoded components (FolderPath), so hierarchy separators and mUTF-7 are the stores'
business.  What is decided here is *special use*: a source "Gesendete Objekte" flagged (or recognised as)
\\Sent lands in the target's own \\Sent folder, whatever the target calls it, so that the user's mail
client keeps finding sent mail after the cutover.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import INBOX, FolderInfo, FolderPath

try:  # written by the stores engineer; the engine still works (without name guessing) if absent
    from ..formats.specialuse import guess_special_use
except ImportError:  # pragma: no cover
    def guess_special_use(name: str) -> str | None:
        return None

MAPPED_ROLES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")


@dataclass(frozen=True)
class FolderPlan:
    source: FolderInfo
    target_path: FolderPath
    special_use: str | None  # the role to ask for when the target folder has to be created
    exists_on_target: bool


def role_of(info: FolderInfo) -> tuple[str | None, bool]:
    """(role, explicit): the store's own attribute wins over a guess from the name."""
    if info.special_use in MAPPED_ROLES:
        return info.special_use, True
    if info.path == INBOX or not info.path:
        return None, False
    # Only top-level folders or direct children of INBOX are candidates: "Projects/Sent" is a project.
    if len(info.path) == 1 or (len(info.path) == 2 and info.path[0].upper() == "INBOX"):
        return guess_special_use(info.path[-1]), False
    return None, False


def plan_folders(source: list[FolderInfo], target: list[FolderInfo]) -> list[FolderPlan]:
    target_by_path = {_norm(f.path): f for f in target}
    target_by_role: dict[str, FolderInfo] = {}
    for f in target:
        role, explicit = role_of(f)
        if role and (role not in target_by_role or explicit):
            target_by_role[role] = f

    # Per role, one source folder is mapped onto the target's role folder: the one the source server
    # marks, else the first recognised by name.  A second "Sent Items" keeps its own name.
    chosen: dict[str, FolderPath] = {}
    for f in sorted(source, key=lambda f: (not role_of(f)[1], f.path)):
        role, _ = role_of(f)
        if role and role not in chosen:
            chosen[role] = f.path

    plans = []
    for f in source:
        if not f.selectable:
            continue
        role, _ = role_of(f)
        target_path = INBOX if f.path and f.path[0].upper() == "INBOX" and len(f.path) == 1 else f.path
        if role and chosen.get(role) == f.path and role in target_by_role:
            target_path = target_by_role[role].path
        exists = _norm(target_path) in target_by_path
        plans.append(FolderPlan(f, target_path, role if chosen.get(role) == f.path else None, exists))
    # INBOX first, then parents before children: creating "A/B" before "A" would work on most servers but
    # the order also makes logs read naturally.
    plans.sort(key=lambda p: (p.target_path != INBOX, len(p.target_path), p.target_path))
    return plans


def _norm(path: FolderPath) -> FolderPath:
    if path and path[0].upper() == "INBOX":
        return ("INBOX",) + tuple(path[1:])
    return path


def display(path: FolderPath) -> str:
    """How a folder is named in logs and reports: components joined with "/"."""
    return "/".join(path)
