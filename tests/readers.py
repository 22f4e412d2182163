"""Another program reading files while mailmigrate writes them (Dovecot reading an ACL, a script collecting
reports): a separate process, so it reads between any two of the writer's system calls, not only when the
writer gives up the GIL."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

_READER = r"""
import glob, hashlib, os, sys
pattern, stop = sys.argv[1], sys.argv[2]
seen = set()
print("ready", flush=True)
while not os.path.exists(stop):
    for p in glob.glob(pattern):
        try:
            with open(p, "rb") as f:
                seen.add((p, hashlib.sha256(f.read()).hexdigest()))
        except FileNotFoundError:
            pass
for p, h in sorted(seen):
    print(h, p)
"""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def reading(pattern: str | Path, stop_dir: Path):
    """Reads every file matching the glob ``pattern`` over and over until the block ends; the yielded dict
    then maps each path to the digests of every content the reader ever saw there."""
    stop = stop_dir / "reader-stop"
    proc = subprocess.Popen([sys.executable, "-c", _READER, str(pattern), str(stop)], stdout=subprocess.PIPE,
                            text=True)
    seen: dict[str, set[str]] = {}
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield seen
    finally:
        stop.touch()
        out, _ = proc.communicate(timeout=60)
        stop.unlink()
    for line in out.splitlines():
        h, p = line.split(" ", 1)
        seen.setdefault(p, set()).add(h)
