"""Which source folder goes to which target folder.

Names travel as decoded components (FolderPath), so hierarchy separators and mUTF-7 are the stores'
business.  What is decided here is *special use*: a source "Gesendete Objekte" flagged (or recognised as)
\\Sent lands in the target's own \\Sent folder, whatever the target calls it, so that the user's mail
client keeps finding sent mail after the cutover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..model import INBOX, FolderInfo, FolderPath, printable

try:  # written by the stores engineer; the engine still works (without name guessing) if absent
    from ..formats.specialuse import guess_special_use
except ImportError:  # pragma: no cover
    def guess_special_use(name: str) -> str | None:
        return None

MAPPED_ROLES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")


@dataclass(frozen=True)
class FolderPlan:
    """Where one source folder goes on the target, and whether that folder must be created first."""

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


def plan_folders(source: list[FolderInfo], target: list[FolderInfo], special_use: bool = True,
                 override: Callable[[FolderPath], tuple[bool, str | None]] | None = None) -> list[FolderPlan]:
    """``special_use=False`` (``sync --no-special-use``): every folder keeps its own name.  ``override``
    (``sync --special-use FOLDER=ROLE``) answers (given, role) for a source folder: a role given there wins
    over the server's attribute and the name, with or without ``special_use``; a role of None keeps the
    folder's own name."""
    if not special_use:
        target_role = lambda f: (None, False)  # noqa: E731
    else:
        target_role = role_of

    def role_of_(f: FolderInfo) -> tuple[str | None, bool]:
        if override is not None:
            given, role = override(f.path)
            if given:
                return (role, True) if role in MAPPED_ROLES else (None, False)
        return target_role(f)

    target_by_path = {_norm(f.path): f for f in target}
    target_by_role: dict[str, FolderInfo] = {}
    for f in target:
        role, explicit = target_role(f)
        if role and (role not in target_by_role or explicit):
            target_by_role[role] = f

    # Per role, one source folder is mapped onto the target's role folder: the one the source server
    # marks, else the first recognised by name.  A second "Sent Items" keeps its own name.
    chosen: dict[str, FolderPath] = {}
    for f in sorted(source, key=lambda f: (not role_of_(f)[1], f.path)):
        role, _ = role_of_(f)
        if role and role not in chosen:
            chosen[role] = f.path

    plans = []
    for f in source:
        if not f.selectable:
            continue
        role, _ = role_of_(f)
        target_path = INBOX if f.path and f.path[0].upper() == "INBOX" and len(f.path) == 1 else f.path
        if role and chosen.get(role) == f.path and role in target_by_role:
            target_path = target_by_role[role].path
        exists = _norm(target_path) in target_by_path
        plans.append(FolderPlan(f, target_path, role if chosen.get(role) == f.path else None, exists))
    # INBOX first, then parents before children: creating "A/B" before "A" would work on most servers but
    # the order also makes logs read naturally.
    plans.sort(key=lambda p: (p.target_path != INBOX, len(p.target_path), p.target_path))
    return plans


@dataclass(frozen=True)
class Collision:
    """A source folder that would have landed in the same target folder as another one."""

    source: FolderPath  # the folder moved to a name of its own
    kept_by: FolderPath  # the source folder that keeps the target name
    target_path: FolderPath  # where ``source`` would have landed
    new_path: FolderPath  # where it goes instead


def separate_collisions(plans: list[FolderPlan], identity: Callable[[FolderPath], object],
                        recorded: dict[FolderPath, FolderPath],
                        target: Iterable[FolderInfo] = ()) -> tuple[list[FolderPlan], list[Collision]]:
    """Give every source folder a target folder of its own, before anything is copied.

    Why: two source names can be one target name.  On a server with an ``INBOX.`` namespace (Cyrus,
    Courier) both Dovecot's ``INBOX/Projects`` and ``Projects`` are ``INBOX.Projects``; copying both there
    merges two folders for good.  ``identity`` is the target store's answer to "which folder is this path"
    (:meth:`Store.folder_identity`).

    The rule, stable across runs: a mapping the state recorded is kept as it is; then folders with fewer
    levels come first, ties in name order.  The first keeps the target name; each later one gets " (2)",
    " (3)", … after its last level (the first number whose folder no other source folder takes), and its
    children follow it.  ``recorded`` maps source paths to the target paths the state holds, so a rerun,
    or a source folder that appears later, never takes a name already given.
    """
    taken: dict[object, FolderPath] = {}
    for src_path, tgt_path in recorded.items():
        taken.setdefault(identity(tgt_path), src_path)
    existing = {identity(f.path) for f in target if f.selectable}
    moved: dict[FolderPath, tuple[FolderPath, FolderPath]] = {}  # source -> (planned target, given target)
    out: list[FolderPlan] = []
    collisions: list[Collision] = []
    for p in sorted(plans, key=lambda p: (p.source.path not in recorded, len(p.source.path), p.source.path)):
        src_path = p.source.path
        if src_path in recorded:
            tp = recorded[src_path]
            out.append(p if tp == p.target_path else
                       FolderPlan(p.source, tp, p.special_use, identity(tp) in existing))
            continue
        tp = p.target_path
        for n in range(len(src_path) - 1, 0, -1):
            parent = moved.get(src_path[:n])
            if parent and tp[:len(parent[0])] == parent[0]:
                tp = parent[1] + tp[len(parent[0]):]
                break
        key = identity(tp)
        owner = taken.get(key)
        collided = owner is not None and owner != src_path and tp != INBOX
        if collided:
            base = tp
            n = 2
            while True:
                tp = base[:-1] + (f"{base[-1]} ({n})",)
                key = identity(tp)
                if key not in taken:
                    break
                n += 1
            collisions.append(Collision(src_path, owner, base, tp))
        taken.setdefault(key, src_path)
        if tp != p.target_path:
            moved[src_path] = (p.target_path, tp)
            # A folder moved aside is not the target's folder of its role: "Sent (2)" asks for no \Sent.
            p = FolderPlan(p.source, tp, None if collided else p.special_use, key in existing)
        out.append(p)
    out.sort(key=lambda p: (p.target_path != INBOX, len(p.target_path), p.target_path))
    return out, collisions


def _norm(path: FolderPath) -> FolderPath:
    if path and path[0].upper() == "INBOX":
        return ("INBOX",) + tuple(path[1:])
    return path


def display(path: FolderPath) -> str:
    """How a folder is named in logs and reports: components joined with "/", control characters a
    server may put in a name (CR, LF, ESC) shown as escapes."""
    return printable("/".join(path))
