"""A slow network on loopback: a TCP proxy with a bandwidth limit and a round-trip time, for benchmarks.

    link = SlowLink(upstream_port, mbit=20, rtt_ms=10)   # listens on 127.0.0.1:link.port
    ...
    link.bytes_down, link.bytes_up                       # what crossed, server->client / client->server
    link.close()

Why a proxy and not ``tc netem`` on ``lo``: a qdisc on loopback would slow every program on the machine,
including other people's test runs, and this proxy needs nothing but Python.

The model is one full-duplex link shared by every connection through the proxy, as all connections of one
migration share the line to a remote server: per direction, chunks are serialised one after another at
the link's rate (so three connections together get 20 Mbit/s, not 60), and each arrives half the round-trip
time after it finished crossing. Each connection may have at most ``queue`` bytes in flight in the proxy
per direction; beyond that the proxy stops reading and TCP's own flow control pushes back on the sender,
as a full router queue would.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from servers.loopback import LoopbackListener  # noqa: E402

CHUNK = 16 << 10


class _Direction:
    """One direction of the shared link: when the next chunk may start crossing."""

    def __init__(self, bits_per_second: float, one_way: float):
        self.bps = bits_per_second
        self.one_way = one_way
        self.free_at = 0.0
        self.bytes = 0
        self._lock = threading.Lock()

    def arrival(self, n: int) -> float:
        with self._lock:
            start = max(time.monotonic(), self.free_at)
            self.free_at = start + n * 8 / self.bps
            self.bytes += n
            return self.free_at + self.one_way


class SlowLink(LoopbackListener):
    def __init__(self, upstream_port: int, *, mbit: float = 20.0, rtt_ms: float = 10.0, queue: int = 128 << 10,
                 upstream_host: str = "127.0.0.1"):
        super().__init__(backlog=128)
        self.upstream = (upstream_host, upstream_port)
        self.queue = queue
        self.down = _Direction(mbit * 1e6, rtt_ms / 2000)
        self.up = _Direction(mbit * 1e6, rtt_ms / 2000)
        self._start_accepting("slowlink")

    @property
    def bytes_down(self) -> int:
        return self.down.bytes

    @property
    def bytes_up(self) -> int:
        return self.up.bytes

    def _accepted(self, client: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=30)
        except OSError:
            client.close()
            return
        server.settimeout(None)
        for s in (client, server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done = threading.Semaphore(0)
        _Pipe(client, server, self.up, self.queue, done)
        _Pipe(server, client, self.down, self.queue, done)
        done.acquire()
        done.acquire()
        for s in (client, server):
            s.close()


class _Pipe:
    """One direction of one connection: a reader that timestamps chunks and a writer that releases them on
    time."""

    def __init__(self, src: socket.socket, dst: socket.socket, link: _Direction, limit: int, done):
        self.src, self.dst, self.link, self.limit, self.done = src, dst, link, limit, done
        self.q: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._write, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(CHUNK)
                if not data:
                    break
                with self.cond:
                    while self.queued > self.limit and not self.eof:
                        self.cond.wait()
                    if self.eof:
                        return
                    self.q.append((self.link.arrival(len(data)), data))
                    self.queued += len(data)
                    self.cond.notify_all()
        except OSError:
            pass
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.q and not self.eof:
                        self.cond.wait()
                    if not self.q:
                        break
                    at, data = self.q.popleft()
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.dst.sendall(data)
                with self.cond:
                    self.queued -= len(data)
                    self.cond.notify_all()
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            with self.cond:
                self.eof = True
                self.q.clear()
                self.cond.notify_all()
            for s in (self.src, self.dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.done.release()
