"""Client CPU of each path of a copy, against a real server, without the rest of the run around it.

    .venv/bin/python bench/paths.py [--server dovecot|cyrus] [--messages 3750] [--rounds 5]

For commit-against-commit comparisons of one path (the whole-process A/B in bench/ab.py cannot resolve a few
milliseconds): run it with each checkout's ``src`` first on PYTHONPATH. Prints, best of the rounds, the CPU
seconds of this process only (the server is another process) for: the listing (UID FLAGS INTERNALDATE
RFC822.SIZE of every folder), the body FETCH of every message, fingerprinting the bodies, APPEND of them in
batches of 100 to a second server, and the state's writes for that many messages (intents and completions in
batches of 100, SQLite on /dev/shm). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import pwd
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from corpus import generate, write_maildir_fs  # noqa: E402


def best(rounds: int, fn) -> float:
    out = 9e9
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        out = min(out, time.process_time() - t0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("dovecot", "cyrus"), default="dovecot")
    ap.add_argument("--messages", type=int, default=3750)
    ap.add_argument("--folders", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    from mailmigrate.model import AppendItem, Body, Secret
    from mailmigrate.stores.imap import ImapStore
    from mailmigrate.sync.matching import fingerprints
    from mailmigrate.sync.state import PENDING, MessageRow, StateDB
    from servers.dovecot import DovecotServer

    corpus = generate(args.messages, args.folders)
    if args.server == "cyrus":
        from servers.cyrus import CyrusServer

        src = CyrusServer(Path(tempfile.mkdtemp(dir="/tmp"))).start()
    else:
        src = DovecotServer(parent="/dev/shm").start()
    dst = DovecotServer(parent="/dev/shm").start()
    try:
        src.add_user("src", "pw")
        dst.add_user("dst", "pw")
        s = ImapStore("127.0.0.1", src.port, user="src", password=Secret("pw"), tls="none")
        t = ImapStore("127.0.0.1", dst.port, user="dst", password=Secret("pw"), tls="none")
        if args.server == "cyrus":  # filled over IMAP, into INBOX (big attachments left out: Cyrus's limit)
            s.open()
            when = datetime(2024, 1, 1, tzinfo=timezone.utc)
            small = [m for m in corpus if len(m.data) < 200_000]
            for i in range(0, len(small), 100):
                s.append(("INBOX",), [AppendItem(Body(data=m.data), frozenset({"\\Seen"}), when)
                                      for m in small[i:i + 100]])
        else:
            dv = pwd.getpwnam("dovecot")
            write_maildir_fs(src.maildir("src"), corpus, dv.pw_uid, dv.pw_gid)
            s.open()
        t.open()
        folders = [f.path for f in s.list_folders()]
        listings = {}

        def listing():
            listings.update({p: s.list_messages(p)[1] for p in folders})

        bodies: list = []

        def fetch():
            for b in bodies:
                b[1].close()
            bodies.clear()
            for p, metas in listings.items():
                bodies.extend(s.fetch(p, [m.key for m in metas]))

        def fingerprint():
            for _, body in bodies:
                fingerprints(body)

        n = [0]

        def append():
            n[0] += 1
            path = ("R%d" % n[0],)
            t.create_folder(path)
            for i in range(0, len(bodies), 100):
                t.append(path, [AppendItem(b, m.flags, m.internaldate) for m, b in bodies[i:i + 100]])

        state_dir = Path(tempfile.mkdtemp(dir="/dev/shm"))

        def state():
            n[0] += 1
            db = StateDB.open(state_dir / f"s{n[0]}.db")
            f = db.ensure_folder("acc", ("INBOX",), ("INBOX",))
            owed: list = []
            for b in range(0, len(bodies), 100):
                batch = [MessageRow(m.key, "%064x" % i, None, body.size, m.flags, None, PENDING, 5)
                         for i, (m, body) in enumerate(bodies[b:b + 100], b)]
                db.record_intents(f.id, batch, owed)
                owed = [(r.source_key, str(100000 + int(r.source_key))) for r in batch]
            db.complete(f.id, owed)
            db.close()

        cpu = {"listing": best(args.rounds, listing), "fetch": best(args.rounds, fetch)}
        cpu["fingerprint"] = best(args.rounds, fingerprint)
        cpu["append"] = best(args.rounds, append)
        cpu["state"] = best(args.rounds, state)
        print(f"{args.server}, {len(bodies)} messages, client CPU ms (best of {args.rounds}): "
              + ", ".join(f"{k} {v * 1000:.1f}" for k, v in cpu.items()))
        s.close()
        t.close()
    finally:
        src.stop()
        dst.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
