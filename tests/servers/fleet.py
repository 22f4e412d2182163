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


def wait_for(pred, timeout: float, every: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError("condition not reached")
