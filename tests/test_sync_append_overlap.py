"""The next batch is read from the source while the target stores this one, on every server Debian offers.

A copy used to take turns on one folder: read a batch from the source, send it, wait for the target's
answer, read the next.  Now the target's answer to a batch is read only before the next batch's intent is
written, so the source is being read while the target stores (docs/benchmarks.md, sixth pass: a one-folder
copy on tmpfs 0.47 -> 0.42 s).  What must not change: every message arrives once, byte-exact with its flags and date,
and no intent is left pending once the answer came, also when the source breaks while a batch is in flight.

Checked through the command line against real servers, the result read back with imaplib; the order of the
two connections' traffic is read from the run's own wire log (``--log-file`` with ``-vv``).
"""

from __future__ import annotations

import json
import re
import sqlite3

from servers import imapcheck
from servers.faultproxy import Fault, FaultProxy
from test_sync_imap import env_for, mm, msg

N = 230  # three batches of MULTIAPPEND's 100


def _layout():
    items = []
    for i in range(N):
        items.append((msg(i, [0, 300, 5000][i % 3]), ["", "\\Seen", "\\Seen \\Flagged"][i % 3]))
    return {("INBOX",): items}


def _pending(state) -> int:
    c = sqlite3.connect(f"file:{state}?mode=ro", uri=True)
    try:
        return c.execute("select count(*) from messages where state = 0").fetchone()[0]
    finally:
        c.close()


def _capabilities(account) -> set[str]:
    c = imapcheck.connect(account.port, account.user, account.password)
    try:
        return {x.upper() for x in c.capabilities}
    finally:
        c.logout()


def _overlapped(log: str) -> bool:
    """Whether, after the first APPEND went out, a source message was read before that APPEND's answer.

    The wire log holds both connections' lines in the order they happened: "C: b'<tag> APPEND" is the
    target's command, "S: b'* <n> FETCH (... BODY[]" a source message arriving, "S: b'<tag> OK" with that
    tag the target's answer."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.search(r"C: b'(\w+) APPEND ", line)
        if not m:
            continue
        answer = re.compile(rf"S: b'{m.group(1)} (OK|NO|BAD)")
        for later in lines[i + 1:]:
            if answer.search(later):
                break
            if re.search(r"S: b'\* \d+ FETCH \(.*BODY\[\]", later):
                return True
        return False
    raise AssertionError("no APPEND in the wire log")


def _copy_and_check(src, dst, tmp_path):
    layout = _layout()
    imapcheck.populate_any(src.port, src.user, src.password, layout)
    state, log = tmp_path / "s.db", tmp_path / "run.log"
    p = mm("-vv", "sync", src.url(), dst.url(), "--state", state, "--json", "--connections", "1", "--log-file",
           log, env=env_for(src, dst))
    report = json.loads(p.stdout)
    assert (report["copied"], report["failed"]) == (N, 0)
    got = {k: v for k, v in imapcheck.account_by_path(dst.port, dst.user, dst.password).items() if v}
    assert got == {k: v for k, v in imapcheck.account_by_path(src.port, src.user, src.password).items() if v}
    assert _pending(state) == 0
    again = json.loads(mm("sync", src.url(), dst.url(), "--state", state, "--json",
                          env=env_for(src, dst)).stdout)
    assert again["copied"] == 0
    return log.read_text()


def test_the_source_is_read_while_the_target_stores_a_batch_dovecot(imap_accounts, tmp_path):
    src, dst = imap_accounts
    log = _copy_and_check(src, dst, tmp_path)
    assert _overlapped(log)


def test_the_source_is_read_while_the_target_stores_a_batch_across_servers(cross_accounts, tmp_path):
    """Cyrus (MULTIAPPEND, LITERAL+) overlaps like Dovecot.  Courier has neither: each literal waits for the
    server's "+", so a batch is sent and answered at once, and there is nothing to overlap."""
    src, dst = cross_accounts
    log = _copy_and_check(src, dst, tmp_path)
    caps = _capabilities(dst)
    assert _overlapped(log) == ("LITERAL+" in caps), sorted(caps)


def test_a_batch_in_flight_when_the_source_breaks_is_recorded(imap_accounts, tmp_path):
    """The source drops the connection in the middle of the second batch, while the first is sent and not
    yet answered: the first batch is recorded as copied all the same (no intent left pending for a recovery
    to search the target for), and the rerun copies the rest, each message once."""
    src, dst = imap_accounts
    layout = _layout()
    imapcheck.populate_any(src.port, src.user, src.password, layout)
    sp = FaultProxy(src.port)
    try:
        # About the middle of the second batch, counted in message bytes (the protocol's own are few).
        sp.push(Fault("drop", after=sum(len(b) for b, _ in layout[("INBOX",)][:150])))
        state = tmp_path / "s.db"
        s_url = f"imap://{src.user}@127.0.0.1:{sp.port}?tls=none"
        p = mm("sync", s_url, dst.url(), "--state", state, "--json", "--connections", "1", "--retries", "1",
               env=env_for(src, dst), check=False)
        assert sp.faults_fired == 1 and p.returncode != 0, p.stdout[-2000:]
        on_target = imapcheck.account_by_path(dst.port, dst.user, dst.password)[("INBOX",)]
        assert sum(on_target.values()) == 100  # the first batch, and nothing of the second
        assert _pending(state) == 0
        again = json.loads(mm("sync", s_url, dst.url(), "--state", state, "--json", env=env_for(src, dst)).stdout)
    finally:
        sp.close()
    assert (again["copied"], again["failed"]) == (N - 100, 0)
    got = {k: v for k, v in imapcheck.account_by_path(dst.port, dst.user, dst.password).items() if v}
    assert got == {k: v for k, v in imapcheck.account_by_path(src.port, src.user, src.password).items() if v}
