"""Two per-message paths of a copy in one process, on the bench corpus's bodies and dates: no server, no threads.

    PYTHONPATH=src .venv/bin/python bench/micro.py [--rounds 15]

For commit-against-commit comparisons of a path too small for bench/ab.py to resolve: run it with each
checkout's ``src`` first on PYTHONPATH. Prints the CPU milliseconds (best of the rounds) of fingerprinting every
body of the corpus (``sync.matching.fingerprints``) and of making APPEND's date-time text for 3,750 dates
(``imap.parser.internaldate_arg``, or ``stores.imap._date_arg`` in code before it, its memo emptied each round
as a copy meets each date once). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import generate  # noqa: E402


def best(rounds: int, fn) -> float:
    out = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return min(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--messages", type=int, default=3750)
    args = ap.parse_args(argv)
    from mailmigrate.imap.parser import parse_internaldate
    from mailmigrate.model import Body
    from mailmigrate.sync.matching import fingerprints

    try:
        from mailmigrate.imap.parser import internaldate_arg as date_text
        memo: dict = {}
    except ImportError:  # code before internaldate_arg, which remembered each text
        from mailmigrate.stores.imap import _DATE_ARGS as memo, _date_arg as date_text
    bodies = [Body.from_bytes(m.data) for m in generate(args.messages, 10)]
    rnd = random.Random(7)
    dates = [parse_internaldate(b"%02d-Jul-%d %02d:%02d:%02d -0730" % (rnd.randint(1, 28), rnd.randint(1990, 2025),
                                                                     rnd.randint(0, 23), rnd.randint(0, 59),
                                                                     rnd.randint(0, 59)))
             for _ in range(args.messages)]

    def fingerprint():
        for b in bodies:
            fingerprints(b)

    def date_texts():
        memo.clear()  # a copy formats each message's date once: a memo's second round would be all hits
        for d in dates:
            date_text(d)

    print(f"{len(bodies)} bodies ({sum(b.size for b in bodies) >> 20} MiB), CPU ms (best of {args.rounds}): "
          f"fingerprints {best(args.rounds, fingerprint) * 1000:.1f}, APPEND date texts "
          f"{best(args.rounds, date_texts) * 1000:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
