"""Active Directory read over LDAP, against a real slapd loaded with Debian's copy of Microsoft's AD user
schema (msuser): AD's object classes and attributes, as an AD domain controller serves them.  What this proves
is the reader's AD mapping alone; a real Samba AD domain controller is read in test_directory_samba.py."""

from __future__ import annotations

from pathlib import Path

import ldap3
import pytest

from mailmigrate.directory.copy import PasswordPolicy, copy
from mailmigrate.directory.ldap import LdapDirectory
from mailmigrate.directory.passwdfile import PasswdFileDirectory
from mailmigrate.model import Secret
from servers.slapd import SlapdServer

MSUSER = Path("/etc/ldap/schema/msuser.ldif")
BASE = "dc=corp,dc=example"
pytestmark = pytest.mark.skipif(not (Path("/usr/sbin/slapd").exists() and MSUSER.exists()),
                                reason="slapd and its msuser schema are needed")

MUST = {"instanceType": "4", "nTSecurityDescriptor": b"\x01\x00", "objectCategory": f"cn=Person,cn=Schema,{BASE}"}


# Debian's msuser schema defines sAMAccountName but leaves out AD's auxiliary class that allows it
# (securityPrincipal, 1.2.840.113556.1.5.6): added here with AD's own name and OID.
SECURITY_PRINCIPAL = """objectclass ( 1.2.840.113556.1.5.6 NAME 'securityPrincipal' SUP top AUXILIARY
 MAY ( sAMAccountName $ mail ) )
"""


@pytest.fixture(scope="module")
def ad(tmp_path_factory):
    root = tmp_path_factory.mktemp("ad")
    aux = root / "securityprincipal.schema"
    aux.write_text(SECURITY_PRINCIPAL)
    srv = SlapdServer(root / "slapd", BASE, schemas=[MSUSER, aux]).start()
    c = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True, raise_exceptions=True)
    c.add(f"ou=Staff,{BASE}", ["organizationalUnit"], {"ou": "Staff"})
    users = f"ou=Staff,{BASE}"
    c.add(f"cn=Ann Archer,{users}", ["top", "person", "organizationalPerson", "user", "securityPrincipal"], {
        **MUST, "sn": "Archer", "givenName": "Ann", "displayName": "Ann Archer", "sAMAccountName": "ann",
        "proxyAddresses": ["SMTP:ann@corp.example", "smtp:a.archer@corp.example", "x500:/o=Old/cn=ann"],
        "userAccountControl": "512"})
    c.add(f"cn=Bob Baker,{users}", ["top", "person", "organizationalPerson", "user", "securityPrincipal"], {
        **MUST, "sn": "Baker", "sAMAccountName": "bob", "mail": "bob@corp.example", "userAccountControl": "514"})
    c.add(f"cn=Sales,{users}", ["top", "group", "securityPrincipal"], {
        **MUST, "sAMAccountName": "sales", "groupType": "-2147483646", "mail": "sales@corp.example",
        "member": [f"cn=Ann Archer,{users}", f"cn=Bob Baker,{users}"]})
    c.unbind()
    yield srv
    srv.stop()


def reader(srv):
    return LdapDirectory(srv.url, BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw), flavor="ad")


def test_ad_users_groups_addresses_and_disabled_accounts(ad):
    with reader(ad) as r:
        d = r.read()
    ann, bob = d.users["ann"], d.users["bob"]
    assert (ann.login, ann.mail, ann.aliases, ann.real_name) == ("ann", "ann@corp.example",
                                                                ["a.archer@corp.example"], "Ann Archer")
    assert ann.enabled and not bob.enabled  # userAccountControl 514 = disabled
    assert sorted(d.groups["sales"].members) == ["ann", "bob"] and d.groups["sales"].mail == "sales@corp.example"
    # passwords cannot be read from AD, and the reading says so, per user and for the directory
    assert ann.password is None and "does not reveal" in ann.password_note
    assert any("does not reveal password" in n for n in d.notes)


def test_copy_from_ad_reports_the_password_choice_per_user(ad, tmp_path):
    pf = tmp_path / "users"
    with reader(ad) as src, PasswdFileDirectory(pf) as tgt:
        report = copy(src, tgt, password_policy=PasswordPolicy("generate", None))
    generated = dict(report.generated_passwords())
    assert set(generated) == {"ann", "bob"}  # nothing to carry over, so each got a generated password
    assert all(len(p.reveal()) >= 16 for p in generated.values())
    assert {line.split(":")[0] for line in pf.read_text().splitlines()} == {"ann", "bob"}
