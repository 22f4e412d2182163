"""CommuniGate mailbox formats: separator lines, status letters, .mdir names, and splitting a text mailbox
into exactly the stored bytes of each message, with truncation reported instead of silently copied."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats import communigate_mailbox as cgm

T = datetime(2023, 3, 1, 9, 30, tzinfo=timezone.utc)


def split(data: bytes) -> list[tuple[cgm.Entry, bytes]]:
    f = io.BytesIO(data)
    entries = list(cgm.scan(f, path="INBOX.mbox"))
    return [(e, cgm.read_message(f, e).finish().read()) for e in entries]


def test_separator_with_flags_uid_and_date():
    s = cgm.parse_separator(b"From <bob@example.com> (SAF-1234) Wed Mar  1 09:30:00 2023\n")
    assert s.return_path == "bob@example.com" and s.uid == 1234 and s.letters == "SAF"
    assert s.date == T
    assert cgm.flags_from_letters(s.letters) == (frozenset({"\\Seen", "\\Answered", "\\Flagged"}), [])
    odd = cgm.parse_separator(b"From <> (S9%-5) Wed Mar  1 09:30:00 2023\n")  # unknown letters: kept, not refused
    assert odd.uid == 5 and cgm.flags_from_letters(odd.letters)[1] == ["9", "%"]


@pytest.mark.parametrize("stamp", [
    "Wed Mar  1 09:30:00 2023", "Wed Mar  1 10:30:00 2023 +0100", "Wed Mar 1 09:30:00 GMT 2023",
    "Wed, 1 Mar 2023 09:30:00 +0000", "01-Mar-2023 04:30:00 -0500", "#T01-03-2023_09:30:00",
])
def test_timestamp_forms(stamp):
    assert cgm.parse_timestamp(stamp) == T


def test_unreadable_timestamp_costs_the_date_not_the_message():
    (e, body), = split(b"From <a@b> (S-1) sometime last week\nSubject: x\n\nbody\n")
    assert e.date is None and e.uid == 1 and body == b"Subject: x\n\nbody\n"
    assert "unreadable date" in e.warnings[0] and "line 1" in e.warnings[0]


def test_placeholders_and_unknown_letters_are_kept_as_keywords():
    flags, unknown = cgm.flags_from_letters("S--X-D_q")
    assert flags == {"\\Seen", "\\Deleted", "$CGP_X", "$CGP_q"}
    assert unknown == ["X", "q"]
    # and they survive writing back
    assert cgm.flags_from_letters(cgm.letters_from_flags(flags))[0] == flags


def test_separator_without_uid():
    s = cgm.parse_separator(b"From <> (RS) Wed Mar  1 09:30:00 2023\n", uid_required=False)
    assert cgm.parse_separator(b"From <> (RS) Wed Mar  1 09:30:00 2023\n") is None
    assert s.uid is None and cgm.flags_from_letters(s.letters)[0] == {"\\Seen"}
    assert cgm.parse_separator(b"From <> (77) Wed Mar  1 09:30:00 2023\n").uid == 77


def test_split_gives_stored_bytes_and_leaves_from_lines_in_bodies_alone():
    m1 = b"Subject: one\n\nFrom the start of a line\n>From already quoted\n"
    m2 = b"Subject: two\r\n\r\nCRLF body\r\n"
    m3 = b"Subject: three\n\nlast, ends with a blank line of its own\n\n"
    data = (cgm.write_message(m1, "a@b", {"\\Seen"}, 1, T) + cgm.write_message(m2, "", set(), 2, T)
            + cgm.write_message(m3, "c@d", {"\\Flagged"}, 3, T))
    got = split(data)
    assert [b for _, b in got] == [m1, m2, m3]
    assert [e.uid for e, _ in got] == [1, 2, 3]
    assert [e.line for e, _ in got] == [1, 7, 12]
    assert all(e.problem is None for e, _ in got)


def test_body_line_imitating_a_classic_separator_does_not_split_a_communigate_mailbox():
    m1 = b"Subject: one\n\nquoted mail follows\n\nFrom bob Wed Mar  1 09:30:00 2023\nhello\n"
    got = split(cgm.write_message(m1, "a@b", set(), 1, T))
    assert [b for _, b in got] == [m1]


def test_classic_mbox_file_is_read_too():
    data = (b"From bob@example.com Wed Mar  1 09:30:00 2023\nSubject: a\n\nx\n\n"
            b"From carol@example.com Wed Mar  1 09:30:00 2023\nSubject: b\n\ny\n")
    got = split(data)
    assert [b for _, b in got] == [b"Subject: a\n\nx\n", b"Subject: b\n\ny\n"]
    assert all(e.uid is None and e.date == T for e, _ in got)


def test_file_not_starting_with_a_separator_is_refused_with_its_line():
    with pytest.raises(FormatError) as ei:
        split(b"\n\nSubject: no separator\n\nbody\n")
    assert ei.value.line == 3 and ei.value.path == "INBOX.mbox"


def test_complete_last_message_without_final_newline_is_copied_as_stored():
    m1 = b"Subject: one\n\nfine\n"
    data = cgm.write_message(m1, "a@b", set(), 1, T) + cgm.write_message(b"Subject: two\n\nno newline\n", "a@b",
                                                                          set(), 2, T)
    cut = data[: data.index(b"no newline") + len(b"no newline")]
    got = split(cut)
    assert [b for _, b in got] == [m1, b"Subject: two\n\nno newline"]
    assert [e.problem for e, _ in got] == [None, None]


def test_body_lines_resembling_a_separator_stay_body():
    # Issue 16: "From Paris (France) with love" cut a message in two and made two fake ones.
    m1 = (b"Subject: postcard\n\nHello,\n\nFrom Paris (France) with love\n"
          b"From <x@y> (S-77) no date here\nFrom Rome (S) Wed Mar  1 09:30:00 2023\nend\n")
    m2 = b"Subject: two\n\nbye\n"
    data = cgm.write_message(m1, "a@b", {"\\Seen"}, 1, T) + cgm.write_message(m2, "a@b", set(), 2, T)
    got = split(data)
    assert [b for _, b in got] == [m1, m2]
    assert [e.flags for e, _ in got] == [{"\\Seen"}, frozenset()]
    assert all(e.problem is None and not e.unknown_letters for e, _ in got)


def test_full_separator_shape_not_after_an_empty_line_stays_body_and_is_reported():
    m1 = b"Subject: quoted\n\nas stored:\nFrom <x@y> (S-9) Wed Mar  1 09:30:00 2023\nrest\n"
    (e, body), = split(cgm.write_message(m1, "a@b", set(), 1, T))
    assert body == m1
    assert any("line 5" in w and "kept as part of the message" in w for w in e.warnings)


def test_separator_followed_by_no_message_is_a_boundary_error():
    m1 = b"Subject: one\n\nfine\n"
    sep = cgm.format_separator("a@b", "", 2, T)
    data = cgm.write_message(m1, "a@b", set(), 1, T) + sep + cgm.write_message(m1, "a@b", set(), 3, T)
    got = split(data)
    assert [e.uid for e, _ in got] == [1, 2, 3]
    assert got[1][0].problem and "boundary error" in got[1][0].problem and "line 6" in got[1][0].problem
    assert got[0][0].problem is None and got[2][0].problem is None
    assert got[2][1] == m1


def test_uw_imap_internal_data_pseudo_message_is_marked():
    # The shape UW-IMAP writes at the head of a folder; cgp2zarafa's import-mbox.py skips it by its From.
    internal = (b"Date: Wed, 01 Mar 2023 09:30:00 +0000\n"
                b"From: Mail System Internal Data <MAILER-DAEMON@host.example.com>\n"
                b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1677663000 0000000002\n"
                b"Status: RO\n\nThis text is part of the internal format of your mail folder.\n")
    real = b"From: Mail System Internal Data fan <fan@example.com>\nSubject: real\n\nhi\n"
    got = split(cgm.write_message(internal, "MAILER-DAEMON", set(), 1, T)
                + cgm.write_message(real, "a@b", set(), 2, T) + cgm.write_message(internal, "x", set(), 3, T))
    assert [e.internal for e, _ in got] == [True, False, False]  # only at the head of the file


def test_last_message_cut_inside_its_header_is_reported():
    data = cgm.write_message(b"Subject: one\n\nfine\n", "a@b", set(), 1, T) + b"From <a@b> (-2) " + \
        cgm.format_timestamp(T).encode() + b"\nSubject: two\nTo: x\n"
    e, _ = split(data)[1]
    assert "header never ends" in e.problem


def test_empty_mailbox():
    assert split(b"") == []


@given(st.lists(st.tuples(st.binary(max_size=200), st.sets(st.sampled_from(sorted(cgm.FLAG_LETTERS))),
                          st.integers(1, 10**9)), max_size=6))
@settings(max_examples=200, deadline=None)
def test_any_messages_come_back_byte_exact(msgs):
    # Bodies are arbitrary bytes (even "From " lines and blank lines); only the CommuniGate separator splits.
    prepared = []
    for body, flags, uid in msgs:
        body = body.replace(b"\r", b"")
        if not body.endswith(b"\n"):
            body += b"\n"
        lines = [ln for ln in body.split(b"\n")]
        body = b"\n".join(b" " + ln if ln.startswith(b"From ") else ln for ln in lines)
        prepared.append((b"H: v\n\n" + body, frozenset(flags), uid))
    data = b"".join(cgm.write_message(b, "r@p", f, u, T) for b, f, u in prepared)
    got = split(data)
    assert [b for _, b in got] == [b for b, _, _ in prepared]
    assert [(e.flags, e.uid) for e, _ in got] == [(f, u) for _, f, u in prepared]


@given(st.binary(max_size=500))
@settings(max_examples=300, deadline=None)
def test_hostile_mailbox_never_crashes(data):
    try:
        for e, body in split(b"From <a@b> (S-1) Wed Mar  1 09:30:00 2023\n" + data):
            assert len(body) == e.length
    except FormatError as exc:  # only possible for a file that does not start with a separator
        raise AssertionError(exc)
    try:
        split(data)
    except FormatError as exc:
        assert exc.line is not None and exc.path == "INBOX.mbox"


# --- .mdir ---------------------------------------------------------------------------------------------


def test_mdir_name():
    n = cgm.parse_mdir_name("1234-SA-20230301093000")
    assert n == cgm.MdirName("1234", "SA", T)
    assert cgm.flags_from_letters(n.letters)[0] == {"\\Seen", "\\Answered"}
    assert cgm.format_mdir_name("1234", {"\\Seen", "\\Answered"}, T) == "1234-AS-20230301093000"
    assert cgm.parse_mdir_name(cgm.format_mdir_name("9", set(), T)) == cgm.MdirName("9", "_", T)


def test_mdir_odd_names_keep_their_id():
    assert cgm.parse_mdir_name("55-S-2023") == cgm.MdirName("55", "S-2023", None)
    assert cgm.parse_mdir_name("plainname") == cgm.MdirName("plainname", "", None)
    assert cgm.parse_mdir_name(".hidden") is None
    assert cgm.parse_mdir_name("7-S-20231301000000").date is None  # month 13


@given(st.text(max_size=40))
def test_mdir_any_name_never_crashes(name):
    cgm.parse_mdir_name(name)
