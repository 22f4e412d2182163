"""OAuth 2.0 logins (issue 21): XOAUTH2 and OAUTHBEARER against a real Dovecot whose oauth2 passdb asks our own
authorisation server (tests/servers/oauth.py) about every token, through `mailmigrate sync`.

What a user must see: the mail copied with nothing but a token (no password given for that side); tokens that
expire during the run renewed before they do (the server never sees an expired token from us); a token revoked
early replaced by a fresh one; a refresh token the provider rotates written back to its 0600 file so the next
run still logs in; a refused refresh token named with its account; no token, refresh token or client secret in
any output, even with -vv.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest

from conftest import ImapAccount
from mailmigrate.imap.sasl import oauth_initial_response
from mailmigrate.stores.oauth import CommandToken, FileToken
from mailmigrate.errors import ConfigError
from servers import imapcheck
from servers.oauth import OAuthServer
from test_fleet import fleet_env  # noqa: F401  (a fixture)
from test_sync_imap import msg, populate

MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def test_oauthbearer_message_is_rfc_7628s_example():
    # RFC 7628 section 4.1, the example's client response (before base64)
    got = oauth_initial_response("oauthbearer", "user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
                                 "server.example.com", 143)
    assert got == (b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
                   b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01")
    # XOAUTH2 as Google documents it
    assert oauth_initial_response("xoauth2", "someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg",
                                  "imap.gmail.com", 993) == (
        b"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg\x01\x01")
    # a user name with "," or "=" is escaped in the GS2 header (RFC 5801 saslname)
    assert oauth_initial_response("oauthbearer", "a,b=c", "t", "h", 1).startswith(b"n,a=a=2Cb=3Dc,\x01")


def test_token_files_must_be_private_and_commands_may_answer_json(tmp_path):
    f = tmp_path / "token"
    f.write_text("abc\n")
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        FileToken(f)
    os.chmod(f, 0o600)
    assert FileToken(f).token().reveal() == "abc"
    c = CommandToken(f"{sys.executable} -c 'print(\"{{\\\"access_token\\\": \\\"xyz\\\", \\\"expires_in\\\": 3600}}\")'")
    assert c.token().reveal() == "xyz" and c.token().reveal() == "xyz" and c.fetched == 1  # cached while valid


@pytest.fixture
def oauth_pair(dovecot_factory):
    idp = OAuthServer(lifetime=3600)
    src = dovecot_factory(oauth2_introspection=f"{idp.url}/introspect")
    dst = dovecot_factory()
    yield idp, src, dst
    idp.stop()


def _refresh_file(tmp_path, idp, user, name="refresh.json"):
    f = tmp_path / name
    f.write_text(json.dumps({"token_endpoint": f"{idp.url}/token", "client_id": idp.client_id,
                             "client_secret": idp.client_secret, "refresh_token": idp.add_user(user)}))
    os.chmod(f, 0o600)
    return f


def _seed(src, dst, users):
    for i, u in enumerate(users):
        src.add_user(u, f"pw-{u}")  # only to fill the mailbox; the migration logs in with tokens
        dst.add_user(u, "target-pw")
        populate(ImapAccount(src, u, f"pw-{u}"), {"INBOX": [(msg(100 * i + k), "") for k in range(8)],
                                                  "Work": [(msg(100 * i + 50), "\\Seen")]})


def _sync(src, dst, *extra, timeout=120):
    return subprocess.run([*MM, *(["-vv"] if "-vv" in extra else []), "sync",
                           f"imap://127.0.0.1:{src.port}?tls=none", f"imap://127.0.0.1:{dst.port}?tls=none",
                           *[e for e in extra if e != "-vv"], "--json"],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "target-pw"})


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_a_token_that_expired_mid_run_is_renewed_for_the_reconnect(oauth_pair, tmp_path, mechanism):
    """A long account outlives its token; the connection drops after the token expired (as a provider's
    network does after an hour); the reconnect logs in with a renewed token, and the copy is exact.  The
    server never sees an expired token from us: each is renewed before its end."""
    import threading
    import time

    from servers.faultproxy import FaultProxy

    idp, src, dst = oauth_pair
    idp.lifetime = 1.5
    user = f"ox{mechanism[0]}"
    _seed(src, dst, [user])
    rf = _refresh_file(tmp_path, idp, user)
    proxy = FaultProxy(src.port)
    cuts = []

    def cut_after_expiry():
        end = time.monotonic() + 60
        while idp.grants < 1 and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(idp.lifetime + 0.3)  # the first token is dead now
        cuts.append(proxy.cut_all())

    t = threading.Thread(target=cut_after_expiry, daemon=True)
    t.start()
    try:
        p = subprocess.run([*MM, "-vv", "sync", f"imap://{user}@127.0.0.1:{proxy.port}?tls=none",
                            f"imap://127.0.0.1:{dst.port}?tls=none", "--source-oauth-refresh-file", str(rf),
                            "--source-sasl", mechanism, "--max-rate", "2", "--connections", "1",
                            "--state", str(tmp_path / "s.db"), "--json"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "target-pw"})
    finally:
        t.join(timeout=70)
        proxy.close()
    assert p.returncode == 0, p.stderr[-3000:]
    assert cuts and cuts[0] >= 1, "the connection was not cut mid-run: the case was not tested"
    assert json.loads(p.stdout)["copied"] == 9
    assert imapcheck.account(dst.port, user, "target-pw") == imapcheck.account(src.port, user, f"pw-{user}")
    assert idp.grants >= 2, idp.grants  # the reconnect took a new token
    mine = [a for u, a in idp.introspections if u == user]
    assert len(mine) >= 2 and all(mine), idp.introspections  # never an expired one
    for secret in [idp.client_secret, *idp.refresh, *idp.tokens]:
        assert secret not in p.stdout + p.stderr  # not even in the -vv protocol log


def _accounts(tmp_path, *users):
    f = tmp_path / f"acc-{'-'.join(users)}.csv"
    f.write_text("".join(f"{u},{u}\n" for u in users))
    os.chmod(f, 0o600)
    return str(f)


def test_a_revoked_token_is_replaced_by_a_fresh_one(oauth_pair, tmp_path):
    """The provider revokes a token before its expiry (a password change, an admin): the login refused with
    it is tried once more with a freshly fetched token."""
    import threading
    import time

    from servers.faultproxy import FaultProxy

    idp, src, dst = oauth_pair
    user = "orevoke"
    _seed(src, dst, [user])
    rf = _refresh_file(tmp_path, idp, user)
    proxy = FaultProxy(src.port)

    def revoke_and_cut():
        end = time.monotonic() + 60
        while idp.grants < 1 and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(0.5)
        idp.tokens.clear()  # every issued token revoked
        proxy.cut_all()

    t = threading.Thread(target=revoke_and_cut, daemon=True)
    t.start()
    try:
        p = subprocess.run([*MM, "sync", f"imap://{user}@127.0.0.1:{proxy.port}?tls=none",
                            f"imap://127.0.0.1:{dst.port}?tls=none", "--source-oauth-refresh-file", str(rf),
                            "--max-rate", "3", "--connections", "1", "--state", str(tmp_path / "s.db"), "--json"],
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "target-pw"})
    finally:
        t.join(timeout=70)
        proxy.close()
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout)["copied"] == 9
    assert idp.grants == 2
    assert [a for u, a in idp.introspections if u == "" or u == user].count(False) == 1  # the revoked one, once


def test_oauth_on_the_target_with_a_rotating_refresh_token(dovecot_factory, tmp_path):
    """Both directions: here the target logs in with tokens.  The provider rotates refresh tokens: the new one
    is written back (0600) and the next run logs in with it; the old one no longer works."""
    idp = OAuthServer(lifetime=3600, rotate=True)
    try:
        src = dovecot_factory()
        dst = dovecot_factory(oauth2_introspection=f"{idp.url}/introspect")
        user = "orot"
        src.add_user(user, "source-pw")
        dst.add_user(user, "unused-target-pw")
        populate(ImapAccount(src, user, "source-pw"), {"INBOX": [(msg(k), "") for k in range(5)]})
        rf = _refresh_file(tmp_path, idp, user)
        first = json.loads(rf.read_text())["refresh_token"]
        args = [*MM, "sync", f"imap://{user}@127.0.0.1:{src.port}?tls=none", f"imap://127.0.0.1:{dst.port}?tls=none",
                "--target-oauth-refresh-file", str(rf), "--target-sasl", "oauthbearer",
                "--state", str(tmp_path / "s.db"), "--json"]
        env = {**os.environ, "MAILMIGRATE_SOURCE_PASSWORD": "source-pw"}
        p = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, p.stderr[-3000:]
        assert json.loads(p.stdout)["copied"] == 5
        now = json.loads(rf.read_text())
        assert now["refresh_token"] != first and now["refresh_token"] in idp.refresh and first not in idp.refresh
        assert oct(rf.stat().st_mode & 0o777) == "0o600"
        populate(ImapAccount(src, user, "source-pw"), {"INBOX": [(msg(99), "")]})
        p = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0 and json.loads(p.stdout)["copied"] == 1, p.stderr[-3000:]
        assert imapcheck.account(dst.port, user, "unused-target-pw") == imapcheck.account(src.port, user, "source-pw")
    finally:
        idp.stop()


def test_a_refused_refresh_token_is_named_with_its_account_and_nothing_is_copied(oauth_pair, tmp_path):
    idp, src, dst = oauth_pair
    user = "obad"
    _seed(src, dst, [user])
    rf = tmp_path / "bad.json"
    rf.write_text(json.dumps({"token_endpoint": f"{idp.url}/token", "client_id": idp.client_id,
                              "client_secret": idp.client_secret, "refresh_token": "rt-not-known"}))
    os.chmod(rf, 0o600)
    p = subprocess.run([*MM, "sync", f"imap://{user}@127.0.0.1:{src.port}?tls=none",
                        f"imap://127.0.0.1:{dst.port}?tls=none", "--source-oauth-refresh-file", str(rf),
                        "--state", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "target-pw"})
    assert p.returncode != 0
    out = p.stdout + p.stderr
    assert user in out and "refused the refresh token (invalid_grant" in out, out[-3000:]
    assert "rt-not-known" not in out and idp.client_secret not in out
    assert imapcheck.account(dst.port, user, "target-pw").get("INBOX", {}) == {}
    # a refresh file others can read is refused before anything runs
    os.chmod(rf, 0o640)
    p = subprocess.run([*MM, "sync", f"imap://{user}@127.0.0.1:{src.port}?tls=none",
                        f"imap://127.0.0.1:{dst.port}?tls=none", "--source-oauth-refresh-file", str(rf)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "chmod 600" in p.stderr


def test_two_processes_sharing_a_rotating_refresh_file_both_keep_working(tmp_path):
    """A run's parallel accounts or a fleet worker's processes each hold the refresh file; when the provider
    rotates the refresh token, the next one to refresh must use the rotated token, not its stale copy."""
    from mailmigrate.stores.oauth import RefreshToken

    idp = OAuthServer(lifetime=3600, rotate=True)
    try:
        rf = _refresh_file(tmp_path, idp, "ann")
        a, b = RefreshToken(rf), RefreshToken(rf)  # as two processes would, each reading the file at start
        ta = a.token()
        tb = b.token()  # b's copy of the refresh token was rotated away by a's grant
        tc = a.token(fresh=True)
        assert len({ta.reveal(), tb.reveal(), tc.reveal()}) == 3 and idp.grants == 3
        assert json.loads(rf.read_text())["refresh_token"] in idp.refresh
    finally:
        idp.stop()


def test_a_fleet_worker_logs_in_with_its_own_oauth_options(oauth_pair, tmp_path, fleet_env):
    from servers.fleet import start_worker, stop_worker, wait_ready

    broker, state, _ = fleet_env
    idp, src, dst = oauth_pair
    user = "ofleet"
    _seed(src, dst, [user])
    rf = _refresh_file(tmp_path, idp, user)
    log = tmp_path / "w.log"
    w = start_worker(broker, state, concurrency=1, name="oauth", log=log,
                     extra=["--source-oauth-refresh-file", str(rf), "--source-sasl", "oauthbearer"],
                     env={"MAILMIGRATE_TARGET_PASSWORD": "target-pw"})
    try:
        wait_ready(w, log)
        p = subprocess.run([*MM, "sync", f"imap://{user}@127.0.0.1:{src.port}?tls=none",
                            f"imap://127.0.0.1:{dst.port}?tls=none", "--executor", "celery", "--broker", broker,
                            "--state", state, "--fleet-timeout", "60", "--json"],
                           capture_output=True, text=True, timeout=120)
    finally:
        stop_worker(w)
    assert p.returncode == 0, p.stderr[-2000:] + log.read_text()[-2000:]
    assert json.loads(p.stdout)["copied"] == 9
    assert imapcheck.account(dst.port, user, "target-pw") == imapcheck.account(src.port, user, f"pw-{user}")
    text = log.read_text()
    assert all(s not in text for s in [idp.client_secret, *idp.refresh, *idp.tokens])


def test_a_project_logs_in_with_oauth_from_its_file(oauth_pair, tmp_path):
    """[source] oauth_refresh_file and sasl in the project file (relative to it): start copies with tokens, the
    finish's verification reads the source with them too."""
    idp, src, dst = oauth_pair
    user = "oproj"
    _seed(src, dst, [user])
    _refresh_file(tmp_path, idp, user, "src-oauth.json")
    (tmp_path / "dst.pw").write_text("target-pw")
    os.chmod(tmp_path / "dst.pw", 0o600)
    p = tmp_path / "acme.toml"
    p.write_text(f"""[project]
name = "acme"
[source]
url = "imap://{user}@127.0.0.1:{src.port}?tls=none"
oauth_refresh_file = "src-oauth.json"
sasl = "xoauth2"
[target]
url = "imap://{user}@127.0.0.1:{dst.port}?tls=none"
password_file = "dst.pw"
""")
    for action in ("init", "start", "finish"):
        r = subprocess.run([*MM, "project", action, str(p)], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path)
        assert r.returncode == 0, (action, r.stdout[-2000:], r.stderr[-2000:])
    assert imapcheck.account(dst.port, user, "target-pw") == imapcheck.account(src.port, user, f"pw-{user}")
    assert idp.grants >= 1 and all(a for u, a in idp.introspections if u == user)
