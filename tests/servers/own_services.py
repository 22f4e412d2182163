"""A PostgreSQL and a Redis of a test's own, on free loopback ports, that the test may restart or kill.

The machine's shared servers must not be restarted by a test (other tests use them at the same time), so the
fleet's fault tests start their own: PostgreSQL from Debian's binaries in a fresh cluster (initdb as the
``postgres`` user, which PostgreSQL requires), Redis with or without an append-only file.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float, up: bool = True) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not {'up' if up else 'down'} after {timeout:.0f} s")


class OwnPostgres:
    """A cluster in a directory of its own; ``restart_fast()`` is what an upgrade or a failover does to the
    sessions: every connection is ended at once (``pg_ctl restart -m fast``)."""

    def __init__(self):
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not bins or shutil.which("runuser") is None:
            pytest.skip("no PostgreSQL server binaries (initdb) or no runuser")
        self.bin = bins[-1].parent
        self.dir = Path(tempfile.mkdtemp(prefix="mm-pg-"))
        os.chmod(self.dir, 0o755)
        self.data = self.dir / "data"
        self.port = free_port()
        shutil.chown(self.dir, "postgres", "postgres")
        self._as_pg([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                     "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.dir}'\n"
                    "fsync = off\nmax_connections = 100\n")
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_pg(self, cmd: list[str]) -> None:
        r = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"{' '.join(cmd)}: {r.stdout[-1500:]}{r.stderr[-1500:]}")

    def _ctl(self, *args: str) -> None:
        self._as_pg([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", *args])

    def start(self) -> None:
        self._ctl("start")

    def restart_fast(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        try:
            self._ctl("stop", "-m", "immediate")
        except RuntimeError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class OwnRedis:
    """``aof``: append-only file with ``appendfsync everysec`` (what docs/fleet.md asks of a production broker);
    without it, nothing is kept across a kill."""

    def __init__(self, aof: bool):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("no redis-server")
        self.exe, self.aof = exe, aof
        self.dir = Path(tempfile.mkdtemp(prefix="mm-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                "--appendonly", "yes" if self.aof else "no", "--appendfsync", "everysec", "--daemonize", "no",
                "--logfile", str(self.dir / "log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, 20)
        import redis

        r = redis.Redis.from_url(self.url)
        end = time.monotonic() + 30
        while True:  # "LOADING" while it reads its files back
            try:
                r.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        r.close()

    def shutdown_clean(self) -> None:
        """SHUTDOWN SAVE: a clean stop that writes the dataset, as a package upgrade does."""
        import redis

        try:
            redis.Redis.from_url(self.url).shutdown(save=True)
        except redis.exceptions.ConnectionError:
            pass
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
