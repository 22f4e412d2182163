"""NethServer 7 -> 8 through the workflow layer: the seed's per-application buttons as project actions,
with states, refusals, history and logs, on the shipped NS7 sample; the local account provider between two
real slapd instances (NS7's and NS8's), migrated last."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nethserver7"
MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def mm(*args, check=True):
    p = subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode in (0, 1), p.stderr[-2000:]
    return p


def test_ns7_mail_application_through_the_project(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "ns7", symlinks=True)
    proj = tmp_path / "ns.toml"
    proj.write_text('[project]\nname = "ns"\npath = "nethserver7"\n'
                    '[nethserver]\nsource_root = "ns7"\nroot = "ns8"\napplications = ["mail"]\n')
    mm("project", "init", proj)
    status = lambda: {u["unit"]: u for u in json.loads(mm("project", "status", proj, "--json").stdout)}  # noqa: E731
    assert status()["mail"]["state"] == "not_started"
    r = mm("project", "finish", proj)
    assert r.returncode == 1 and "not been started" in r.stdout  # refused, nothing done
    assert not (tmp_path / "ns8" / "vmail").exists()
    out = json.loads(mm("project", "start", proj, "--json").stdout)[0]
    assert out["ok"] and out["state"] == "migrating"
    assert (tmp_path / "ns8" / "vmail" / "alice" / "Maildir").is_dir()
    late = tmp_path / "ns7/var/lib/nethserver/vmail/alice@example.com/Maildir/new/1800000000.M9.late"
    late.parent.mkdir(exist_ok=True)
    late.write_bytes(b"Subject: late\r\n\r\narrived between syncs\r\n")
    out = json.loads(mm("project", "sync", proj, "--json").stdout)[0]
    assert out["ok"] and "copied 1" in out["message"]
    out = json.loads(mm("project", "finish", proj, "--json").stdout)[0]
    assert out["state"] == "migrated" and out["ok"]
    assert (tmp_path / "ns8" / "vmail" / "alice" / "Maildir" / "dovecot-acl").exists()  # ACLs converted
    st = status()["mail"]
    assert st["state"] == "migrated" and st["actions"] == []
    logs = mm("project", "logs", proj).stdout
    assert "finish" in logs and "start" in logs


# -- the local account provider, migrated last ----------------------------------------------------------

BASE = "dc=directory,dc=nh"  # NS7's local provider; NS8's replacement keeps the domain
PEOPLE, GROUPS = f"ou=People,{BASE}", f"ou=Groups,{BASE}"
LDAP_PW = {"alice": "Alice-7-pw", "bob": "bob's old pw", "carol": "carol pw", "dave": "dave pw", "erin": "erin pw"}


def ldap_conn(srv) -> "ldap3.Connection":
    import ldap3

    return ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True, raise_exceptions=True)


def add_user(c, login: str, number: int) -> None:
    from servers.slapd import ssha

    c.add(f"uid={login},{PEOPLE}", ["inetOrgPerson", "posixAccount", "shadowAccount"], {
        "cn": login.title(), "sn": login.title(), "givenName": login.title(), "mail": f"{login}@example.com",
        "uidNumber": str(number), "gidNumber": "100", "homeDirectory": f"/var/lib/nethserver/home/{login}",
        "loginShell": "/usr/libexec/openssh/sftp-server", "userPassword": ssha(LDAP_PW[login])})


def binds(srv, login: str, password: str) -> bool:
    import ldap3

    return ldap3.Connection(srv.url, f"uid={login},{PEOPLE}", password).bind()


def entries(srv) -> dict[str, set[str]]:
    """DN -> the uid values of its members (users and groups as NS7 and NS8 keep them)."""
    import ldap3

    c = ldap_conn(srv)
    c.search(BASE, "(|(objectClass=inetOrgPerson)(objectClass=posixGroup)(objectClass=groupOfNames))",
             ldap3.SUBTREE, attributes=["memberUid", "member"])
    out = {}
    for e in c.entries:
        a = e.entry_attributes_as_dict
        members = set(a.get("memberUid", [])) | {m.split(",")[0].partition("=")[2] for m in a.get("member", [])
                                                   if m}
        out[e.entry_dn] = members
    c.unbind()
    return out


def groups(srv) -> dict[str, tuple[set[str], int | None, set[str]]]:
    """cn -> (object classes, gidNumber, memberUid) of each group, as NS7's and NS8's posix tools see it."""
    import ldap3

    c = ldap_conn(srv)
    c.search(GROUPS, "(objectClass=*)", ldap3.LEVEL, attributes=["cn", "objectClass", "gidNumber", "memberUid"])
    out = {}
    for e in c.entries:
        a = e.entry_attributes_as_dict
        gid = int(a["gidNumber"][0]) if a.get("gidNumber") else None
        out[a["cn"][0]] = (set(a["objectClass"]), gid, set(a.get("memberUid", [])))
    c.unbind()
    return out


def stamps(srv) -> dict[str, str]:
    """DN -> entryCSN (slapd changes it at every write to the entry, to the microsecond)."""
    import ldap3

    c = ldap_conn(srv)
    c.search(BASE, "(objectClass=*)", ldap3.SUBTREE, attributes=["entryCSN"])
    out = {e.entry_dn: str(e.entryCSN) for e in c.entries}
    c.unbind()
    return out


@pytest.fixture
def providers(tmp_path):
    from servers.slapd import SlapdServer

    ns7 = SlapdServer(tmp_path / "ns7-ldap", BASE).start()
    ns8 = SlapdServer(tmp_path / "ns8-ldap", BASE, admin_pw="ns8-secret").start()
    try:
        c = ldap_conn(ns7)
        for ou in ("People", "Groups"):
            c.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
        for i, login in enumerate(("alice", "bob", "carol", "dave")):
            add_user(c, login, 1001 + i)
        c.add(f"cn=sales,{GROUPS}", ["posixGroup"], {"gidNumber": "2001", "memberUid": ["alice", "dave"]})
        c.add(f"cn=support,{GROUPS}", ["posixGroup"], {"gidNumber": "2002", "memberUid": ["bob"]})
        c.unbind()
        shutil.copytree(SAMPLE, tmp_path / "ns7", symlinks=True)
        for name, srv in (("ns7-ldap.pw", ns7), ("ns8-ldap.pw", ns8)):
            (tmp_path / name).write_text(srv.admin_pw + "\n")
            os.chmod(tmp_path / name, 0o600)
        proj = tmp_path / "ns.toml"
        proj.write_text(
            '[project]\nname = "ns"\npath = "nethserver7"\n'
            '[nethserver]\nsource_root = "ns7"\nroot = "ns8"\napplications = ["mail", "account-provider"]\n'
            f'source_ldap = "{ns7.url}/{BASE}?bind={ns7.admin_dn}"\nsource_ldap_password_file = "ns7-ldap.pw"\n'
            f'target_ldap = "{ns8.url}/{BASE}?bind={ns8.admin_dn}"\ntarget_ldap_password_file = "ns8-ldap.pw"\n')
        mm("project", "init", proj)
        yield proj, ns7, ns8
    finally:
        ns7.stop()
        ns8.stop()


def act(proj, action, unit) -> dict:
    return json.loads(mm("project", action, proj, unit, "--json").stdout)[0]


def ns7_slapd_status(proj) -> str:
    from mailmigrate.formats.esmith import read_esmith

    return read_esmith(proj.parent / "ns7/var/lib/nethserver/db/configuration")["slapd"].props["status"]


def test_ns7_account_provider_moves_last_through_the_project(providers):
    proj, ns7, ns8 = providers
    out = act(proj, "start", "account-provider")
    assert out["ok"] and out["state"] == "migrating"
    assert not any(dn.startswith("uid=") for dn in entries(ns8))  # start binds and reads; it copies nothing
    out = act(proj, "sync", "account-provider")
    assert out["ok"], out
    ns7_entries, ns8_entries = entries(ns7), entries(ns8)
    assert {dn for dn in ns7_entries if dn.startswith("uid=")} <= set(ns8_entries)
    assert ns8_entries[f"cn=sales,{GROUPS}"] == ns7_entries[f"cn=sales,{GROUPS}"] == {"alice", "dave"}
    # groups keep their kind and their gid: files NS7 users share by group id stay theirs on NS8
    assert groups(ns8) == groups(ns7) == {"sales": ({"posixGroup"}, 2001, {"alice", "dave"}),
                                          "support": ({"posixGroup"}, 2002, {"bob"})}
    assert binds(ns8, "alice", LDAP_PW["alice"]) and not binds(ns8, "alice", "wrong")
    written = stamps(ns8)
    assert act(proj, "sync", "account-provider")["ok"]
    assert stamps(ns8) == written  # a rerun with nothing changed on NS7 writes nothing on NS8

    # mail is still migrating: the provider must wait, and a refusal changes nothing
    assert act(proj, "start", "mail")["ok"]
    out = act(proj, "finish", "account-provider")
    assert not out["ok"] and out["state"] == "migrating" and "mail is migrating" in out["message"]
    assert ns7_slapd_status(proj) == "enabled"

    # NS7 keeps changing meanwhile: a password, a new user in a group; sync carries it
    import ldap3

    from servers.slapd import ssha

    c = ldap_conn(ns7)
    LDAP_PW["bob"] = "bob's new pw"
    c.modify(f"uid=bob,{PEOPLE}", {"userPassword": [(ldap3.MODIFY_REPLACE, [ssha(LDAP_PW["bob"])])]})
    add_user(c, "erin", 1005)
    c.modify(f"cn=support,{GROUPS}", {"memberUid": [(ldap3.MODIFY_ADD, ["erin"])]})
    c.unbind()
    assert act(proj, "sync", "account-provider")["ok"]
    assert binds(ns8, "bob", "bob's new pw") and not binds(ns8, "bob", "bob's old pw")
    assert binds(ns8, "erin", LDAP_PW["erin"]) and entries(ns8)[f"cn=support,{GROUPS}"] == {"bob", "erin"}
    assert groups(ns8)["support"] == ({"posixGroup"}, 2002, {"bob", "erin"})

    assert act(proj, "finish", "mail")["state"] == "migrated"
    out = act(proj, "finish", "account-provider")
    assert out["ok"] and out["state"] == "migrated", out
    assert ns7_slapd_status(proj) == "disabled"  # only now
    checklist = json.loads((proj.parent / "ns8/.mailmigrate/ns7-account-provider-checklist.json").read_text())
    checks = {c["check"]: c for c in checklist["checks"]}
    assert checklist["ok"] and checks["users"]["after"] == 5
    assert checks["group ids"] == {"check": "group ids", "ok": True, "before": 2, "after": 2, "missing": [],
                                   "added": []}
    logs = mm("project", "logs", proj, "--unit", "account-provider").stdout
    assert "finish refused" in logs and "ns8-secret" not in logs and "Alice-7-pw" not in logs


def test_ns7_account_provider_finish_checks_and_abort_removes_only_what_it_made(providers):
    proj, ns7, ns8 = providers
    c = ldap_conn(ns8)  # NS8 had an administrator and a support group of its own before the migration
    for ou in ("People", "Groups"):
        c.add(f"ou={ou},{BASE}", ["organizationalUnit"], {"ou": ou})
    c.add(f"uid=ns8admin,{PEOPLE}", ["inetOrgPerson"], {"cn": "NS8 admin", "sn": "admin"})
    c.add(f"cn=support,{GROUPS}", ["groupOfNames"], {"member": [f"uid=ns8admin,{PEOPLE}"]})
    c.unbind()
    before_ns7, before_ns8 = entries(ns7), entries(ns8)
    assert act(proj, "start", "account-provider")["ok"]
    assert act(proj, "sync", "account-provider")["ok"]
    assert entries(ns8)[f"cn=support,{GROUPS}"] == {"ns8admin"}  # NS8's own group is never changed
    assert act(proj, "skip", "mail")["state"] == "skipped"
    out = act(proj, "finish", "account-provider")  # NS7's support group (bob) is not what NS8 has
    assert not out["ok"] and ns7_slapd_status(proj) == "enabled"
    checklist = json.loads((proj.parent / "ns8/.mailmigrate/ns7-account-provider-checklist.json").read_text())
    missing = {m for c in checklist["checks"] for m in c["missing"]}
    assert missing == {"support <- bob", "support gid 2002"}
    logs = mm("project", "logs", proj, "--unit", "account-provider").stdout
    assert "support <- bob is on NS7, not on NS8" in logs
    out = act(proj, "abort", "account-provider")
    assert out["ok"] and out["state"] == "not_started"
    assert entries(ns8) == before_ns8 and entries(ns7) == before_ns7


def test_ns7_account_provider_refuses_a_gid_another_ns8_group_has(providers):
    proj, ns7, ns8 = providers
    c = ldap_conn(ns8)  # NS8 already gave NS7's sales gid to a group of its own
    c.add(f"ou=Groups,{BASE}", ["organizationalUnit"], {"ou": "Groups"})
    c.add(f"cn=staff,{GROUPS}", ["posixGroup"], {"gidNumber": "2001", "memberUid": ["ns8admin"]})
    c.unbind()
    assert act(proj, "start", "account-provider")["ok"]
    out = act(proj, "sync", "account-provider")  # per-object failures are reported; the state stays migrating
    assert "1 error(s)" in out["message"] and "failed 1" in out["message"], out
    got = groups(ns8)
    assert "sales" not in got  # neither merged into staff nor renumbered
    assert got["staff"] == ({"posixGroup"}, 2001, {"ns8admin"})
    assert got["support"] == ({"posixGroup"}, 2002, {"bob"})  # the other group is not held back
    logs = mm("project", "logs", proj, "--unit", "account-provider").stdout
    assert "group sales: gidNumber 2001 is already group staff's" in logs

    c = ldap_conn(ns8)  # the administrator moves NS8's group aside; the next sync copies sales as it is
    import ldap3

    c.modify(f"cn=staff,{GROUPS}", {"gidNumber": [(ldap3.MODIFY_REPLACE, ["3001"])]})
    c.unbind()
    assert act(proj, "sync", "account-provider")["ok"]
    assert groups(ns8)["sales"] == ({"posixGroup"}, 2001, {"alice", "dave"})


def test_ns7_command_takes_the_account_provider_too(providers):
    proj, ns7, ns8 = providers
    base = proj.parent

    def ns7cmd(*a):
        return mm("ns7", *a, "--source-root", base / "ns7", "--root", base / "ns8",
                  "--source-ldap", f"{ns7.url}/{BASE}?bind={ns7.admin_dn}",
                  "--source-ldap-password-file", base / "ns7-ldap.pw",
                  "--target-ldap", f"{ns8.url}/{BASE}?bind={ns8.admin_dn}",
                  "--target-ldap-password-file", base / "ns8-ldap.pw", check=False)

    r = ns7cmd("start", "account-provider")
    assert r.returncode == 0, r.stdout + r.stderr
    r = ns7cmd("finish", "account-provider")
    assert r.returncode == 2 and "mail is not_migrated" in r.stderr
    assert "account-provider: migrating" in ns7cmd("status").stdout


def test_ns7_mail_project_applies_to_ns8_through_its_cluster_api(tmp_path):
    """``ns8_url`` and ``ns8_password_file`` in ``[nethserver]``: the project's finish applies the settings to
    NethServer 8 (the API stand-in, tests/servers/ns8.py) and the unit ends migrated only after NS8 holds them."""
    sys.path.insert(0, str(Path(__file__).parent))
    from servers.ns8 import NS8StandIn

    shutil.copytree(SAMPLE, tmp_path / "ns7", symlinks=True)
    # every NS7 mail server has a DKIM pair (nethserver-ns8-migration's mail migrate sends it unconditionally
    # and ns8-mail's import fails without it); the sample has none
    keys = tmp_path / "ns7/etc/opendkim/keys"
    keys.mkdir(parents=True)
    (keys / "default.private").write_text("-----BEGIN PRIVATE KEY-----\nsample\n-----END PRIVATE KEY-----\n")
    (keys / "default.txt").write_text('default._domainkey IN TXT ( "v=DKIM1; k=rsa; p=sample" )\n')
    pw = tmp_path / "ns8.pw"
    pw.write_text("Nethesis,1234\n")
    os.chmod(pw, 0o600)
    with NS8StandIn(users={"alice", "bob", "carol", "dave"}, groups={"sales"}) as ns8:
        proj = tmp_path / "ns.toml"
        proj.write_text('[project]\nname = "ns"\npath = "nethserver7"\n'
                        '[nethserver]\nsource_root = "ns7"\nroot = "ns8"\napplications = ["mail"]\n'
                        f'ns8_url = "{ns8.url}"\nns8_password_file = "ns8.pw"\n')
        mm("project", "init", proj)
        assert json.loads(mm("project", "start", proj, "--json").stdout)[0]["ok"]
        out = json.loads(mm("project", "finish", proj, "--json").stdout)[0]
        assert out["state"] == "migrated" and out["ok"], out
        addrs = {(a["local"], a.get("domain", "")): a for a in ns8.mail.addresses.values()}
        assert [d["name"] for d in addrs[("info", "example.com")]["destinations"]] == ["alice", "bob"]
        assert ("cluster", "import-module") in ns8.cluster.log and ns8.mail.imported  # the mail was sent there
        assert (ns8.mail.volume("dovecot-data") / "alice/Maildir").is_dir()
