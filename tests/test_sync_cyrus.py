"""The engine's promise on Cyrus IMAP 3.6 as Debian ships it (and with altnamespace) and on Courier-IMAP 5.0
(tests/servers/courier.py), as source and as target,
through the command line: the hostile corpus byte-exact with flags, dates, folders and subscriptions; what
Cyrus rewrites (8-bit header bytes, munge8bit) reported per message; special-use folders created with RFC
6154's syntax; kill -9 four times then exact. Checked with imaplib, independently of mailmigrate."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from servers import imapcheck
from test_sync_imap import MM, _rows, env_for, mm, msg

# Folder names: Dovecot's hostile set; Cyrus with "." as separator cannot hold "." (or '"') inside a name, so a
# Cyrus source gets the rest (mailmigrate escapes a "." for a Cyrus target: "dot.name" arrives as "dot․name").
HOSTILE = [("Café ☕ Übersicht",), ("a&b",), ("c+d",), ("with space",), ('quo"te',), ("L1", "L2", "L3"),
           ("dot.name",), ("Sent Items",)]
CYRUS_CANNOT_HOLD = {('quo"te',), ("dot.name",)}


def munged(data: bytes) -> bytes:
    """What Cyrus's munge8bit stores for a message: every 8-bit byte of the header block becomes "X"."""
    end = data.find(b"\r\n\r\n")
    end = len(data) if end < 0 else end
    return re.sub(rb"[\x80-\xff]", b"X", data[:end]) + data[end:]


def layout_for(src_kind: str):
    layout = {("INBOX",): [(msg(1), "\\Seen"), (msg(2), "\\Flagged $Label1 Junk"), (msg(3), ""),
                           (b"Subject: 8bit \xe9\xe8 header\r\n\r\nLatin-1 body \xff\r\n", "\\Seen"),
                           (b"From: x@example.org\r\nSubject: twin\r\n\r\nsame\r\n", ""),
                           (b"From: x@example.org\r\nSubject: twin\r\n\r\nsame\r\n", "\\Seen"),
                           # \Deleted travels and stays: a server without UNSELECT (Courier) must not see CLOSE on a
                           # folder selected read-write, which would expunge it
                           (msg(4), "\\Deleted \\Seen")]}
    names = [p for p in HOSTILE if not (src_kind.startswith("cyrus") and p in CYRUS_CANNOT_HOLD)]
    for i, path in enumerate(names):
        layout[path] = [(msg(100 + i), "\\Seen"), (msg(200 + i, 3000), "")]
    return layout, names


def expected_on_target(src, dst_kind):
    """The source's folders as the target must hold them: Cyrus targets munge 8-bit header bytes."""
    out = {}
    for path, msgs in src.items():
        if not msgs:
            continue
        c = Counter()
        for (body, flags, date), n in msgs.items():
            c[(munged(body) if dst_kind.startswith("cyrus") else body, flags, date)] += n
        out[path] = c
    return out


def test_hostile_corpus_across_dovecot_and_cyrus(cross_accounts, tmp_path):
    src, dst = cross_accounts
    layout, names = layout_for(src.kind)
    imapcheck.populate_any(src.port, src.user, src.password, layout,
                           subscribe={("a&b",), ("L1", "L2", "L3"), ("Café ☕ Übersicht",)})
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json", env=env_for(src, dst), check=False)
    s = json.loads(p.stdout)
    rewritten = 1 if dst.kind.startswith("cyrus") else 0  # the one message with 8-bit header bytes
    assert s["failed"] == 0 and p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert s["copied"] == sum(len(v) for v in layout.values())
    warnings = [pr for a in s["accounts"] for pr in a["problems"] if "rewrote" in pr["reason"]]
    assert len(warnings) == rewritten, warnings
    if rewritten:
        assert warnings[0]["folder"] == "INBOX" and "8-bit header bytes" in warnings[0]["reason"]
    got = imapcheck.account_by_path(dst.port, dst.user, dst.password)
    want = expected_on_target(imapcheck.account_by_path(src.port, src.user, src.password), dst.kind)
    got = {k: v for k, v in got.items() if v}
    sent = {k for k in got if k not in want}  # "Sent Items" lands in the target's own Sent folder
    assert {k for k in want if k not in got} <= {("Sent Items",)} and len(sent) <= 1
    for path, c in want.items():
        assert got.get(path, got.get(next(iter(sent), None))) == c, path
    # subscriptions kept
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    prefix, sep = imapcheck._namespace(c)
    subs = {imapcheck.path_of(n, prefix, sep) for n in imapcheck.subscriptions(c)}
    c.logout()
    assert {("a&b",), ("L1", "L2", "L3"), ("Café ☕ Übersicht",)} <= subs
    # a rerun copies nothing, and the rewritten message is not copied again
    s2 = json.loads(mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json",
                       env=env_for(src, dst)).stdout)
    assert s2["copied"] == 0 and s2["failed"] == 0


def test_special_use_is_set_on_cyrus_with_rfc_6154_syntax(dovecot_pair, cyrus_server, tmp_path):
    """Cyrus answers OK to CREATE name (USE \\Sent) and sets nothing; (USE (\\Sent)) sets it."""
    from conftest import ImapAccount

    src = ImapAccount(dovecot_pair[0], f"su{os.getpid()}", "pw1")
    dst = ImapAccount(cyrus_server, f"su{os.getpid()}", "pw2")
    src.server.add_user(src.user, src.password)
    dst.server.add_user(dst.user, dst.password)
    imapcheck.populate_any(src.port, src.user, src.password,
                           {("Sent",): [(msg(1), "\\Seen")], ("Trash",): [(msg(2), "")]})
    mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", env=env_for(src, dst))
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    attrs = {imapcheck.path_of(n, "INBOX.", "."): a for n, a in imapcheck.folders(c).items()}
    c.logout()
    assert "\\sent" in attrs[("Sent",)] and "\\trash" in attrs[("Trash",)]


@pytest.mark.parametrize("target", ["cyrus", "courier"])
def test_kill_9_four_times_against_cyrus_then_exact(dovecot_pair, request, tmp_path, target):
    """kill -9 four times mid-copy into Cyrus (which rewrites 8-bit headers) or Courier (no MULTIAPPEND:
    one APPEND per message), then a rerun: exactly the source's messages, none twice: recovery finds
    rewritten copies by their rewrite-proof fingerprint."""
    from conftest import ImapAccount

    tag = f"k{os.getpid()}{random.randint(0, 10**6)}"
    src = ImapAccount(dovecot_pair[0], tag, "pw1")
    dst = ImapAccount(request.getfixturevalue(f"{target}_server"), tag, "pw2")
    src.server.add_user(src.user, src.password)
    dst.server.add_user(dst.user, dst.password)
    rng = random.Random(9)
    layout = {}
    for n, f in enumerate([("INBOX",), ("A",), ("B",)]):
        items = []
        for i in range(300):
            body = msg(i * 7 + n, rng.choice([0, 200, 4000, 30000]))
            if i % 5 == 0:  # every fifth message has raw 8-bit header bytes, which Cyrus rewrites
                body = body.replace(b"Subject: message", "Subject: Grüße".encode("latin-1"), 1)
            items.append((body, rng.choice(["", "\\Seen"])))
        layout[f] = items
    imapcheck.populate_any(src.port, src.user, src.password, layout)
    state = tmp_path / "s.db"
    e = {**os.environ, **env_for(src, dst)}
    kills = 0
    for round_ in range(1, 5):
        log = open(tmp_path / f"run{round_}.log", "wb")
        p = subprocess.Popen(MM + ["sync", src.url(), dst.url(), "--state", str(state)], env=e,
                             stdout=log, stderr=subprocess.STDOUT)
        goal = round_ * 150
        deadline = time.time() + 60
        while p.poll() is None and _rows(state) < goal and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.random() * 0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 3, "the runs finished before they could be killed: " + (tmp_path / "run1.log").read_text()[-2000:]
    out = mm("sync", src.url(), dst.url(), "--state", state, "--json", env=env_for(src, dst))
    assert json.loads(out.stdout)["failed"] == 0
    got = {k: v for k, v in imapcheck.account_by_path(dst.port, dst.user, dst.password).items() if v}
    want = expected_on_target(imapcheck.account_by_path(src.port, src.user, src.password), target)
    assert got == want


@pytest.mark.parametrize("target", ["dovecot", "cyrus"])
def test_a_pure_hierarchy_level_stays_one(dovecot_pair, cyrus_server, tmp_path, target):
    """Dovecot's "L1/L2/Leaf" created alone has L1 and L1/L2 as \\Noselect levels; on a target that allows
    such levels (Dovecot) they stay levels. Cyrus 3.6 does not: it makes every missing parent an
    intermediate mailbox that SELECT opens (seen with imaplib alone: CREATE INBOX.L1.L2.Leaf, then SELECT
    INBOX.L1 answers OK); there the levels hold no mail, and mailmigrate adds nothing of its own."""
    from conftest import ImapAccount

    tag = f"h{os.getpid()}{random.randint(0, 10**6)}"
    src = ImapAccount(dovecot_pair[0], tag, "pw1")
    dst = ImapAccount(cyrus_server if target == "cyrus" else dovecot_pair[1], tag, "pw2")
    src.server.add_user(src.user, src.password)
    dst.server.add_user(dst.user, dst.password)
    imapcheck.populate_any(src.port, src.user, src.password, {("L1", "L2", "Leaf"): [(msg(1), "")]})
    c = imapcheck.connect(src.port, src.user, src.password)
    assert "\\noselect" in imapcheck.folders(c)["L1"] or "\\nonexistent" in imapcheck.folders(c)["L1"]
    c.logout()
    mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", env=env_for(src, dst))
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    prefix, sep = imapcheck._namespace(c)
    attrs = {imapcheck.path_of(n, prefix, sep): a for n, a in imapcheck.folders(c).items()}
    c.logout()
    assert ("L1", "L2", "Leaf") in attrs
    got = imapcheck.account_by_path(dst.port, dst.user, dst.password)
    for level in (("L1",), ("L1", "L2")):
        a = attrs.get(level)
        if target == "cyrus":
            assert not got.get(level)  # Cyrus's own intermediate mailbox, empty
        else:
            assert a is None or "\\noselect" in a or "\\nonexistent" in a, (level, a)
