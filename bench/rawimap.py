"""The servers' own limits, for bench/run.py's --limits: how fast the target takes the corpus and the source
serves it when the client costs (almost) nothing.

    python bench/rawimap.py append HOST PORT USER MAILDIR [--connections 3] [--batch 64]
    python bench/rawimap.py fetch  HOST PORT USER [--connections 3]

``append`` loads every message of MAILDIR (a LAYOUT=fs tree as bench/corpus.py writes it) into memory first,
creates the folders, then starts the clock and sends each folder as pipelined MULTIAPPEND commands (RFC 3502)
of mailmigrate's batch size (100 messages, 16 MiB), or pipelined single APPENDs where the server has no
MULTIAPPEND, with LITERAL+ (RFC 7888), ``--connections`` folders at once. ``fetch`` SELECTs each folder and streams
every message with one UID FETCH BODY.PEEK[] per folder, reading the literals without parsing anything
else. Both print ``wall=SECONDS messages=N bytes=B`` for the timed part. The password comes from
MAILMIGRATE_TARGET_PASSWORD / MAILMIGRATE_SOURCE_PASSWORD. No TLS: loopback only.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path


class Conn:
    def __init__(self, host: str, port: int, user: str, password: str):
        self.s = socket.create_connection((host, port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.s.makefile("rb", buffering=1 << 20)
        self.f.readline()
        self.n = 0
        self.cmd(f"LOGIN {user} {password}".encode())

    def send(self, data: bytes) -> bytes:
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + data + b"\r\n")
        return tag

    def wait(self, tag: bytes, sink=None) -> None:
        while True:
            line = self.f.readline()
            if not line:
                raise SystemExit("server closed the connection")
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                data = self.f.read(int(m.group(1)))
                if sink is not None:
                    sink(data)
                continue
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1:].startswith(b"OK"):
                    raise SystemExit(f"{line!r}")
                return

    def cmd(self, data: bytes) -> None:
        self.wait(self.send(data))

    def capabilities(self) -> set[bytes]:
        tag = self.send(b"CAPABILITY")
        caps: set[bytes] = set()
        while True:
            line = self.f.readline()
            if line.startswith(b"* CAPABILITY "):
                caps.update(line[13:].split())
            elif line.startswith(tag + b" ") or not line:
                return caps


def folders_of(maildir: Path) -> dict[str, list[bytes]]:
    """Every folder of a Dovecot ``LAYOUT=fs`` tree (bench/corpus.py's): INBOX at the root, each folder a
    directory with its own cur/new, nested by "/"."""
    out: dict[str, list[bytes]] = {}
    for d in [maildir] + sorted(p for p in maildir.rglob("*") if p.is_dir() and (p / "cur").is_dir()):
        name = "INBOX" if d == maildir else d.relative_to(maildir).as_posix()
        msgs = [f.read_bytes() for sub in ("cur", "new") if (d / sub).is_dir() for f in sorted((d / sub).iterdir())]
        if msgs:
            out[name] = msgs
    return out


def batches(msgs: list[bytes], count: int, size: int):
    """mailmigrate's own batching (stores/imap.py): up to ``count`` messages and ``size`` bytes a command."""
    batch: list[bytes] = []
    total = 0
    for m in msgs:
        if batch and (len(batch) >= count or total + len(m) > size):
            yield batch
            batch, total = [], 0
        batch.append(m)
        total += len(m)
    if batch:
        yield batch


def append(args) -> None:
    folders = folders_of(Path(args.maildir))
    pw = os.environ["MAILMIGRATE_TARGET_PASSWORD"]
    setup = Conn(args.host, args.port, args.user, pw)
    caps = setup.capabilities()
    multi = b"MULTIAPPEND" in caps
    if b"LITERAL+" not in caps:
        raise SystemExit("the target has no LITERAL+: this limit needs non-synchronising literals")
    count = args.batch or (100 if multi else 1)
    for name in folders:
        if name != "INBOX":
            setup.wait(setup.send(b'CREATE "' + name.encode() + b'"'))
    conns = [Conn(args.host, args.port, args.user, pw) for _ in range(args.connections)]
    work = list(folders.items())
    lock = threading.Lock()

    def worker(c: Conn) -> None:
        while True:
            with lock:
                if not work:
                    return
                name, msgs = work.pop(0)
            tags = []
            for batch in batches(msgs, count, 16 << 20):
                parts = [b'APPEND "' + name.encode() + b'"']
                for m in batch:
                    parts.append(b" (\\Seen) {%d+}\r\n" % len(m) + m)
                tags.append(c.send(b"".join(parts)))
            for t in tags:
                c.wait(t)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(f"wall={wall:.4f} messages={sum(len(m) for m in folders.values())} "
          f"bytes={sum(len(x) for m in folders.values() for x in m)} multiappend={multi}")


def fetch(args) -> None:
    pw = os.environ["MAILMIGRATE_SOURCE_PASSWORD"]
    setup = Conn(args.host, args.port, args.user, pw)
    names: list[str] = []

    def grab(line_data: bytes) -> None:  # LIST replies carry no literals here
        pass

    tag = setup.send(b'LIST "" "*"')
    while True:
        line = setup.f.readline()
        if line.startswith(tag):
            break
        m = re.match(rb'\* LIST \([^)]*\) "." "?([^"\r\n]*)"?\r\n', line)
        if m:
            names.append(m.group(1).decode())
    conns = [Conn(args.host, args.port, args.user, pw) for _ in range(args.connections)]
    work = list(names)
    lock = threading.Lock()
    total = [0, 0]

    def worker(c: Conn) -> None:
        while True:
            with lock:
                if not work:
                    return
                name = work.pop(0)
            c.cmd(b'EXAMINE "' + name.encode() + b'"')
            got = [0, 0]

            def sink(data: bytes) -> None:
                got[0] += 1
                got[1] += len(data)

            c.wait(c.send(b"UID FETCH 1:* (BODY.PEEK[])"), sink)
            with lock:
                total[0] += got[0]
                total[1] += got[1]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    print(f"wall={wall:.4f} messages={total[0]} bytes={total[1]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("append", "fetch"))
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("user")
    ap.add_argument("maildir", nargs="?")
    ap.add_argument("--connections", type=int, default=3)
    ap.add_argument("--batch", type=int, default=0,
                    help="messages per APPEND (default as mailmigrate: 100 with MULTIAPPEND, else 1)")
    args = ap.parse_args(argv)
    (append if args.mode == "append" else fetch)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
