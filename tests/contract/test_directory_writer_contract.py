"""What every directory writer must do when ``copy`` drives it (directory/base.py DirectoryWriter): LDAP on a
real slapd, a Dovecot passwd-file, an e-smith accounts db with its shadow file, and Kerio's administration
API (its stand-in, tests/servers/kerio.py).

The promises a migration's user relies on: what the writer says it holds (``kinds``) is created and reads
back the same; a rerun creates nothing twice; an account switched off on the source is never switched on by
moving it; a password hash the writer says it keeps (``password_schemes``) arrives as it was, not re-hashed
and not replaced.  Each writer is asked only what it declares, as the store contract asks each store only
what its format holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmigrate.directory.base import Alias, Directory, DirectoryReader, Group, PasswordHash, User
from mailmigrate.directory.copy import copy
from mailmigrate.formats import shacrypt
from mailmigrate.model import Secret

PW = {"alice": "alice pw", "bob": "bob pw"}
MISC = Path("/etc/ldap/schema/misc.ldif")  # nisMailAlias, for aliases on LDAP
BASE = "dc=example,dc=com"


class Given(DirectoryReader):
    """A source directory as the test writes it: what copy reads from any reader."""

    def __init__(self, d: Directory):
        self.d = d

    def read(self) -> Directory:
        return self.d

    def describe(self) -> str:
        return "given"


def _ldap(tmp_path, request):
    from mailmigrate.directory.ldap import LdapDirectory
    from servers.slapd import SlapdServer

    srv = SlapdServer(tmp_path / "slapd", BASE, schemas=[MISC]).start()
    request.addfinalizer(srv.stop)
    return lambda: LdapDirectory(srv.url, BASE, bind_dn=srv.admin_dn, password=Secret(srv.admin_pw))


def _passwdfile(tmp_path, request):
    from mailmigrate.directory.passwdfile import PasswdFileDirectory

    return lambda: PasswdFileDirectory(tmp_path / "passwd", uid="vmail", gid="vmail", home_template="/srv/{login}")


def _esmith(tmp_path, request):
    from mailmigrate.directory.esmith import EsmithDirectory

    shadow = tmp_path / "shadow"
    shadow.write_text("root:*:19000:0:99999:7:::\n")
    return lambda: EsmithDirectory(tmp_path / "accounts", shadow=shadow, domain="example.com")


def _kerio(tmp_path, request):
    from mailmigrate.directory.kerio import KerioDirectory

    server = request.getfixturevalue("kerio")
    url = f"kerio://Admin@127.0.0.1:{server.port}/example.com?cafile={server.certfile}"
    return lambda: KerioDirectory.from_url(url, Secret("adminpw"))


#: by the server or file each writes to ("slapd" puts the test in the needs_slapd lane, tests/lanes.py)
WRITERS = {"slapd": _ldap, "passwdfile": _passwdfile, "esmith": _esmith, "kerio": _kerio}


@pytest.fixture(params=sorted(WRITERS))
def writer(request, tmp_path):
    """A factory of fresh writers over one directory: each copy, like each run, opens its own."""
    return WRITERS[request.param](tmp_path, request)


def _password(target, login: str):
    """A crypt hash where the writer keeps hashes it is given, else the clear text it takes."""
    if target.accepts(PasswordHash("CRYPT", Secret("$6$x$y"))):
        return PasswordHash("CRYPT", Secret(shacrypt.make(PW[login], "6")))
    return Secret(PW[login])


def source_for(target) -> Directory:
    d = Directory(name="given")
    d.add(User("alice", real_name="Alice Liddell", first_name="Alice", last_name="Liddell",
               mail="alice@example.com", password=_password(target, "alice")))
    d.add(User("bob", real_name="Bob Stone", first_name="Bob", last_name="Stone", mail="bob@example.com",
               password=_password(target, "bob"), enabled=False, disabled_by="the test"))
    if "groups" in target.kinds:
        d.add(Group("staff", members=["alice", "bob"]))
    if "aliases" in target.kinds:
        d.add(Alias("info@example.com", targets=["alice@example.com"]))
    return d


def _copy(make, src: Directory):
    with make() as target:
        report = copy(Given(src), target)
    with make() as target:
        return report, target.read(), target


def test_what_the_writer_holds_is_created_and_reads_back(writer):
    with writer() as t:
        src = source_for(t)
    report, got, target = _copy(writer, src)
    assert report.ok, report.render()
    assert set(got.users) >= {"alice"} and got.users["alice"].real_name == "Alice Liddell"
    if "mail" in target.fields.get("users", ()):
        assert got.users["alice"].mail == "alice@example.com"
    if "groups" in target.kinds:
        assert {m.casefold() for m in got.groups["staff"].members} >= {"alice"}
    if "aliases" in target.kinds:
        assert got.aliases["info@example.com"].targets == ["alice@example.com"]


def test_a_rerun_creates_nothing_twice(writer):
    with writer() as t:
        src = source_for(t)
    first, before, _ = _copy(writer, src)
    again, after, _ = _copy(writer, src)
    assert first.changes > 0 and again.changes == 0 and not again.created, again.render()
    assert after.counts() == before.counts()
    assert again.failed == first.failed  # what was refused is refused again, nothing more


def test_a_disabled_account_stays_disabled(writer):
    with writer() as t:
        src = source_for(t)
        can = t.can_disable(src.users["bob"])
    report, got, _ = _copy(writer, src)
    if can:
        assert "bob" in got.users and got.users["bob"].enabled is False
        assert [u for u, _, _ in report.disabled] == ["bob"]
    else:  # refused, named: never created as an open account
        assert "bob" not in got.users and ("users", "bob") in [(k, n) for k, n, _ in report.failed]
    _, again, _ = _copy(writer, src)
    assert "bob" not in again.users or again.users["bob"].enabled is False


def test_a_password_hash_arrives_unchanged(writer):
    with writer() as t:
        src = source_for(t)
    given = src.users["alice"].password
    if not isinstance(given, PasswordHash):
        pytest.skip("this writer keeps no hashes it is given (clear text only)")
    report, got, _ = _copy(writer, src)
    stored = got.users["alice"].password
    assert isinstance(stored, PasswordHash), report.render()
    assert stored.value.reveal().removeprefix("{CRYPT}") == given.value.reveal()  # not re-hashed
    assert shacrypt.verify(PW["alice"], stored.value.reveal())  # alice still logs in with her password
    assert [p.action for p in report.passwords if p.user == "alice"] == ["kept"]
