"""Throwaway Cyrus IMAP 3.6 servers on loopback, configured as Debian ships them.

Debian's cyrus-imapd conflicts with dovecot-imapd, so `.ci/test-servers` unpacks the packages into
/opt/mailmigrate-test-servers/cyrus and the server runs from there. The imapd.conf written here is Debian's
shipped /etc/imapd.conf (cyrus-common 3.6.1-4+deb12u5) with only its paths moved into the test's directory and
SASL's sasldb named: ``altnamespace: no``, ``unixhierarchysep: no`` (so ``.`` separates levels and personal
folders live under ``INBOX.``), ``autocreate_quota: 0`` (INBOX made at first login), ``hashimapspool: true``,
``allowplaintext: yes``, and Cyrus's compiled-in ``munge8bit: yes`` (raw 8-bit header bytes rewritten to
``X`` on APPEND). ``altnamespace=True`` gives the other common setup: ``altnamespace: yes`` and
``unixhierarchysep: yes`` (folders beside INBOX, ``/`` as separator).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from .dovecot import free_port

ROOT = Path(os.environ.get("MAILMIGRATE_TEST_SERVERS", "/opt/mailmigrate-test-servers")) / "cyrus"
BIN = ROOT / "usr" / "lib" / "cyrus" / "bin"
LIBS = ROOT / "usr" / "lib" / "x86_64-linux-gnu"
ADMIN = ("cyrus", "cyrus-admin-pw")


def available() -> bool:
    return os.geteuid() == 0 and (BIN / "master").exists() and shutil.which("saslpasswd2") is not None \
        and _has_user("cyrus")


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


class CyrusServer:
    kind = "cyrus"

    def __init__(self, root: Path, *, altnamespace: bool = False):
        self.root = Path(root)
        self.altnamespace = altnamespace
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.separator = "/" if altnamespace else "."
        self.prefix = "" if altnamespace else "INBOX."

    @property
    def conf(self) -> Path:
        return self.root / "imapd.conf"

    def start(self) -> "CyrusServer":
        r = self.root
        # what Debian's mkimap makes under the configuration directory
        for d in ("conf", "conf/db", "conf/socket", "conf/log", "conf/msg", "conf/ptclient", "conf/quota",
                  "conf/user", "conf/lock", "conf/proc", "proc", "lock", "spool", "sieve", "socket"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ns = "yes" if self.altnamespace else "no"
        self.conf.write_text(f"""configdirectory: {r}/conf
proc_path: {r}/proc
mboxname_lockpath: {r}/lock
defaultpartition: default
partition-default: {r}/spool
altnamespace: {ns}
unixhierarchysep: {ns}
lmtp_downcase_rcpt: yes
allowanonymouslogin: no
popminpoll: 1
autocreate_quota: 0
umask: 077
sieveusehomedir: false
sievedir: {r}/sieve
hashimapspool: true
allowplaintext: yes
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {r}/sasldb2
sasl_auto_transition: no
admins: {ADMIN[0]}
lmtpsocket: {r}/socket/lmtp
idlesocket: {r}/socket/idle
notifysocket: {r}/socket/notify
syslog_prefix: cyrus-test
""")
        (r / "cyrus.conf").write_text(f"""START {{
  recover cmd="{BIN}/ctl_cyrusdb -r -C {self.conf}"
}}
SERVICES {{
  imap cmd="{BIN}/imapd -C {self.conf}" listen="127.0.0.1:{self.port}" prefork=0 maxchild=100
}}
EVENTS {{
}}
""")
        self.add_user(*ADMIN)
        subprocess.run(["chown", "-R", "cyrus:mail", str(r)], check=True)
        for parent in r.parents:  # Cyrus runs as "cyrus": it must be able to walk down to its directory
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, (mode & 0o7777) | 0o001)
        env = {**os.environ, "LD_LIBRARY_PATH": str(LIBS)}
        self.proc = subprocess.Popen([str(BIN / "master"), "-C", str(self.conf), "-M", str(r / "cyrus.conf"),
                                      "-p", str(r / "master.pid"), "-D"], env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cyrus master exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("cyrus did not answer within 30 s")

    def add_user(self, user: str, password: str) -> None:
        db = self.root / "sasldb2"
        subprocess.run(["saslpasswd2", "-f", str(db), "-p", "-c", user], input=password.encode(), check=True)
        if db.exists():
            shutil.chown(db, "cyrus", "mail")
            os.chmod(db, 0o640)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
