"""LDIF content records as slapcat and ldapsearch write them, and as slapadd reads ours."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats.ldif import LdifEntry, dump_ldif, parse_ldif

SLAPCAT_LIKE = (
    b"version: 1\r\n"
    b"\r\n"
    b"# a comment that is\r\n"
    b"  folded over two lines\r\n"
    b"dn: uid=alice,ou=People,dc=example,dc=com\r\n"
    b"objectClass: inetOrgPerson\r\n"
    b"objectClass: posixAccount\r\n"
    b"cn: Alice Smith\r\n"
    b"description: a long description that slapcat folds because it is longer than seven\r\n"
    b" ty-six characters\r\n"
    b"userPassword:: " + base64.b64encode(b"{SSHA}abcdefghijklmnopqrstuvwxyz012345") + b"\r\n"
    b"sn;lang-de:: " + base64.b64encode("Schmidt-Mü".encode()) + b"\r\n"
    b"OBJECTCLASS: top\r\n"
    b"\r\n"
    b"\r\n"
    b"dn:: " + base64.b64encode("cn=Jörg,dc=example,dc=com".encode()) + b"\n"
    b"cn: J\n"
)


def test_reads_what_slapcat_writes():
    a, b = parse_ldif(SLAPCAT_LIKE)
    assert a.dn == "uid=alice,ou=People,dc=example,dc=com"
    assert list(a.attributes) == ["objectClass", "cn", "description", "userPassword", "sn;lang-de"]
    assert a.attributes["objectClass"] == [b"inetOrgPerson", b"posixAccount", b"top"]
    assert a.first("description").endswith("longer than seventy-six characters")
    assert a.get("USERPASSWORD") == [b"{SSHA}abcdefghijklmnopqrstuvwxyz012345"]
    assert a.first("sn;lang-de") == "Schmidt-Mü"
    assert b.dn == "cn=Jörg,dc=example,dc=com" and b.attributes == {"cn": [b"J"]}


@pytest.mark.parametrize("data,line,what", [
    (b"dn: a=b\ncn:< file:///etc/shadow\n", 2, "URL"),
    (b"dn: a=b\nchangetype: modify\n", 2, "change records"),
    (b"cn: x\n", 1, "not dn"),
    (b"dn: a=b\nnot a line\n", 2, "expected"),
    (b"dn: a=b\ncn:: ***\n", 2, "base64"),
    (b"dn: a=b\ndn: c=d\n", 2, "second dn"),
    (b" x\ndn: a=b\n", 1, "continuation"),
    (b"version: 2\n\ndn: a=b\n", 1, "version"),
])
def test_errors_name_the_line(data, line, what):
    with pytest.raises(FormatError) as e:
        parse_ldif(data, path="export.ldif")
    assert e.value.line == line and e.value.path == "export.ldif"
    assert what in str(e.value)


def test_dump_uses_base64_where_needed_and_folds():
    e = LdifEntry("cn=Zoë,dc=x", {"cn": [b"Zo\xc3\xab"], "description": [b"x" * 200],
                                  "a": [b" leading", b"trailing ", b":colon", b"<lt", b"ok", b""]})
    text = dump_ldif([e]).decode("ascii")
    lines = text.splitlines()
    assert all(len(l) <= 76 for l in lines)
    assert lines[0].startswith("dn:: ")
    assert "a: ok" in lines and "a: " in lines
    assert sum(l.startswith("a:: ") for l in lines) == 4
    assert parse_ldif(text.encode()) == [e]


@pytest.mark.skipif(not shutil.which("slapadd"), reason="slapadd not installed")
def test_slapadd_accepts_our_output(tmp_path):
    """Our LDIF goes through OpenLDAP's own parser (slapadd -u: dry run against a real config)."""
    conf = tmp_path / "slapd.conf"
    (tmp_path / "db").mkdir()
    conf.write_text(
        "include /etc/ldap/schema/core.schema\ninclude /etc/ldap/schema/cosine.schema\n"
        "include /etc/ldap/schema/inetorgperson.schema\n"
        "moduleload back_mdb\n"
        f"database mdb\nsuffix dc=example,dc=com\ndirectory {tmp_path / 'db'}\n")
    entries = [
        LdifEntry("dc=example,dc=com", {"objectClass": [b"dcObject", b"organization"], "dc": [b"example"],
                                        "o": [b"Example"]}),
        LdifEntry("cn=Zoë Ünal,dc=example,dc=com", {
            "objectClass": [b"inetOrgPerson"], "cn": ["Zoë Ünal".encode()], "sn": [b"x" * 150],
            "description": [b"line1\nline2", b" lead"]}),
    ]
    ldif = tmp_path / "in.ldif"
    ldif.write_bytes(dump_ldif(entries))
    p = subprocess.run(["slapadd", "-f", str(conf), "-l", str(ldif)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
    out = subprocess.run(["slapcat", "-f", str(conf)], capture_output=True, timeout=30).stdout
    back = {e.dn: e for e in parse_ldif(out)}
    z = back["cn=Zoë Ünal,dc=example,dc=com"]
    assert z.get("description") == [b"line1\nline2", b" lead"] and z.get("sn") == [b"x" * 150]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data):
    try:
        parse_ldif(data, path="f")
    except FormatError as e:
        assert e.path == "f" and e.line is not None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=" abc:#\n\r-=:<", max_size=30).map(str.encode), max_size=10))
def test_fuzz_ldif_shaped(lines):
    data = b"dn: a=b\n" + b"\n".join(lines)
    try:
        parse_ldif(data)
    except FormatError as e:
        assert e.line is not None


_name = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,10}(;[a-z0-9-]{1,5})?\Z")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.builds(
    LdifEntry,
    st.text(max_size=40).filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)),
    st.dictionaries(_name, st.lists(st.binary(max_size=120), min_size=1, max_size=3), max_size=5)
    .filter(lambda d: len({k.lower() for k in d}) == len(d) and "dn" not in {k.lower() for k in d}
            and not {"changetype", "control"} & {k.lower() for k in d})), max_size=4))
def test_round_trip(entries):
    assert parse_ldif(dump_ldif(entries)) == entries
