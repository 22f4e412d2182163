"""Where a sync spends its time: pyinstrument over one mailmigrate sync between two loopback Dovecots.

    sudo .venv/bin/python bench/profile.py --messages 3750 [--connections 1] [--phase first|rerun|changed]

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402
from run import PASSWORD, change_source, precompile, tool_env  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--connections", type=int, default=1)
    ap.add_argument("--phase", choices=("first", "rerun", "changed"), default="first")
    ap.add_argument("--renderer", default="text", help="pyinstrument renderer (text, html, speedscope...)")
    args = ap.parse_args(argv)
    from servers.dovecot import DovecotServer

    precompile()
    src, dst = DovecotServer().start(), DovecotServer().start()
    try:
        src.add_user("src", PASSWORD)
        dst.add_user("dst", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), generate(args.messages, args.folders), dv.pw_uid, dv.pw_gid)
        state = Path(tempfile.mkdtemp()) / "s.db"
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
        subprocess.run([str(HERE.parent / ".venv/bin/pyinstrument"), "--show-all", "-r", args.renderer,
                        "--hide-regex", ".*(importlib|<frozen).*", *sync], env=env, check=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"{args.phase}: {wall:.2f} s wall, {cpu:.2f} CPU s (mailmigrate under pyinstrument)")
    finally:
        src.stop()
        dst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
