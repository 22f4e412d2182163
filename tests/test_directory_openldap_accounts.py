"""OpenLDAP sources as they are found: every common hash scheme, accounts disabled the usual ways, POSIX
and shadow attributes; copied to OpenLDAP (with and without ppolicy) and to a passwd-file served by Dovecot.

Every hash is made by slapd's own ``slappasswd`` (with its pw-sha2, pw-pbkdf2 and argon2 modules), never
by mailmigrate; the proof that a password came over is a real login with the original clear text.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import ldap3
import pytest

from mailmigrate.directory.base import DirectoryError
from mailmigrate.directory.checklist import compare
from mailmigrate.directory.copy import PasswordPolicy, copy, diff
from mailmigrate.directory.ldap import LdapDirectory
from mailmigrate.directory.passwdfile import PasswdFileDirectory
from mailmigrate.model import Secret
from servers import dovecot as dovecot_server
from servers.imapcheck import logs_in
from servers.slapd import SlapdServer

pytestmark = pytest.mark.skipif(not Path("/usr/sbin/slapd").exists(), reason="slapd not installed")

SRC = "dc=example,dc=com"
DST = "dc=directory,dc=nh"
PEOPLE = f"ou=People,{SRC}"
MODULES = ("pw-sha2", "pw-pbkdf2", "argon2")
SCHEME_MODULES = {"{SSHA2": "pw-sha2", "{SHA2": "pw-sha2", "{SSHA5": "pw-sha2", "{SHA5": "pw-sha2",
                  "{PBKDF2": "pw-pbkdf2", "{ARGON2": "argon2"}
READER = f"cn=reader,{SRC}"  # a bind DN with a size limit, as a server's admin may have set one


def slappasswd(scheme: str, pw: str) -> str:
    args = ["slappasswd"]
    module = next((m for prefix, m in SCHEME_MODULES.items() if scheme.startswith(prefix)), None)
    if module:  # before -h, and one only: slappasswd keeps the last module-load it is given
        args += ["-o", f"module-load={module}.so"]
    args += ["-h", scheme, "-s", pw]
    if scheme == "{CRYPT}":
        args += ["-c", "$6$%.16s"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def pbkdf2_salt(h: str) -> bytes:
    """The salt of an OpenLDAP pw-pbkdf2 hash, decoded here by hand: ``{SCHEME}ROUNDS$ab64salt$ab64key``."""
    t = h.split("$")[1].replace(".", "+")
    return base64.b64decode(t + "=" * (-len(t) % 4))


def pbkdf2_with_salt(pw: str, representable: bool, scheme: str = "{PBKDF2}") -> str:
    """A PBKDF2-SHA1 hash whose random salt Dovecot's format can (or cannot) hold: slappasswd until one fits."""
    for _ in range(200):
        h = slappasswd(scheme, pw)
        if bool(set(pbkdf2_salt(h)) & set(b"\0$:\r\n")) != representable:
            return h
    raise AssertionError("slappasswd never gave such a salt")


#: login -> (scheme as slappasswd names it, or a callable making the hash)
HASHED = {
    "h-ssha": "{SSHA}", "h-sha": "{SHA}", "h-smd5": "{SMD5}", "h-md5": "{MD5}", "h-crypt": "{CRYPT}",
    "h-ssha256": "{SSHA256}", "h-ssha512": "{SSHA512}", "h-sha256": "{SHA256}", "h-sha512": "{SHA512}",
    "h-argon2": "{ARGON2}", "h-pbkdf2": lambda pw: pbkdf2_with_salt(pw, True),
    "h-pbkdf2-sha1": lambda pw: pbkdf2_with_salt(pw, True, "{PBKDF2-SHA1}"), "h-pbkdf2-badsalt": lambda pw: pbkdf2_with_salt(pw, False),
    "h-pbkdf2-sha256": "{PBKDF2-SHA256}", "h-pbkdf2-sha512": "{PBKDF2-SHA512}",
}
#: OpenLDAP hashes Dovecot has no reading of: reported per user, handled as unreadable
UNREADABLE = {"h-pbkdf2-badsalt", "h-pbkdf2-sha256", "h-pbkdf2-sha512"}
DISABLED = {"d-shadow": "shadowExpire 1 (expired)", "d-crypt": "locked {CRYPT}! hash",
            "d-ppolicy": "ppolicy pwdAccountLockedTime 000001010000Z"}


def pw(login: str) -> str:
    return f"pw of {login}!"


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    srv = SlapdServer(tmp_path_factory.mktemp("src"), SRC, ppolicy=True, db_options={
        "olcLimits": [f'dn.exact="{READER}" size.soft=5 size.hard=5 size.prtotal=5']}).start()
    c = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True, raise_exceptions=True)
    for ou in ("People", "Groups"):
        c.add(f"ou={ou},{SRC}", ["organizationalUnit"], {"ou": ou})
    c.add(READER, ["organizationalRole", "simpleSecurityObject"], {"userPassword": slappasswd("{SSHA}", "reader")})
    for login, how in HASHED.items():
        h = how(pw(login)) if callable(how) else slappasswd(how, pw(login))
        c.add(f"uid={login},{PEOPLE}", ["inetOrgPerson"], {"cn": login, "sn": login, "userPassword": h})
    c.add(f"uid=d-shadow,{PEOPLE}", ["inetOrgPerson", "shadowAccount"],
          {"cn": "d", "sn": "d", "shadowExpire": "1", "userPassword": slappasswd("{SSHA}", pw("d-shadow"))})
    c.add(f"uid=d-future,{PEOPLE}", ["inetOrgPerson", "shadowAccount"],
          {"cn": "d", "sn": "d", "shadowExpire": "99999", "userPassword": slappasswd("{SSHA}", pw("d-future"))})
    crypt = slappasswd("{CRYPT}", pw("d-crypt"))
    c.add(f"uid=d-crypt,{PEOPLE}", ["inetOrgPerson"],
          {"cn": "d", "sn": "d", "userPassword": "{CRYPT}!" + crypt[len("{CRYPT}"):]})
    c.add(f"uid=d-ppolicy,{PEOPLE}", ["inetOrgPerson"],
          {"cn": "d", "sn": "d", "userPassword": slappasswd("{SSHA}", pw("d-ppolicy"))})
    c.modify(f"uid=d-ppolicy,{PEOPLE}", {"pwdAccountLockedTime": [(ldap3.MODIFY_ADD, ["000001010000Z"])]})
    c.add(f"uid=alice,{PEOPLE}", ["inetOrgPerson", "posixAccount", "shadowAccount"], {
        "cn": "Alice", "sn": "A", "uidNumber": "1001", "gidNumber": "100", "homeDirectory": "/home/alice",
        "shadowMax": "99999", "shadowLastChange": "19000", "userPassword": slappasswd("{SSHA}", pw("alice"))})
    c.add(f"cn=devs,ou=Groups,{SRC}", ["posixGroup"], {"gidNumber": "2000", "memberUid": ["alice"]})
    c.unbind()
    yield srv
    srv.stop()


def ldapdir(srv, base, bind=None, password=None) -> LdapDirectory:
    return LdapDirectory(srv.url, base, bind_dn=bind or srv.admin_dn, password=Secret(password or srv.admin_pw))


def binds(srv, dn, password) -> bool:
    return ldap3.Connection(srv.url, dn, password).bind()


def test_disabled_markers_are_read(src):
    d = ldapdir(src, SRC).read()
    assert {u.login: u.disabled_by for u in d.users.values() if not u.enabled} == DISABLED
    assert d.users["d-future"].enabled  # expires in the future: still active
    assert d.users["d-crypt"].password.value.reveal().startswith("$6$")  # the lock is not part of the hash


def test_each_hash_scheme_logs_in_to_dovecot_or_is_reported(src, tmp_path):
    pf = tmp_path / "users"
    report = copy(ldapdir(src, SRC), PasswdFileDirectory(pf))
    assert report.ok, report.render()
    outcome = {p.user: p for p in report.passwords}
    assert {u for u, p in outcome.items() if p.action != "kept"} == UNREADABLE
    assert "salt" in outcome["h-pbkdf2-badsalt"].reason and "pw-pbkdf2" in outcome["h-pbkdf2-sha256"].reason
    # split on LF only, as Dovecot does: a PBKDF2 salt Dovecot can hold may carry \x0b, \x0c or \x1c-\x1e,
    # which str.splitlines() would take for line ends
    lines = {l.split(":")[0]: l.split(":")[1] for l in pf.read_text(errors="surrogateescape").split("\n") if l}
    assert lines["h-pbkdf2"].startswith("{PBKDF2}$1$")  # rewritten in Dovecot's format, not kept by name
    assert {u for u, _, how in report.disabled if how.startswith("nologin")} == set(DISABLED)
    if not dovecot_server.available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    dv = dovecot_server.DovecotServer(passdb_file=pf).start()
    try:
        def login(user, password):
            return logs_in(dv.port, user, password)

        for user in set(HASHED) - UNREADABLE | {"d-future", "alice"}:
            assert login(user, pw(user)), f"{user} ({lines[user][:12]}...) does not log in"
            assert not login(user, "wrong")
        for user in DISABLED:
            assert not login(user, pw(user)), f"{user} is disabled on the source and logs in to Dovecot"
    finally:
        dv.stop()


@pytest.fixture()
def target(tmp_path):
    made = []

    def make(ppolicy: bool):
        srv = SlapdServer(tmp_path / f"dst{len(made)}", DST, ppolicy=ppolicy, modules=MODULES).start()
        made.append(srv)
        return srv
    yield make
    for s in made:
        s.stop()


def test_disabled_users_stay_disabled_on_openldap_with_ppolicy(src, target):
    dst = target(ppolicy=True)
    report = copy(ldapdir(src, SRC), ldapdir(dst, DST))
    assert report.ok, report.render()
    assert {u: s for u, s, _ in report.disabled} == DISABLED
    assert "disabled: d-shadow (shadowExpire 1 (expired)) -> ppolicy pwdAccountLockedTime" in report.render()
    people = f"ou=People,{DST}"
    assert binds(dst, f"uid=h-ssha,{people}", pw("h-ssha")) and binds(dst, f"uid=d-future,{people}", pw("d-future"))
    for user in DISABLED:
        assert not binds(dst, f"uid={user},{people}", pw(user)), user
    after = ldapdir(dst, DST).read()
    assert compare(ldapdir(src, SRC).read(), after).ok
    assert diff(ldapdir(src, SRC), ldapdir(dst, DST)).empty  # enabled state compared, and the same

    # someone unlocks an account on the target: the checklist and diff name it
    c = ldap3.Connection(dst.url, dst.admin_dn, dst.admin_pw, auto_bind=True)
    assert c.modify(f"uid=d-ppolicy,{people}", {"pwdAccountLockedTime": [(ldap3.MODIFY_DELETE, [])]}), c.result
    cl = compare(ldapdir(src, SRC).read(), ldapdir(dst, DST).read())
    assert not cl.ok and "d-ppolicy: disabled before, enabled after" in cl.render()
    assert diff(ldapdir(src, SRC), ldapdir(dst, DST)).kinds["users"].changed == {"d-ppolicy": ["enabled"]}
    # ... and an active account locked there by mistake; --update-existing puts both right
    assert c.modify(f"uid=h-ssha,{people}", {"pwdAccountLockedTime": [(ldap3.MODIFY_ADD, ["000001010000Z"])]})
    assert not binds(dst, f"uid=h-ssha,{people}", pw("h-ssha"))
    again = copy(ldapdir(src, SRC), ldapdir(dst, DST), update_existing=True)
    assert sorted(again.updated["users"]) == ["d-ppolicy", "h-ssha"], again.render()
    assert not binds(dst, f"uid=d-ppolicy,{people}", pw("d-ppolicy"))
    assert binds(dst, f"uid=h-ssha,{people}", pw("h-ssha"))


def test_without_ppolicy_locked_hashes_or_refusal_unless_asked(src, target):
    dst = target(ppolicy=False)
    report = copy(ldapdir(src, SRC), ldapdir(dst, DST))
    refused = {n: r for k, n, r in report.failed}
    # a crypt hash has a locked form; an {SSHA} one has none, and without ppolicy nothing else holds it
    assert set(refused) == {"d-shadow", "d-ppolicy"}, report.render()
    assert all("cannot hold it disabled" in r and "--disabled-as-enabled" in r for r in refused.values())
    people = f"ou=People,{DST}"
    assert not binds(dst, f"uid=d-crypt,{people}", pw("d-crypt"))
    assert {u: how for u, _, how in report.disabled} == {"d-crypt": "locked {CRYPT}! hash"}
    assert not ldapdir(dst, DST).read().users["d-crypt"].enabled

    asked = copy(ldapdir(src, SRC), ldapdir(dst, DST), disabled_as_enabled=True)
    assert asked.ok and sorted(asked.created["users"]) == ["d-ppolicy", "d-shadow"]
    assert all("created ENABLED" in how for u, _, how in asked.disabled)
    assert binds(dst, f"uid=d-shadow,{people}", pw("d-shadow"))  # as asked, and said per user


def test_posix_and_shadow_attributes_url_options_win_and_what_is_dropped_is_said(src, tmp_path, target):
    pf = tmp_path / "users"
    report = copy(ldapdir(src, SRC), PasswdFileDirectory(pf, uid="5000", gid="5000", home_template="/srv/mail/{login}"))
    entry = {l.split(":")[0]: l.split(":") for l in pf.read_text(errors="surrogateescape").splitlines()}["alice"]
    assert entry[2:4] == ["5000", "5000"] and entry[5] == "/srv/mail/alice"
    assert any("shadowAccount" in n and "alice" in n for n in report.notes), report.notes
    plain = tmp_path / "plain"
    copy(ldapdir(src, SRC), PasswdFileDirectory(plain))
    entry = {l.split(":")[0]: l.split(":") for l in plain.read_text(errors="surrogateescape").splitlines()}["alice"]
    assert entry[2:4] == ["1001", "100"] and entry[5] == "/home/alice"  # no URL options: the source's

    dst = target(ppolicy=True)
    report = copy(ldapdir(src, SRC), ldapdir(dst, DST), disabled_as_enabled=True)
    assert any("gidNumber" in n and "devs (2000)" in n for n in report.notes), report.notes
    assert not any("shadowAccount" in n for n in report.notes)  # kept: OpenLDAP has the class
    e = ldap3.Connection(dst.url, dst.admin_dn, dst.admin_pw, auto_bind=True)
    e.search(f"ou=People,{DST}", "(uid=alice)", attributes=["shadowMax", "shadowLastChange"])
    assert e.entries[0].shadowMax.value == 99999


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "directory", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_dry_run_writes_no_file_and_diff_marks_disabled_users(src, tmp_path):
    env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=src.admin_pw)
    url = f"{src.url}/{SRC}?bind={src.admin_dn}"
    gen, users = tmp_path / "generated", tmp_path / "users"
    p = run_cli("copy", url, f"passwd-file:{users}", "--dry-run", "--passwords", "generate",
                "--generated-passwords", gen, env=env)
    assert p.returncode == 0, p.stderr
    assert not gen.exists() and not users.exists()
    assert "would be generated" in p.stdout and "would copy" in p.stdout
    p = run_cli("diff", url, f"passwd-file:{users}", env=env)
    assert p.returncode == 1 and "+ d-crypt (disabled)" in p.stdout
    p = run_cli("diff", url, f"passwd-file:{users}", "--json", env=env)
    assert sorted(json.loads(p.stdout)["kinds"]["users"]["disabled"]) == sorted(DISABLED)


def test_cli_refuses_a_disabled_user_a_target_cannot_hold_unless_asked(src, tmp_path):
    env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=src.admin_pw)
    url = f"{src.url}/{SRC}?bind={src.admin_dn}"
    accounts = tmp_path / "accounts"
    target = f"esmith:{accounts}?domain=example.com"  # no shadow file: nothing can hold "disabled" there
    p = run_cli("copy", url, target, env=env)
    assert p.returncode == 1
    for user in DISABLED:
        assert f"FAILED users {user}: user {user} is disabled on the source" in p.stdout
    p = run_cli("copy", url, target, "--disabled-as-enabled", "--json", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    said = {d["user"]: d["target"] for d in json.loads(p.stdout)["disabled"]}
    assert set(said) == set(DISABLED) and all(t.startswith("created ENABLED") for t in said.values())


def test_size_limit_of_the_bind_dn_is_named_with_a_hint(src):
    with pytest.raises(DirectoryError) as e:
        ldapdir(src, SRC, READER, "reader").read()
    msg = str(e.value)
    assert "sizeLimitExceeded" in msg and READER in msg and "size.prtotal" in msg


def test_ldaps_with_a_private_ca_file(tmp_path):
    key, crt = dovecot_server.make_cert(tmp_path)  # self-signed: its own CA, as a private CA would be
    srv = SlapdServer(tmp_path / "tls", SRC, tls=(crt, key)).start()
    try:
        env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=srv.admin_pw)
        base = f"{srv.ldaps_url}/{SRC}?bind={srv.admin_dn}"
        target = f"passwd-file:{tmp_path / 'users'}"
        p = run_cli("diff", base, target, env=env)
        assert p.returncode != 0 and "certificate" in (p.stdout + p.stderr).lower()  # verified by default
        p = run_cli("diff", f"{base}&cafile={crt}", target, env=env)
        assert p.returncode == 0, p.stderr  # an empty directory: nothing to do, read over verified TLS
        p = run_cli("diff", f"{base}&cafile={tmp_path / 'nope.pem'}", target, env=env)
        assert p.returncode == 2 and "cafile" in p.stderr
    finally:
        srv.stop()


def test_disabled_users_in_e_smith_shadow_and_kerio(src, tmp_path, kerio):
    from mailmigrate.directory.esmith import EsmithDirectory
    from mailmigrate.directory.kerio import KerioDirectory

    acc, shadow = tmp_path / "accounts", tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    report = copy(ldapdir(src, SRC), EsmithDirectory(acc, shadow=shadow, domain="example.com"))
    assert {u for u, _, how in report.disabled if how.startswith("'!'")} == set(DISABLED)
    hashes = {l.split(":")[0]: l.split(":")[1] for l in shadow.read_text().splitlines()}
    assert hashes["d-crypt"].startswith("!$6$") and hashes["h-crypt"].startswith("$6$")
    assert hashes["d-ppolicy"] == "!"  # an {SSHA} has no shadow form: locked, without a password
    reread = EsmithDirectory(acc, shadow=shadow, domain="example.com").read()
    assert {u.login for u in reread.users.values() if not u.enabled} == set(DISABLED)

    with KerioDirectory.from_url(f"kerio://Admin@127.0.0.1:{kerio.port}/example.com?cafile={kerio.certfile}",
                                 Secret("adminpw")) as k:
        report = copy(ldapdir(src, SRC), k, password_policy=PasswordPolicy("generate"))
        assert report.ok, report.render()
        assert {u: how for u, _, how in report.disabled} == {u: "isEnabled false" for u in DISABLED}
        assert {u.login.split("@")[0] for u in k.read().users.values() if not u.enabled} == set(DISABLED)
