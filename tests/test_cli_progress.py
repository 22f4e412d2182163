"""The terminal progress with hundreds of accounts, as a person sees it: captured from a real terminal (tmux)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from mailmigrate.cli.progress import SHOWN, account_label


def test_labels_are_the_account_not_the_urls():
    assert account_label("imaps://ann@old.example.org:993 -> imaps://ann@new.example.org") == "ann"
    assert account_label("imap://ann@a:143?tls=none -> maildir:/srv/vmail/anna/Maildir") == "ann → anna"
    assert account_label("maildir:/srv/old/bob -> maildir:/srv/new/bob") == "bob"
    long = account_label("imaps://" + "x" * 40 + "@old -> imaps://" + "x" * 40 + "@new", width=20)
    assert len(long) == 20 and "…" in long


@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed (bash .ci/run installs it)")
def test_200_accounts_in_a_terminal_show_one_overall_line_not_200_bars(tmp_path):
    n = 200
    for i in range(n):
        for folder in ("", ".Archive"):
            base = tmp_path / "src" / f"user{i:03d}" / folder
            for d in ("cur", "new", "tmp"):
                (base / d).mkdir(parents=True, exist_ok=True)
            for k in range(10):
                (base / "cur" / f"17000{k}.M{i}P{k}.h:2,S").write_bytes(b"Subject: m\r\n\r\n" + b"x" * 3000 + b"\r\n")
    (tmp_path / "users.csv").write_text("".join(f"user{i:03d},user{i:03d}\n" for i in range(n)))
    session = f"mm{uuid.uuid4().hex[:8]}"
    cmd = (f"cd {tmp_path} && {sys.executable} -m mailmigrate.cli.main sync 'maildir:src/%u' 'maildir:dst/%u' "
           f"--accounts users.csv --jobs 2 --state st.db; echo EXIT=$?; sleep 600")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # the terminal's own size
    env["TERM"] = "xterm-256color"
    subprocess.run(["tmux", "new-session", "-d", "-x", "150", "-y", "50", "-s", session, cmd], check=True, env=env)
    try:
        def screen() -> list[str]:
            out = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout
            return [line for line in out.splitlines() if line.strip()]

        during, deadline, seen = None, time.monotonic() + 120, []
        while time.monotonic() < deadline:
            lines = screen()
            seen.append(lines[:3])
            if any(line.startswith("EXIT=") for line in lines):
                break
            if lines and lines[0].startswith("all accounts") and "running" in " ".join(lines):
                during = during or lines
            time.sleep(0.2)
        final = screen()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert during is not None, f"no live progress seen; the screens were: {seen[:5]} … {seen[-5:]}"
    # one overall line, one line of account counts, at most SHOWN running accounts and a "more" line
    assert len(during) <= SHOWN + 3, during
    assert "msgs" in during[0] and "msg/s" in during[0] and "ETA" in during[0]
    assert "accounts:" in during[1] and "/200 done" in during[1]
    assert all("maildir:" not in line for line in during)  # labels are users, not URLs
    assert any(line.startswith("user") for line in during[2:])
    # at the end: elapsed time and throughput, then the usual summary; the live lines are gone
    assert any(line.startswith("200/200 account(s) in ") and "msg/s" in line for line in final), final
    assert any(line.startswith("Copied 4000 messages") for line in final), final
    assert "EXIT=0" in final
    assert not any(line.startswith("all accounts") for line in final)
