#!/usr/bin/env python3
"""Write the shipped samples: a Dovecot-style Maildir++ and a Thunderbird-style mbox tree.

Deterministic (seeded), so a regenerated sample is byte-for-byte the committed one:

    python3 examples/make_samples.py            # rewrites examples/sample-maildir and examples/sample-mbox

The README's quick start migrates examples/sample-maildir into a local Maildir.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from mailmigrate.formats import maildir as mdfmt  # noqa: E402
from mailmigrate.formats import mbox as mbfmt  # noqa: E402

PEOPLE = ["Ann Archer <ann@example.org>", "Bob Baker <bob@example.org>", "Chloé Dupont <chloe@example.fr>",
          "Dieter Müller <dieter@example.de>", "Eve Evans <eve@example.com>"]
SUBJECTS = ["Quarterly report", "Lunch on Friday?", "Re: migration plan", "Invoice 2024-117", "Holiday photos",
            "Server maintenance window", "Fwd: contract draft", "Ticket #4711 updated", "Welcome aboard",
            "Agenda for Monday"]


def message(rng: random.Random, i: int, when: datetime, *, attachment: int = 0, message_id: bool = True,
            subject: str | None = None) -> bytes:
    frm, to = rng.sample(PEOPLE, 2)
    subj = subject or rng.choice(SUBJECTS)
    head = [f"From: {frm}", f"To: {to}", f"Subject: {subj}",
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}"]
    if message_id:
        head.append(f"Message-ID: <sample-{i}@example.org>")
    head.append("MIME-Version: 1.0")
    text = "\r\n".join(f"Line {n} of message {i}: the quick brown fox jumps over the lazy dog."
                       for n in range(rng.randint(2, 25)))
    if not attachment:
        return ("\r\n".join(head + ["Content-Type: text/plain; charset=utf-8", "", text, ""])).encode()
    blob = base64.encodebytes(rng.randbytes(attachment)).replace(b"\n", b"\r\n")
    return ("\r\n".join(head + ['Content-Type: multipart/mixed; boundary="b"', "", "--b",
                                "Content-Type: text/plain; charset=utf-8", "", text, "--b",
                                "Content-Type: application/pdf; name=report.pdf",
                                "Content-Transfer-Encoding: base64", "", ""])).encode() + blob + b"--b--\r\n"


def write_maildir(root: Path) -> int:
    rng = random.Random(20261123)
    t0 = datetime(2024, 1, 8, 9, 0, tzinfo=timezone.utc)
    folders = {("INBOX",): 30, ("Sent",): 10, ("Drafts",): 3, ("Projects",): 4, ("Projects", "Alpha"): 6,
               ("Projects", "Beta 2025"): 4, ("Archive",): 5, ("Übersicht & Notizen",): 3}
    keywords = {0: "$Forwarded", 1: "$Label1", 2: "Important"}
    n = 0
    for path, count in folders.items():
        d = root / mdfmt.folder_to_dirname(path) if path != ("INBOX",) else root
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if path != ("INBOX",):
            (d / "maildirfolder").touch()
        (d / "dovecot-keywords").write_bytes(mdfmt.dump_keywords(keywords))
        for k in range(count):
            when = t0 + timedelta(hours=7 * n)
            size = 2_000_000 if (path == ("INBOX",) and k == 7) else 0
            data = message(rng, n, when, attachment=size, message_id=not (k == 3 and path == ("INBOX",)))
            info = ""
            if path in (("Sent",), ("Archive",)) or rng.random() < 0.7:
                info += "S"
            if rng.random() < 0.15:
                info += "F"
            if rng.random() < 0.2:
                info += "R"
            if path == ("Drafts",):
                info = "DS"
            if rng.random() < 0.15:
                info += rng.choice("abc")
            unique = f"{int(when.timestamp())}.M{n}P1.sample"
            sub = "new" if (path == ("INBOX",) and k >= count - 2) else "cur"
            name = mdfmt.build_name(unique, info, len(data)) if sub == "cur" else unique
            f = d / sub / name
            f.write_bytes(data)
            os.utime(f, (when.timestamp(), when.timestamp()))
            n += 1
    (root / "subscriptions").write_bytes(mdfmt.dump_subscriptions(
        [("Sent",), ("Drafts",), ("Projects",), ("Projects", "Alpha"), ("Übersicht & Notizen",)]))
    return n


def write_mbox(root: Path) -> int:
    rng = random.Random(7)
    t0 = datetime(2023, 6, 1, 8, 0, tzinfo=timezone.utc)
    msgs = [message(rng, 1000 + i, t0 + timedelta(days=i)) for i in range(8)]
    msgs[2] = msgs[2].replace(b"\r\n\r\n", b"\r\n\r\nFrom the desk of Ann: this line starts with From.\r\n", 1)
    msgs.append(msgs[5])  # identical twins
    msgs.append(message(rng, 2000, t0, message_id=False, subject="no Message-ID here"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "Inbox").write_bytes(b"".join(mbfmt.write_message(m, "ann@example.org", t0 + timedelta(days=i))
                                          for i, m in enumerate(msgs)))
    (root / "Inbox.msf").write_bytes(b"// Thunderbird index, ignored\n")
    sent = [message(rng, 3000 + i, t0 + timedelta(days=i, hours=3)) for i in range(4)]
    (root / "Sent").write_bytes(b"".join(mbfmt.write_message(m, "ann@example.org", t0) for m in sent))
    (root / "Archive.sbd").mkdir()
    old = [message(rng, 4000 + i, t0 - timedelta(days=400 - i)) for i in range(5)]
    (root / "Archive.sbd" / "2022").write_bytes(b"".join(mbfmt.write_message(m, "bob@example.org", t0) for m in old))
    return len(msgs) + len(sent) + len(old)


def main() -> None:
    for name in ("sample-maildir", "sample-mbox"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    n = write_maildir(HERE / "sample-maildir")
    m = write_mbox(HERE / "sample-mbox")
    print(f"examples/sample-maildir: {n} messages; examples/sample-mbox: {m} messages")


if __name__ == "__main__":
    main()
