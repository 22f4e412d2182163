"""Splitting mbox files: separators, both escaping variants, dates, flags, damaged files."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.formats import mbox


def split(data: bytes, variant: str = "mboxrd", **kw):
    entries = list(mbox.scan(io.BytesIO(data), variant, **kw))
    return entries, [mbox.read_message(io.BytesIO(data), e, variant, **kw).finish().read() for e in entries]


def test_messages_dates_and_the_blank_line_before_a_separator():
    data = (b"From alice@example.org Mon Jan  4 10:00:00 2021\nSubject: one\n\nbody\n\n"
            b"From bob@example.org Tue Feb 23 08:09:10 2021\nSubject: two\n\nlast line\n\n")
    entries, bodies = split(data)
    assert bodies == [b"Subject: one\n\nbody\n", b"Subject: two\n\nlast line\n"]
    assert [e.date for e in entries] == [datetime(2021, 1, 4, 10, 0, tzinfo=timezone.utc),
                                         datetime(2021, 2, 23, 8, 9, 10, tzinfo=timezone.utc)]
    assert [e.problems for e in entries] == [[], []]


def test_mboxrd_loses_one_quote_per_line():
    data = b"From a Mon Jan  4 10:00:00 2021\n\n>From one\n>>From two\n>>>From three\n> From not\n\n"
    _, [body] = split(data, "mboxrd")
    assert body == b"\nFrom one\n>From two\n>>From three\n> From not\n"


def test_mboxo_only_unescapes_a_single_quote():
    data = b"From a Mon Jan  4 10:00:00 2021\n\n>From one\n>>From two\n\n"
    _, [body] = split(data, "mboxo")
    assert body == b"\nFrom one\n>>From two\n"


def test_writer_escapes_so_the_reader_gets_the_exact_bytes_back():
    msg = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From everywhere\r\nFrom"
    data = mbox.write_message(msg, "s@example.org", datetime(2024, 2, 29, 23, 59, 1, tzinfo=timezone.utc))
    assert data.startswith(b"From s@example.org Thu Feb 29 23:59:01 2024\n")
    assert b"\n>From here\r\n>>From there\r\n>>>From everywhere\r\n" in data
    (e,), [body] = split(data)
    assert body == msg + b"\n"  # mbox cannot keep a missing final line break
    assert e.size == len(body) and e.sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("line, when", [
    (b"From a@b Mon Jan  4 10:00:00 2021", datetime(2021, 1, 4, 10, 0, 0)),
    (b"From a@b Mon Jan 4 10:00 2021", datetime(2021, 1, 4, 10, 0, 0)),           # no seconds
    (b"From a@b Mon Jan  4 10:00:00 CET 2021", datetime(2021, 1, 4, 10, 0, 0)),   # zone name before the year
    (b"From a@b Mon Jan  4 10:00:00 2021 +0100", datetime(2021, 1, 4, 9, 0, 0)),  # numeric zone after
    (b"From a@b Sat, 3 Jan 1998 01:05:34 +0100", datetime(1998, 1, 3, 0, 5, 34)),  # RFC 2822 date
    (b"From  Mon Jan  4 10:00:00 2021", datetime(2021, 1, 4, 10, 0, 0)),           # empty sender
    (b"From a@b Mon Jan  4 10:00:00 2021\r\n", datetime(2021, 1, 4, 10, 0, 0)),
])
def test_from_line_dates(line, when):
    assert mbox.parse_from_date(line) == when.replace(tzinfo=timezone.utc)


def test_unreadable_date_keeps_the_message_and_says_so():
    data = b"From a@b Mon Foo 99 xx:yy 20x1\nSubject: x\n\nbody\n\n"
    (e,), [body] = split(data)
    assert body == b"Subject: x\n\nbody\n" and e.date is None
    assert "unreadable date" in e.problems[0]


def test_body_from_line_without_blank_line_or_date_is_not_a_separator():
    data = b"From a Mon Jan  4 10:00:00 2021\nSubject: x\n\nhello\nFrom me to you\n\nFrom you\n\n"
    _, bodies = split(data)
    assert bodies == [b"Subject: x\n\nhello\nFrom me to you\n\nFrom you\n"]


def test_flags_from_status_headers_without_touching_the_bytes():
    msg = b"Subject: x\nStatus: RO\nX-Status: AFTD\n\nStatus: ignored in the body\n"
    (e,), [body] = split(mbox.write_message(msg))
    assert e.flags == {"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted"}
    assert body == msg
    (e,), _ = split(mbox.write_message(b"Subject: x\nStatus: O\n\n\nX-Status: A\n"))
    assert e.flags == frozenset()  # X-Status in the body is not a header


def test_truncated_file_still_returns_the_last_message_and_notes_it():
    data = mbox.write_message(b"Subject: a\n\nfirst\n") + b"From b Mon Jan  4 10:00:00 2021\nSubject: b\n\nhalf a li"
    entries, bodies = split(data)
    assert bodies == [b"Subject: a\n\nfirst\n", b"Subject: b\n\nhalf a li"]
    assert entries[0].problems == [] and "truncated" in entries[1].problems[0]


def test_file_without_from_line_is_one_message():
    entries, bodies = split(b"Subject: lost\n\nno separator\n")
    assert bodies == [b"Subject: lost\n\nno separator\n"] and "does not start" in entries[0].problems[0]
    assert split(b"") == ([], [])


def test_crlf_mbox():
    data = b"From a Mon Jan  4 10:00:00 2021\r\nSubject: a\r\n\r\nx\r\n\r\nFrom b Mon Jan  4 10:00:00 2021\r\nB\r\n\r\n"
    _, bodies = split(data)
    assert bodies == [b"Subject: a\r\n\r\nx\r\n", b"B\r\n"]


def test_long_line_is_never_unescaped_or_split_in_the_middle():
    # A line longer than the read piece, whose continuation starts with "From " and ">From ".
    long = b"x" * 15 + b"From Mon Jan  4 10:00:00 2021 " + b">From " + b"y" * 40 + b"\n"
    msg = b"Subject: long\n\n" + long + b">From kept\n"
    data = mbox.write_message(msg)
    for limit in (7, 16, 21, 1 << 16):
        entries, bodies = split(data, limit=limit)
        assert bodies == [msg] and entries[0].size == len(msg)


# --- Hypothesis --------------------------------------------------------------------------------------

lines = st.lists(st.sampled_from([b"From x", b">From y", b">>From z", b"", b"Subject: s", b"Status: R",
                                  b"From a Mon Jan  4 10:00:00 2021", b"\r", b"text \xff\x00"]), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(lines.map(lambda ls: b"\n".join(ls) + b"\n"), max_size=5), st.sampled_from([5, 64, 1 << 16]))
def test_write_read_round_trip_exact(messages, limit):
    data = b"".join(mbox.write_message(m, "a@b", datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)) for m in messages)
    entries, bodies = split(data, limit=limit)
    assert bodies == messages
    assert [e.sha256 for e in entries] == [hashlib.sha256(m).hexdigest() for m in messages]
    assert all(e.date == datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc) for e in entries)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=3000), st.sampled_from(mbox.VARIANTS), st.sampled_from([3, 50, 1 << 16]))
def test_fuzz_random_bytes(data, variant, limit):
    entries, bodies = split(data, variant, limit=limit)
    prev_end = 0
    for e, body in zip(entries, bodies):
        assert prev_end <= e.offset and e.offset + e.length <= len(data)
        assert e.size == len(body) and e.sha256 == hashlib.sha256(body).hexdigest()
        prev_end = e.offset + e.length


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_from_line(line):
    d = mbox.parse_from_date(b"From " + line)
    assert d is None or d.tzinfo is not None
