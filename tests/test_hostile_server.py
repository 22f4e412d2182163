"""Issue 19, a hostile or broken source server (tests/servers/hostile.py): each misbehaviour is that
folder's, that message's or that account's problem, reported in a sentence — never a traceback, never
memory or time without end, never the password on screen."""

from __future__ import annotations

import base64
import json
import os
import resource
import subprocess
import sys
import time

from servers.hostile import Folder, HostileServer, Message, Script
from test_sync_local import read_maildir

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
ONE = b"From: a@example.com\r\nSubject: one\r\n\r\nfirst\r\n"
TWO = b"From: b@example.com\r\nSubject: two\r\n\r\nsecond\r\n"


def _sync(tmp_path, srv, *extra, env_extra=None, timeout=120, password=None):
    env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=password or srv.script.password, **(env_extra or {}))
    log = tmp_path / "run.log"
    p = subprocess.run(MM + ["sync", srv.url, f"maildir:{tmp_path / 'dst'}", "--state", str(tmp_path / "s.db"),
                             "--json", "--log-file", str(log), *extra],
                       capture_output=True, text=True, env=env, timeout=timeout)
    return p, (log.read_text() if log.exists() else "")


def _received(tmp_path) -> dict[str, list[bytes]]:
    return {k: [b for b, _, _ in v] for k, v in read_maildir(tmp_path / "dst").items()}


def test_a_folder_named_tilde_archive_copies(tmp_path):
    """RFC 3501 allows "~archive" as an atom; it was read as a literal8 announcement (~{n})."""
    sc = Script(folders={b"INBOX": Folder([Message(b"1", ONE)]), b"~archive": Folder([Message(b"7", TWO)])})
    with HostileServer(sc) as srv:
        p, _ = _sync(tmp_path, srv)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["copied"] == 2
    assert _received(tmp_path)[".~archive"] == [TWO]


def test_numbers_out_of_range_fail_that_folder_only(tmp_path):
    """A UIDVALIDITY above 2^63 crashed the run with OverflowError from SQLite."""
    sc = Script(folders={b"INBOX": Folder([Message(b"1", ONE)]),
                         b"Broken": Folder([Message(b"1", TWO)], uidvalidity=b"18446744073709551616"),
                         b"BadUid": Folder([Message(b"99999999999999999999", TWO)])})
    with HostileServer(sc) as srv:
        p, _ = _sync(tmp_path, srv)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    s = json.loads(p.stdout)
    assert s["copied"] == 1
    said = p.stdout + p.stderr
    assert "UIDVALIDITY" in said and "18446744073709551616" in said and "Broken" in said
    assert "BadUid" in said and "99999999999999999999" in said
    assert _received(tmp_path)["INBOX"] == [ONE]


def test_one_malformed_internaldate_fails_that_message_only(tmp_path):
    """One bad date failed the whole account; now the rest of the folder copies and the one is named."""
    sc = Script(folders={b"INBOX": Folder([Message(b"1", ONE), Message(b"2", TWO, date=b'"31-Foo-2023 99:99:99 +9999"'),
                                           Message(b"3", TWO.replace(b"two", b"three"))])})
    with HostileServer(sc) as srv:
        p, _ = _sync(tmp_path, srv)
    assert p.returncode == 1, p.stderr
    s = json.loads(p.stdout)
    assert s["copied"] == 2 and s["failed"] == 1
    said = p.stdout + p.stderr
    assert "INTERNALDATE" in said and "31-Foo-2023" in said
    assert len(_received(tmp_path)["INBOX"]) == 2


def test_control_characters_in_server_text_are_escaped(tmp_path):
    """A folder name with CR LF and an escape sequence must not forge log lines or drive the terminal."""
    evil = b"Evil\r\nERROR forged line\x1b[2J"
    sc = Script(folders={b"INBOX": Folder([Message(b"1", ONE)]), evil: Folder([Message(b"1", TWO)])})
    with HostileServer(sc) as srv:
        p, log = _sync(tmp_path, srv)
    for channel in (p.stderr, log):  # --json escapes by itself: json.loads gives the name back exactly
        assert "\x1b" not in channel and "\r" not in channel
        assert "\nERROR forged line" not in channel
    assert "Evil\\x0d\\x0aERROR forged line\\x1b[2J" in p.stderr and "\x1b" not in p.stdout


def test_an_echoed_password_or_sasl_token_reaches_no_output(tmp_path):
    sc = Script(echo_secret=True, folders={b"INBOX": Folder([Message(b"1", ONE)])})
    wrong = "Wr0ng-but-secret!"
    token = base64.b64encode(f"\0{sc.user}\0{wrong}".encode()).decode()
    with HostileServer(sc) as srv:
        p, log = _sync(tmp_path, srv, password=wrong)
    assert p.returncode != 0
    assert "Authentication failed for" in p.stdout + p.stderr  # the server's text is still shown
    for channel in (p.stdout, p.stderr, log):
        assert wrong not in channel and token not in channel
    assert "<redacted>" in p.stdout + p.stderr


def _peak_rss_mb(p: subprocess.Popen) -> float:
    """The child's own peak RSS (VmHWM of its address space after exec), read until it ends: wait4's
    ru_maxrss would count the pages of the forking pytest worker too."""
    peak = 0
    while p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return peak / 1024


def _spawn(tmp_path, srv, env_extra):
    env = dict(os.environ, MAILMIGRATE_SOURCE_PASSWORD=srv.script.password, **env_extra)
    return subprocess.Popen(MM + ["sync", srv.url, f"maildir:{tmp_path / 'dst'}", "--state", str(tmp_path / "s.db"),
                                  "--json", "--retries", "1", "--connections", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def test_an_endless_flood_of_untagged_data_stops_under_the_memory_cap(tmp_path):
    """Before: memory grew without limit (1.5 GB in 30 s).  The cap (per connection: one command's
    collection) is set to 16 MiB here, with one connection; the process, interpreter included, stays under
    120 MB and ends with a sentence."""
    sc = Script(flood="select", folders={b"INBOX": Folder([Message(b"1", ONE)])})
    with HostileServer(sc) as srv:
        p = _spawn(tmp_path, srv, {"MAILMIGRATE_IMAP_MAX_RESPONSE": str(16 << 20)})
        peak = _peak_rss_mb(p)
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
    assert p.returncode == 1, err
    assert "more than 16 MiB of responses" in out + err and "Traceback" not in err
    assert peak < 120, peak


def test_an_endless_listing_stops(tmp_path):
    sc = Script(flood="listing", folders={b"INBOX": Folder([Message(b"1", ONE), Message(b"2", TWO)])})
    with HostileServer(sc) as srv:
        p = _spawn(tmp_path, srv, {})
        peak = _peak_rss_mb(p)
        out, err = p.stdout.read().decode(), p.stderr.read().decode()
    assert p.returncode == 1, err
    assert "FETCH responses where the mailbox announced fewer" in out + err
    assert peak < 120, peak


def test_a_trickling_server_hits_the_command_deadline(tmp_path):
    """One byte every 0.3 s never trips a 60 s read timeout; the whole exchange's deadline (floor 2 s
    here, 600 s by default) does, and the run ends with a sentence instead of waiting for ever."""
    sc = Script(trickle=0.3, folders={b"INBOX": Folder([Message(b"1", ONE)])})
    with HostileServer(sc) as srv:
        t0 = time.monotonic()
        p = _spawn(tmp_path, srv, {"MAILMIGRATE_IMAP_COMMAND_FLOOR": "2"})
        out, err = p.communicate(timeout=120)
        spent = time.monotonic() - t0
    out, err = out.decode(), err.decode()
    assert p.returncode == 1, err
    assert "of one command's exchange" in out + err and "Traceback" not in err
    # The full answer would take 0.3 s x ~200 bytes = 60 s per attempt; the deadline cut each try short.
    assert spent < 45, spent
