"""Secrets never leak; local faults (a full disk) never leave half a message; rate limits hold."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_sync_imap import MM, env_for, mm, msg, populate, snapshot
from test_workflow_project import project_file


def test_passwords_never_in_output_logs_state_or_process_listing(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(i, 20_000), "") for i in range(60)]})
    log = tmp_path / "run.log"
    state = tmp_path / "s.db"
    env = {**os.environ, **env_for(src, dst)}
    p = subprocess.Popen(MM + ["-vv", "sync", src.url(), dst.url(), "--state", str(state), "--log-file",
                               str(log), "--json", "--connections", "1"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cmdline = Path(f"/proc/{p.pid}/cmdline").read_bytes()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0
    wire = log.read_text()
    assert "C: " in wire or "imap" in wire  # the log really has the protocol detail
    blobs = [out, err, log.read_bytes(), cmdline] + [f.read_bytes() for f in tmp_path.glob("s.db*")]
    for pw in (src.password, dst.password):
        for b in blobs:
            assert pw.encode() not in b
    # the state database is private
    assert oct(state.stat().st_mode & 0o777) == "0o600"


def test_wrong_password_error_does_not_echo_it(imap_accounts, tmp_path):
    src, dst = imap_accounts
    bad = "Sup3r-Secret-Value"
    p = mm("-vv", "sync", src.url(), dst.url(), "--state", tmp_path / "s.db",
           env={"MAILMIGRATE_SOURCE_PASSWORD": bad, "MAILMIGRATE_TARGET_PASSWORD": dst.password}, check=False)
    assert p.returncode == 2 and "login as" in p.stdout + p.stderr  # a configuration error: exit 2 (issue 23)
    assert bad not in p.stdout + p.stderr


def test_workflow_logs_and_report_hold_no_password(imap_accounts, tmp_path):
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "")]})
    proj = project_file(tmp_path, src, dst, "sec")
    for action in ("init", "start", "finish", "report"):
        mm("project", action, proj)
    blobs = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and not p.name.endswith(".pw")]
    assert blobs
    for b in blobs:
        assert src.password.encode() not in b and dst.password.encode() not in b


def test_password_in_toml_is_refused(tmp_path):
    proj = tmp_path / "p.toml"
    proj.write_text('[source]\nurl = "imap://a@127.0.0.1"\npassword = "x"\n[target]\nurl = "maildir:/tmp/x"\n')
    p = mm("project", "init", proj, check=False)
    assert p.returncode == 2 and "password_file" in p.stderr


@pytest.fixture
def tiny_disk(tmp_path):
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(d)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield d
    subprocess.run(["umount", "-l", str(d)])


def test_full_disk_never_leaves_a_partial_message(tmp_path, tiny_disk):
    src = tmp_path / "src"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
    for i in range(30):
        (src / "cur" / f"{1600000000 + i}.M{i}.h:2,S").write_bytes(b"Subject: x\r\n\r\n" + b"z" * 40_000)
    target = tiny_disk / "Maildir"
    p = mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json", check=False)
    assert p.returncode == 1
    s = json.loads(p.stdout)
    assert s["accounts"][0]["error"] and "no space" in s["accounts"][0]["error"].lower()
    whole = b"Subject: x\r\n\r\n" + b"z" * 40_000
    landed = list((target / "cur").iterdir())
    assert all(f.read_bytes() == whole for f in landed), "a message in cur/ is always whole"
    assert not list((target / "tmp").iterdir()), "nothing is left behind in tmp/"
    # With room again the rerun completes exactly.
    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
    s = json.loads(mm("sync", f"maildir:{src}", f"maildir:{target}", "--state", tmp_path / "s.db", "--json").stdout)
    assert len(list((target / "cur").iterdir())) == 30 and s["failed"] == 0


def test_rate_limit_holds(tmp_path):
    src = tmp_path / "src"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
    for i in range(40):
        (src / "cur" / f"{1600000000 + i}.M{i}.h:2,").write_bytes(f"Subject: {i}\r\n\r\nx\r\n".encode())
    t0 = time.monotonic()
    s = json.loads(mm("sync", f"maildir:{src}", f"maildir:{tmp_path / 'dst'}", "--state", tmp_path / "s.db",
                      "--json", "--max-rate", "20").stdout)
    assert s["copied"] == 40
    assert time.monotonic() - t0 >= 1.5  # 40 messages at 20/s cannot take less than ~2 s
