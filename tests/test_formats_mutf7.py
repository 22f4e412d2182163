"""Modified UTF-7 mailbox names: what the IMAP, CommuniGate and Maildir stores all rely on."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats import mutf7


@pytest.mark.parametrize("name, wire", [
    ("INBOX", "INBOX"),
    ("a&b", "a&-b"),
    ("Café", "Caf&AOk-"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("日本語", "&ZeVnLIqe-"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501's own example
    ("𝄞", "&2DTdHg-"),  # outside the BMP: a UTF-16 surrogate pair
    ("", ""),
])
def test_known_names(name, wire):
    assert mutf7.encode(name) == wire
    assert mutf7.decode(wire) == name


@pytest.mark.parametrize("bad", [
    "&",            # no closing "-"
    "&AOk",         # no closing "-"
    "&A-",          # incomplete UTF-16 unit
    "&AGE-",        # encodes "a", which must be written as itself
    "&2DQ-",        # a lone high surrogate
    "&AO!-",        # not base64
    "Café",         # raw 8-bit is not modified UTF-7
    "a\tb",         # control characters never appear raw
])
def test_invalid_names_are_refused(bad):
    with pytest.raises(FormatError):
        mutf7.decode(bad)


def test_lone_surrogate_cannot_be_encoded():
    with pytest.raises(FormatError):
        mutf7.encode("x\ud800y")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_round_trip(name):
    wire = mutf7.encode(name)
    assert wire.isascii() and all(0x20 <= ord(c) <= 0x7E for c in wire)
    assert mutf7.decode(wire) == name


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40) | st.text(max_size=40))
def test_fuzz_decode_never_crashes(text):
    try:
        out = mutf7.decode(text)
    except FormatError:
        return
    assert mutf7.encode(out) == text  # only the canonical form decodes
