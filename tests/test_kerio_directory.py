"""KerioDirectory: Kerio's users as a directory reader/writer, against the test front end."""

from __future__ import annotations

import pytest

from mailmigrate.directory.base import DirectoryError, Group, PasswordHash, UnsupportedByDirectory, User
from mailmigrate.directory.kerio import KerioDirectory, parse_kerio_url
from mailmigrate.errors import ConfigError
from mailmigrate.model import Secret


def url(server, domain="example.com"):
    return f"kerio://Admin@127.0.0.1:{server.port}/{domain}?cafile={server.certfile}"


def test_url_parsing():
    kw = parse_kerio_url("kerio://admin@mail.example.com/example.com?insecure=yes")
    assert kw["host"] == "mail.example.com" and kw["port"] == 4040 and kw["domain"] == "example.com"
    assert kw["insecure"] is True and kw["user"] == "admin"
    assert parse_kerio_url("kerio://admin@h:9000")["domain"] is None
    with pytest.raises(ConfigError, match="password"):
        parse_kerio_url("kerio://admin:secret@h/example.com")
    with pytest.raises(ConfigError, match="unknown option"):
        parse_kerio_url("kerio://admin@h/example.com?verify=no")
    with pytest.raises(ConfigError):
        parse_kerio_url("kerio://h/example.com")


def test_add_creates_users_with_their_passwords_then_read_shows_them(kerio):
    with KerioDirectory.from_url(url(kerio), Secret("adminpw")) as d:
        d.add(User("alice", real_name="Alice Liddell", password=Secret("a-pw"), domain="example.com"))
        d.add(User("bob@example.com", first_name="Bob", last_name="Builder", password=Secret("b-pw"),
                   enabled=False))
        read = d.read()
    assert kerio.created == [("alice@example.com", "a-pw"), ("bob@example.com", "b-pw")]
    assert sorted(read.users) == ["alice", "bob"]
    alice, bob = read.users["alice"], read.users["bob"]
    assert alice.real_name == "Alice Liddell" and alice.mail == "alice@example.com" and alice.enabled
    assert bob.real_name == "Bob Builder" and not bob.enabled
    assert alice.password is None and alice.password_note  # Kerio never reveals one
    assert kerio.sessions == {}  # closed on exit


def test_read_without_domain_gives_full_logins_across_domains(kerio):
    kerio.add_user("carol", "other.org", "x", fullName="Carol")
    kerio.add_user("alice", "example.com", "y")
    with KerioDirectory.from_url(f"kerio://Admin@127.0.0.1:{kerio.port}?cafile={kerio.certfile}",
                                 Secret("adminpw")) as d:
        read = d.read()
    assert sorted(read.users) == ["alice@example.com", "carol@other.org"]
    assert sorted(read.domains) == ["example.com", "other.org"]
    assert read.users["carol@other.org"].domain == "other.org"


def test_existing_user_is_an_error_for_that_user_only(kerio):
    kerio.add_user("alice", "example.com", "old")
    with KerioDirectory.from_url(url(kerio), Secret("adminpw")) as d:
        with pytest.raises(DirectoryError, match="alice.*already exists"):
            d.add(User("alice", password=Secret("new")))
        d.add(User("dave", password=Secret("d")))
    assert kerio.find_user("alice", "example.com")["password"] == "old"
    assert kerio.find_user("dave", "example.com") is not None


def test_update_sets_password_and_changed_fields(kerio):
    kerio.add_user("erin", "example.com", "old", fullName="Erin")
    with KerioDirectory.from_url(url(kerio), Secret("adminpw")) as d:
        old = d.read().users["erin"]
        d.update(old, User("erin", real_name="Erin Example", password=Secret("new-pw")))
    u = kerio.find_user("erin", "example.com")
    assert u["password"] == "new-pw" and u["fullName"] == "Erin Example"


def test_update_of_missing_user_names_it(kerio):
    with KerioDirectory.from_url(url(kerio), Secret("adminpw")) as d:
        with pytest.raises(DirectoryError, match="ghost"):
            d.update(None, User("ghost", password=Secret("x")))


def test_wrong_domain_and_unsupported_objects(kerio):
    with KerioDirectory.from_url(url(kerio), Secret("adminpw")) as d:
        with pytest.raises(DirectoryError, match="other.org"):
            d.add(User("frank@other.org", password=Secret("x")))
        with pytest.raises(UnsupportedByDirectory):
            d.add(Group("staff"))
        with pytest.raises(UnsupportedByDirectory, match="SSHA"):
            d.add(User("gina", password=PasswordHash("SSHA", Secret("abc"))))
        assert not d.accepts(PasswordHash("SSHA", Secret("abc"))) and d.accepts(Secret("x"))
    assert kerio.find_user("frank", "other.org") is None and kerio.find_user("gina", "example.com") is None


def test_domain_kerio_does_not_have_is_reported_up_front(kerio):
    with KerioDirectory.from_url(url(kerio, "nowhere.test"), Secret("adminpw")) as d:
        with pytest.raises(ConfigError, match="nowhere.test"):
            d.read()


def test_cli_directory_copy_into_kerio_is_idempotent(kerio, tmp_path):
    """`mailmigrate directory copy passwd-file:… kerio://…` creates the users with their passwords once."""
    import json
    import os
    import subprocess
    import sys

    passwd = tmp_path / "users.passwd"
    passwd.write_text("alice:{PLAIN}alice-pw:1000:1000::/home/alice::\n"
                      "bob:{PLAIN}bob-pw:1001:1000::/home/bob::\n"
                      "hashed:{SSHA}c2FsdHNhbHRzYWx0c2FsdHNhbHQ=:1002:1000::/home/hashed::\n")
    env = {**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "adminpw"}
    argv = [sys.executable, "-m", "mailmigrate.cli.main", "directory", "copy", f"passwd-file:{passwd}",
            url(kerio), "--json"]
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert "adminpw" not in first.stdout + first.stderr and "alice-pw" not in first.stdout + first.stderr
    assert sorted(kerio.created) == [("alice@example.com", "alice-pw"), ("bob@example.com", "bob-pw"),
                                     ("hashed@example.com", "")], first.stderr[-2000:]
    # the hashed password could not go to Kerio, and the report says so for that user
    assert "hashed" in first.stdout
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert second.returncode == 0, second.stderr[-2000:]
    assert len(kerio.created) == 3  # nothing created twice
    assert json.loads(second.stdout)
