"""Real CalDAV/CardDAV servers on loopback for the groupware tests: Radicale (with its own users, htpasswd
plain) and Xandikos (one principal, no authentication: it expects a proxy in front), both from PyPI, each
started in a temporary directory on a free port and stopped after the tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .dovecot import free_port


def _wait(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="OPTIONS"), timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url}: no answer after {timeout} s")


class DavServer:
    kind = ""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.root / "server.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Radicale(DavServer):
    kind = "radicale"

    def __init__(self, root: Path, *, admin: str | None = None, log_level: str = "warning"):
        super().__init__(root)
        self.users: dict[str, str] = {}
        self.admin = admin  # a user with rights on every collection (as a migration's service account)
        self.log_level = log_level  # "info" logs one line per request: what a test can count

    def add_user(self, user: str, password: str) -> None:
        self.users[user] = password
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "users").write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))

    def start(self) -> "Radicale":
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "users").touch()
        if self.admin:  # Radicale's rights file: the admin everywhere, each user in their own home
            (self.root / "rights").write_text(f"[admin]\nuser: {self.admin}\ncollection: .*\npermissions: RrWw\n\n"
                                              "[owner]\nuser: .+\ncollection: {user}(/.*)?\npermissions: RrWw\n\n"
                                              "[root]\nuser: .+\ncollection:\npermissions: R\n")
        cfg = self.root / "config"
        cfg.write_text(f"""[server]
hosts = 127.0.0.1:{self.port}
[auth]
type = htpasswd
htpasswd_filename = {self.root / 'users'}
htpasswd_encryption = plain
[rights]
type = {"from_file" if self.admin else "owner_only"}
file = {self.root / 'rights'}
[storage]
filesystem_folder = {self.root / 'collections'}
[logging]
level = {self.log_level}
""")
        self.proc = subprocess.Popen([sys.executable, "-m", "radicale", "--config", str(cfg)],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait(self.base + "/", self.proc, self.log)
        return self


class Xandikos(DavServer):
    kind = "xandikos"

    def start(self) -> "Xandikos":
        self.root.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("xandikos")
        self.proc = subprocess.Popen([str(exe), "serve", "-d", str(self.root / "data"), "--autocreate",
                                      "--current-user-principal", "/user/", "-l", "127.0.0.1", "-p", str(self.port),
                                      "--no-detect-systemd", "--state-dir", str(self.root / "state")],
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "XDG_DATA_HOME": str(self.root / "xdg")})
        _wait(self.base + "/", self.proc, self.log)
        return self
