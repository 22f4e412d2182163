"""Throwaway Courier-IMAP 5.0 servers on loopback, with Debian's shipped settings.

Debian's courier-imap conflicts with dovecot-imapd, so `.ci/test-servers` unpacks the packages into
/opt/mailmigrate-test-servers/courier.  Courier splits a session in two programs: ``imaplogin`` answers
until the login succeeds (authenticating through the system's ``authdaemond``), then execs ``imapd`` with
the user's environment (``AUTHENTICATED``, ``MAILDIR``, ``IMAPLOGINTAG``: imapd then answers the LOGIN's tag
with OK itself) and the connection as stdin/stdout.  Everything after the login — folders, APPEND, FETCH,
flags, keywords, namespaces, the absent MULTIAPPEND — is Courier's own ``imapd``.  The pre-login part is
played here by a small front end (greeting, CAPABILITY, LOGIN, AUTHENTICATE PLAIN against a dict of test
users), so that no authdaemond with its compiled-in socket and configuration paths has to run as a system
service; it advertises what Debian's imaplogin does with Debian's defaults.

The environment handed to imapd is Debian's shipped ``/etc/courier/imapd`` (courier-imap 5.0.13) read as
the init script reads it, plus what imaplogin and couriertcpd set: INBOX. prefix and ``.`` separator,
``IMAP_KEYWORDS=1``, no MULTIAPPEND.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path


ROOT = Path(os.environ.get("MAILMIGRATE_TEST_SERVERS", "/opt/mailmigrate-test-servers")) / "courier"
IMAPD = ROOT / "usr" / "bin" / "imapd"
SETTINGS = ROOT / "etc" / "courier" / "imapd"
LIBS = f"{ROOT / 'usr' / 'lib'}:{ROOT / 'usr' / 'lib' / 'x86_64-linux-gnu'}"


def available() -> bool:
    return IMAPD.exists() and SETTINGS.exists() and shutil.which("sh") is not None


def _debian_settings() -> dict[str, str]:
    """/etc/courier/imapd as its init script sources it (shell assignments), minus what names system paths."""
    out = subprocess.run(["sh", "-c", 'set -a; . "$1"; env -0', "sh", str(SETTINGS)], capture_output=True,
                         check=True, env={"PATH": "/usr/bin:/bin"}).stdout
    env = dict(kv.split("=", 1) for kv in out.decode().split("\0") if "=" in kv)
    for k in ("PATH", "PWD", "SHLVL", "_", "PIDFILE", "IMAPACCESSFILE", "IMAP_SHAREDINDEXFILE"):
        env.pop(k, None)
    return env


class CourierServer:
    kind = "courier"
    separator = "."
    prefix = "INBOX."

    def __init__(self, root: Path):
        self.root = Path(root)
        # Bound (and listening) from the start, on a port the kernel hands out: a port merely found free and
        # bound a moment later can go to another server started meanwhile by a parallel test.
        self._sock: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.users: dict[str, str] = {}
        self._procs: list[subprocess.Popen] = []
        self._settings = _debian_settings()
        self.capability = self._settings.get("IMAP_CAPABILITY", "IMAP4rev1")

    def start(self) -> "CourierServer":
        if self._sock is None:  # started again after stop()
            self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def add_user(self, user: str, password: str) -> None:
        self.users[user] = password
        for sub in ("cur", "new", "tmp"):
            (self.home(user) / "Maildir" / sub).mkdir(parents=True, exist_ok=True)

    def home(self, user: str) -> Path:
        return self.root / "home" / user

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # --- the front end before the login -------------------------------------------------------------
    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, addr = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn, addr), daemon=True).start()

    def _session(self, conn: socket.socket, addr) -> None:
        caps = f"{self.capability} AUTH=PLAIN"
        f = conn.makefile("rb")
        try:
            conn.sendall(f"* OK [CAPABILITY {caps}] Courier-IMAP ready (mailmigrate test front end).\r\n".encode())
            while True:
                line = f.readline(8192)
                if not line:
                    return
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                cmd, _, args = rest.partition(b" ")
                cmd = cmd.upper()
                user = None
                if cmd == b"CAPABILITY":
                    conn.sendall(b"* CAPABILITY " + caps.encode() + b"\r\n" + tag + b" OK CAPABILITY completed\r\n")
                    continue
                if cmd == b"LOGOUT":
                    conn.sendall(b"* BYE Courier-IMAP server shutting down\r\n" + tag + b" OK LOGOUT completed\r\n")
                    return
                if cmd == b"LOGIN":
                    m = re.fullmatch(rb'("(?:[^"\\]|\\.)*"|\S+) ("(?:[^"\\]|\\.)*"|\S+)', args)
                    if m:
                        u, p = (re.sub(rb'\\(.)', rb"\1", x[1:-1]) if x.startswith(b'"') else x for x in m.groups())
                        if self.users.get(u.decode()) == p.decode():
                            user = u.decode()
                elif cmd == b"AUTHENTICATE" and args.upper().startswith(b"PLAIN"):
                    token = args[6:].strip()
                    if not token:
                        conn.sendall(b"+ \r\n")
                        token = f.readline().strip()
                    try:
                        _, u, p = base64.b64decode(token).split(b"\0")
                        if self.users.get(u.decode()) == p.decode():
                            user = u.decode()
                    except ValueError:
                        pass
                else:
                    conn.sendall(tag + b" NO Error in IMAP command received by server.\r\n")
                    continue
                if user is None:
                    conn.sendall(tag + b" NO Login failed.\r\n")
                    continue
                self._exec_imapd(conn, addr, tag.decode(), user)
                return
        except OSError:
            return
        finally:
            f.close()
            conn.close()

    def _exec_imapd(self, conn: socket.socket, addr, tag: str, user: str) -> None:
        home = self.home(user)
        env = dict(self._settings, PATH="/usr/bin:/bin", HOME=str(home), MAILDIR=str(home / "Maildir"),
                   AUTHENTICATED=user, IMAPLOGINTAG=tag, TCPREMOTEIP=addr[0], TCPREMOTEPORT=str(addr[1]),
                   TCPLOCALIP="127.0.0.1", TCPLOCALPORT=str(self.port), LD_LIBRARY_PATH=LIBS)
        p = subprocess.Popen([str(IMAPD), "Maildir"], stdin=conn.fileno(), stdout=conn.fileno(),
                             stderr=subprocess.DEVNULL, cwd=home, env=env)
        self._procs.append(p)
