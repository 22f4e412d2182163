"""The sync engine against two real Dovecot servers, through the command line as an administrator runs it.

Every check reads both accounts with Python's own imaplib (tests/servers/imapcheck.py), not with
mailmigrate, and compares what a mail client would see: per folder, each message's exact bytes, flags and
INTERNALDATE, as a multiset (so a duplicate or a loss shows).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from servers import imapcheck

MM = [sys.executable, "-m", "mailmigrate.cli.main"]

HOSTILE = ["Café ☕ Übersicht", "a&b", "c+d", "with space", 'quo"te', "L1/L2/L3/L4/L5", "dot.name", "Sent Items"]


def mm(*args, env=None, check=True, timeout=300):
    e = {**os.environ, **(env or {})}
    p = subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, env=e, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
    return p


def env_for(src, dst, **extra):
    return {"MAILMIGRATE_SOURCE_PASSWORD": src.password, "MAILMIGRATE_TARGET_PASSWORD": dst.password, **extra}


def sync(src, dst, state, *extra, check=True, env=None):
    p = mm("sync", src.url(), dst.url(), "--state", state, "--json", *extra,
           env=env or env_for(src, dst), check=check)
    return json.loads(p.stdout) if p.stdout.strip() else None, p


def msg(i: int, size: int = 0, mid: str | None = "auto") -> bytes:
    head = f"From: a{i}@example.org\r\nSubject: message {i}\r\n"
    if mid == "auto":
        head += f"Message-ID: <{i}@example.org>\r\n"
    elif mid:
        head += f"Message-ID: {mid}\r\n"
    body = f"body {i}\r\n" + ("x" * 70 + "\r\n") * (size // 72)
    return (head + "\r\n" + body).encode()


def populate(acc, layout: dict[str, list[tuple[bytes, str]]], subscribe=()):
    from mailmigrate.formats import mutf7

    c = imapcheck.connect(acc.port, acc.user, acc.password)
    t0 = datetime(2020, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    for folder, items in layout.items():
        wire = mutf7.encode(folder)
        if folder != "INBOX":
            imapcheck.create(c, wire, subscribe=folder in subscribe)
        for i, (data, flags) in enumerate(items):
            imapcheck.append(c, wire, data, flags, t0 + timedelta(hours=i))
    c.logout()


def snapshot(acc):
    return imapcheck.account(acc.port, acc.user, acc.password)


def assert_same(src, dst, ignore=()):
    a, b = snapshot(src), snapshot(dst)
    for k in ignore:
        b.pop(k, None)
    # Hierarchy-only parents that exist on one side only are not mail.
    a = {k: v for k, v in a.items() if v}
    b = {k: v for k, v in b.items() if v}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == b[k], f"folder {k}: differs"


def test_exact_copy_with_hostile_names_flags_dates_subscriptions(imap_accounts, tmp_path):
    src, dst = imap_accounts
    layout = {"INBOX": [(msg(1), "\\Seen"), (msg(2), "\\Flagged $Label1 Junk"), (msg(3), ""),
                        (b"no headers at all, bare LF\nsecond line\n", "\\Answered \\Draft"),
                        (b"Subject: 8bit \xe9\xe8\r\n\r\nLatin-1 body \xff\r\n", "\\Seen")]}
    for i, name in enumerate(HOSTILE):
        layout[name] = [(msg(100 + i), "\\Seen"), (msg(200 + i, 3000), "")]
    populate(src, layout, subscribe={"a&b", "L1/L2/L3/L4/L5", "Café ☕ Übersicht"})
    # STARTTLS with the server's certificate verified against its CA file.
    tls_src = src.url(tls="starttls", cafile=src.server.cafile)
    tls_dst = dst.url(tls="starttls", cafile=dst.server.cafile)
    p = mm("sync", tls_src, tls_dst, "--state", tmp_path / "s.db", "--json", env=env_for(src, dst))
    s = json.loads(p.stdout)
    assert s["copied"] == 5 + 2 * len(HOSTILE) and s["failed"] == 0
    assert_same(src, dst)
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    subs = {imapcheck.decoded(n) for n in imapcheck.subscriptions(c)}
    c.logout()
    assert {"a&b", "L1/L2/L3/L4/L5", "Café ☕ Übersicht"} <= subs
    # Rerun: nothing to do.
    s2, _ = sync(src, dst, tmp_path / "s.db")
    assert s2["copied"] == 0 and s2["skipped"] == s["copied"]


def test_genuine_duplicates_all_arrive(imap_accounts, tmp_path):
    src, dst = imap_accounts
    items = [
        (msg(1, mid="<same@x>"), ""), (msg(2, mid="<same@x>"), ""),  # different messages, one Message-ID
        (msg(3, mid=None), ""), (msg(4, mid=None), ""),  # two without one
        (msg(5), "\\Seen"), (msg(5), "\\Seen"),  # identical twins
    ]
    populate(src, {"INBOX": items})
    s, _ = sync(src, dst, tmp_path / "s.db")
    assert s["copied"] == 6
    assert_same(src, dst)
    assert sum(snapshot(dst)["INBOX"].values()) == 6


def test_new_mail_flags_and_delete_follow_and_target_only_mail_survives(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i), "") for i in range(10)], "Work": [(msg(50), "\\Seen")]})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    c = imapcheck.connect(src.port, src.user, src.password)
    c.select("INBOX")
    c.uid("STORE", "1", "+FLAGS", "(\\Seen \\Flagged)")
    c.uid("STORE", "2", "-FLAGS", "(\\Seen)")
    c.uid("STORE", "3", "+FLAGS", "(\\Deleted)")
    c.expunge()
    imapcheck.append(c, "INBOX", msg(99), "\\Draft")
    c.logout()
    d = imapcheck.connect(dst.port, dst.user, dst.password)
    imapcheck.append(d, "INBOX", b"Subject: written on the target\r\n\r\nmine\r\n", "")
    d.logout()
    s, _ = sync(src, dst, state)
    assert (s["copied"], s["flags_updated"], s["deleted"]) == (1, 1, 0)
    s, _ = sync(src, dst, state, "--delete")
    assert (s["copied"], s["deleted"]) == (0, 1)
    target = snapshot(dst)
    mine = [k for k in target["INBOX"] if b"written on the target" in k[0]]
    assert len(mine) == 1, "a message mailmigrate did not put there survives --delete"
    del target["INBOX"][mine[0]]
    source = snapshot(src)
    assert {k: v for k, v in target.items() if v} == {k: v for k, v in source.items() if v}


def _inprocess(src, dst, state_path, **opts):
    from mailmigrate.model import Secret
    from mailmigrate.stores.imap import ImapStore
    from mailmigrate.sync.engine import SyncOptions, sync_account
    from mailmigrate.sync.state import StateDB

    s = ImapStore("127.0.0.1", src.port, user=src.user, password=Secret(src.password), tls="none")
    t = ImapStore("127.0.0.1", dst.port, user=dst.user, password=Secret(dst.password), tls="none")
    state = StateDB.open(state_path)
    try:
        return sync_account(s, t, account_name="acc", state=state, options=SyncOptions(**opts))
    finally:
        state.close()


class Crash(BaseException):
    """Stands for kill -9 at an exact point: nothing after it runs."""


@pytest.mark.parametrize("uidplus", [True, False])
def test_crash_between_append_and_record_never_duplicates(dovecot_factory, tmp_path, uidplus):
    from conftest import ImapAccount

    s_srv = dovecot_factory()
    t_srv = dovecot_factory(uidplus=uidplus)
    src, dst = ImapAccount(s_srv, "ann", "pw1"), ImapAccount(t_srv, "ann", "pw2")
    s_srv.add_user("ann", "pw1")
    t_srv.add_user("ann", "pw2")
    populate(src, {"INBOX": [(msg(i, 500 * i), "\\Seen" if i % 2 else "") for i in range(250)] + [(msg(7), "")]})
    state = tmp_path / "s.db"
    calls = {"n": 0}

    def crash_after_second_append(point):
        if point == "after-append":
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash()

    with pytest.raises(Crash):
        _inprocess(src, dst, state, checkpoint=crash_after_second_append)
    r = _inprocess(src, dst, state)
    assert r.error is None and r.counters.failed == 0
    assert r.counters.recovered > 0, "the interrupted batch is found on the target, not appended again"
    assert_same(src, dst)
    r = _inprocess(src, dst, state)
    assert r.counters.copied == 0


def test_uidvalidity_change_is_rematched_not_recopied(imap_accounts, tmp_path):
    src, dst = imap_accounts
    items = [(msg(i), "\\Seen") for i in range(20)] + [(msg(3), "\\Seen")]
    populate(src, {"Box": items})
    state = tmp_path / "s.db"
    sync(src, dst, state)
    # Recreate the source folder with the same messages: a new UIDVALIDITY, new UIDs.
    c = imapcheck.connect(src.port, src.user, src.password)
    assert c.delete("Box")[0] == "OK"
    c.logout()
    populate(src, {"Box": items})
    s, _ = sync(src, dst, state)
    assert s["copied"] == 0 and s["rematched"] == 21
    assert_same(src, dst)
    # Same on the target side.
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    assert c.delete("Box")[0] == "OK"
    c.logout()
    populate(dst, {"Box": items})
    s, _ = sync(src, dst, state, "--delete")
    assert s["copied"] == 0 and s["deleted"] == 0 and s["rematched"] == 21
    assert_same(src, dst)


def _rows(state) -> int:
    import sqlite3

    try:
        c = sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=1)
        try:
            return c.execute("select count(*) from messages").fetchone()[0]
        finally:
            c.close()
    except sqlite3.Error:
        return 0


def test_repeated_kill_9_then_rerun_is_exact(imap_accounts, tmp_path):
    """kill -9 at five different moments of a copy (each while messages are being appended), then one
    run to the end: the target holds exactly the source, no message lost, none twice."""
    src, dst = imap_accounts
    rng = random.Random(5)
    layout = {f: [(msg(i * 7 + n, rng.choice([0, 200, 4000, 30000])), rng.choice(["", "\\Seen", "\\Flagged"]))
                  for i in range(250)] for n, f in enumerate(["INBOX", "A", "B"])}
    layout["A"].append(layout["A"][0])  # a twin
    populate(src, layout)
    state = tmp_path / "s.db"
    e = {**os.environ, **env_for(src, dst)}
    kills = 0
    for round_ in range(1, 6):
        p = subprocess.Popen(MM + ["sync", src.url(), dst.url(), "--state", str(state)], env=e,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        goal = round_ * 120
        deadline = time.time() + 60
        while p.poll() is None and _rows(state) < goal and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.random() * 0.05)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.wait()
    assert kills >= 3, "the runs finished before they could be killed"
    s, _ = sync(src, dst, state)
    assert s["failed"] == 0
    assert_same(src, dst)


def test_master_user_login_both_styles(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen")]})
    e = {"MAILMIGRATE_SOURCE_PASSWORD": "masterpw", "MAILMIGRATE_TARGET_PASSWORD": "masterpw"}
    p = mm("sync", src.url(), dst.url(master="star"), "--source-master", "master", "--target-master", "master",
           "--state", tmp_path / "s.db", "--json", env=e)
    assert json.loads(p.stdout)["copied"] == 1
    assert_same(src, dst)


def test_failed_login_names_side_and_account(imap_accounts, tmp_path):
    src, dst = imap_accounts
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db", "--json",
           env={"MAILMIGRATE_SOURCE_PASSWORD": src.password, "MAILMIGRATE_TARGET_PASSWORD": "wrong-pw-123"},
           check=False)
    assert p.returncode == 2  # a refused login is a configuration error: not retried, exit 2 (issue 23)
    err = json.loads(p.stdout)["accounts"][0]["error"]
    assert err.startswith("target:") and dst.user in err and "wrong-pw-123" not in p.stdout + p.stderr


def pair_refusing_message_2(dovecot_factory):
    """A source "ann" with three messages and a target "ann" whose Dovecot refuses message 2 (over its
    50k quota_max_mail_size): one message a sync cannot copy, whatever it does."""
    from conftest import ImapAccount

    s_srv = dovecot_factory()
    t_srv = dovecot_factory(extra_conf="mail_plugins = $mail_plugins quota\nplugin {\n  quota = maildir:User quota\n"
                                       "  quota_rule = *:storage=1G\n  quota_max_mail_size = 50k\n}\n")
    src, dst = ImapAccount(s_srv, "ann", "pw1"), ImapAccount(t_srv, "ann", "pw2")
    s_srv.add_user("ann", "pw1")
    t_srv.add_user("ann", "pw2")
    populate(src, {"INBOX": [(msg(1), ""), (msg(2, 120_000), ""), (msg(3), "\\Seen")]})
    return src, dst


def test_message_refused_by_target_is_reported_and_the_rest_copied(dovecot_factory, tmp_path):
    src, dst = pair_refusing_message_2(dovecot_factory)
    s, p = sync(src, dst, tmp_path / "s.db", check=False)
    assert p.returncode == 1
    assert s["copied"] == 2 and s["failed"] == 1
    prob = s["accounts"][0]["problems"][0]
    assert prob["folder"] == "INBOX" and prob["message"] == "2" and "Subject: 'message 2'" in prob["reason"]
    assert sum(snapshot(dst)["INBOX"].values()) == 2


def test_maildir_source_and_maildir_target(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen $Forwarded"), (msg(2), "")], "Sub/Deeper": [(msg(3), "\\Flagged")]})
    out = tmp_path / "Maildir"
    e = {"MAILMIGRATE_SOURCE_PASSWORD": src.password}
    s = json.loads(mm("sync", src.url(), f"maildir:{out}", "--state", tmp_path / "a.db", "--json", env=e).stdout)
    assert s["copied"] == 3
    # ... and from that Maildir into a fresh IMAP account: the round trip must be exact.
    e = {"MAILMIGRATE_TARGET_PASSWORD": dst.password}
    s = json.loads(mm("sync", f"maildir:{out}", dst.url(), "--state", tmp_path / "b.db", "--json", env=e).stdout)
    assert s["copied"] == 3
    assert_same(src, dst)


def test_special_use_folders_land_in_the_targets_own(imap_accounts, tmp_path):
    """A German "Gesendete Objekte" and an "Deleted Items" land in the target's \\Sent and \\Trash folders,
    which the target calls Sent and Trash; an ordinary folder keeps its name."""
    src, dst = imap_accounts
    populate(src, {"Gesendete Objekte": [(msg(1), "\\Seen")], "Deleted Items": [(msg(2), "\\Seen")],
                   "Projekte": [(msg(3), "")]})
    c = imapcheck.connect(dst.port, dst.user, dst.password)
    imapcheck.create(c, "Sent")
    imapcheck.create(c, "Trash")
    typ, data = c.list()
    assert any(b"\\Sent" in line and b"Sent" in line for line in data)  # the target marks them itself
    c.logout()
    s, _ = sync(src, dst, tmp_path / "s.db")
    assert s["copied"] == 3
    target = {k: v for k, v in snapshot(dst).items() if v}
    assert set(target) == {"Sent", "Trash", "Projekte"}
    assert [k[0] for k in target["Sent"]] == [msg(1)]


def test_a_folder_given_up_mid_fetch_leaves_the_next_folder_whole(dovecot_factory, tmp_path, monkeypatch):
    """The source's FETCH is read in the thread that appends: when the target gives up on a folder after its
    first batch, the source's answer is left mid-stream. The next folder must be read on a fresh connection
    (one connection per side here): on the old one, the rest of the abandoned answer would arrive first, more
    than a command may hold here (the limit lowered to 200 KB, as a far larger folder would pass the default
    128 MiB), and the next folder would fail. A rerun copies the rest of the folder, nothing twice."""
    from conftest import ImapAccount
    from mailmigrate.errors import FolderFailed
    from mailmigrate.model import Secret
    from mailmigrate.stores.imap import ImapStore
    from mailmigrate.stores.wrapper import StoreWrapper
    from mailmigrate.sync.engine import SyncOptions, sync_account
    from mailmigrate.sync.state import StateDB

    from mailmigrate.imap import connection

    monkeypatch.setattr(connection, "MAX_HELD", 200_000)
    s_srv, t_srv = dovecot_factory(), dovecot_factory()
    src, dst = ImapAccount(s_srv, "ann", "pw1"), ImapAccount(t_srv, "ann", "pw2")
    s_srv.add_user("ann", "pw1")
    t_srv.add_user("ann", "pw2")
    populate(src, {"Big": [(msg(i, 3000), "\\Seen") for i in range(350)],
                   "Zed": [(msg(1000 + i, 200), "") for i in range(40)], "INBOX": [(msg(2000), "")]})

    class GivesUpOnBig(StoreWrapper):
        def __init__(self, inner, batches: int):
            super().__init__(inner)
            self.left = batches

        def append_started(self, path, items):  # how the copy appends (a batch's answer is read later)
            if path[-1] == "Big":
                if self.left == 0:
                    raise FolderFailed("the test's target gives up on Big")
                self.left -= 1
            return super().append_started(path, items)

    def run(batches_before_failure):
        s = ImapStore("127.0.0.1", src.port, user=src.user, password=Secret(src.password), tls="none")
        t = ImapStore("127.0.0.1", dst.port, user=dst.user, password=Secret(dst.password), tls="none")
        target = t if batches_before_failure is None else GivesUpOnBig(t, batches_before_failure)
        state = StateDB.open(tmp_path / "s.db")
        try:
            return sync_account(s, target, account_name="acc", state=state, options=SyncOptions(connections=1))
        finally:
            state.close()

    first = run(1)
    copied = snapshot(dst)
    assert len(copied["Big"]) == 100, "one batch of Big went in before the target gave up"
    assert copied["Zed"] == snapshot(src)["Zed"] and copied["INBOX"] == snapshot(src)["INBOX"]
    assert any("Big" in str(p) for p in first.problems), first.problems
    again = run(None)
    assert again.error is None and again.counters.copied == 250
    assert_same(src, dst)


def _run_at_a_terminal(argv: list[str], env: dict, answers: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as its stdin, stdout and stderr, typing each answer when the text
    before it appears; (exit status, everything the terminal showed)."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:  # the child: only exec (the test process has threads)
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    shown, left, deadline = b"", dict(answers), time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # EIO: the child has gone, and its terminal with it
                break
            if not data:
                break
            shown += data
            for prompt in list(left):
                if prompt.encode() in shown:
                    os.write(fd, left.pop(prompt).encode() + b"\n")
        else:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_a_run_at_a_terminal_given_no_password_asks_for_each_side_and_does_not_echo_it(imap_accounts, tmp_path):
    """An administrator migrating one mailbox by hand types the two passwords when asked, instead of writing
    them to files or the environment first; what is typed does not show. Without a terminal nothing is asked:
    the run says which password is missing, as a cron job needs."""
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen"), (msg(2), "")], "Work": [(msg(3), "\\Flagged")]})
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILMIGRATE_")}
    argv = MM + ["sync", src.url(), dst.url(), "--state", str(tmp_path / "s.db"), "--no-progress"]

    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and f"source password for {src.user} missing" in p.stdout + p.stderr, p.stdout
    assert snapshot(dst) == {"INBOX": Counter()}

    code, shown = _run_at_a_terminal(argv, env, {f"source password for {src.user} at 127.0.0.1: ": src.password,
                                                 f"target password for {dst.user} at 127.0.0.1: ": dst.password})
    assert code == 0, shown
    assert src.password not in shown and dst.password not in shown
    assert_same(src, dst)
