"""Fixtures more than one test module needs: real Dovecot servers on loopback (one pair per test process) with
fresh users per test, a scratch PostgreSQL database, the sync state on both back ends, Kerio's API stand-in."""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers.dovecot import DovecotServer, available  # noqa: E402
from servers.kerio import KerioAdminServer  # noqa: E402
from servers.pgdb import drop_database, make_database  # noqa: E402

import lanes  # noqa: E402

_ids = itertools.count()


@pytest.fixture(scope="session")
def dovecot_pair(tmp_path_factory):
    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd (bash .ci/run installs it)")
    src = DovecotServer(tmp_path_factory.mktemp("dovecot-src"), tls=True).start()
    dst = DovecotServer(tmp_path_factory.mktemp("dovecot-dst"), tls=True).start()
    yield src, dst
    src.stop()
    dst.stop()


@pytest.fixture
def dovecot_factory(tmp_path):
    started = []

    def make(**kw) -> DovecotServer:
        s = DovecotServer(tmp_path / f"dovecot{len(started)}", **kw).start()
        started.append(s)
        return s

    if not available():
        pytest.skip("needs root and Debian's dovecot-imapd")
    yield make
    for s in started:
        s.stop()


@dataclass
class ImapAccount:
    server: DovecotServer
    user: str
    password: str

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, **params) -> str:
        q = "&".join(f"{k}={v}" for k, v in {"tls": "none", **params}.items())
        return f"imap://{self.user}@127.0.0.1:{self.server.port}?{q}"


@pytest.fixture
def imap_accounts(dovecot_pair):
    """A fresh (source, target) pair of users: tests never share mailboxes."""
    src, dst = dovecot_pair
    n = next(_ids)
    tag = f"{os.getpid()}x{n}"
    s = ImapAccount(src, f"src{tag}", f"pw-src-{tag}")
    t = ImapAccount(dst, f"dst{tag}", f"pw-dst-{tag}")
    src.add_user(s.user, s.password)
    dst.add_user(t.user, t.password)
    return s, t


def _cyrus(tmp_path_factory, altnamespace: bool):
    from servers import cyrus

    if not cyrus.available():
        pytest.skip("needs root and Cyrus unpacked by .ci/test-servers (bash .ci/run runs it)")
    return cyrus.CyrusServer(tmp_path_factory.mktemp("cyrus-alt" if altnamespace else "cyrus"),
                             altnamespace=altnamespace).start()


@pytest.fixture(scope="session")
def cyrus_server(tmp_path_factory):
    """Cyrus 3.6 as Debian ships it: "." separator, INBOX. prefix, munge8bit."""
    s = _cyrus(tmp_path_factory, False)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def cyrus_alt_server(tmp_path_factory):
    """Cyrus 3.6 with altnamespace and unixhierarchysep: folders beside INBOX, "/" separator."""
    s = _cyrus(tmp_path_factory, True)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def courier_server(tmp_path_factory):
    """Courier-IMAP 5.0 with Debian's settings: INBOX. prefix, "." separator, keywords, no MULTIAPPEND."""
    from servers import courier

    if not courier.available():
        pytest.skip("needs Courier unpacked by .ci/test-servers (bash .ci/run runs it)")
    s = courier.CourierServer(tmp_path_factory.mktemp("courier")).start()
    yield s
    s.stop()


@pytest.fixture(params=["dovecot->cyrus", "dovecot->cyrus-alt", "cyrus->dovecot", "dovecot->courier",
                        "courier->dovecot"])
def cross_accounts(request, dovecot_pair):
    """A fresh (source, target) pair of users between Dovecot and each other server (Cyrus in both setups,
    Courier), both directions."""
    src_kind, dst_kind = request.param.split("->")
    servers = {"dovecot": dovecot_pair[0]}
    if "cyrus" in (src_kind, dst_kind):
        servers["cyrus"] = request.getfixturevalue("cyrus_server")
    if "cyrus-alt" in (src_kind, dst_kind):
        servers["cyrus-alt"] = request.getfixturevalue("cyrus_alt_server")
    if "courier" in (src_kind, dst_kind):
        servers["courier"] = request.getfixturevalue("courier_server")
    n = next(_ids)
    tag = f"{os.getpid()}x{n}"
    s = ImapAccount(servers[src_kind], f"src{tag}", f"pw-src-{tag}")
    t = ImapAccount(servers[dst_kind] if dst_kind != "dovecot" else dovecot_pair[1], f"dst{tag}", f"pw-dst-{tag}")
    s.server.add_user(s.user, s.password)
    t.server.add_user(t.user, t.password)
    s.kind, t.kind = src_kind, dst_kind
    return s, t


@pytest.fixture
def pg_url(request):
    """A PostgreSQL database of the test's own (skipped where no server runs), dropped after it; named after
    the test module, so that one a killed run left behind says where it came from."""
    module = request.module.__name__.rpartition(".")[2].removeprefix("test_")
    admin, name, url = make_database(f"mm_{module}")
    yield url
    drop_database(admin, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_where(request, tmp_path):
    """The sync state's location, once per back end: what a test asserts must hold on both."""
    if request.param == "sqlite":
        return str(tmp_path / "s.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def kerio(tmp_path):
    """Kerio's administration API with two domains; ``created`` lists (email, password) of every user made
    through it, in order, where real Kerio would have made a mailbox."""
    created = []
    server = KerioAdminServer(tmp_path / "kerio", domains=("example.com", "other.org"),
                              on_user_created=lambda email, pw: created.append((email, pw)))
    server.created = created
    with server:
        yield server


def pytest_collection_modifyitems(config, items):
    """Test lanes (tests/lanes.py): each test gets the needs_* markers of the servers it uses, and
    needs_server with any of them, so that ``-m "not needs_server"`` is the fast lane.  Tests marked slow
    run only when the marker expression names slow (pyproject's marker list says so)."""
    wants_slow = "slow" in (config.getoption("markexpr", "") or "")
    skip_slow = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        found = lanes.needs(item)
        for marker in sorted(found):
            item.add_marker(marker)
        if found:
            item.add_marker("needs_server")
        if not wants_slow and item.get_closest_marker("slow") is not None:
            item.add_marker(skip_slow)
