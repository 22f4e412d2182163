"""Run a command as written - ``-server localhost`` on the well-known ports 143 and 4040 - without taking
those ports on this shared machine: the command runs in a network namespace of its own (``unshare -n``,
root only), where a relay listens on ``127.0.0.1:<port>`` and passes each connection through a Unix socket
to a test server on an ephemeral port of the host.

Host side: :class:`UnixToTcp` (one per port).  Namespace side: this file run as a script,
``python netns.py --map 143=/x/imap.sock --map 4040=/x/admin.sock -- CMD...``; it brings ``lo`` up,
starts the listeners, runs CMD with the inherited stdout/stderr and exits with its status.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path


def _pump(a: socket.socket, b: socket.socket) -> None:
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _relay(client: socket.socket, connect) -> None:
    try:
        upstream = connect()
    except OSError:
        client.close()
        return
    t = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    t.start()
    _pump(client, upstream)
    t.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, connect) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=_relay, args=(client, connect), daemon=True).start()


class UnixToTcp:
    """Listens on a Unix socket and relays each connection to ``127.0.0.1:port`` (host side)."""

    def __init__(self, path: Path, port: int):
        self.path, self.port = Path(path), port
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(16)
        threading.Thread(target=_serve, args=(self.sock, lambda: socket.create_connection(("127.0.0.1", port))),
                         daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def available() -> bool:
    """Root, the tools, and a kernel/container that lets us make a network namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def run(cmd: list[str], mapping: dict[int, Path], *, cwd, env, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in a private network namespace where ``127.0.0.1:<port>`` reaches ``mapping[port]``."""
    maps = [x for port, path in mapping.items() for x in ("--map", f"{port}={path}")]
    return subprocess.run(["unshare", "-n", sys.executable, __file__, *maps, "--", *cmd], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _main(argv: list[str]) -> int:
    sep = argv.index("--")
    opts, cmd = argv[:sep], argv[sep + 1:]
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for i in range(0, len(opts), 2):
        port, path = opts[i + 1].split("=", 1)
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", int(port)))
        ls.listen(16)

        def connect(path=path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            return s

        threading.Thread(target=_serve, args=(ls, connect), daemon=True).start()
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
