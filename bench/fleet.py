"""Fleet throughput on this machine: the same Maildir migration with 1, 2, 4, … worker processes.

    .venv/bin/python bench/fleet.py                       # 100 accounts x 3 folders x 40 messages
    .venv/bin/python bench/fleet.py --workers 1 2 4 8 --accounts 200

Each round: fresh PostgreSQL database and Redis database, N `mailmigrate worker --concurrency 1`
processes (started and ready before the clock starts), then `mailmigrate sync --executor celery` is timed
from enqueue to the last account's result.  Sources are generated once (tests/servers/fleet.py); each
round writes to fresh targets.  Every round is checked exact before its number is printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
import redis  # noqa: E402

from servers.fleet import MM, make_accounts, read_maildir, start_worker, stop_worker  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1/postgres"


def wait_ready(logs: list[Path], timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(p.exists() and b" ready." in p.read_bytes() for p in logs):
            return
        time.sleep(0.1)
    raise TimeoutError("workers not ready")


def one_round(root: Path, accounts: Path, n: int, redis_db: int) -> tuple[float, dict]:
    for d in root.glob("user*/dst"):
        shutil.rmtree(d)
    name = f"mm_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(ADMIN, autocommit=True)
    admin.execute(f"CREATE DATABASE {name}")
    state = f"postgresql://postgres@127.0.0.1/{name}"
    broker = f"redis://127.0.0.1:6379/{redis_db}"
    redis.Redis.from_url(broker).flushdb()
    logs = [root / f"bench-w{n}-{i}.log" for i in range(n)]
    for p in logs:
        p.unlink(missing_ok=True)
    workers = [start_worker(broker, state, concurrency=1, name=f"b{i}", log=logs[i]) for i in range(n)]
    try:
        wait_ready(logs)
        t0 = time.monotonic()
        p = subprocess.run(MM + ["sync", f"maildir:{root}/%u/src", f"maildir:{root}/%u/dst", "--accounts", accounts,
                                 "--executor", "celery", "--broker", broker, "--state", state, "--json",
                                 "--no-progress"], capture_output=True, text=True, timeout=1800)
        wall = time.monotonic() - t0
    finally:
        for w in workers:
            stop_worker(w)
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()
    if p.returncode != 0:
        raise SystemExit(f"sync failed: {p.stderr[-2000:]}")
    summary = json.loads(p.stdout)
    for u in root.glob("user*"):
        if read_maildir(u / "src") != read_maildir(u / "dst"):
            raise SystemExit(f"{u.name} is not exact")
    return wall, summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--messages", type=int, default=40, help="per folder (3 folders)")
    ap.add_argument("--redis-db", type=int, default=14)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mm-fleet-bench-"))
    try:
        accounts = make_accounts(root, args.accounts, messages=args.messages)
        print(f"{args.accounts} accounts, {args.messages} messages x 3 folders each (+twins), Maildir -> Maildir")
        print("| workers | wall s | messages | messages/s | MiB/s | speed-up |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        base = None
        for n in args.workers:
            wall, s = one_round(root, accounts, n, args.redis_db)
            rate = s["copied"] / wall
            base = base or rate
            print(f"| {n} | {wall:.1f} | {s['copied']} | {rate:.0f} | {s['bytes_copied'] / (1 << 20) / wall:.2f} | "
                  f"{rate / base:.2f}x |", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
