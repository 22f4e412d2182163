"""LDAP from the Zarafa to the Kopano schema: the sample slapcat LDIF offline, and a live slapd online."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ldap3
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers.slapd import SlapdServer  # noqa: E402

from mailmigrate.directory.checklist import compare  # noqa: E402
from mailmigrate.directory.ldap import LdapDirectory  # noqa: E402
from mailmigrate.formats.ldif import LdifEntry, dump_ldif, parse_ldif  # noqa: E402
from mailmigrate.model import Secret  # noqa: E402
from mailmigrate.paths.kopano import ldap_offline  # noqa: E402
from mailmigrate.paths.kopano.ldap_online import OnlineMigration  # noqa: E402
from samples import zarafa_sample  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "src" / "mailmigrate" / "paths" / "kopano" / "schema"
ZARAFA, KOPANO = SCHEMAS / "zarafa.schema", SCHEMAS / "kopano.schema"
BASE = "dc=example,dc=com"
OPERATIONAL = {"structuralobjectclass", "entryuuid", "creatorsname", "createtimestamp", "entrycsn",
               "modifiersname", "modifytimestamp"}


def _sample_ldif(tmp_path: Path) -> bytes:
    return (zarafa_sample(tmp_path) / "slapcat.ldif").read_bytes()


def _needs_slapd():
    if subprocess.run(["which", "slapd"], capture_output=True).returncode and not Path("/usr/sbin/slapd").exists():
        pytest.skip("needs Debian's slapd")


def _read(srv) -> "Directory":
    d = LdapDirectory(srv.url, BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw))
    try:
        return d.read()
    finally:
        d.close()


def test_offline_transform_of_the_sample(tmp_path):
    res = ldap_offline.convert(_sample_ldif(tmp_path))
    by_dn = {e.dn: e for e in res.entries}
    ann = by_dn["uid=ann,ou=People,dc=example,dc=com"]
    assert ann.get("kopanoQuotaHard") == [b"2048"] and not ann.get("zarafaQuotaHard")
    assert b"kopano-user" in ann.get("objectClass") and b"zarafa-user" not in ann.get("objectClass")
    acme = by_dn["ou=Acme,dc=example,dc=com"]
    assert acme.get("ou") == [b"Acme"] and acme.get("cn") == []  # organizationalUnit has no cn
    assert by_dn["cn=mail1,dc=example,dc=com"].get("kopanoFilePath") == [b"file:///var/run/kopano/server.sock"]
    assert by_dn["cn=mail2,dc=example,dc=com"].get("kopanoFilePath") == [b"/var/run/kopano/server.sock"]
    lst = by_dn["cn=Sales list,dc=example,dc=com"]
    assert lst.get("structuralObjectClass") == [b"kopano-addresslist"]
    assert by_dn["uid=bob,ou=People,dc=example,dc=com"].get("cn") == ["Bob Müller".encode()]
    assert ldap_offline.leftovers(res.entries) == []


def test_offline_result_loads_into_a_kopano_only_slapd(tmp_path):
    """slapadd checks the schema: the output must be valid Kopano-schema data without zarafa.schema."""
    _needs_slapd()
    src = tmp_path / "zarafa.ldif"
    src.write_bytes(_sample_ldif(tmp_path))
    out = tmp_path / "kopano.ldif"
    r = ldap_offline.plan(src, out).run(dry_run=False)
    assert r.ok, r.render()
    entries = [e for e in parse_ldif(out.read_bytes()) if e.dn != BASE]
    load = tmp_path / "load.ldif"
    load.write_bytes(dump_ldif(entries))
    srv = SlapdServer(tmp_path / "ldap", BASE, schemas=[KOPANO])
    srv.build()
    p = subprocess.run(["slapadd", "-n1", "-F", str(srv.root / "slapd.d"), "-l", str(load)], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr
    with srv.start():
        d = _read(srv)
    assert {c.name for c in d.companies.values()} == {"Acme"}
    assert {"ann", "bob", "dave"} <= {u.login for u in d.users.values()}
    assert [c.name for c in d.contacts.values()] == ["Carol Contact"]
    assert len(d.address_lists) == 1 and len(d.dynamic_groups) == 1
    assert ldap_offline.plan(src, out).run(dry_run=True).outcomes[0].status == "done"


def _load_live(srv, ldif: bytes) -> None:
    conn = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
    for e in parse_ldif(ldif):
        if e.dn == BASE:
            continue
        attrs = {k: v for k, v in e.attributes.items() if k.lower() not in OPERATIONAL}
        assert conn.add(e.dn, attributes=attrs), (e.dn, conn.result)
    conn.unbind()


def _zarafa_left(srv) -> list[str]:
    conn = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
    conn.search(BASE, "(objectClass=*)", attributes=["*"])
    out = []
    for e in conn.response:
        for k, v in e["raw_attributes"].items():
            if k.lower().startswith("zarafa") or any(x.lower().startswith(b"zarafa") for x in v
                                                      if k.lower() == "objectclass"):
                out.append(f"{e['dn']}: {k}")
    conn.unbind()
    return out


def test_online_migration_interrupted_half_way_then_resumed(tmp_path):
    _needs_slapd()
    with SlapdServer(tmp_path / "ldap", BASE, schemas=[ZARAFA, KOPANO]).start() as srv:
        _load_live(srv, _sample_ldif(tmp_path))
        before = _read(srv)
        assert len(before.users) >= 3 and before.companies

        class Boom(Exception):
            pass

        calls = []

        def fail_after_12(dn):
            calls.append(dn)
            if len(calls) == 12:
                raise Boom(dn)

        state = tmp_path / "state"

        def job(hook=None):
            return OnlineMigration(srv.url, BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw),
                                   state_dir=state, before_modify=hook)

        dry = job().plan().run(dry_run=True)
        assert "add objectClass kopano-user" in dry.render() and not state.exists()
        with pytest.raises(Boom):
            job(fail_after_12).plan().run(dry_run=False, log_path=tmp_path / "ldap.log")
        backup = (state / "ldap-backup-before-kopano.ldif").read_bytes()
        assert b"zarafaQuotaHard: 2048" in backup
        assert _zarafa_left(srv), "the interruption should have left work to do"

        res = job().plan().run(dry_run=False, log_path=tmp_path / "ldap.log")
        assert res.ok, res.render()
        assert (state / "ldap-backup-before-kopano.ldif").read_bytes() == backup  # first backup kept
        assert _zarafa_left(srv) == []
        after = _read(srv)
        check = compare(before, after)
        assert check.ok, check.render()
        ann = next(u for u in after.users.values() if u.login == "ann")
        assert ann.quota == 2048 * 1024 * 1024 and "bob" in [s.lower() for s in ann.send_as]

        conn = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
        conn.search(BASE, "(objectClass=kopano-server)", attributes=["kopanoFilePath"])
        assert sorted(e["attributes"]["kopanoFilePath"] for e in conn.entries and conn.response) == \
            ["/var/run/kopano/server.sock", "file:///var/run/kopano/server.sock"]
        conn.search(BASE, "(objectClass=kopano-company)", attributes=["ou", "cn"])
        assert conn.response[0]["attributes"]["ou"] == ["Acme"] and not conn.response[0]["attributes"]["cn"]
        conn.unbind()

        again = job().plan().run(dry_run=False)
        assert all(o.status == "done" for o in again.outcomes), again.render()


def test_online_replays_the_journal_of_an_interrupted_replacement(tmp_path):
    """A crash between deleting and re-adding an address list loses nothing: the journal re-adds it."""
    _needs_slapd()
    with SlapdServer(tmp_path / "ldap", BASE, schemas=[ZARAFA, KOPANO]).start() as srv:
        _load_live(srv, _sample_ldif(tmp_path))
        state = tmp_path / "state"
        m = OnlineMigration(srv.url, BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw), state_dir=state)
        m.backup()
        dn = "cn=Sales list,dc=example,dc=com"
        (dn_, attrs), = [(d, a) for d, a in m.entries() if d == dn]
        from mailmigrate.paths.kopano.ldapmap import transform
        new, _ = transform(dn, attrs)
        (state / "ldap-journal").mkdir()
        (state / "ldap-journal" / "x.ldif").write_bytes(dump_ldif([LdifEntry(dn, new)]))
        conn = ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
        assert conn.delete(dn)
        res = m.plan().run(dry_run=False)
        assert res.ok, res.render()
        assert conn.search(dn, "(objectClass=kopano-addresslist)", ldap3.BASE, attributes=["kopanoFilter"])
        assert conn.response[0]["attributes"]["kopanoFilter"] == "(mail=*@example.com)"
        conn.unbind()


def test_filters_of_lists_and_dynamic_groups_name_the_kopano_schema(tmp_path):
    res = ldap_offline.convert(_sample_ldif(tmp_path))
    dyn = next(e for e in res.entries if e.dn.startswith("cn=Everyone dyn"))
    assert dyn.get("kopanoFilter") == [b"(objectClass=kopano-user)"]
