"""formats.ical reads the UID, kind and components of items without rewriting them; never crashes."""

from hypothesis import given, settings, strategies as st

from groupware_items import calendar_items, contact_items
from mailmigrate.formats.ical import item_info, unfold


def test_uids_kinds_components_of_the_hostile_set():
    items = calendar_items()
    w = items["work"]
    assert item_info(w["weekly.ics"]).uid == "weekly-1@example.org"  # not the VTIMEZONE's, and overrides share it
    assert item_info(w["weekly.ics"]).components == ("VEVENT",)
    assert item_info(w["unicode.ics"]).uid == "ümlaut-日本@example.org"
    assert item_info(items["tasks"]["task.ics"]).components == ("VTODO",)
    c = item_info(contact_items()["contacts"]["ann.vcf"])
    assert (c.kind, c.uid, c.extension) == ("addressbook", "ann-uid", ".vcf")


def test_folded_uid_lf_endings_bom_and_quoted_colons():
    data = (b"\xef\xbb\xbfBEGIN:VCALENDAR\nBEGIN:VEVENT\nX-A;P=\"a:b\":c\nUID:abc\n def\nEND:VEVENT\nEND:VCALENDAR\n")
    assert item_info(data).uid == "abcdef"
    assert unfold(b"A:1\r\n 2\r\nB:3") == [b"A:12", b"B:3"]


def test_no_uid_outside_a_component():
    assert item_info(b"BEGIN:VCALENDAR\r\nUID:not-here\r\nEND:VCALENDAR\r\n").uid is None
    assert item_info(b"garbage").kind == "unknown"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_never_crashes(data):
    info = item_info(data)
    assert info.kind in ("calendar", "addressbook", "unknown")
