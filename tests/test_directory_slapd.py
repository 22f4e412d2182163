"""The slapd test server itself: other tests (ours and the Kopano path's) rely on it loading schemas."""

from __future__ import annotations

from pathlib import Path

import ldap3
import pytest

from servers.slapd import SlapdServer, schema_to_ldif

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/slapd").exists(), reason="slapd not installed")


def test_converted_schema_matches_debians_own_ldif():
    """Debian ships duaconf as both .schema and .ldif (made by slaptest); our conversion says the same."""
    ours = schema_to_ldif(Path("/etc/ldap/schema/duaconf.schema").read_text(), "duaconf")
    from mailmigrate.formats.ldif import parse_ldif
    (theirs,) = parse_ldif(Path("/etc/ldap/schema/duaconf.ldif").read_bytes())
    norm = lambda vals: [" ".join(v.decode().split()) for v in vals]
    for attr in ("olcObjectIdentifier", "olcAttributeTypes"):
        assert norm(ours.get(attr)) == norm(theirs.get(attr)), attr
    # slaptest reorders the clauses inside an object class; compare the OID, name and the attribute sets
    words = lambda vals: [sorted(v.decode().replace("(", " ").replace(")", " ").split()) for v in vals]
    assert words(ours.get("olcObjectClasses")) == words(theirs.get("olcObjectClasses"))


def test_extra_schemas_are_loaded_and_usable(tmp_path):
    """A .schema with object identifiers (dyngroup) and an .ldif (misc) both end up in cn=config."""
    with SlapdServer(tmp_path, "dc=test,dc=org", schemas=[Path("/etc/ldap/schema/dyngroup.schema"),
                                                          Path("/etc/ldap/schema/misc.ldif")],
                     admin_pw="pw") as srv:
        c = ldap3.Connection(srv.url, srv.admin_dn, "pw", auto_bind=True)
        assert c.add("cn=dyn,dc=test,dc=org", ["groupOfURLs"],
                     {"cn": "dyn", "memberURL": "ldap:///dc=test,dc=org??sub?(uid=*)"}), c.result
        assert c.add("cn=ann,dc=test,dc=org", ["inetOrgPerson", "inetLocalMailRecipient"],
                     {"cn": "ann", "sn": "A", "mailLocalAddress": "ann@test.org"}), c.result
        assert not ldap3.Connection(srv.url, srv.admin_dn, "wrong").bind()
        port = srv.port
    with pytest.raises(Exception):
        ldap3.Connection(f"ldap://127.0.0.1:{port}", auto_bind=True, receive_timeout=2)


def test_restart_keeps_data(tmp_path):
    srv = SlapdServer(tmp_path).start()
    try:
        c = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
        c.add("ou=People,dc=example,dc=com", ["organizationalUnit"], {"ou": "People"})
        srv.stop()
        srv.start()
        c = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
        assert c.search("ou=People,dc=example,dc=com", "(objectClass=*)", search_scope=ldap3.BASE)
    finally:
        srv.stop()
