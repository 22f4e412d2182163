"""Directory copy between two real slapd instances, e-smith files, and a Dovecot passwd-file.

Hashes in the source are made by slapd's own ``slappasswd`` (not by mailmigrate), and the proof that a
password came over is a real bind (or ``doveadm pw -t``) with the original clear text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ldap3
import pytest

from mailmigrate.directory.checklist import compare
from mailmigrate.directory.copy import PasswordPolicy, copy, diff
from mailmigrate.directory.esmith import EsmithDirectory
from mailmigrate.directory.ldap import LdapDirectory
from mailmigrate.directory.passwdfile import PasswdFileDirectory
from mailmigrate.directory.provider import AccountProvider, ProviderCollision, ProviderMismatch, plan_provider
from mailmigrate.formats import shacrypt
from mailmigrate.formats.esmith import read_esmith
from mailmigrate.model import Secret
from servers.slapd import SlapdServer

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/slapd").exists(), reason="slapd not installed")

MISC = Path("/etc/ldap/schema/misc.ldif")  # nisMailAlias, for aliases
SRC_BASE = "dc=example,dc=com"
DST_BASE = "dc=directory,dc=nh"
PW = {"alice": "Alice-pw-1", "bob": "b0b's secret", "carol": "carol pw"}


def slappasswd(scheme: str, pw: str) -> str:
    args = ["slappasswd", "-h", scheme, "-s", pw]
    if scheme == "{CRYPT}":
        args += ["-c", "$6$%.16s"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    src = SlapdServer(tmp_path_factory.mktemp("src"), SRC_BASE, schemas=[MISC]).start()
    c = ldap3.Connection(src.url, src.admin_dn, src.admin_pw, auto_bind=True, raise_exceptions=True)
    for ou in ("People", "Groups"):
        c.add(f"ou={ou},{SRC_BASE}", ["organizationalUnit"], {"ou": ou})
    people = f"ou=People,{SRC_BASE}"
    c.add(f"uid=alice,{people}", ["inetOrgPerson", "posixAccount"], {
        "cn": "Alice Smith", "sn": "Smith", "givenName": "Alice", "mail": ["alice@example.com", "a.smith@example.com"],
        "uidNumber": "1001", "gidNumber": "100", "homeDirectory": "/home/alice",
        "userPassword": slappasswd("{SSHA}", PW["alice"])})
    c.add(f"uid=bob,{people}", ["inetOrgPerson"], {"cn": "Bob Jones", "sn": "Jones", "mail": "bob@example.com",
                                                     "userPassword": slappasswd("{CRYPT}", PW["bob"])})
    c.add(f"uid=carol,{people}", ["inetOrgPerson"], {"cn": "Carol", "sn": "C", "mail": "carol@example.com",
                                                       "userPassword": slappasswd("{SSHA}", PW["carol"])})
    c.add(f"cn=staff,ou=Groups,{SRC_BASE}", ["groupOfNames"], {"member": [f"uid=alice,{people}"]})
    c.add(f"cn=everyone,ou=Groups,{SRC_BASE}", ["groupOfNames"],
          {"member": [f"uid=bob,{people}", f"cn=staff,ou=Groups,{SRC_BASE}"]})
    c.add(f"cn=info@example.com,{SRC_BASE}", ["nisMailAlias"],
          {"rfc822MailMember": ["alice@example.com", "bob@example.com"]})
    c.unbind()
    dst = SlapdServer(tmp_path_factory.mktemp("dst"), DST_BASE, schemas=[MISC]).start()
    # carol already exists on the target, with another name and password: copy must leave her alone
    d = ldap3.Connection(dst.url, dst.admin_dn, dst.admin_pw, auto_bind=True, raise_exceptions=True)
    d.add(f"ou=People,{DST_BASE}", ["organizationalUnit"], {"ou": "People"})
    d.add(f"uid=carol,ou=People,{DST_BASE}", ["inetOrgPerson"], {"cn": "Carol Old", "sn": "Old",
                                                                  "userPassword": slappasswd("{SSHA}", "old")})
    d.unbind()
    yield src, dst
    src.stop()
    dst.stop()


def ldapdir(srv, base) -> LdapDirectory:
    return LdapDirectory(srv.url, base, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw))


def binds(srv, dn, pw) -> bool:
    return ldap3.Connection(srv.url, dn, pw).bind()


def test_ldap_to_ldap_copy_then_rerun_changes_nothing(servers):
    src, dst = servers
    before = ldapdir(dst, DST_BASE).read()
    report = copy(ldapdir(src, SRC_BASE), ldapdir(dst, DST_BASE))
    assert report.ok, report.render()
    assert sorted(report.created["users"]) == ["alice", "bob"]
    assert report.left_alone["users"] == ["carol"]
    assert sorted(report.created["groups"]) == ["everyone", "staff"]
    assert report.created["aliases"] == ["info@example.com"]
    assert {p.user: p.action for p in report.passwords} == {"alice": "kept", "bob": "kept"}

    # the migrated hashes work on the target: a real bind with the original passwords
    assert binds(dst, f"uid=alice,ou=People,{DST_BASE}", PW["alice"])
    assert binds(dst, f"uid=bob,ou=People,{DST_BASE}", PW["bob"])
    assert not binds(dst, f"uid=bob,ou=People,{DST_BASE}", "wrong")
    assert binds(dst, f"uid=carol,ou=People,{DST_BASE}", "old")  # untouched

    after = ldapdir(dst, DST_BASE).read()
    assert after.groups["everyone"].members == ["bob"] and after.groups["everyone"].groups == ["staff"]
    assert after.users["alice"].aliases == ["a.smith@example.com"]
    assert after.aliases["info@example.com"].targets == ["alice@example.com", "bob@example.com"]
    assert after.users["carol"].real_name == "Carol Old"

    again = copy(ldapdir(src, SRC_BASE), ldapdir(dst, DST_BASE))
    assert again.changes == 0 and again.ok
    d = diff(ldapdir(src, SRC_BASE), ldapdir(dst, DST_BASE))
    assert d.kinds["users"].missing == [] and list(d.kinds["users"].changed) == ["carol"]

    # the post-migration checklist: source against target passes; a lost membership fails, by name
    source_view = ldapdir(src, SRC_BASE).read()
    checklist = compare(source_view, after)
    assert checklist.ok, checklist.render()
    assert json.loads(checklist.as_json())["checks"][0] == {
        "check": "users", "ok": True, "before": 3, "after": 3, "missing": [], "added": []}
    after.groups["everyone"].groups.clear()
    broken = compare(source_view, after)
    assert not broken.ok and "everyone <- group staff" in broken.render()
    assert compare(before, after).items[0].added == ["alice", "bob"]


def test_update_existing_changes_the_existing_user(servers):
    src, dst = servers
    report = copy(ldapdir(src, SRC_BASE), ldapdir(dst, DST_BASE), update_existing=True)
    assert report.updated.get("users") == ["carol"], report.render()
    assert binds(dst, f"uid=carol,ou=People,{DST_BASE}", PW["carol"])
    assert ldapdir(dst, DST_BASE).read().users["carol"].real_name == "Carol"
    again = copy(ldapdir(src, SRC_BASE), ldapdir(dst, DST_BASE), update_existing=True)
    assert again.changes == 0, again.render()


def test_account_provider_basedn_against_the_target(servers):
    src, dst = servers
    target_domains = [".".join(p.split("=")[1] for p in ldapdir(dst, DST_BASE).read().base_dn.split(","))]
    remote = AccountProvider("ldap", DST_BASE, local=False)
    plan = plan_provider(remote, target_domains, ["mail", "webtop"])
    assert plan.domain == "directory.nh" and plan.order == ["mail", "webtop"]
    with pytest.raises(ProviderMismatch, match="external user domain named example.com"):
        plan_provider(AccountProvider("ldap", SRC_BASE, local=False), target_domains, ["mail"])
    local = plan_provider(AccountProvider("samba", SRC_BASE, local=True, password_policy={"Users": "strong",
                                                                                         "PassExpires": "yes",
                                                                                         "MaxPassAge": "90"}),
                          target_domains, ["account-provider", "mail"])
    assert local.order == ["mail", "account-provider"]
    assert local.password_policy["strength"]["complexity"] and local.password_policy["expiration"]["max_age_days"] == 90
    with pytest.raises(ProviderCollision):
        plan_provider(AccountProvider("ldap", DST_BASE, local=True), target_domains, [])
    ol = plan_provider(AccountProvider("ldap", SRC_BASE, local=True), target_domains, [])
    assert ol.password_policy is None and "not migrated" in ol.notes[0]


def test_ldap_to_passwd_file_hashes_verify_with_dovecot(servers, tmp_path):
    src, _ = servers
    pf = tmp_path / "users"
    report = copy(ldapdir(src, SRC_BASE), PasswdFileDirectory(pf, uid="vmail", gid="vmail",
                                                               home_template="/srv/mail/{login}"))
    assert report.ok and report.unsupported == {"groups": 2, "aliases": 1}
    assert (pf.stat().st_mode & 0o777) == 0o600
    lines = {l.split(":")[0]: l for l in pf.read_text().splitlines()}
    assert lines["alice"].split(":")[1].startswith("{SSHA}")
    assert lines["bob"].split(":")[1].startswith("{CRYPT}$6$")
    if shutil.which("doveadm"):
        for user in ("alice", "bob", "carol"):
            h = lines[user].split(":")[1]
            ok = subprocess.run(["doveadm", "pw", "-t", h, "-p", PW[user]], capture_output=True, text=True)
            assert ok.returncode == 0 and "verified" in ok.stdout + ok.stderr, ok.stderr
            bad = subprocess.run(["doveadm", "pw", "-t", h, "-p", "nope"], capture_output=True, text=True)
            assert bad.returncode != 0
    assert copy(ldapdir(src, SRC_BASE), PasswdFileDirectory(pf)).changes == 0


SME_ACCOUNTS = b"""admin=system|PasswordSet|yes
dave=user|EmailForward|both|FirstName|Dave|ForwardAddress|dave@elsewhere.org|LastName|Brown|Uid|5001|Gid|5001
erin=user|EmailForward|local|FirstName|Erin|LastName|Gray
sales=group|Description|Sales|Members|dave,erin
dave.brown=pseudonym|Account|dave
"""


def test_esmith_archive_to_ldap_and_back(servers, tmp_path):
    src, dst = servers
    acc, shadow = tmp_path / "accounts", tmp_path / "shadow"
    acc.write_bytes(SME_ACCOUNTS)
    dave_hash = shacrypt.make("dave pw", "6")
    shadow.write_text(f"root:*:19000:0:99999:7:::\ndave:{dave_hash}:19000:0:99999:7:::\nerin:!!:19000::::::\n")
    esm = EsmithDirectory(acc, shadow=shadow, domain="example.com")
    d = esm.read()
    assert d.users["dave"].forwards == ["dave@elsewhere.org"] and d.users["dave"].keep_copy
    assert d.aliases["dave.brown@example.com"].targets == ["dave@example.com"]
    assert d.users["erin"].password is None and not d.users["erin"].enabled
    report = copy(esm, ldapdir(dst, DST_BASE))
    assert report.ok, report.render()
    assert binds(dst, f"uid=dave,ou=People,{DST_BASE}", "dave pw")
    assert {p.user: p.action for p in report.passwords}["erin"] == "none"

    # and LDAP -> e-smith: users and groups land in the accounts db, hashes in shadow when they are crypt
    acc2, shadow2 = tmp_path / "accounts2", tmp_path / "shadow2"
    shadow2.write_text("root:*:19000:0:99999:7:::\n")
    pwfile = tmp_path / "generated"
    report = copy(ldapdir(src, SRC_BASE), EsmithDirectory(acc2, shadow=shadow2, domain="example.com"),
                  password_policy=PasswordPolicy("generate"))
    # an alias to two addresses has no e-smith form: that one object fails, named, the rest goes on
    assert [(k, n) for k, n, _ in report.failed] == [("aliases", "info@example.com")]
    assert "exactly one target" in report.render()
    db = read_esmith(acc2)
    assert db["everyone"].props["Members"] == "bob,staff" and db["bob"].type == "user"
    sh = {l.split(":")[0]: l.split(":")[1] for l in shadow2.read_text().splitlines()}
    assert shacrypt.verify(PW["bob"], sh["bob"])  # {CRYPT} carried over as is
    gen = dict(report.generated_passwords())
    assert set(gen) == {"alice", "carol"}  # {SSHA} cannot go into /etc/shadow
    assert shacrypt.verify(gen["alice"].reveal(), sh["alice"])
    rerun = copy(ldapdir(src, SRC_BASE), EsmithDirectory(acc2, shadow=shadow2, domain="example.com"))
    assert rerun.changes == 0 and shacrypt.verify(gen["alice"].reveal(), sh["alice"])


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "directory", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_cli_diff_copy_json_and_passwords_stay_out_of_output(servers, tmp_path):
    src, _ = servers
    env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=src.admin_pw)
    url = f"{src.url}/{SRC_BASE}?bind={src.admin_dn}"
    target = f"passwd-file:{tmp_path / 'users'}"
    p = run_cli("diff", url, target, "--json", env=env)
    assert p.returncode == 1, p.stderr
    assert sorted(json.loads(p.stdout)["kinds"]["users"]["missing"]) == ["alice", "bob", "carol"]
    p = run_cli("copy", url, target, "--dry-run", env=env)
    assert p.returncode == 0 and "would copy" in p.stdout and not (tmp_path / "users").exists()
    p = run_cli("copy", url, target, "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert len(json.loads(p.stdout)["created"]["users"]) == 3
    p = run_cli("diff", url, target, env=env)
    assert p.returncode == 0 and "nothing to do" in p.stdout
    for out in (p.stdout, p.stderr):
        assert src.admin_pw not in out
    p = run_cli("diff", url, target)  # bind DN but no password anywhere
    assert p.returncode == 2 and "no password" in p.stderr
    p = run_cli("diff", f"{src.url}/{SRC_BASE}?bind={src.admin_dn}&nope=1", target, env=env)
    assert p.returncode == 2 and "unknown option" in p.stderr


def test_migrated_hashes_log_in_over_imap_to_a_real_dovecot(servers, tmp_path):
    """The users copied from LDAP into a passwd-file log in to a real Dovecot that uses that file, with their
    original passwords ({SSHA} and {CRYPT} hashes carried over unchanged); a wrong password is refused."""
    import imaplib

    from servers.dovecot import DovecotServer, available

    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    src, _ = servers
    pf = tmp_path / "users"
    assert copy(ldapdir(src, SRC_BASE), PasswdFileDirectory(pf)).ok
    dv = DovecotServer(passdb_file=pf).start()
    try:
        for user in ("alice", "bob"):
            c = imaplib.IMAP4("127.0.0.1", dv.port)
            assert c.login(user, PW[user])[0] == "OK"
            assert c.select("INBOX")[0] == "OK"
            c.logout()
        c = imaplib.IMAP4("127.0.0.1", dv.port)
        with pytest.raises(imaplib.IMAP4.error):
            c.login("alice", "not-her-password")
    finally:
        dv.stop()
