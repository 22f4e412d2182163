"""Exit codes and error texts a script and an administrator rely on (issue 23): a configuration error of an
account is not retried and gives exit 2 with a hint; a failure is said once and counted; --json is JSON
whatever happens, with structured errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from servers.dovecot import free_port

MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def mm(*args, env=None):
    return subprocess.run([*MM, *map(str, args)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MAILMIGRATE_SOURCE_PASSWORD": "x", "MAILMIGRATE_TARGET_PASSWORD": "y",
                               **(env or {})})


def plain_imap_listener():
    """A loopback server that greets in plain IMAP, as port 143 does: what imaps:// meets on a plain port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n")
            time.sleep(0.5)
            c.close()

    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_imaps_on_a_plain_port_is_not_retried_and_says_use_imap(tmp_path):
    srv = plain_imap_listener()
    try:
        t0 = time.monotonic()
        p = mm("sync", f"imaps://ann@127.0.0.1:{srv.getsockname()[1]}", f"maildir:{tmp_path / 'out'}",
               "--state", tmp_path / "s.db", "--json")
        took = time.monotonic() - t0
    finally:
        srv.close()
    out = json.loads(p.stdout)
    assert p.returncode == 2, p.stdout + p.stderr
    acc = out["accounts"][0]
    assert acc["error_kind"] == "configuration" and "use imap://" in acc["error"]
    assert "attempts" not in acc["error"]  # not retried
    assert took < 10  # retries would have taken 11-13 s of backoff
    assert out["errors"] == [{"kind": "configuration", "account": acc["account"], "folder": None,
                              "message": acc["error"]}]
    assert acc["source"].startswith("imaps://ann@127.0.0.1") and acc["target"].startswith("maildir:")
    assert isinstance(acc["seconds"], float)


def test_unknown_host_is_a_configuration_error(tmp_path):
    p = mm("sync", "imaps://ann@no-such-host.invalid", f"maildir:{tmp_path / 'out'}", "--state", tmp_path / "s.db")
    assert p.returncode == 2
    assert "cannot find the host no-such-host.invalid" in p.stdout
    # said once, and counted
    assert (p.stdout + p.stderr).count("cannot find the host") == 1
    assert "1 account(s), 1 failed" in p.stdout


def test_url_without_user_is_exit_2_and_json_on_a_usage_error(tmp_path):
    p = mm("sync", "imaps://127.0.0.1:1", f"maildir:{tmp_path / 'out'}", "--state", tmp_path / "s.db", "--json")
    assert p.returncode == 2
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["exit_status"] == 2
    assert out["errors"][0]["kind"] == "configuration" and "no user" in out["errors"][0]["message"]


def test_self_signed_certificate_names_cafile(dovecot_factory, tmp_path):
    srv = dovecot_factory(tls=True)
    srv.add_user("ann", "pw")
    p = mm("sync", f"imaps://ann@127.0.0.1:{srv.tls_port}", f"maildir:{tmp_path / 'out'}", "--state",
           tmp_path / "s.db", env={"MAILMIGRATE_SOURCE_PASSWORD": "pw"})
    assert p.returncode == 2 and "?cafile=" in p.stdout, p.stdout + p.stderr
    assert "?cafile=PATH" in mm("sync", "--help").stdout


def test_version_flag():
    p = subprocess.run([*MM, "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("mailmigrate ")


def test_ctrl_c_says_it_stops_after_the_batch_at_once_and_the_rerun_finishes(tmp_path):
    """One Ctrl-C: the message at once, the run ends at a batch boundary with its summary and status 130;
    the next run copies the rest, nothing twice."""
    import signal

    src = tmp_path / "src"
    for i in range(60):
        for d in ("cur", "new", "tmp"):
            (src / f"u{i:02d}" / d).mkdir(parents=True, exist_ok=True)
        for k in range(40):
            (src / f"u{i:02d}" / "cur" / f"17{k:03d}.M{i}P{k}.h:2,S").write_bytes(b"Subject: x\r\n\r\n" + b"y" * 20_000)
    (tmp_path / "users.csv").write_text("".join(f"u{i:02d},u{i:02d}\n" for i in range(60)))
    args = [*MM, "sync", f"maildir:{src}/%u", f"maildir:{tmp_path}/dst/%u", "--accounts", tmp_path / "users.csv",
            "--state", tmp_path / "s.db"]
    proc = subprocess.Popen(list(map(str, args)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "dst").exists():
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "stopping after the current batch" in err
    assert proc.returncode == 130, out + err
    assert "Copied" in out and "stopped" in out  # the summary, naming the accounts it did not finish
    again = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    got = sorted(f.read_bytes() for f in (tmp_path / "dst").rglob("*") if f.is_file() and f.parent.name == "cur")
    assert len(got) == 60 * 40
