"""A/B of mailmigrate's first copy between commits: same servers, same corpus, runs alternating.

    .venv/bin/python bench/ab.py HEAD~1 HEAD [--rounds 7] [--storage tmpfs] [--messages 3750]
    .venv/bin/python bench/ab.py "HEAD::--connections 1" "HEAD::--connections 3"   # options against options
    .venv/bin/python bench/ab.py HEAD~1 HEAD --slow-link 100:20   # both servers behind a 100 Mbit/s, 20 ms link

A commit may carry extra ``mailmigrate sync`` options after ``::``, so that one commit's settings can be
compared with each other on the same servers.

Each commit's ``src/`` is taken with ``git archive`` into a temporary directory (no checkout, no worktree)
and compiled once; then, round after round, in an order that alternates, each commit's mailmigrate copies
the corpus into a fresh target account, and runs once more with nothing to copy (the rerun). The measure is
the process's CPU seconds (user + system, from its rusage, to the microsecond): on a machine shared with
other work, wall time follows the load, CPU much less. Medians and each commit's spread are printed; nothing
is asserted.

``--slow-link MBIT:RTT_MS`` puts both servers behind bench/slowlink.py (as bench/run.py's ``--slow-side
both``), for what a WAN's round trips cost; mailmigrate is then given ``compress=yes``, as ``auto`` would do
towards a remote server.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402
from run import PASSWORD, STORAGE, tool_env  # noqa: E402


#: The command of whichever commit is on PYTHONPATH, started as the installed ``mailmigrate`` script starts
#: it, but not through the venv's script, which names the entry function of the checkout it was installed
#: from (a commit may have another).
LAUNCH = [sys.executable, "-c", "import sys; from mailmigrate.cli.main import main; sys.exit(main())"]


def timed(cmd: list[str], env=None):
    """Wall and CPU seconds (user + system) of one run, the CPU from the child's own rusage (wait4), to the
    microsecond: GNU time prints CPU in hundredths, too coarse for the few milliseconds a start-up cut moves.
    (Peak RSS is bench/run.py's business: it needs GNU time, see run.timed.)"""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {err.decode(errors='replace')[-2000:]}")
    return Run(wall, ru.ru_utime + ru.ru_stime)


class Run:
    __slots__ = ("wall", "cpu")

    def __init__(self, wall: float, cpu: float):
        self.wall, self.cpu = wall, cpu


def export(commit: str, into: Path) -> Path:
    """The commit's src/ tree, compiled, under ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(HERE.parent), "archive", commit, "src"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(into / "src")], check=True, env=env)
    return into / "src"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("commits", nargs="+")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--storage", choices=sorted(STORAGE), default="tmpfs")
    ap.add_argument("--connections", type=int, default=3)
    ap.add_argument("--slow-link", metavar="MBIT:RTT_MS", help="both servers behind a link this slow, e.g. 100:20")
    args = ap.parse_args(argv)
    from features import Links
    from servers.dovecot import DovecotServer

    parent = STORAGE[args.storage]
    base = Path(tempfile.mkdtemp(prefix="mm-ab-", dir=parent))
    labels = [f"{i}:{c}" for i, c in enumerate(args.commits)]  # the same commit twice is an A/A run
    srcs = {lab: export(c.partition("::")[0], base / f"code{i}") for i, (lab, c) in enumerate(zip(labels, args.commits))}
    extra = {lab: c.partition("::")[2].split() for lab, c in zip(labels, args.commits)}
    src = DovecotServer(compress=bool(args.slow_link), parent=parent).start()
    dst = DovecotServer(compress=bool(args.slow_link), parent=parent).start()
    links = Links(args.slow_link, "both", src.port, dst.port)
    query = "tls=none&compress=yes" if args.slow_link else "tls=none"
    cpu: dict[str, list[float]] = {c: [] for c in labels}
    wall: dict[str, list[float]] = {c: [] for c in labels}
    rerun: dict[str, list[float]] = {c: [] for c in labels}
    rerun_wall: dict[str, list[float]] = {c: [] for c in labels}
    try:
        src.add_user("src", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), generate(args.messages, args.folders), dv.pw_uid, dv.pw_gid)
        for rnd in range(args.rounds):
            order = labels[rnd % len(labels):] + labels[:rnd % len(labels)]
            for c in order:
                user = f"ab{rnd}x{labels.index(c)}"
                dst.add_user(user, PASSWORD)
                env = tool_env()
                env["PYTHONPATH"] = str(srcs[c])
                cmd = [*LAUNCH, "sync", f"imap://src@127.0.0.1:{links.src_port}?{query}",
                       f"imap://{user}@127.0.0.1:{links.dst_port}?{query}", "--state", str(base / f"{user}.db"),
                       "--no-progress", "--connections", str(args.connections), *extra[c]]
                s = timed(cmd, env=env)
                cpu[c].append(s.cpu)
                wall[c].append(s.wall)
                again = timed(cmd, env=env)  # nothing to copy: start-up, state, the logins and one listing per side
                rerun[c].append(again.cpu)
                rerun_wall[c].append(again.wall)
                print(f"round {rnd + 1} {c:12} {s.wall:6.2f} s wall {s.cpu:7.4f} CPU s, rerun {again.cpu:7.4f} CPU s  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        links.close()
        src.stop()
        dst.stop()
        shutil.rmtree(base, ignore_errors=True)
    for c in labels:
        print(f"{c:12} CPU s median {statistics.median(cpu[c]):.4f} (min {min(cpu[c]):.4f}, max {max(cpu[c]):.4f}); "
              f"wall median {statistics.median(wall[c]):.2f} s; rerun CPU s median {statistics.median(rerun[c]):.4f}, "
              f"wall {statistics.median(rerun_wall[c]):.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
