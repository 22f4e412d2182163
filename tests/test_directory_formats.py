"""shadow and Dovecot passwd-file parsers: real-looking files, clear errors, fuzz, round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.directory import passwords
from mailmigrate.directory.base import PasswordHash
from mailmigrate.errors import FormatError
from mailmigrate.formats.passwdfile import PasswdEntry, dump_passwd_file, parse_passwd_file
from mailmigrate.formats.shadow import dump_shadow, parse_shadow
from mailmigrate.model import Secret


def test_shadow_lock_markers_and_hashes():
    entries = parse_shadow(b"root:*:19000:0:99999:7:::\nann:!$6$s$h:19000:0:99999:7:::\nbo:$1$x$y:1::::::\n")
    by = {e.name: e for e in entries}
    assert by["root"].crypt_hash is None and by["ann"].locked and by["ann"].crypt_hash == "$6$s$h"
    assert by["bo"].crypt_hash == "$1$x$y" and not by["bo"].locked
    assert "$6$" not in repr(by["ann"])
    with pytest.raises(FormatError) as e:
        parse_shadow(b"ok:x\nok:y\n", path="etc/shadow")
    assert e.value.line == 2 and "twice" in str(e.value)


def test_passwd_file_fields_and_extra_fields_with_colons():
    (e,) = parse_passwd_file(b"# comment\n\nann@x.org:{SHA512-CRYPT}$6$a$b:vmail:vmail::/srv/ann::"
                             b"userdb_mail=maildir:~/Maildir nologin\n")
    assert e.user == "ann@x.org" and e.uid == "vmail" and e.home == "/srv/ann"
    assert e.extra == ["userdb_mail=maildir:~/Maildir", "nologin"]
    assert passwords.from_dovecot(e.password).scheme == "SHA512-CRYPT"
    assert passwords.from_dovecot("{MD5}$1$x$y").scheme == "MD5-CRYPT"  # Dovecot's MD5 is MD5-CRYPT
    assert passwords.from_ldap("{MD5}abc=").scheme == "LDAP-MD5"  # LDAP's is base64 MD5
    assert "$6$" not in repr(e)


def test_crypt_hashes_move_between_scheme_names():
    h = PasswordHash("CRYPT", Secret("$2y$05$abcdefghijklmnopqrstuv"))
    assert passwords.adapt(h, {"BLF-CRYPT"}).scheme == "BLF-CRYPT"
    assert passwords.adapt(PasswordHash("SHA512-CRYPT", Secret("$6$a$b")), {"CRYPT"}).scheme == "CRYPT"
    assert passwords.adapt(PasswordHash("SSHA", Secret("x")), {"CRYPT"}) is None
    s = passwords.ssha512(Secret("pw"))
    assert passwords.verify(Secret("pw"), s) is True and passwords.verify(Secret("no"), s) is False


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_shadow(data):
    try:
        entries = parse_shadow(data, path="s")
    except FormatError as e:
        assert e.path == "s" and e.line is not None
        return
    assert parse_shadow(dump_shadow(entries)) == entries


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_passwd_file(data):
    try:
        entries = parse_passwd_file(data, path="p")
    except FormatError as e:
        assert e.path == "p" and e.line is not None
        return
    writable = [e for e in entries if not e.user.startswith("#") and not any(
        c in f for f in (e.user, e.password, e.uid, e.gid, e.gecos, e.home, e.shell) for c in ":\n\r")]
    assert parse_passwd_file(dump_passwd_file(writable)) == writable


_field = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":\n\r"), max_size=10)
_user = _field.filter(lambda u: u.strip() and not u.startswith("#"))
_extra = st.lists(st.text(alphabet="abcxyz_=:~/", min_size=1, max_size=10), max_size=3)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(PasswdEntry, _user, _field, _field, _field, _field, _field, _field, _extra),
                max_size=5, unique_by=lambda e: e.user))
def test_passwd_file_round_trip(entries):
    assert parse_passwd_file(dump_passwd_file(entries)) == entries


def test_checklist_summarises_a_large_difference_and_compares_enabled_state():
    from mailmigrate.directory.base import Directory, Group, User
    from mailmigrate.directory.checklist import compare

    before, after = Directory(), Directory()
    logins = [f"user{i:04d}" for i in range(1600)]
    for d in (before, after):
        d.extend(User(x) for x in logins)
        d.add(User("bob", enabled=d is after))  # disabled before, enabled after: a finding
    before.add(Group("big", members=list(logins)))
    after.add(Group("big", members=[]))
    cl = compare(before, after)
    text = cl.render()
    assert not cl.ok and len(text.splitlines()) < 30  # one lost group is one finding, not 1,600 lines
    assert "... and 1,595 more missing (1,595 of big <-; --json lists them all)" in text
    assert "bob: disabled before, enabled after" in text
    checks = {c["check"]: c for c in cl.as_dict()["checks"]}
    assert len(checks["group memberships"]["missing"]) == 1600  # JSON keeps every line
    assert not checks["disabled users"]["ok"]
