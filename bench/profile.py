"""Where a first copy spends its time: pyinstrument over one mailmigrate sync between two loopback Dovecots.

    sudo .venv/bin/python bench/profile.py --messages 3750 [--connections 1]

Prints pyinstrument's call tree (threads included) for the whole command; the findings are written down in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402
from run import PASSWORD  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--connections", type=int, default=1)
    args = ap.parse_args(argv)
    from servers.dovecot import DovecotServer

    src, dst = DovecotServer().start(), DovecotServer().start()
    try:
        src.add_user("src", PASSWORD)
        dst.add_user("dst", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), generate(args.messages, 10), dv.pw_uid, dv.pw_gid)
        state = Path(tempfile.mkdtemp()) / "s.db"
        env = {**os.environ, "MAILMIGRATE_SOURCE_PASSWORD": PASSWORD, "MAILMIGRATE_TARGET_PASSWORD": PASSWORD}
        subprocess.run([str(HERE.parent / ".venv/bin/pyinstrument"), "--show-all", "-r", "text",
                        "--hide-regex", ".*(importlib|<frozen).*",
                        "-m", "mailmigrate.cli.main", "sync", f"imap://src@127.0.0.1:{src.port}?tls=none",
                        f"imap://dst@127.0.0.1:{dst.port}?tls=none", "--state", str(state), "--no-progress",
                        "--connections", str(args.connections)], env=env, check=True)
    finally:
        src.stop()
        dst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
