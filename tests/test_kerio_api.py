"""The Kerio administration client against the protocol-faithful front end in tests/servers/kerio.py."""

from __future__ import annotations

import logging

import pytest

from mailmigrate.directory.kerio import ALREADY_EXISTS, DOES_NOT_EXIST, KerioApiError, KerioClient
from mailmigrate.errors import AuthenticationFailed, ConfigError, ConnectionLost
from mailmigrate.model import Secret
from servers.kerio import make_certificate


def client(server, password="adminpw", **kw) -> KerioClient:
    kw.setdefault("cafile", str(server.certfile))
    return KerioClient("127.0.0.1", server.port, user="Admin", password=Secret(password), **kw)


def test_login_sends_token_and_cookie_and_lists_domains(kerio):
    with client(kerio) as c:
        domains = c.domains()
        assert sorted(d["name"] for d in domains) == ["example.com", "other.org"]
        assert c.domain_id("Other.ORG") == kerio.domain_id("other.org")
    # logout ended the session on the server
    assert kerio.sessions == {}
    assert kerio.calls[0] == "Session.login" and kerio.calls[-1] == "Session.logout"


def test_calls_without_session_cookie_are_refused_as_expired(kerio):
    c = client(kerio)
    c.login()
    c._cookies.clear()  # a client that drops the cookie is not in session, token or not
    with pytest.raises(KerioApiError) as e:
        c._call_once("Domains.get", {"query": {}})
    assert e.value.number == -32001


def test_unknown_domain_is_a_config_error(kerio):
    with client(kerio) as c, pytest.raises(ConfigError, match="no domain nowhere.test"):
        c.domain_id("nowhere.test")


def test_create_then_get_users_and_already_exists(kerio):
    with client(kerio) as c:
        did = c.domain_id("example.com")
        res = c.create_users([
            {"loginName": "alice", "domainId": did, "password": Secret("a-pw"), "fullName": "Alice A"},
            {"loginName": "bob", "domainId": did, "password": Secret("b-pw")},
        ])
        assert not res.errors and set(res.created) == {0, 1}
        assert kerio.created == [("alice@example.com", "a-pw"), ("bob@example.com", "b-pw")]

        users = c.users(did)
        assert [u["loginName"] for u in users] == ["alice", "bob"]
        assert users[0]["fullName"] == "Alice A" and users[0]["id"] == res.created[0]
        assert all("password" not in u for u in users)
        # the other domain is separate
        assert c.users(c.domain_id("other.org")) == []

        # one new, one existing: the call succeeds, the existing one is a per-item 1001
        again = c.create_users([{"loginName": "carol", "domainId": did, "password": Secret("c")},
                                {"loginName": "ALICE", "domainId": did, "password": Secret("x")}])
        assert set(again.created) == {0}
        err = again.error_for(1)
        assert err is not None and err.code == ALREADY_EXISTS and err.already_exists
        assert kerio.find_user("alice", "example.com")["password"] == "a-pw"  # untouched


def test_users_lookup_by_name_is_exact_even_though_like_matches_substrings(kerio):
    kerio.add_user("ann", "example.com")
    kerio.add_user("joanna", "example.com")
    kerio.add_user("bo", "example.com")
    with client(kerio) as c:
        did = c.domain_id("example.com")
        found = c.users(did, ["ann", "BO", "zed"])
        assert sorted(u["loginName"] for u in found) == ["ann", "bo"]


def test_set_password_and_unknown_user(kerio):
    uid = kerio.add_user("dave", "example.com", "old")
    changed = []
    kerio.on_password_set = lambda email, pw: changed.append((email, pw))
    with client(kerio) as c:
        res = c.set_users([uid, "keriodb://user/none/1"], {"password": Secret("new-pw")})
    assert [(e.input_index, e.code) for e in res.errors] == [(1, DOES_NOT_EXIST)]
    assert kerio.find_user("dave", "example.com")["password"] == "new-pw"
    assert changed == [("dave@example.com", "new-pw")]


def test_invalid_params_item_error(kerio):
    with client(kerio) as c:
        with pytest.raises(ValueError):
            c.create_users([{"loginName": "x"}])  # caught before it leaves
        res = c.create_users([{"loginName": "x", "domainId": "keriodb://domain/missing"}])
        assert res.created == {} and res.errors[0].code == DOES_NOT_EXIST


def test_session_expiry_logs_in_again_once_and_repeats_the_call(kerio):
    with client(kerio) as c:
        c.domains()
        assert kerio.logins == 1
        kerio.expire_sessions()
        assert len(c.domains()) == 2
        assert kerio.logins == 2
        assert kerio.calls[-3:] == ["Domains.get", "Session.login", "Domains.get"]


def test_wrong_password_is_authentication_failed_without_the_password(kerio, caplog):
    caplog.set_level(logging.DEBUG, logger="mailmigrate")
    c = client(kerio, password="wrong-secret-xyz")
    with pytest.raises(AuthenticationFailed) as e:
        c.domains()
    assert "Admin" in str(e.value)
    assert "wrong-secret-xyz" not in str(e.value) and "wrong-secret-xyz" not in repr(c)
    assert "wrong-secret-xyz" not in caplog.text
    assert kerio.logins == 0


def test_passwords_of_created_users_are_not_logged(kerio, caplog):
    caplog.set_level(logging.DEBUG, logger="mailmigrate")
    with client(kerio) as c:
        c.create_users([{"loginName": "eve", "domainId": c.domain_id("example.com"),
                         "password": Secret("eve-secret-123")}])
    assert "Users.create" in caplog.text
    assert "eve-secret-123" not in caplog.text and "adminpw" not in caplog.text


def test_unknown_certificate_is_refused(kerio, tmp_path):
    # default trust store: the self-signed certificate is unknown
    c = KerioClient("127.0.0.1", kerio.port, user="Admin", password=Secret("adminpw"))
    with pytest.raises(ConfigError, match="not trusted"):
        c.login()
    # another CA entirely
    other_cert, _ = make_certificate(tmp_path, "other")
    with pytest.raises(ConfigError, match="not trusted"):
        client(kerio, cafile=str(other_cert)).login()
    assert kerio.logins == 0


def test_insecure_accepts_any_certificate(kerio):
    with KerioClient("127.0.0.1", kerio.port, user="Admin", password=Secret("adminpw"), insecure=True) as c:
        assert c.domains()


def test_nothing_listening_is_connection_lost(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = KerioClient("127.0.0.1", port, user="Admin", password=Secret("x"), insecure=True, timeout=3)
    with pytest.raises(ConnectionLost):
        c.login()


def test_server_closing_kept_alive_connection_is_reopened(kerio):
    with client(kerio) as c:
        c.domains()
        # the server drops the idle connection (as Kerio does after its keep-alive timeout)
        kerio.drop_connections()
        assert len(c.domains()) == 2
