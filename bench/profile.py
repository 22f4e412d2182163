"""Where a sync spends its time: pyinstrument over one mailmigrate sync between two loopback Dovecots.

    sudo .venv/bin/python bench/profile.py --messages 3750 [--connections 1] [--phase first|rerun|changed]
                                           [--storage tmpfs]

``first`` profiles the first full copy; ``rerun`` a rerun with no change; ``changed`` a rerun after the
bench's 1 % new mail and 5 % flag changes (bench/run.py's ``change_source``), the first copy done
unprofiled before.  Prints pyinstrument's call tree (threads included) for the profiled command and its
wall and CPU time; the findings are written down in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import pwd
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402
from run import BIN, PASSWORD, change_source, precompile, tool_env  # noqa: E402


def summarise(collapsed: str, top: int = 45) -> str:
    """py-spy's collapsed stacks as two lists: where the CPU samples land (own) and what they run under (total)."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    n = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        n += c
        frames = [f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].split(":")[0].rstrip(")") for f in stack.split(";")[1:]]
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + c
        for f in set(frames):
            total[f] = total.get(f, 0) + c
    out = [f"{n} CPU samples (all threads)", "", "own %   function"]
    out += [f"{100 * c / n:5.1f}  {f}" for f, c in sorted(own.items(), key=lambda x: -x[1])[:top]]
    out += ["", "total % function"]
    out += [f"{100 * c / n:5.1f}  {f}" for f, c in sorted(total.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--phase", choices=("first", "rerun", "changed"), default="first")
    ap.add_argument("--storage", choices=("disk", "tmpfs"), default="disk",
                    help="where both servers keep their mail and mailmigrate its state (tmpfs: /dev/shm)")
    ap.add_argument("--profiler", choices=("pyinstrument", "py-spy", "cprofile"), default="pyinstrument",
                    help="py-spy samples every thread on CPU only (--idle off) and prints the functions by own "
                         "and by total samples, which is what a CPU budget needs; pyinstrument the wall-time tree")
    ap.add_argument("--gil", action="store_true",
                    help="py-spy: sample only the thread holding the interpreter lock (where Python itself spends "
                         "CPU, without threads that wait for the lock counted as running)")
    ap.add_argument("--renderer", default="text", help="pyinstrument renderer (text, html, speedscope...)")
    args = ap.parse_args(argv)
    from servers.dovecot import DovecotServer

    precompile()
    parent = "/dev/shm" if args.storage == "tmpfs" else "/tmp"
    src, dst = DovecotServer(parent=parent).start(), DovecotServer(parent=parent).start()
    try:
        src.add_user("src", PASSWORD)
        dst.add_user("dst", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), generate(args.messages, args.folders), dv.pw_uid, dv.pw_gid)
        state = Path(tempfile.mkdtemp(dir=parent)) / "s.db"
        env = tool_env()
        sync = ["-m", "mailmigrate.cli.main", "sync", f"imap://src@127.0.0.1:{src.port}?tls=none",
                f"imap://dst@127.0.0.1:{dst.port}?tls=none", "--state", str(state), "--no-progress",
                "--connections", str(args.connections)]
        if args.phase != "first":
            subprocess.run([sys.executable, *sync], env=env, check=True, stdout=subprocess.DEVNULL)
        if args.phase == "changed":
            extra = generate(max(1, args.messages // 100), args.folders, seed=1000)
            change_source(src.port, None, extra, random.Random(7), src.maildir("src"), dv.pw_uid, dv.pw_gid,
                          start=10_000_000)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        if args.profiler == "py-spy":
            raw = Path(tempfile.mkdtemp(dir=parent)) / "stacks.txt"
            subprocess.run([shutil.which("py-spy") or str(BIN / "py-spy"), "record", "-r", "500", "-f", "raw", "-o", str(raw),
                            "--threads", *(["--gil"] if args.gil else []), "--", sys.executable, *sync], env=env, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        elif args.profiler == "cprofile":
            # Deterministic: every call counted (calls per message are what a cut changes), but only the main
            # thread's, so use --connections 1, where a folder's copy runs in the main thread.
            out = Path(tempfile.mkdtemp(dir=parent)) / "copy.prof"
            subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *sync], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            import pstats
            pstats.Stats(str(out)).sort_stats("tottime").print_stats(40)
        else:
            subprocess.run([shutil.which("pyinstrument") or str(BIN / "pyinstrument"), "--show-all", "-r", args.renderer,
                            "--hide-regex", ".*(importlib|<frozen).*", *sync], env=env, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if args.profiler == "py-spy":
            print(summarise(raw.read_text()))
        print(f"{args.phase}: {wall:.2f} s wall, {cpu:.2f} CPU s (mailmigrate under {args.profiler})")
    finally:
        src.stop()
        dst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
