"""What one folder's sync will do, decided without touching a store or the state.

Why a value: the run and the dry run must say the same thing.  When each made its own decisions they drifted
(the dry run counted a delete for every row with a target key, and every flag difference, where the run
checked copies and filtered flags by the target's PERMANENTFLAGS).  Now both read the folder the same way
(sync/recovery.py, read-only in a dry run), hand what they read to :func:`plan_folder`, and get one
:class:`FolderWork`: the run executes it, the dry run counts it.

Inputs are what was read: the source's listing (or its changes since the last run), the state's rows for
the folder after recovery and re-matching, the target folder's PERMANENTFLAGS and the options that decide.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass, field

from ..model import MessageMeta, PermanentFlags, remembered
from .selection import Selection
from .state import DONE, MessageRow

#: a row's flags while a STORE of new flags is in flight (:func:`flag_updates`): the flags before, each as
#: "(was)FLAG", and after, each as "(now)FLAG", plus the marker; parentheses cannot occur in an IMAP flag or
#: keyword, nor in a Maildir or mbox flag, so no message's flags are ever mistaken for these
_IN_FLIGHT = "(in-flight)"


def in_flight(before: frozenset[str], after: frozenset[str]) -> frozenset[str]:
    return frozenset({_IN_FLIGHT} | {"(was)" + x for x in before} | {"(now)" + x for x in after})


def from_in_flight(recorded: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(before, after) of a row's recorded flags: the same set twice unless a STORE was in flight."""
    if _IN_FLIGHT not in recorded:
        return recorded, recorded
    return (frozenset(x[5:] for x in recorded if x.startswith("(was)")),
            frozenset(x[5:] for x in recorded if x.startswith("(now)")))


@remembered(frozenset)
def clean(flags) -> frozenset[str]:
    """A message's flags as the state records them: \\Recent is the session's, not the message's."""
    return frozenset(f for f in flags if f.lower() != "\\recent")


@dataclass
class FlagWork:
    """The source's flag changes for a folder's copies.

    ``stores``: (target key, add, remove) for each copy whose flags change on the target, after
    PERMANENTFLAGS; ``marks``: the in-flight marks written before those STOREs; ``records``: the source's
    flags for every row that differs from the source (recorded after the STOREs).
    """

    stores: list[tuple[str, frozenset[str], frozenset[str]]] = field(default_factory=list)
    marks: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    records: list[tuple[str, frozenset[str]]] = field(default_factory=list)


@dataclass
class FolderWork:
    """One folder's work.  Counts a report shows come from here, for the run and the dry run alike."""

    copy: list[MessageMeta]  # to copy, in the source's order
    too_large: list[MessageMeta]  # larger than the target takes: reported, not sent
    ruled: int  # left out by the user's message rules
    flags: FlagWork
    gone: list[MessageRow]  # rows whose source message left: dropped (with --delete, once their copies go)
    going: int  # copies of ``gone`` mailmigrate made: what --delete removes, each checked first
    withheld: str | None  # why the emptied-source guard keeps those copies this run, or None
    skipped: int  # source messages with nothing to do

    @property
    def deletes(self) -> bool:
        """Whether the gone rows' copies are to be deleted now."""
        return bool(self.gone) and self.withheld is None

    @property
    def left_out(self) -> int:
        """Messages not copied for a reason that may pass (a rule, a size limit): the folder is looked at
        in full again next run."""
        return self.ruled + len(self.too_large)


def new_messages(metas: Iterable[MessageMeta], rows: Container[str]) -> list[MessageMeta]:
    """Source messages no row claims: a message is copied because the state has no row for its key, never
    because a header differs."""
    return [m for m in metas if m.key not in rows]


def flags_differ(metas: Iterable[MessageMeta], rows: dict[str, MessageRow]) -> bool:
    """Whether any copy's flags may change: a dry run asks the target's PERMANENTFLAGS only then (on IMAP
    that takes a read-write SELECT, which a dry run spares a folder it has nothing to change in)."""
    for m in metas:
        row = rows.get(m.key)
        if row is not None and row.state == DONE and clean(m.flags) != row.source_flags:
            return True
    return False


def flag_updates(metas: Iterable[MessageMeta], rows: dict[str, MessageRow], perm: PermanentFlags) -> FlagWork:
    """The source's flag changes onto the copies, as additions and removals relative to the flags the state
    recorded (so what a user changed on the target alone stays).

    A run killed between the STORE and recording its result would leave the state with the old flags and
    the copy with the new ones; if the source then changed back, nothing would differ from the state and
    the copy would keep the flags for good.  So each row is first marked in flight with both sets
    (:func:`in_flight`): the next run, not knowing which of the two the copy holds, adds what the source
    has beyond either and removes what either had beyond the source, which is right for both."""
    out = FlagWork()
    for m in metas:
        row = rows.get(m.key)
        if row is None or row.state != DONE:
            continue
        flags = clean(m.flags)
        if flags == row.source_flags:
            continue
        before, after = from_in_flight(row.source_flags)
        add, _ = perm.filter((flags - before) | (flags - after))
        remove, _ = perm.filter((before - flags) | (after - flags))
        if row.target_key is not None and (add or remove):
            out.stores.append((row.target_key, add, remove))
            # the copy may hold ``before``, ``after`` (a run killed earlier) or ``flags``: two sets whose
            # intersection and union are those of all three keep the next run's change right for each
            out.marks.append((m.key, in_flight((before & after) | ((before | after) - flags), flags)))
        out.records.append((m.key, flags))
    return out


def plan_folder(metas: list[MessageMeta], rows: dict[str, MessageRow], *, source_count: int | None,
                perm: PermanentFlags, vanished: Container[str] | None = None,
                selection: Selection | None = None, matched: Container[str] | None = None,
                size_limit: int | None = None, delete: bool = False, force_delete: bool = False,
                delete_guard: float = 0.5, withheld: str | None = None) -> FolderWork:
    """The work for one folder.

    ``metas``: the source's listing, or what changed since the last run (then ``vanished`` says which keys
    left and ``source_count`` is the folder's count; otherwise every row not listed is gone).  ``rows``: the
    state's rows after recovery and re-matching.  ``matched``: the keys the source's SEARCH matched, when
    the selection has ``--search``.  ``withheld``: the account-wide guard's reason to keep every copy.
    """
    sel = selection or Selection()
    new = new_messages(metas, rows)
    ruled = 0
    if sel.has_message_rules:
        # Left out by a rule: counted as such, never failed; and still listed, so the rows of its earlier
        # copies are not "gone" and --delete leaves them alone.
        wanted = [m for m in new if sel.wants_message(m)]
        if sel.search is not None and wanted:
            wanted = [m for m in wanted if m.key in (matched or ())]
        ruled = len(new) - len(wanted)
        new = wanted
    too_large = []
    if size_limit:
        too_large = [m for m in new if m.size is not None and m.size > size_limit]
        if too_large:
            new = [m for m in new if m.size is None or m.size <= size_limit]
    if vanished is not None:
        gone = [r for k, r in rows.items() if k in vanished]
    else:
        listed = {m.key for m in metas}
        gone = [r for k, r in rows.items() if k not in listed]
    going = 0
    why = None
    if not delete:
        gone = []
    elif gone:
        from .deletes import guard_refusal  # here, where a run deletes: a copy or rerun need not load it

        going = sum(1 for r in gone if r.state == DONE and r.target_key is not None)
        copies = sum(1 for r in rows.values() if r.state == DONE and r.target_key is not None)
        why = withheld or (None if force_delete else guard_refusal(copies, going, source_count, delete_guard))
    return FolderWork(
        copy=new, too_large=too_large, ruled=ruled, flags=flag_updates(metas, rows, perm), gone=gone,
        going=going, withheld=why, skipped=max(0, (source_count or 0) - len(new) - ruled - len(too_large)),
    )
