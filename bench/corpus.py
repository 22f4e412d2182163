"""A realistic mail corpus for benchmarks: seeded, so every run and every tool sees the same bytes.

Sizes are log-normal (median a few KB, as real mailboxes are) with a tail of multi-MB attachments; folders
and flags are spread like a real account (most mail read, some flagged/answered, a few drafts).
"""

from __future__ import annotations

import base64
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

FOLDERS = ["INBOX", "Sent", "Archive", "Archive/2023", "Archive/2024", "Projects", "Projects/Alpha",
           "Lists", "Lists/dev", "Drafts", "Trash", "Junk", "Receipts", "Travel", "Family", "Work",
           "Work/Reports", "Work/HR", "Newsletters", "Old"]


@dataclass
class Msg:
    folder: str
    data: bytes
    flags: str  # Maildir info letters
    date: float


def _body(rng: random.Random, size: int) -> bytes:
    if size > 200_000:  # an attachment: base64 lines like a real one
        raw = rng.randbytes(size * 3 // 4)
        b64 = base64.encodebytes(raw)
        return (b"Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
                b"see attached\r\n--b1\r\nContent-Type: application/octet-stream\r\n"
                b"Content-Transfer-Encoding: base64\r\n\r\n" + b64.replace(b"\n", b"\r\n") + b"--b1--\r\n")
    words = [b"lorem", b"ipsum", b"migration", b"mailbox", b"server", b"report", b"meeting", b"budget",
             b"tomorrow", b"please", b"thanks", b"regards"]
    out = bytearray(b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    line = bytearray()
    while len(out) < size:
        line += rng.choice(words) + b" "
        if len(line) > 70:
            out += line + b"\r\n"
            line = bytearray()
    return bytes(out)


def generate(n: int, folders: int = 20, seed: int = 42, median: int = 4096, big_share: float = 0.004,
             big_max: int = 6 << 20) -> list[Msg]:
    rng = random.Random(seed)
    names = FOLDERS[:folders] if folders <= len(FOLDERS) else FOLDERS + [f"F{i}" for i in range(folders - len(FOLDERS))]
    weights = [8 if f == "INBOX" else 3 if f in ("Sent", "Archive") else 1 for f in names]
    mu, sigma = math.log(median), 1.0
    t0 = time.time() - 86400 * 400
    msgs = []
    for i in range(n):
        size = int(rng.lognormvariate(mu, sigma))
        if rng.random() < big_share:
            size = rng.randint(1 << 20, big_max)
        size = max(300, min(size, big_max))
        head = (f"From: Person {i % 97} <p{i % 97}@example.org>\r\nTo: ann@example.org\r\n"
                f"Subject: message {i} about {rng.choice(['q3', 'travel', 'the plan', 'lunch'])}\r\n"
                f"Date: Mon, 1 Jan 2024 10:{i % 60:02d}:00 +0000\r\n"
                f"Message-ID: <{seed}.{i}@bench.example.org>\r\nMIME-Version: 1.0\r\n").encode()
        data = head + _body(rng, size - len(head))
        r = rng.random()
        flags = "S" if r < 0.8 else ""
        if rng.random() < 0.05:
            flags += "F"
        if rng.random() < 0.1:
            flags = "R" + flags
        msgs.append(Msg(rng.choices(names, weights)[0], data, "".join(sorted(flags)), t0 + i * 60))
    return msgs


def write_maildir_fs(root: Path, msgs: list[Msg], uid: int | None = None, gid: int | None = None,
                     start: int = 0) -> None:
    """Write into a Dovecot ``maildir:~/Maildir:LAYOUT=fs`` tree: INBOX at the root, folders as directories."""
    host = "bench"
    for i, m in enumerate(msgs, start):
        d = root if m.folder == "INBOX" else root.joinpath(*m.folder.split("/"))
        cur = d / "cur"
        if not cur.exists():
            for sub in ("cur", "new", "tmp"):
                (d / sub).mkdir(parents=True, exist_ok=True)
        p = cur / f"{int(m.date)}.M{i}P{os.getpid()}.{host},S={len(m.data)}:2,{m.flags}"
        p.write_bytes(m.data)
        os.utime(p, (m.date, m.date))
    if uid is not None:
        for dirpath, dirnames, filenames in os.walk(root):
            os.chown(dirpath, uid, gid)
            for f in filenames:
                os.chown(os.path.join(dirpath, f), uid, gid)
