"""Network faults between mailmigrate and a real Dovecot, and a bounded soak of kills and faults.

The proxy (tests/servers/faultproxy.py) drops connections mid-FETCH and mid-APPEND, stalls and truncates
responses; whatever happens, the run ends with the target holding exactly the source.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from servers.faultproxy import Fault, FaultProxy
from test_sync_imap import MM, assert_same, env_for, mm, msg, populate


@pytest.fixture
def proxied(imap_accounts):
    src, dst = imap_accounts
    sp, tp = FaultProxy(src.port), FaultProxy(dst.port)
    yield src, dst, sp, tp
    sp.close()
    tp.close()


def urls(src, dst, sp, tp, timeout=3):
    return (f"imap://{src.user}@127.0.0.1:{sp.port}?tls=none&timeout={timeout}",
            f"imap://{dst.user}@127.0.0.1:{tp.port}?tls=none&timeout={timeout}")


def corpus(n=150, seed=1):
    rng = random.Random(seed)
    return {f: [(msg(i * 3 + k, rng.choice([0, 300, 5000, 40000])), rng.choice(["", "\\Seen", "\\Flagged"]))
                for i in range(n)] for k, f in enumerate(["INBOX", "Work", "Old"])}


@pytest.mark.parametrize("side", ["source", "target"])
def test_dropped_connections_end_exact(proxied, tmp_path, side):
    """Connections cut mid-FETCH (source) or mid-APPEND (target), several times: retried on fresh
    connections, interrupted appends found by content, and the copy is exact."""
    src, dst, sp, tp = proxied
    populate(src, corpus())
    if side == "source":
        sp.push(Fault("drop", after=30_000), Fault("drop", after=200_000), Fault("truncate", after=90_000))
        proxy = sp
    else:
        tp.push(Fault("drop_up", after=150_000), Fault("drop_up", after=400_000), Fault("drop", after=3_000))
        proxy = tp
    s_url, t_url = urls(src, dst, sp, tp)
    p = mm("sync", s_url, t_url, "--state", tmp_path / "s.db", "--json", "--connections", "1",
           env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert s["failed"] == 0 and proxy.faults_fired == 3
    assert_same(src, dst)


def test_stalled_server_times_out_and_resumes(proxied, tmp_path):
    src, dst, sp, tp = proxied
    populate(src, corpus(60))
    sp.push(Fault("stall", after=20_000, stall=6))
    s_url, t_url = urls(src, dst, sp, tp, timeout=2)
    s = json.loads(mm("sync", s_url, t_url, "--state", tmp_path / "s.db", "--json", "--connections", "1",
                      env=env_for(src, dst)).stdout)
    assert s["failed"] == 0
    assert_same(src, dst)


def test_unreachable_server_fails_the_account_clearly(proxied, tmp_path):
    src, dst, sp, tp = proxied
    populate(src, corpus(5))
    sp.default = Fault("refuse")
    s_url, t_url = urls(src, dst, sp, tp)
    t0 = time.time()
    p = mm("sync", s_url, t_url, "--state", tmp_path / "s.db", "--json", "--retries", "3",
           env=env_for(src, dst), check=False)
    assert p.returncode == 1 and time.time() - t0 < 60
    err = json.loads(p.stdout)["accounts"][0]["error"]
    assert err.startswith("source:") and "gave up after 3 attempts" in err


def test_soak_50_kills_and_faults_end_in_an_exact_copy(proxied, tmp_path):
    """50 events — SIGKILL of the running sync at a random moment, or a connection dropped by the proxy at a
    random byte — over one migration (with new mail and flag changes arriving meanwhile), then one clean
    run: the target is exactly the source.  Bounded: a few minutes at most."""
    src, dst, sp, tp = proxied
    populate(src, corpus(120, seed=9))
    rng = random.Random(2024)
    s_url, t_url = urls(src, dst, sp, tp)
    state = tmp_path / "s.db"
    env = {**os.environ, **env_for(src, dst)}
    events = kills = drops = 0
    deadline = time.time() + 240
    from servers import imapcheck

    while events < 50 and time.time() < deadline:
        # Users keep working: every round brings new mail, and every tenth a flag change.
        c = imapcheck.connect(src.port, src.user, src.password)
        for k in range(rng.randint(3, 12)):
            imapcheck.append(c, rng.choice(["INBOX", "Work"]), msg(10_000 + events * 20 + k, rng.choice([0, 9000])), "")
        if events % 10 == 0:
            c.select("Work")
            c.uid("STORE", str(events + 1), "+FLAGS", "(\\Answered)")
        c.logout()
        if rng.random() < 0.5:
            proxy = rng.choice([sp, tp])
            proxy.push(Fault(rng.choice(["drop", "drop_up", "truncate"]), after=rng.randint(500, 300_000)))
            drops += 1
        p = subprocess.Popen(MM + ["sync", s_url, t_url, "--state", str(state), "--retries", "8",
                                   "--connections", str(rng.choice([1, 3]))],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if rng.random() < 0.6:
            time.sleep(rng.uniform(0.02, 0.35))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
        p.wait(timeout=120)
        events += 1
    assert events == 50 and kills >= 10 and drops >= 10
    sp.default = tp.default = Fault()
    s = json.loads(mm("sync", s_url, t_url, "--state", state, "--json", env=env_for(src, dst)).stdout)
    assert s["failed"] == 0
    assert_same(src, dst)
