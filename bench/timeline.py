"""Where a first copy's wall time goes: start-up, logins, the folders on each connection, the tail.

    .venv/bin/python bench/timeline.py [--rounds 5] [--storage tmpfs] [--messages 3750] [--connections 3]

Two throwaway Dovecots (as bench/run.py's), the seeded corpus in the source; each round copies it into a
fresh target account with ``mailmigrate sync``, run in a child process that marks, in milliseconds since the
parent started it: the package imported, each connection pair's login begun and done, each folder's start
and end, and the end of ``main``.
Printed: every round's marks in one line, then the medians of

* **start-up**: from the interpreter's start to the first login;
* **logins**: the lead connection pair's, and the last worker's ready;
* **copy**: from the first folder's start to the last folder's end;
* **tail**: how long the last folder ran alone, after every other connection had finished;
* **exit**: from the last folder's end to the end of ``main``.

Why: on a machine of two cores the copy is bound by the CPU of the client and both servers; what is not
copying (start-up, logins, a tail where one connection works alone) is what the wall time can still lose
(docs/benchmarks.md, sixth pass).  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
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


def child(argv: list[str]) -> int:
    """Run ``mailmigrate`` with marks; they go to stderr as one JSON line at the end (times from the moment the
    parent started this process)."""
    import threading

    t0 = time.perf_counter() - (time.time() - float(os.environ["MM_TIMELINE_T0"]))
    marks: list[tuple[float, str, str]] = []

    def mark(what: str) -> None:
        marks.append((round((time.perf_counter() - t0) * 1000, 1), threading.current_thread().name, what))

    from mailmigrate.cli.main import main
    from mailmigrate.sync import engine, folder_run

    mark("imported")

    def wrapped(owner, name, before, after):
        orig = getattr(owner, name)

        def w(*a, **k):
            mark(before(*a))
            try:
                return orig(*a, **k)
            finally:
                mark(after(*a))
        setattr(owner, name, w)

    wrapped(engine._AccountRun, "open", lambda self: "login>", lambda self: "login<")
    wrapped(folder_run.FolderRun, "sync_folder", lambda self, plan, *a: "start " + "/".join(plan.source.path),
            lambda self, plan, *a: "end " + "/".join(plan.source.path))
    try:
        return main(argv)
    finally:
        mark("main returned")
        print("TIMELINE " + json.dumps(marks), file=sys.stderr, flush=True)


def summary(marks: list[list], wall_ms: float) -> dict[str, float]:
    first_login = min(t for t, _, w in marks if w == "login>")
    lead_ready = min(t for t, th, w in marks if w == "login<" and th == "MainThread")
    ready = max(t for t, _, w in marks if w == "login<")
    starts = [t for t, _, w in marks if w.startswith("start ")]
    finishes = sorted(_finishes(marks))
    last = finishes[-1]
    tail = last - finishes[-2] if len(finishes) > 1 else 0.0
    return {"wall": wall_ms, "start-up": first_login, "lead login": lead_ready - first_login,
            "workers ready": ready - first_login, "copy": last - min(starts), "tail": tail,
            "exit": wall_ms - last}


def _finishes(marks: list[list]) -> list[float]:
    """Each connection's last folder end: folders are matched to connections by their start and end."""
    open_folders: dict[str, float] = {}
    lanes: list[float] = []  # the time each connection became free
    for t, _, w in sorted(marks, key=lambda m: m[0]):
        if w.startswith("start "):
            open_folders[w[6:]] = t
        elif w.startswith("end "):
            started = open_folders.pop(w[4:])
            # the connection that ran it is one that was free at its start: the latest such
            free = [i for i, f in enumerate(lanes) if f <= started]
            if free:
                lanes[max(free, key=lambda i: lanes[i])] = t
            else:
                lanes.append(t)
    return lanes


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--storage", choices=("tmpfs", "disk"), default="tmpfs")
    ap.add_argument("--connections", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(HERE.parent / "tests"))
    sys.path.insert(0, str(HERE))
    from corpus import generate, write_maildir_fs
    from run import MAILMIGRATE, PASSWORD, STORAGE, precompile, tool_env
    from servers.dovecot import DovecotServer

    precompile()
    parent = STORAGE[args.storage]
    base = Path(tempfile.mkdtemp(prefix="mm-timeline-", dir=parent))
    src, dst = DovecotServer(parent=parent).start(), DovecotServer(parent=parent).start()
    rows = []
    try:
        src.add_user("src", PASSWORD)
        dv = pwd.getpwnam("dovecot")
        write_maildir_fs(src.maildir("src"), generate(args.messages, args.folders), dv.pw_uid, dv.pw_gid)
        python = str(Path(MAILMIGRATE).parent / "python")
        for rnd in range(args.rounds):
            user = f"t{rnd}"
            dst.add_user(user, PASSWORD)
            env = tool_env()
            env["MM_TIMELINE_T0"] = repr(time.time())
            t0 = time.perf_counter()
            p = subprocess.run([python, __file__, "--child", "sync", f"imap://src@127.0.0.1:{src.port}?tls=none",
                                f"imap://{user}@127.0.0.1:{dst.port}?tls=none", "--state", str(base / f"{user}.db"),
                                "--no-progress", "--connections", str(args.connections)],
                               env=env, capture_output=True, text=True)
            wall = (time.perf_counter() - t0) * 1000
            if p.returncode != 0:
                raise SystemExit(p.stderr[-2000:])
            marks = json.loads(p.stderr.split("TIMELINE ", 1)[1])
            s = summary(marks, wall)
            rows.append(s)
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in s.items()) + " ms", flush=True)
    finally:
        src.stop()
        dst.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("medians: " + ", ".join(f"{k} {statistics.median(r[k] for r in rows):.0f}" for k in rows[0]) + " ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
