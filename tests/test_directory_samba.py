"""A real Samba Active Directory domain controller as a directory source (tests/servers/samba.py).

The domain is provisioned by ``samba-tool`` and served by the ``samba`` process; users and groups are made
over LDAP as an administrator would script them: people with UPN and ``proxyAddresses``, accounts disabled
the two ways AD writes it (userAccountControl 514 and 66050), nested groups, a non-ASCII name, and a group
of more than 1,500 members, which a DC hands out in ranges (``member;range=0-1499``).  Copied to a real
OpenLDAP (with ppolicy) and to a passwd-file served by a real Dovecot: every user, group and membership
arrives, and the disabled users cannot log in although they were given a working password.
"""

from __future__ import annotations

import ldap3
import pytest

from mailmigrate.directory.checklist import compare
from mailmigrate.directory.copy import PasswordPolicy, copy, diff_directories
from mailmigrate.directory.ldap import LdapDirectory
from mailmigrate.directory.passwdfile import PasswdFileDirectory
from mailmigrate.model import Secret
from servers import dovecot as dovecot_server
from servers.imapcheck import logs_in
from servers.samba import SambaDC, available
from servers.slapd import SlapdServer

pytestmark = pytest.mark.skipif(not available(), reason="needs root, samba and samba-ad-provision")

BULK = 1520  # members of all-staff beyond the named users: more than AD's 1,500 values per range
DST_BASE = "dc=directory,dc=nh"
NAMED = {"ann", "bob", "dora", "zoe"}
DISABLED = {"bob": "514", "dora": "66050"}


def _user(c, base, login, uac="512", **attrs):
    dn = f"CN={attrs.pop('cn', login)},{base}"
    ok = c.add(dn, ["top", "person", "organizationalPerson", "user"],
               {"sAMAccountName": login, "userAccountControl": uac, **attrs})
    assert ok, c.result
    return dn


def populate(dc):
    """The domain, made over LDAP as an administrator would script it."""
    c = ldap3.Connection(dc.url, dc.admin_dn, dc.admin_pw, auto_bind=True)
    staff, bulk = f"OU=Staff,{dc.base_dn}", f"OU=Bulk,{dc.base_dn}"
    for ou in (staff, bulk):
        assert c.add(ou, ["organizationalUnit"]), c.result
    ann = _user(c, staff, "ann", cn="Ann Archer", givenName="Ann", sn="Archer", displayName="Ann Archer",
                userPrincipalName="ann@corp.example",
                proxyAddresses=["SMTP:ann@corp.example", "smtp:a.archer@corp.example", "X500:/o=Old/cn=ann"])
    bob = _user(c, staff, "bob", DISABLED["bob"], cn="Bob Baker", sn="Baker", mail="bob@corp.example")
    dora = _user(c, staff, "dora", DISABLED["dora"], cn="Dora Dunn", sn="Dunn",
                 proxyAddresses=["SMTP:dora@corp.example"])
    zoe = _user(c, staff, "zoe", cn="Zoë Ångström", displayName="Zoë Ångström",
                proxyAddresses=["SMTP:zoe@corp.example"])
    members = [_user(c, bulk, f"bulk{i:04d}") for i in range(BULK)]
    groups = {}
    for name in ("managers", "sales", "all-staff"):
        groups[name] = f"CN={name},{staff}"
        assert c.add(groups[name], ["top", "group"], {"sAMAccountName": name}), c.result
    c.modify(groups["managers"], {"member": [(ldap3.MODIFY_ADD, [dora, zoe])]})
    c.modify(groups["sales"], {"member": [(ldap3.MODIFY_ADD, [ann, bob, groups["managers"]])]})
    everyone = [ann] + members
    for i in range(0, len(everyone), 500):
        assert c.modify(groups["all-staff"], {"member": [(ldap3.MODIFY_ADD, everyone[i:i + 500])]}), c.result
    c.unbind()


@pytest.fixture(scope="module")
def dc(tmp_path_factory):
    # filled once per samba version (tests/servers/samba.py keeps it); bump the key when populate changes
    dc = SambaDC(tmp_path_factory.mktemp("samba") / "dc").start_from_template(f"corp-{BULK}-v1", populate)
    yield dc
    dc.stop()


def reader(dc) -> LdapDirectory:
    return LdapDirectory(dc.url, dc.base_dn, bind_dn=dc.admin_dn, password=Secret(dc.admin_pw))


@pytest.fixture(scope="module")
def reading(dc):
    with reader(dc) as r:
        d = r.read()
        assert r.flavor == "ad"  # found from the DC's root DSE, not told
    return d


def test_ranged_retrieval_of_a_big_group_is_completed_by_our_code(dc, monkeypatch):
    """AD hands out at most MaxValRange (1,500) values of an attribute and says ``member;range=0-1499``;
    Samba does so only when asked for a range.  Asked in steps of 400, the reader must follow the ranges
    itself (ldap3's automatic range handling is off) and end with every member."""
    asked = []
    real_search = ldap3.Connection.search

    def search(self, *a, **kw):
        asked.append(kw.get("attributes", a[4] if len(a) > 4 else None))
        return real_search(self, *a, **kw)

    monkeypatch.setattr(ldap3.Connection, "search", search)
    r = LdapDirectory(dc.url, dc.base_dn, bind_dn=dc.admin_dn, password=Secret(dc.admin_pw), range_step=400)
    with r:
        big = r.read().groups["all-staff"].members
        assert not r._conn.auto_range
    assert len(big) == BULK + 1 and len(set(big)) == BULK + 1
    for low in (400, 800, 1200):  # the answer to 1200-1599 ends in "*": the last range
        assert [f"member;range={low}-{low + 399}"] in asked


def test_samba_reading_users_groups_disabled_and_the_big_group_complete(dc, reading):
    d = reading
    assert set(d.users) == NAMED | {f"bulk{i:04d}" for i in range(BULK)}
    # the DC's own accounts are not people to move, and the reading says which were left out
    assert any("krbtgt" in n and "Administrator" in n for n in d.notes)
    ann = d.users["ann"]
    assert (ann.mail, ann.aliases, ann.real_name) == ("ann@corp.example", ["a.archer@corp.example"], "Ann Archer")
    assert d.users["zoe"].real_name == "Zoë Ångström"
    for login, uac in DISABLED.items():
        assert not d.users[login].enabled and d.users[login].disabled_by == f"userAccountControl {uac}"
    assert ann.enabled and d.users["zoe"].enabled
    # no hash comes out of AD: said per user
    assert all(u.password is None and "does not reveal" in u.password_note for u in d.users.values())
    assert sorted(d.groups["sales"].members) == ["ann", "bob"] and d.groups["sales"].groups == ["managers"]
    assert sorted(d.groups["managers"].members) == ["dora", "zoe"]
    big = d.groups["all-staff"].members
    assert len(big) == BULK + 1 and len(set(big)) == BULK + 1 and "bulk1519" in big and "ann" in big


@pytest.fixture(scope="module")
def ldap_target(tmp_path_factory):
    srv = SlapdServer(tmp_path_factory.mktemp("dst"), DST_BASE, ppolicy=True).start()
    yield srv
    srv.stop()


def target_dir(srv) -> LdapDirectory:
    return LdapDirectory(srv.url, DST_BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw))


def test_samba_to_openldap_every_user_group_membership_and_disabled_users_locked(dc, reading, ldap_target):
    report = copy(reader(dc), target_dir(ldap_target), password_policy=PasswordPolicy("generate"))
    assert report.ok, report.render()[-3000:]
    assert len(report.created["users"]) == len(NAMED) + BULK
    assert sorted(report.created["groups"]) == ["all-staff", "managers", "sales"]
    assert {(u, src) for u, src, _ in report.disabled} == {("bob", "userAccountControl 514"),
                                                            ("dora", "userAccountControl 66050")}
    assert all("pwdAccountLockedTime" in how for _, _, how in report.disabled)

    target = target_dir(ldap_target)
    after = target.read()
    checklist = compare(reading, after)
    assert checklist.ok, checklist.render()
    assert len(after.groups["all-staff"].members) == BULK + 1
    assert after.groups["sales"].groups == ["managers"]
    assert not after.users["bob"].enabled and after.users["ann"].enabled

    generated = dict(report.generated_passwords())
    assert set(generated) == set(after.users)

    def binds(login):
        return ldap3.Connection(ldap_target.url, f"uid={login},ou=People,{DST_BASE}",
                                generated[login].reveal()).bind()

    assert binds("ann") and binds("zoe")
    assert not binds("bob") and not binds("dora")  # the right password, and still refused: disabled

    # a rerun would change nothing (the diff copy makes, on the readings already taken)
    rerun = diff_directories(reading, after, kinds=target.kinds, fields=target.fields)
    assert rerun.empty, rerun.render()[-2000:]


def test_samba_to_passwd_file_disabled_users_cannot_log_in_to_dovecot(dc, reading, tmp_path):
    if not dovecot_server.available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    pf = tmp_path / "users"
    report = copy(reader(dc), PasswdFileDirectory(pf, uid="vmail", gid="vmail", home_template="/srv/mail/{login}"),
                  password_policy=PasswordPolicy("generate"))
    assert report.ok, report.render()[-3000:]
    assert report.unsupported == {"groups": 3}
    assert {u for u, _, how in report.disabled if how.startswith("nologin")} == {"bob", "dora"}
    generated = dict(report.generated_passwords())
    assert len(generated) == len(NAMED) + BULK
    after = PasswdFileDirectory(pf, must_exist=True).read()
    assert compare(reading, after).items[0].ok  # every user
    dv = dovecot_server.DovecotServer(passdb_file=pf).start()
    try:
        def login(user):
            return logs_in(dv.port, user, generated[user].reveal())

        assert login("ann") and login("bulk0007")
        assert not login("bob") and not login("dora")
    finally:
        dv.stop()
