"""The servers' own limits, for bench/run.py's --limits: how fast the target takes the corpus and the source
serves it when the client costs (almost) nothing.

    python bench/rawimap.py append HOST PORT USER MAILDIR [--connections 3] [--batch 64]
    python bench/rawimap.py fetch  HOST PORT USER [--connections 3]

``append`` loads every message of MAILDIR (a Maildir++ tree as bench/corpus.py writes it) into memory first,
creates the folders, then starts the clock and sends each folder as pipelined MULTIAPPEND commands with
LITERAL+ (RFC 4469, 7888), ``--connections`` folders at once. ``fetch`` SELECTs each folder and streams
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


def folders_of(maildir: Path) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for d in [maildir] + sorted(p for p in maildir.iterdir() if p.is_dir() and p.name.startswith(".")):
        name = "INBOX" if d == maildir else d.name[1:].replace(".", "/")
        msgs = [f.read_bytes() for sub in ("cur", "new") if (d / sub).is_dir() for f in sorted((d / sub).iterdir())]
        if msgs:
            out[name] = msgs
    return out


def append(args) -> None:
    folders = folders_of(Path(args.maildir))
    pw = os.environ["MAILMIGRATE_TARGET_PASSWORD"]
    setup = Conn(args.host, args.port, args.user, pw)
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
            for i in range(0, len(msgs), args.batch):
                parts = [b'APPEND "' + name.encode() + b'"']
                for m in msgs[i:i + args.batch]:
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
          f"bytes={sum(len(x) for m in folders.values() for x in m)}")


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
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    (append if args.mode == "append" else fetch)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
