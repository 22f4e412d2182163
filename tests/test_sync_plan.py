"""The planner (sync/plan.py) on its own: what one folder's run will do, from a listing and the state's rows.

These are the decisions the run and the dry run share; tests/test_dry_run_counts.py checks that both count
them alike, these check the decisions themselves where a user sees them.
"""

from __future__ import annotations

from mailmigrate.model import MessageMeta, PermanentFlags
from mailmigrate.sync.plan import from_in_flight, plan_folder
from mailmigrate.sync.selection import Selection
from mailmigrate.sync.state import DONE, PENDING, MessageRow


def meta(key: str, flags=(), size: int = 10) -> MessageMeta:
    return MessageMeta(key, frozenset(flags), None, size)


def row(key: str, flags=(), state: int = DONE) -> MessageRow:
    return MessageRow(key, "fp" + key, None, 10, frozenset(flags), "t" + key, state, None)


def test_a_message_is_copied_because_no_row_has_its_key():
    work = plan_folder([meta("1"), meta("2"), meta("3")], {"2": row("2")}, source_count=3, perm=PermanentFlags())
    assert [m.key for m in work.copy] == ["1", "3"]
    assert work.skipped == 1


def test_a_flag_the_target_cannot_keep_is_no_flag_update():
    """A keyword on a target folder without ``\\*`` in PERMANENTFLAGS: recorded, but no STORE is counted
    or sent (the dry run once counted it)."""
    rows = {"1": row("1"), "2": row("2")}
    metas = [meta("1", ["$Label1"]), meta("2", ["\\Seen", "$Label1"])]
    work = plan_folder(metas, rows, source_count=2, perm=PermanentFlags(any_keyword=False))
    assert work.flags.stores == [("t2", frozenset({"\\Seen"}), frozenset())]
    assert work.flags.records == [("1", frozenset({"$Label1"})), ("2", frozenset({"\\Seen", "$Label1"}))]
    # the copy being changed is marked in flight with the flags before and after, before its STORE
    ((key, mark),) = work.flags.marks
    assert key == "2" and from_in_flight(mark) == (frozenset(), frozenset({"\\Seen", "$Label1"}))


def test_a_pending_row_is_neither_updated_nor_copied_again():
    """Recovery settles PENDING rows before the plan; one still pending is not the planner's to touch."""
    work = plan_folder([meta("1", ["\\Seen"])], {"1": row("1", state=PENDING)}, source_count=1,
                       perm=PermanentFlags())
    assert work.copy == [] and work.flags.records == []


def test_deletes_only_with_delete_and_only_copies_mailmigrate_made():
    rows = {"1": row("1"), "2": row("2"),
            "3": MessageRow("3", "fp3", None, 10, frozenset(), None, DONE, None)}  # copied, no key known
    metas = [meta("1")]
    assert plan_folder(metas, rows, source_count=1, perm=PermanentFlags()).gone == []
    work = plan_folder(metas, rows, source_count=1, perm=PermanentFlags(), delete=True)
    assert sorted(r.source_key for r in work.gone) == ["2", "3"]
    assert work.going == 1 and work.deletes and work.withheld is None


def test_the_emptied_source_guard_withholds_and_force_delete_passes_it():
    rows = {str(i): row(str(i)) for i in range(20)}
    metas = [meta(str(i)) for i in range(5)]  # 15 of 20 copies would go
    work = plan_folder(metas, rows, source_count=5, perm=PermanentFlags(), delete=True)
    assert work.going == 15 and not work.deletes and "15 of 20 copies" in work.withheld
    forced = plan_folder(metas, rows, source_count=5, perm=PermanentFlags(), delete=True, force_delete=True)
    assert forced.deletes and forced.withheld is None
    # the account's guard wins, whatever the folder's share
    held = plan_folder(metas, rows, source_count=5, perm=PermanentFlags(), delete=True, force_delete=True,
                       withheld="the account's source looks emptied")
    assert held.withheld == "the account's source looks emptied"


def test_changes_since_the_last_run_name_what_left():
    """From a change log: only what moved is listed, and ``vanished`` says which keys left."""
    rows = {"1": row("1"), "2": row("2"), "3": row("3")}
    work = plan_folder([meta("4")], rows, source_count=3, perm=PermanentFlags(), vanished={"2", "99"},
                       delete=True, force_delete=True)
    assert [m.key for m in work.copy] == ["4"]
    assert [r.source_key for r in work.gone] == ["2"]


def test_rules_and_the_size_limit_leave_messages_out_and_say_so():
    metas = [meta("1", size=10), meta("2", size=5000), meta("3", size=100), meta("4", size=10)]
    work = plan_folder(metas, {}, source_count=4, perm=PermanentFlags(), selection=Selection(max_size=1000),
                       size_limit=50)
    assert work.ruled == 1  # 2: over --max-size
    assert [m.key for m in work.too_large] == ["3"]  # over the target's limit
    assert [m.key for m in work.copy] == ["1", "4"]
    assert work.left_out == 2 and work.skipped == 0
    # --search: what the source's SEARCH did not match is left out too
    searched = plan_folder(metas, {}, source_count=4, perm=PermanentFlags(),
                           selection=Selection(search="SINCE 1-Jan-2024"), matched={"1"})
    assert [m.key for m in searched.copy] == ["1"] and searched.ruled == 3
