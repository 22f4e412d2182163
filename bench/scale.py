"""How mailmigrate's time grows: with messages per folder, with accounts, and with --jobs.

    sudo .venv/bin/python bench/scale.py                       # all three series, prints markdown tables
    sudo .venv/bin/python bench/scale.py --series folder --sizes 1000,10000,100000
    sudo .venv/bin/python bench/scale.py --series accounts --accounts 1000 --per 100 --accounts-jobs 16 --storage tmpfs

Series:
  folder   one account, one folder of N messages (small, 2 KB median): first copy and no-change rerun, and
           peak RSS (the state then holds N rows for that folder);
  accounts N accounts of 200 messages each, --jobs 8: total time and messages/s;
  jobs     20 accounts of 300 messages: --jobs 1 against --jobs 4 and 8, throughput in messages/s and MiB/s.

    sudo .venv/bin/python bench/scale.py --series jobs --link 1000:20   # the source behind a WAN-like link

``--link MBIT:RTT_MS`` puts the source behind bench/slowlink.py for the jobs series: on loopback every
account is bound by the two cores that mailmigrate and both Dovecots share, while a migration from a remote
server is bound by round trips, which is what running accounts side by side is for.
Everything against two throwaway loopback Dovecot servers (tests/servers/dovecot.py); measured with GNU time.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402
from run import MAILMIGRATE, PASSWORD, precompile, timed, tool_env  # noqa: E402

MM = MAILMIGRATE


def fill(server, user: str, n: int, folders: int, seed: int) -> int:
    dv = pwd.getpwnam("dovecot")
    if user not in server._users:
        server.add_user(user, PASSWORD)
    msgs = generate(n, folders, seed=seed, median=2048, big_share=0.0)
    write_maildir_fs(server.maildir(user), msgs, dv.pw_uid, dv.pw_gid)
    return sum(len(m.data) for m in msgs)


def sync_cmd(src, dst, state, extra=(), src_port=None):
    return [MM, "sync", f"imap://127.0.0.1:{src_port or src.port}?tls=none", f"imap://127.0.0.1:{dst.port}?tls=none",
            "--state", str(state), "--no-progress", *extra]


def env():
    return tool_env()


def accounts_file(path: Path, users: list[str]) -> Path:
    path.write_text("".join(f"{u},{u}\n" for u in users))
    return path


def series_folder(src, dst, work: Path, sizes: list[int]) -> str:
    rows = ["| messages in the folder | first copy (s) | msgs/s | rerun, no change (s) | peak RSS (MB) |",
            "| --- | --- | --- | --- | --- |"]
    for n in sizes:
        user = f"f{n}"
        fill(src, user, n, 1, seed=n)
        dst.add_user(user, PASSWORD)
        acc = accounts_file(work / f"{user}.csv", [user])
        state = work / f"{user}.db"
        first = timed(sync_cmd(src, dst, state, ["--accounts", str(acc)]), env=env())
        rerun = timed(sync_cmd(src, dst, state, ["--accounts", str(acc)]), env=env())
        rows.append(f"| {n:,} | {first.wall:.2f} | {n / first.wall:,.0f} | {rerun.wall:.2f} | "
                    f"{max(first.rss_mb, rerun.rss_mb):.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def series_accounts(src, dst, work: Path, counts: list[int], per: int = 200, jobs: int = 8) -> str:
    rows = [f"| accounts (x {per} msgs, --jobs {jobs}) | first copy (s) | msgs/s | rerun (s) | peak RSS (MB) |",
            "| --- | --- | --- | --- | --- |"]
    src.add_users({f"a{i}": PASSWORD for i in range(max(counts))})
    for i in range(max(counts)):
        fill(src, f"a{i}", per, 3, seed=i)
    for n in counts:
        users = [f"a{i}" for i in range(n)]
        acc = work / f"acc{n}.csv"
        acc.write_text("".join(f"{u},{u}x{n}\n" for u in users))
        dst.add_users({f"{u}x{n}": PASSWORD for u in users})
        state = work / f"acc{n}.db"
        first = timed(sync_cmd(src, dst, state, ["--accounts", str(acc), "--jobs", str(jobs)]), env=env())
        rerun = timed(sync_cmd(src, dst, state, ["--accounts", str(acc), "--jobs", str(jobs)]), env=env())
        rows.append(f"| {n} | {first.wall:.2f} | {n * per / first.wall:,.0f} | {rerun.wall:.2f} | "
                    f"{max(first.rss_mb, rerun.rss_mb):.0f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: how much of both cores a run kept busy, mailmigrate and
    both Dovecot servers together, which bounds what more jobs can gain."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def series_jobs(src, dst, work: Path, accounts: int = 20, per: int = 300, link: str | None = None,
                jobs_list=(1, 4, 8)) -> str:
    users = [f"j{i}" for i in range(accounts)]
    src.add_users({u: PASSWORD for u in users})
    total = sum(fill(src, u, per, 3, seed=i) for i, u in enumerate(users))
    rows = ["| --jobs | accounts | first copy (s) | msgs/s | MiB/s | machine CPU busy | CPU s: mailmigrate / all |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    base = None
    proxy = None
    if link:
        from slowlink import SlowLink

        mbit, rtt = (float(x) for x in link.split(":"))
        proxy = SlowLink(src.port, mbit=mbit, rtt_ms=rtt)
    for jobs in jobs_list:
        acc = work / f"jobs{jobs}.csv"
        acc.write_text("".join(f"{u},{u}y{jobs}\n" for u in users))
        dst.add_users({f"{u}y{jobs}": PASSWORD for u in users})
        busy0, total0 = _cpu_jiffies()
        s = timed(sync_cmd(src, dst, work / f"jobs{jobs}.db", ["--accounts", str(acc), "--jobs", str(jobs)],
                           src_port=proxy and proxy.port), env=env())
        busy1, total1 = _cpu_jiffies()
        rate = accounts * per / s.wall
        base = base or rate
        rows.append(f"| {jobs} | {accounts} | {s.wall:.2f} | {rate:,.0f} ({rate / base:.1f}x) | "
                    f"{total / (1 << 20) / s.wall:.1f} | {100 * (busy1 - busy0) / max(1, total1 - total0):.0f} % | "
                    f"{s.cpu:.1f} / {(busy1 - busy0) / os.sysconf('SC_CLK_TCK'):.1f} |")
        print(rows[-1], flush=True)
    if proxy:
        proxy.close()
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", default="folder,accounts,jobs")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--accounts", default="1,10,100")
    ap.add_argument("--jobs", default="1,4,8", help="--jobs values of the jobs series")
    ap.add_argument("--per", type=int, default=200, help="messages per account of the accounts series")
    ap.add_argument("--accounts-jobs", type=int, default=8, help="--jobs of the accounts series")
    ap.add_argument("--storage", choices=("disk", "tmpfs"), default="disk",
                    help="where both servers keep their mail and mailmigrate its state (tmpfs: /dev/shm)")
    ap.add_argument("--link", metavar="MBIT:RTT_MS", help="jobs series: the source behind a slow link")
    args = ap.parse_args(argv)
    from servers.dovecot import DovecotServer

    precompile()
    parent = "/dev/shm" if args.storage == "tmpfs" else "/tmp"
    work = Path(tempfile.mkdtemp(prefix="mm-scale-", dir=parent))
    src, dst = DovecotServer(parent=parent).start(), DovecotServer(parent=parent).start()
    out = []
    try:
        if "folder" in args.series:
            out.append("### Messages per folder\n\n" + series_folder(src, dst, work, [int(x) for x in args.sizes.split(",")]))
        if "accounts" in args.series:
            out.append("### Accounts\n\n" + series_accounts(src, dst, work, [int(x) for x in args.accounts.split(",")],
                                                                      per=args.per, jobs=args.accounts_jobs))
        if "jobs" in args.series:
            out.append("### Many accounts at once\n\n" + series_jobs(src, dst, work, link=args.link,
                                                                  jobs_list=[int(x) for x in args.jobs.split(",")]))
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("\n\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
