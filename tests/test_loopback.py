"""The loopback proxies (FaultProxy for the tests, bench's SlowLink) stop taking connections on close().

A proxy that still relays after close() lets a test's client reach the real server when the test meant the
server to be out of reach, and keeps a thread relaying into a server another test may be using by then."""

from __future__ import annotations

import importlib.util
import socket
import socketserver
import threading
import time
from pathlib import Path

import pytest

from servers.faultproxy import FaultProxy


def _slowlink(port: int):
    path = Path(__file__).resolve().parent.parent / "bench" / "slowlink.py"
    spec = importlib.util.spec_from_file_location("bench_slowlink", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SlowLink(port, mbit=100, rtt_ms=1)


class _Greeter(socketserver.ThreadingTCPServer):
    """A real TCP server that greets each connection and counts them: the proxy's upstream."""

    daemon_threads = True

    def __init__(self):
        self.count = 0
        self.counted = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Greet)


class _Greet(socketserver.BaseRequestHandler):
    def handle(self):
        with self.server.counted:
            self.server.count += 1
        self.request.sendall(b"hello\r\n")


def _read_all(c: socket.socket) -> bytes:
    c.settimeout(3)
    data = b""
    try:
        while chunk := c.recv(100):
            data += chunk
    except ConnectionResetError:
        pass
    return data


@pytest.mark.parametrize("make", [FaultProxy, _slowlink], ids=["faultproxy", "slowlink"])
def test_a_connection_after_close_does_not_reach_the_upstream_server(make):
    upstream = _Greeter()
    threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    proxy = make(upstream.server_address[1])
    try:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as c:  # relayed, as usual
            c.settimeout(5)
            assert c.recv(100) == b"hello\r\n"
        time.sleep(0.2)  # the accepting thread is back, waiting in accept()
        proxy.close()
        try:
            c = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        except ConnectionRefusedError:
            pass
        else:  # taken after all: it must be closed at once, not relayed nor left hanging
            with c:
                assert _read_all(c) == b""
        time.sleep(0.3)
        assert upstream.count == 1
    finally:
        proxy.close()
        upstream.shutdown()
        upstream.server_close()
