"""Before a target message is deleted: is it still the copy mailmigrate made?

Why: a state row says "source message S was copied to target key K in folder F".  Between the copy and a
``--delete`` or an abort the target can change under it: a user deletes and re-creates the folder (a new
UIDVALIDITY, and UIDs counted from 1 again), a server is restored, a state is stale.  Then K names someone
else's mail, and trusting the row deletes it.  So every delete is checked against the target as it is now:
the folder's UIDVALIDITY must be the one the keys belong to, and the message at K must have the bytes the
row recorded (SHA-256 exact, or normalised, as recovery matches).  Anything that does not match stays,
and the caller reports it.

And how much may go at once: :func:`guard_refusal` is the emptied-source guard.  A source folder that lists
no messages while the state holds copies of them, or that lost more than a set share since the last run, is
more often a broken index, a wrong mount or a server glitch than a user's cleaning; deleting then would
empty the target.  Such deletes are withheld (the run says so and fails) unless ``--force-delete``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import FolderPath
from ..stores.base import Store
from .matching import fingerprints
from .state import DONE, MessageRow

#: the share rule applies only from this many copies on: a few messages deleted from a small folder are a
#: user's work, and a folder emptied entirely is caught by the "lists no messages" rule whatever its size
GUARD_MIN_COPIES = 10


@dataclass
class Checked:
    """Rows sorted by what the target holds at their key now."""

    matching: list[MessageRow] = field(default_factory=list)  # still mailmigrate's copy: may be deleted
    absent: list[MessageRow] = field(default_factory=list)  # gone from the target already: nothing to delete
    refused: list[tuple[MessageRow, str]] = field(default_factory=list)  # something else is there now: kept


def check_copies(target: Store, path: FolderPath, rows: list[MessageRow], validity: int | None) -> Checked:
    """Compare each row's recorded copy with the target message at its key, in one listing and one fetch.

    ``validity``: the target folder's UIDVALIDITY the rows' keys belong to (None when never recorded: then
    only content decides).
    """
    out = Checked()
    rows = [r for r in rows if r.state == DONE and r.target_key is not None]
    if not rows:
        return out
    # Only the part of the folder the keys can be in: on a large folder a --delete of a few messages must
    # not list everything.
    low = None
    if target.ordered_keys and all(r.target_key.isdigit() for r in rows):
        low = min(int(r.target_key) for r in rows)
    status, metas = target.list_messages(path, min_uid=low)
    if validity is not None and status.validity != validity:
        for r in rows:
            out.refused.append((r, f"the target folder was re-created or restored since the copy (UIDVALIDITY "
                                   f"{validity} then, {status.validity} now): target key {r.target_key} may "
                                   f"name other mail"))
        return out
    listed = {m.key: m for m in metas}
    present = [r for r in rows if r.target_key in listed]
    out.absent = [r for r in rows if r.target_key not in listed]
    hashed: dict[str, tuple[str, str | None, int]] = {}
    if present:
        for meta, body in target.fetch(path, [r.target_key for r in present]):
            try:
                hashed[meta.key] = (*fingerprints(body), body.size)
            finally:
                body.close()
    for r in present:
        got = hashed.get(r.target_key)
        if got is None:
            out.refused.append((r, f"target key {r.target_key} could not be read back to check it"))
        elif got[0] == r.fingerprint or (got[1] or got[0]) == (r.norm_fingerprint or r.fingerprint):
            out.matching.append(r)
        else:
            out.refused.append((r, f"target key {r.target_key} now holds other content ({got[2]} bytes, the "
                                   f"copy had {r.size})"))
    return out


def guard_refusal(copies: int, going: int, listed: int | None, share: float) -> str | None:
    """Why deleting ``going`` of ``copies`` copies must wait, or None.  ``listed``: messages the source
    lists now (None: not known)."""
    if going <= 0 or copies <= 0:
        return None
    if listed == 0:
        return f"the source lists no messages, but the state holds {copies} copies of its messages"
    if going >= GUARD_MIN_COPIES and going > share * copies:
        return (f"{going} of {copies} copies would be deleted, more than {share:.0%} since the last run")
    return None
