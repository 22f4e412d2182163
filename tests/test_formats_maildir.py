"""Maildir file names, keyword files, subscriptions and Maildir++ folder names, as Dovecot writes them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats import maildir as md

# Written by Dovecot 2.3 on this machine (CREATE + SUBSCRIBE over IMAP, APPEND with keywords).
DOVECOT_SUBSCRIPTIONS = b'V\t2\n\nCaf&AOk-\nCaf&AOk-\tSub\na&-b\nSent Items\nINBOX\tchild\nq"x\n'
DOVECOT_FILE = "1795416807.M605259P26416.vm,S=15,W=18:2,Sab"
DOVECOT_KEYWORDS = b"0 $Label1\n1 foo\n"


def test_dovecot_file_name():
    n = md.parse_name(DOVECOT_FILE)
    assert (n.unique, n.size, n.vsize, n.info) == ("1795416807.M605259P26416.vm", 15, 18, "Sab")
    kw = md.parse_keywords(DOVECOT_KEYWORDS)
    assert md.info_to_flags(n.info, kw) == (frozenset({"\\Seen", "$Label1", "foo"}), "")
    assert md.build_name(n.unique, n.info, n.size, n.vsize) == DOVECOT_FILE


def test_all_flag_letters():
    flags, unknown = md.info_to_flags("DFPRST", {})
    assert flags == {"\\Draft", "\\Flagged", "$Forwarded", "\\Answered", "\\Seen", "\\Deleted"} and unknown == ""
    assert md.flags_to_info(flags | {"\\Recent"}, {}) == ("DFPRST", [])


def test_unknown_letters_are_reported_and_survive_a_flag_change():
    n = md.parse_name("123.abc,S=5,W=6,Z=x:2,SXc")
    flags, unknown = md.info_to_flags(n.info, {0: "$Label1"})
    assert flags == {"\\Seen"} and unknown == "Xc"  # "c" has no dovecot-keywords line
    info, _ = md.flags_to_info(flags | {"\\Flagged"}, {})
    assert md.rebuild(n, info + unknown) == "123.abc,S=5,W=6,Z=x:2,FSXc"


def test_keywords_without_a_letter_are_returned_as_missing():
    info, missing = md.flags_to_info({"\\Seen", "$Work", "$Home"}, {"$Work": 25})
    assert info == "Sz" and missing == ["$Home"]


def test_name_without_info_is_a_new_message():
    n = md.parse_name("1700000000.M1P2.host")
    assert n.unique == "1700000000.M1P2.host" and n.info == "" and n.size is None


@pytest.mark.parametrize("bad", ["", ":2,S", ",S=3:2,S"])
def test_name_without_unique_part(bad):
    with pytest.raises(FormatError):
        md.parse_name(bad)


def test_build_name_refuses_separators_in_unique_part():
    for bad in ("a:b", "a/b", "a,b", ""):
        with pytest.raises(FormatError):
            md.build_name(bad, "S")


def test_keywords_file_errors_name_the_line():
    assert md.parse_keywords(b"0 $Label1\r\n\n3 Important\n") == {0: "$Label1", 3: "Important"}
    with pytest.raises(FormatError) as e:
        md.parse_keywords(b"0 a\nb c\n", "/m/dovecot-keywords")
    assert e.value.path == "/m/dovecot-keywords" and e.value.line == 2


def test_dovecot_subscriptions():
    paths = md.parse_subscriptions(DOVECOT_SUBSCRIPTIONS)
    assert paths == [("Café",), ("Café", "Sub"), ("a&b",), ("Sent Items",), ("INBOX", "child"), ('q"x',)]
    assert md.dump_subscriptions(paths) == DOVECOT_SUBSCRIPTIONS


def test_old_subscriptions_without_header_use_dots():
    assert md.parse_subscriptions(b"INBOX\nWork.Deep\nCaf&AOk-\n") == [("INBOX",), ("Work", "Deep"), ("Café",)]


def test_subscriptions_keep_dots_slashes_and_tabs_inside_names():
    paths = [("a.b", "c/d"), ("tab\there",)]
    assert md.parse_subscriptions(md.dump_subscriptions(paths)) == paths


@pytest.mark.parametrize("path, dirname", [
    (("Work",), ".Work"),
    (("Work", "Deep"), ".Work.Deep"),
    (("Café",), ".Caf&AOk-"),
    (("a&b",), ".a&-b"),
    (("INBOX", "child"), ".INBOX.child"),
    (("v1.2",), ".v1&ICQ-2"),   # "." inside a name becomes U+2024
    (("x/y",), ".x&IhU-y"),     # "/" inside a name becomes U+2215
])
def test_folder_directory_names(path, dirname):
    assert md.folder_to_dirname(path) == dirname
    assert md.dirname_to_folder(dirname) == path


def test_inbox_is_the_root_and_empty_components_are_refused():
    assert md.folder_to_dirname(("INBOX",)) == ""
    for bad in ((("Work", ""),), (("",),)):
        with pytest.raises(FormatError):
            md.folder_to_dirname(*bad)
    for bad in ("Work", ".", "..", ".a..b", ".Caf\xe9"):
        with pytest.raises(FormatError):
            md.dirname_to_folder(bad)


# --- Hypothesis: round trips exact, random input never crashes ------------------------------------------

flag_sets = st.sets(st.sampled_from(sorted(md.FLAG_TO_LETTER)) | st.sampled_from(["$Label1", "Work", "x"]))


@settings(max_examples=300, deadline=None)
@given(flag_sets, st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=10**9))
def test_flags_and_name_round_trip(flags, size, vsize):
    kw_names = {"$Label1": 0, "Work": 1, "x": 25}
    info, missing = md.flags_to_info(flags, kw_names)
    assert missing == []
    name = md.build_name("1700000000.M5P6.host", info, size, vsize)
    n = md.parse_name(name)
    assert (n.size, n.vsize) == (size, vsize)
    assert md.info_to_flags(n.info, {v: k for k, v in kw_names.items()}) == (frozenset(flags), "")


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(min_value=0, max_value=25),
                       st.text(min_size=1, max_size=20).filter(lambda s: s.strip() == s and "\n" not in s
                                                               and "\r" not in s and " " not in s)))
def test_keywords_round_trip(kw):
    assert md.parse_keywords(md.dump_keywords(kw)) == kw


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3).map(tuple), max_size=6))
def test_subscriptions_round_trip(paths):
    paths = [p if p[0].upper() != "INBOX" else ("INBOX",) + p[1:] for p in paths
             if not any("\u2024" in c or "\u2215" in c for c in p)]
    assert md.parse_subscriptions(md.dump_subscriptions(paths)) == paths


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_keywords_and_subscriptions(data):
    try:
        md.parse_keywords(data, "dovecot-keywords")
    except FormatError as e:
        assert e.path == "dovecot-keywords" and e.line is not None
    for p in md.parse_subscriptions(data):
        assert p and all(p)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_fuzz_directory_names(name):
    try:
        path = md.dirname_to_folder(name)
    except FormatError:
        return
    assert path and all(path)


def test_lenient_dirnames_read_what_dovecot_would_not_write():
    from mailmigrate.formats.maildir import dirname_to_folder_lenient as lenient

    assert lenient(".Entwürfe") == ("Entwürfe",)
    assert lenient(".R&D.Sub") == ("R&D", "Sub")
    assert lenient(".Trash..bak") == ("Trash", ".bak")
    assert lenient(".Work.") == ("Work.",)
    assert lenient(b".caf\xe9".decode("utf-8", "surrogateescape")) == ("caf\\xe9",)
    assert lenient(".Entw&APw-rfe") == ("Entwürfe",)  # a proper name reads as the strict reader does


@given(st.text(min_size=1, max_size=30))
def test_lenient_dirnames_never_fail_on_a_name_with_a_folder_in_it(name):
    from mailmigrate.errors import FormatError
    from mailmigrate.formats.maildir import dirname_to_folder_lenient as lenient

    try:
        path = lenient("." + name)
    except FormatError:
        assert set(name) <= {"."}
        return
    assert path and all(path)
    assert lenient("." + name) == path
