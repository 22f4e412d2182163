"""CommuniGate settings syntax: every element a .settings file can hold is read to the right value, damage
is reported with its file and line, hostile input never crashes or hangs the parser, and dump/parse round
trip (the sample generator depends on it)."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats.communigate_settings import FUTURE, PAST, IPAddress, dump, parse, quote

ACCOUNT = rb"""{
  RealName = "Alice \"Al\" Archer";
  Password = "\001Xk3hashed";
  PasswordEncryption = A-crpt;
  MaxAccountSize = #-1;
  Quota = #10.5;
  Created = #T01-03-2023_09:30:00;
  Birthday = #T24-12-1990;
  Expires = #TFUTURE;
  Since = #TPAST;
  Source = #I[10.0.0.1]:25;
  Source6 = #I[2001:db8::1];
  Nothing = #NULL#;
  Key = [aGVsbG8gd29ybGQ=];
  Rules = ((#5, "Keep a copy", (), (("Mirror to", "a@elsewhere.org"))));
  "Odd Key" = { nested = ( a , b.c , "d e" ) ; } ;
  user.name_1 = ok;
}
"""


def test_account_file_every_element():
    v = parse(ACCOUNT)
    assert v["RealName"] == 'Alice "Al" Archer'
    assert v["Password"] == "\x01Xk3hashed"
    assert v["PasswordEncryption"] == "A-crpt"
    assert v["MaxAccountSize"] == -1
    assert v["Quota"] == 10.5
    assert v["Created"] == datetime(2023, 3, 1, 9, 30, tzinfo=timezone.utc)
    assert v["Birthday"] == date(1990, 12, 24)
    assert v["Expires"] is FUTURE and v["Since"] is PAST
    assert v["Source"] == IPAddress("10.0.0.1", 25)
    assert v["Source6"] == IPAddress("2001:db8::1", None)
    assert v["Nothing"] is None
    assert v["Key"] == b"hello world"
    assert v["Rules"] == [[5, "Keep a copy", [], [["Mirror to", "a@elsewhere.org"]]]]
    assert v["Odd Key"] == {"nested": ["a", "b.c", "d e"]}
    assert v["user.name_1"] == "ok"


@pytest.mark.parametrize("text, expected", [
    (r'"a\"b"', 'a"b'),
    (r'"back\\slash"', "back\\slash"),
    (r'"cr\rlf\ntab\t"', "cr\rlf\ntab\t"),
    (r'"line1\eline2"', "line1\nline2"),
    (r'"\065\066\067"', "ABC"),
    (r'"vt \011 tab \009 nul \000"', "vt \x0b tab \t nul \x00"),  # decimal codes, not octal
    (r'"\0651"', "A1"),  # exactly three digits
    (r'"unknown \q kept"', "unknown \\q kept"),
    ('"Gr\u00fc\u00dfe"', "Gr\u00fc\u00dfe"),
    ('""', ""),
])
def test_quoted_string_escapes(text, expected):
    assert parse(text.encode("utf-8")) == expected


def test_whitespace_and_line_breaks_anywhere():
    compact = parse(b"{a=(1,2);b={c=d;};}")
    spread = parse(b"\n{\n a\n =\n (\n 1\n ,\n 2\n )\n ;\r\n\tb = { c = d ; } ; }\n\n")
    assert compact == spread == {"a": ["1", "2"], "b": {"c": "d"}}


def test_last_semicolon_and_trailing_comma_optional():
    assert parse(b"{a=b}") == {"a": "b"}
    assert parse(b"(a, b,)") == ["a", "b"]
    assert parse(b"()") == [] and parse(b"{}") == {}


def test_empty_file_is_empty_dictionary():
    assert parse(b"") == {} and parse(b"  \n\n") == {}


def test_keys_are_case_sensitive():
    assert parse(b"{Name=a; name=b;}") == {"Name": "a", "name": "b"}


def test_not_utf8_read_as_latin1_rather_than_lost():
    assert parse(b'{RealName="Jos\xe9";}') == {"RealName": "Jos\u00e9"}


@pytest.mark.parametrize("text, line, words", [
    (b'{\n a = b;\n c = "open\n', 3, "not closed"),
    (b"{\n a = b\n c = d;\n}", 3, "expected ';'"),
    (b"{\n a = (1, 2\n", 3, "not closed"),
    (b"{ a = #T31-02-2020; }", 1, "not a real date"),
    (b"{\n\n a = #Tyesterday; }", 3, "timestamp"),
    (b"{ a = [not base64!]; }", 1, "base64"),
    (b"{ a = #xyz; }", 1, "'#'"),
    (b"{ a = b; } trailing", 1, "after the end"),
    (b"{ = b; }", 1, "key"),
    (b"{ a = <xml/>; }", 1, "XML"),
    (b"(" * 1000, 1, "nested"),
])
def test_damage_names_file_and_line(text, line, words):
    with pytest.raises(FormatError) as ei:
        parse(text, path="/var/CommuniGate/Accounts/a.macnt/account.settings")
    e = ei.value
    assert e.line == line
    assert e.path == "/var/CommuniGate/Accounts/a.macnt/account.settings"
    assert words in str(e) and f"line {line}" in str(e)


def test_dump_writes_atoms_bare_and_escapes_the_rest():
    assert quote("INBOX") == "INBOX" and quote("a.b_c") == "a.b_c"
    assert quote("two words") == '"two words"'
    assert quote("") == '""'
    assert quote('q"\\\n\r\t\x01') == '"q\\"\\\\\\e\\r\\t\\001"'
    text = dump({"Password": "\x01abc", "When": datetime(2023, 3, 1, 9, 30, 5, tzinfo=timezone.utc)}).decode()
    assert 'Password = "\\001abc";' in text and "When = #T01-03-2023_09:30:05;" in text


# --- property tests ---------------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_scalars = st.one_of(
    _text,
    st.binary(max_size=20),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=0, tzinfo=timezone.utc)),
    st.dates(min_value=date(1000, 1, 1)),
    st.just(None), st.just(PAST), st.just(FUTURE),
    st.builds(IPAddress, st.ip_addresses().map(str), st.one_of(st.none(), st.integers(0, 65535))),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)), max_leaves=20)


@given(_values, st.sampled_from([0, 2]))
@settings(max_examples=300, deadline=None)
def test_round_trip(value, indent):
    assert parse(dump(value, indent=indent)) == value


@given(st.binary(max_size=300))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_bytes_parse_or_fail_with_a_line(data):
    try:
        parse(data, path="x.settings")
    except FormatError as e:
        assert e.line is not None and e.line >= 1 and e.path == "x.settings"


_tokens = st.lists(st.sampled_from(['{', '}', '(', ')', '=', ';', ',', '"', '\\', '#', '#T', '#I[', '[', ']',
                                    'a', 'b c', '\n', ' ', '#12', '"x"', '#NULL#', '\\e', '\\0']), max_size=60)


@given(_tokens)
@settings(max_examples=400, deadline=None)
def test_hostile_token_soup_parse_or_fail_with_a_line(tokens):
    text = "".join(tokens)
    try:
        parse(text.encode())
    except FormatError as e:
        assert 1 <= e.line <= text.count("\n") + 1


def test_huge_flat_input_is_fast():
    import time

    big = b"{" + b"".join(b'k%d = "v\\e%d"; ' % (i, i) for i in range(50000)) + b"}"
    t = time.monotonic()
    assert len(parse(big)) == 50000
    assert time.monotonic() - t < 5


def test_adjacent_quoted_strings_are_one_string():
    # Issue 16: a continuation the format allows made the whole file (and its password) unreadable.
    text = b'{\r\n Password = clear1;\r\n RealName = "Carl "\r\n"der Grosse";\r\n Tags = ("a" "b", c);\r\n}\r\n'
    assert parse(text) == {"Password": "clear1", "RealName": "Carl der Grosse", "Tags": ["ab", "c"]}
    assert parse(b'{"Real" "Name" = x;}') == {"RealName": "x"}
