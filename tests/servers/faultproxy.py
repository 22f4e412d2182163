"""A TCP proxy on loopback that breaks connections on purpose, between mailmigrate and a real server.

Faults apply to connections as they are accepted, from a queue the test fills (then the default):
  * ``Fault("drop", after=N)``      – close both sides once N bytes went from server to client;
  * ``Fault("drop_up", after=N)``   – the same, counting client-to-server bytes (mid-APPEND);
  * ``Fault("truncate", after=N)``  – forward the first N server bytes, then cut without closing the client
                                      side for ``stall`` seconds (a half-sent response), then close;
  * ``Fault("stall", after=N, stall=S)`` – after N server bytes, forward nothing for S seconds;
  * ``Fault("delay", delay=D)``     – wait D seconds before forwarding each chunk;
  * ``Fault("slow_down", delay=D)`` – the same, server-to-client chunks only (commands pass at once, so
                                      commands a client pipelines show up before the earlier responses);
  * ``Fault("refuse")``             – close the connection at once;
  * ``Fault("answer", command=b"LIST", reply=b"BAD …")`` – the first client command of that name is not
                                      forwarded; the proxy answers it with ``<tag> <reply>`` itself, as a
                                      throttling provider does (then forwards everything).
Only ever listens on and connects to 127.0.0.1. ``bytes_down`` / ``bytes_up`` count what crossed the proxy
(server to client / client to server), so a test can see what a protocol feature does to the wire; with
``record=True`` every forwarded chunk is kept in ``transcript`` as ("up"|"down", connection number, bytes),
in the order the proxy forwarded them (a response is recorded before the client can have read it).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from .loopback import LoopbackListener


@dataclass
class Fault:
    kind: str = "none"
    after: int = 0
    stall: float = 0.0
    delay: float = 0.0
    command: bytes = b""  # "answer": the command (case-insensitive) to answer instead of the server
    reply: bytes = b""
    pending: bytes = b""  # "answer": the start of a command line not complete yet


class FaultProxy(LoopbackListener):
    def __init__(self, upstream_port: int, record: bool = False):
        super().__init__(backlog=64)
        self.upstream = ("127.0.0.1", upstream_port)
        self.record = record
        self.transcript: list[tuple[str, int, bytes]] = []
        self.faults: deque[Fault] = deque()
        self.default = Fault()
        self.connections = 0
        self.faults_fired = 0
        self.bytes_down = 0
        self.bytes_up = 0
        self._lock = threading.Lock()
        self._live: set = set()  # each open connection's close_both
        self._start_accepting("faultproxy")

    def cut_all(self) -> int:
        """Close every open connection now (a network cut at a moment the test chooses); how many there were."""
        with self._lock:
            live = list(self._live)
        for close in live:
            close()
        return len(live)

    def push(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _accepted(self, client: socket.socket) -> None:
        with self._lock:
            fault = self.faults.popleft() if self.faults else self.default
            self.connections += 1
            number = self.connections
        threading.Thread(target=self._serve, args=(client, fault, number), daemon=True).start()

    def _answer(self, data: bytes, fault: Fault, client: socket.socket) -> bytes:
        """What of ``data`` goes on to the server: all of it, but the first command named ``fault.command``,
        which the proxy answers itself.  Only whole command lines are looked at (a line split over two
        chunks is held back until complete)."""
        buf = fault.pending + data
        out = b""
        while fault.kind == "answer":
            end = buf.find(b"\r\n")
            if end < 0:
                fault.pending = buf
                return out
            line, buf = buf[:end + 2], buf[end + 2:]
            words = line.split(b" ", 2)
            if len(words) >= 2 and words[1].rstrip(b"\r\n").upper() == fault.command.upper():
                client.sendall(words[0] + b" " + fault.reply + b"\r\n")
                self.faults_fired += 1
                fault.kind = "none"
                continue
            out += line
        fault.pending = b""
        return out + buf

    def _serve(self, client: socket.socket, fault: Fault, number: int = 0) -> None:
        if fault.kind == "refuse":
            self.faults_fired += 1
            client.close()
            return
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        done = threading.Event()

        def close_both():
            done.set()
            with self._lock:
                self._live.discard(close_both)
            for s in (client, server):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

        def pump(src, dst, downstream: bool):
            sent = 0
            try:
                while not done.is_set():
                    data = src.recv(65536)
                    if not data:
                        break
                    if fault.delay and (downstream or fault.kind != "slow_down"):
                        time.sleep(fault.delay)
                    if fault.kind == "answer" and not downstream:
                        data = self._answer(data, fault, client)
                    counted = (fault.kind in ("drop", "truncate", "stall") and downstream) or \
                              (fault.kind == "drop_up" and not downstream)
                    if counted and sent + len(data) > fault.after:
                        keep = max(0, fault.after - sent)
                        if keep:
                            dst.sendall(data[:keep])
                        sent += keep
                        self.faults_fired += 1
                        if fault.kind == "stall":
                            time.sleep(fault.stall)
                            dst.sendall(data[keep:])
                            sent += len(data) - keep
                            fault.kind = "none"
                            continue
                        if fault.kind == "truncate":
                            time.sleep(fault.stall)
                        close_both()
                        return
                    with self._lock:
                        if self.record:
                            self.transcript.append(("down" if downstream else "up", number, data))
                    dst.sendall(data)
                    sent += len(data)
                    with self._lock:
                        if downstream:
                            self.bytes_down += len(data)
                        else:
                            self.bytes_up += len(data)
            except OSError:
                pass
            close_both()

        with self._lock:
            self._live.add(close_both)
        threading.Thread(target=pump, args=(server, client, True), daemon=True).start()
        threading.Thread(target=pump, args=(client, server, False), daemon=True).start()
