"""A fleet on this machine for tests and bench/fleet.py: Maildir accounts, worker processes, a database.

Workers are real ``mailmigrate worker`` processes (Celery prefork), each in its own process group so a
test can SIGKILL a whole worker (main process and pool children) like a machine that died.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
FLAGS = ["", "S", "FS", "RS", "D", "ST"]


def make_accounts(root: Path, n: int, *, messages: int = 40, folders=("", ".Sent", ".Work"), size: int = 3000,
                  seed: int = 1) -> Path:
    """n Maildir accounts under root/<user>/src; returns the accounts file."""
    rnd = random.Random(seed)
    users = [f"user{i:03d}@example.org" for i in range(n)]
    for u in users:
        for f in folders:
            d = root / u / "src" / f
            for sub in ("cur", "new", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            for i in range(messages):
                body = (f"From: a{i}@x\r\nTo: {u}\r\nSubject: {f or 'inbox'} {i}\r\n\r\n").encode()
                body += rnd.randbytes(rnd.randint(size // 2, size * 3 // 2)).hex().encode()[:size] + b"\r\n"
                if i % 17 == 0:  # twins: the same bytes twice must arrive twice
                    (d / "cur" / f"{1600000000 + i}.T{i}.host:2,S").write_bytes(body)
                (d / "cur" / f"{1600000000 + i}.M{i}.host:2,{rnd.choice(FLAGS)}").write_bytes(body)
    accounts = root / "accounts.csv"
    accounts.write_text("".join(f"{u},{u}\n" for u in users))
    return accounts


def read_maildir(root: Path) -> dict[str, list[tuple[bytes, str]]]:
    """folder -> sorted [(bytes, flag letters)], read straight from disk."""
    out = {}
    if not root.is_dir():
        return out
    for d in [root] + sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(".")):
        msgs = []
        for sub in ("cur", "new"):
            for f in (d / sub).iterdir() if (d / sub).is_dir() else ():
                info = f.name.split(":2,", 1)[1] if ":2," in f.name else ""
                msgs.append((f.read_bytes(), "".join(sorted(c for c in info if c.isupper()))))
        out["INBOX" if d == root else d.name] = sorted(msgs)
    return out


def start_worker(broker: str | None, state: str, *, concurrency: int = 2, name: str = "w", log: Path | None = None,
                 extra=(), env=None) -> subprocess.Popen:
    """broker None: the worker takes it from MAILMIGRATE_BROKER in ``env`` (a broker password stays out of argv)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(MM + ["worker", *(["--broker", broker] if broker else []), "--state", state,
                                  f"--concurrency={concurrency}", f"--hostname={name}@%h", *extra],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **(env or {})})


def kill_worker(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    p.wait(timeout=30)


def stop_worker(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_worker(p)
    else:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # leftover pool children
        except ProcessLookupError:
            pass


def process_group(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def run_watching_stderr(cmd: list[str], *, timeout: float = 60) -> tuple[int, str, list[tuple[float, str]]]:
    """Run a command to its end, keeping each stderr line with the monotonic time it arrived, so a test can
    tell when something was said (a warning within its deadline), not only that it was.  Returns the exit
    status, stdout and the timed lines; a command still running after ``timeout`` is killed and fails the
    test."""
    import threading

    import pytest

    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), x) for x in run.stderr))
    reader.start()
    try:
        run.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        pytest.fail(f"{' '.join(cmd[-6:])} still ran after {timeout:g} s")
    finally:
        reader.join(timeout=10)
    return run.returncode, run.stdout.read(), lines


def wait_for(pred, timeout: float, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("condition not reached")


def wait_ready(p: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    """Until the worker started with ``log`` says it is ready (consuming from the queue); fails at once if it
    exited, and after ``timeout`` seconds with the end of its log."""
    end = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if any(line.endswith(" ready.") for line in text.splitlines()):
            return
        if p.poll() is not None:
            raise AssertionError(f"worker exited ({p.returncode}) before it was ready:\n{text[-2000:]}")
        if time.monotonic() >= end:
            raise AssertionError(f"worker not ready after {timeout:.0f} s:\n{text[-2000:]}")
        time.sleep(0.05)


def count_messages(root: Path) -> int:
    """Message files in a Maildir (cur and new of the INBOX and of every folder)."""
    if not root.is_dir():
        return 0
    return sum(len(os.listdir(sub)) for d in [root] + [p for p in root.iterdir() if p.name.startswith(".")]
               for sub in (d / "cur", d / "new") if sub.is_dir())


def maildir_copy_unfinished(account: str) -> bool:
    """For a job of a Maildir-to-Maildir run (account "maildir:SRC -> maildir:DST"): the target holds some of
    the source's messages but not all of them, i.e. the account's copy has begun and not ended."""
    src, dst = (Path(side.strip().removeprefix("maildir:")) for side in account.split(" -> ", 1))
    return 0 < count_messages(dst) < count_messages(src)


def kill_mid_copy(victim: subprocess.Popen, run: subprocess.Popen, conn, *, done: int,
                  unfinished: Callable[[str], bool] = maildir_copy_unfinished, timeout: float = 60,
                  every: float = 0.01) -> list[str]:
    """SIGKILL the worker ``victim`` (its whole process group) at a moment when at least ``done`` accounts of
    the run are done and one of its processes is copying an account (``unfinished(account)``: copied in part).

    Polling alone cannot promise that moment (an account may end between a look and the kill), so a
    candidate moment is checked again with the worker stopped (SIGSTOP): only if it still holds is the
    worker killed, else it goes on (SIGCONT) and the watch goes on.  Returns the accounts whose jobs were
    running on the victim when it died.  Fails at once, saying what was seen last, when ``run`` (the
    command following the run) or the victim ends first; else after ``timeout`` seconds."""
    import psycopg

    def look():
        try:
            rows = conn.execute("SELECT account, status, worker FROM fleet_jobs").fetchall()
        except psycopg.errors.UndefinedTable:  # the run is not enqueued yet
            return 0, []
        mine = [a for a, s, w in rows if s == "running" and w and
                process_group(int(w.rsplit(" ", 1)[1])) == victim.pid]
        return sum(1 for _, s, _ in rows if s == "done"), mine

    end = time.monotonic() + timeout
    seen = "nothing yet"
    while True:
        n_done, mine = look()
        seen = f"{n_done} account(s) done; running on the victim: {mine or 'none'}"
        if n_done >= done and any(unfinished(a) for a in mine):
            os.killpg(victim.pid, signal.SIGSTOP)
            try:
                n_done, mine = look()  # the victim stands still: what is true now stays true until the kill
                if n_done >= done and any(unfinished(a) for a in mine):
                    kill_worker(victim)
                    return mine
            finally:
                if victim.poll() is None:
                    os.killpg(victim.pid, signal.SIGCONT)
        if run.poll() is not None:
            raise AssertionError(f"the run ended (exit {run.returncode}) before the victim worker was seen "
                                 f"copying an account with {done} done; last seen: {seen}")
        if victim.poll() is not None:
            raise AssertionError(f"the victim worker exited ({victim.returncode}) on its own; last seen: {seen}")
        if time.monotonic() >= end:
            raise AssertionError(f"no moment in {timeout:.0f} s with {done} account(s) done and the victim worker "
                                 f"copying one; last seen: {seen}")
        time.sleep(every)
