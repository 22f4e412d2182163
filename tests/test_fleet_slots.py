"""Fleet connection slots against stalls, kills and Redis restarts (issue 26).

Each test runs its own redis-server on a free loopback port so that it can kill and restart it, and real
holder processes (tests/slot_holder.py) each holding one TCP connection to a real Dovecot; the limit is
checked on the server's side by counting established connections with ss."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest



class ServerConnections(threading.Thread):
    """Counts, on the server's side, the established TCP connections to a port (ss); keeps the maximum.

    The holders here hold bare TCP connections (no IMAP session that `doveadm who` would count, as
    tests/test_fleet.py does), so sockets are counted; each holder's close waits for the server to close its
    side (slot_holder.py) before the slot is given back, so the count measures the slots, not how long a
    loaded kernel takes to tear a closed socket down."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port, self.max, self.samples = port, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{self.port} )"],
                                 capture_output=True, text=True).stdout
            self.max = max(self.max, len([ln for ln in out.splitlines() if ln.strip()]))
            self.samples += 1
            time.sleep(0.01)

HOLDER = Path(__file__).with_name("slot_holder.py")
KEY = "mm:slots:source:imap:test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, tmp: Path):
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        self.dir, self.port, self.proc = tmp, free_port(), None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL)
        import redis
        r = redis.Redis(port=self.port)
        for _ in range(500):
            try:
                r.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def redis_server(tmp_path):
    s = RedisServer(tmp_path).start()
    yield s
    s.kill()


class Holder:
    def __init__(self, redis_url, imap_port, *, limit=1, ttl=1.0, grace=0.0):
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "src"))
        self.p = subprocess.Popen([sys.executable, str(HOLDER), redis_url, KEY, str(limit), str(imap_port),
                                   str(ttl), str(grace)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=env)

    def expect(self, word):
        line = self.p.stdout.readline().strip()
        assert line == word, (line, word)

    def say(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def stop(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


@pytest.fixture
def dovecot(dovecot_factory):
    return dovecot_factory()


def test_stalled_holder_keeps_its_slot_past_the_ttl(redis_server, dovecot):
    """A holder SIGSTOPped for well over the slot ttl keeps its slot (its Redis connection is still open),
    so the second holder waits instead of opening limit+1 connections; after SIGCONT the first finishes and
    the second gets its slot."""
    conns = ServerConnections(dovecot.port)
    conns.start()
    a = Holder(redis_server.url, dovecot.port, ttl=0.5)
    b = None
    try:
        a.expect("held")
        os.kill(a.p.pid, signal.SIGSTOP)
        time.sleep(2.0)  # four ttls: the old design gave the slot away here
        b = Holder(redis_server.url, dovecot.port, ttl=0.5)
        time.sleep(2.0)  # b tries all this while
        os.kill(a.p.pid, signal.SIGCONT)
        a.say("close")
        a.expect("closed")
        b.expect("held")  # b got it only after a closed: its "held" is the first line it printed
        b.say("close")
        b.expect("closed")
    finally:
        os.kill(a.p.pid, signal.SIGCONT)
        conns.stop.set()
        conns.join()
        a.stop()
        if b:
            b.stop()
    assert conns.samples > 10
    assert conns.max == 1, conns.max


def test_killed_holder_frees_its_slot_without_the_ttl(redis_server, dovecot):
    a = Holder(redis_server.url, dovecot.port, ttl=3600)
    a.expect("held")
    a.p.kill()
    a.p.wait()
    b = Holder(redis_server.url, dovecot.port, ttl=3600)
    try:
        b.expect("held")  # within b's wait (120 s), far short of the hour's ttl
        b.say("close")
        b.expect("closed")
    finally:
        b.stop()


def test_redis_restart_closes_held_connections(redis_server, dovecot):
    """Redis restarted while a slot is held: the holder cuts its connection, the restarted server grants no
    slot during its grace, nobody is ever over the limit, and work resumes."""
    conns = ServerConnections(dovecot.port)
    conns.start()
    a = Holder(redis_server.url, dovecot.port, grace=2.0)
    b = None
    try:
        # grace 2 s: wait until the fresh server is old enough for the first grant
        a.expect("held")
        redis_server.kill()
        redis_server.start()
        b = Holder(redis_server.url, dovecot.port, grace=2.0)
        a.expect("lost")
        a.say("reconnect")
        # exactly one of them gets the slot; the other waits until it is given back
        ready, _, _ = select.select([a.p.stdout, b.p.stdout], [], [])
        first, second = (a, b) if a.p.stdout in ready else (b, a)
        first.expect("held")
        first.say("close")
        first.expect("closed")
        second.expect("held")
        second.say("close")
        second.expect("closed")
    finally:
        conns.stop.set()
        conns.join()
        a.stop()
        if b:
            b.stop()
    assert conns.max == 1, conns.max


def test_a_lost_redis_connection_cuts_the_imap_connection_under_the_slot(redis_server, dovecot):
    """Through mailmigrate's own IMAP store: the worker's Redis goes away while it holds a slot over a logged-in
    session; the watcher cuts that session (the server sees it end) and the next command on it fails as a lost
    connection, which the engine answers with a reconnect that takes a slot again."""
    from mailmigrate.errors import ConnectionLost
    from mailmigrate.fleet.limits import Slots, SlotStore
    from mailmigrate.model import Secret
    from mailmigrate.stores.imap import ImapStore

    dovecot.add_user("slotuser", "pw")
    slots = Slots(redis_server.url, ttl=3600, wait=30)
    store = SlotStore(ImapStore("127.0.0.1", dovecot.port, user="slotuser", password=Secret("pw"), tls="none"),
                      slots, KEY, 1)
    who = ["doveadm", "-c", str(dovecot.root / "dovecot.conf"), "who", "-1"]

    def sessions():
        return sum(1 for ln in subprocess.run(who, capture_output=True, text=True).stdout.splitlines()[1:]
                   if ln.strip())

    try:
        store.open()
        assert store.list_folders() and sessions() == 1
        redis_server.kill()
        end = time.monotonic() + 10
        while sessions() and time.monotonic() < end:
            time.sleep(0.05)
        assert sessions() == 0  # the server's session ended: the watcher cut it
        with pytest.raises(ConnectionLost):
            store.list_folders()
    finally:
        try:
            store.close()
        except Exception:
            pass
        slots.close()
