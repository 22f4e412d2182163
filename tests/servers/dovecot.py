"""Throwaway Dovecot servers on loopback for the tests and benchmarks: real IMAP, no mocks.

Started as root with a config in a temporary directory (FACTS.md: internal user dovecot, login user
dovenull, first_valid_uid 100), users in a passwd-file Dovecot re-reads on change, a master user in a
second passdb (SASL PLAIN with authzid, or LOGIN as ``user*master``), maildir with LAYOUT=fs and "/" as
separator so that "." is legal in folder names, SPECIAL-USE on the usual mailboxes, optional TLS with a
self-signed certificate, optional removal of UIDPLUS (Kopano's gateway has none), optional COMPRESS=DEFLATE
(Dovecot's imap_zlib plugin).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MASTER = ("master", "masterpw")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_cert(d: Path) -> tuple[Path, Path]:
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
        check=True, capture_output=True)
    return key, crt


class DovecotServer:
    def __init__(self, root: Path | None = None, *, tls: bool = False, separator: str = "/", master_user=MASTER,
                 uidplus: bool = True, extra_conf: str = "", passdb_file: Path | None = None,
                 mail_location: str = "maildir:~/Maildir:LAYOUT=fs", compress: bool = False,
                 home: str | None = None, prefix: str = "", oauth2_introspection: str | None = None,
                 parent: str = "/tmp", special_use: dict[str, str] | None = None):
        # Dovecot's auth and mail processes run as "dovecot" and must traverse every directory above their
        # files; pytest's temporary directories are 0700, so the server lives in a directory of its own.
        # ``parent``: the benchmarks put the server (and its mail) on tmpfs with parent="/dev/shm".
        self.root = Path(tempfile.mkdtemp(prefix="mm-dovecot-", dir=parent))
        os.chmod(self.root, 0o755)
        self.requested_root = root
        self.passdb_file = passdb_file  # an extra passdb (e.g. a passwd-file written by a directory copy)
        self.tls = tls
        self.separator = separator
        self.prefix = prefix  # personal namespace prefix: "INBOX." with separator "." is Courier's and Cyrus's naming
        self.master_user = master_user
        self.uidplus = uidplus
        self.compress = compress  # load imap_zlib: the server advertises COMPRESS=DEFLATE after login
        self.extra_conf = extra_conf
        self.mail_location = mail_location  # e.g. Maildir++ under a migrated tree: "maildir:/x/vmail/%n/Maildir"
        self.home = home  # the users' home (userdb), default a directory per login under mail_root
        # an RFC 7662 introspection URL: logins with XOAUTH2/OAUTHBEARER through Dovecot's oauth2 passdb
        self.oauth2_introspection = oauth2_introspection
        # mailbox name -> SPECIAL-USE attribute(s) the namespace announces (Dovecot's `mailbox NAME {
        # special_use = ...}`); other providers' folder sets in tests/test_presets.py
        self.special_use = special_use if special_use is not None else {
            "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        self.cafile: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._users: dict[str, str] = {}

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    def maildir(self, user: str) -> Path:
        return self.mail_root / user / "Maildir"

    def _write_passwd(self) -> None:
        lines = "".join(f"{u}:{{PLAIN}}{p}\n" for u, p in self._users.items())
        tmp = self.root / "users.passwd.tmp"
        tmp.write_text(lines)
        os.replace(tmp, self.root / "users.passwd")

    def add_user(self, name: str, password: str) -> None:
        self.add_users({name: password})

    def add_users(self, users: dict[str, str]) -> None:
        """Many users with one passwd-file write and one wait (Dovecot re-reads it once a second)."""
        self._users.update(users)
        self._write_passwd()
        dv = pwd.getpwnam("dovecot")
        for name in users:
            home = self.mail_root / name
            home.mkdir(parents=True, exist_ok=True)
            os.chown(home, dv.pw_uid, dv.pw_gid)
        if self.proc is not None and users:
            name = list(users)[-1]
            self._wait_for_login(name, users[name])

    def _wait_for_login(self, name: str, password: str) -> None:
        """Dovecot re-reads the passwd-file at most once a second: wait until it knows the new user."""
        import imaplib

        # A login tried within the second of the last re-read fails, and Dovecot then holds back further
        # logins from this address for seconds (auth penalty); waiting for the second to turn costs less.
        time.sleep(1.02 - time.time() % 1)
        deadline = time.time() + 5
        while True:
            try:
                c = imaplib.IMAP4("127.0.0.1", self.port)
                try:
                    c.login(name, password)
                    c.logout()
                    return
                except imaplib.IMAP4.error:
                    c.shutdown()
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"dovecot does not accept the new user {name}")
            time.sleep(0.1)

    def start(self) -> "DovecotServer":
        r = self.root
        (r / "run").mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        dv = pwd.getpwnam("dovecot")
        os.chown(self.mail_root, dv.pw_uid, dv.pw_gid)
        (r / "master.passwd").write_text(f"{self.master_user[0]}:{{PLAIN}}{self.master_user[1]}\n")
        self._write_passwd()
        ssl_conf = "ssl = no\n"
        listeners = f"  inet_listener imap {{\n    port = {self.port}\n    address = 127.0.0.1\n  }}\n"
        if self.tls:
            key, crt = make_cert(r)
            self.cafile = crt
            ssl_conf = f"ssl = yes\nssl_cert = <{crt}\nssl_key = <{key}\n"
            listeners += f"  inet_listener imaps {{\n    port = {self.tls_port}\n    address = 127.0.0.1\n    ssl = yes\n  }}\n"
        caps = ""
        if not self.uidplus:
            caps = ("imap_capability = IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY "
                    "THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT "
                    "CHILDREN NAMESPACE CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
                    "LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY LITERAL+ NOTIFY SPECIAL-USE\n")
        mailboxes = "".join(f'  mailbox "{name}" {{\n    special_use = {use}\n  }}\n'
                            for name, use in self.special_use.items())
        zlib_conf = "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n" if self.compress else ""
        (r / "dovecot.conf").write_text(f"""protocols = imap
listen = 127.0.0.1
base_dir = {r}/run
state_dir = {r}/run
log_path = {r}/dovecot.log
{ssl_conf}disable_plaintext_auth = no
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 100
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_introspection else ""}
auth_failure_delay = 0
auth_master_user_separator = *
mail_location = {self.mail_location}
mail_fsync = optimized
{caps}namespace inbox {{
  inbox = yes
  separator = {self.separator}
  prefix = {self.prefix}
{mailboxes}}}
service imap-login {{
{listeners}}}
service imap {{
  process_limit = 200
}}
passdb {{
  driver = passwd-file
  args = {r}/master.passwd
  master = yes
}}
passdb {{
  driver = passwd-file
  args = {r}/users.passwd
}}
{self._extra_passdb()}
{self._oauth2_passdb()}
{zlib_conf}userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={self.home or str(self.mail_root) + "/%u"}
}}
{self.extra_conf}
""")
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(r / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not start listening")

    def _extra_passdb(self) -> str:
        if self.passdb_file is None:
            return ""
        copy = self.root / "migrated.passwd"
        shutil.copyfile(self.passdb_file, copy)
        os.chmod(copy, 0o644)  # readable by Dovecot's auth process in this throwaway server
        return f"passdb {{\n  driver = passwd-file\n  args = {copy}\n}}"

    def _oauth2_passdb(self) -> str:
        """Dovecot's oauth2 passdb as its documentation configures one for an RFC 7662 server (the WSO2
        example): the token POSTed to the introspection URL, the user name and "active" read from the answer."""
        if not self.oauth2_introspection:
            return ""
        conf = self.root / "dovecot-oauth2.conf.ext"
        conf.write_text(f"introspection_mode = post\nintrospection_url = {self.oauth2_introspection}\n"
                        "username_attribute = username\nactive_attribute = active\nactive_value = true\n"
                        "force_introspection = yes\n")
        os.chmod(conf, 0o644)
        return f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {conf}\n}}"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "dovecot.log").read_text(errors="replace")
        except OSError:
            return ""


def available() -> bool:
    return shutil.which("dovecot") is not None and os.geteuid() == 0


@contextmanager
def nethserver_vmail(vmail: Path, passdb_file: Path, *, login: str = "n") -> Iterator[DovecotServer]:
    """A started Dovecot that serves a migrated NethServer mail tree as NethServer's own Dovecot does:
    Maildir++ under ``vmail/<login>/Maildir`` with listescape (backslash), the acl plugin (vfile, rights in
    per-folder ``dovecot-acl`` files) and a shared namespace ``Shared/<login>/`` listed from
    ``vmail/shared-mailboxes.db``.  ``login`` is Dovecot's variable for the part of the login that names a
    mail directory: ``n`` where users log in as ``alice`` (NS8), ``u`` where they log in as
    ``alice@example.com`` (NethServer 7, an imported SME Server).

    Dovecot's log is printed when it holds an error, so that a wrong answer from the server in a test comes
    with the server's own reason.
    """
    conf = nethserver_conf(vmail, login)
    server = DovecotServer(mail_location=f"maildir:{vmail}/%{login}/Maildir", passdb_file=passdb_file,
                           extra_conf=conf).start()
    try:
        yield server
    finally:
        log = server.log()
        server.stop()
        if "Error" in log or "Panic" in log:
            print(log[-4000:])


def nethserver_conf(vmail: Path, login: str, *, private_index: bool = False, public: bool = False) -> str:
    """The plugins and namespaces of NethServer's Dovecot over ``vmail`` (see :func:`nethserver_vmail`).
    ``private_index``: each reader's flags of another user's folders in ``~/Maildir/shared/<owner>``
    (``INDEXPVT``, NethServer without SharedSeen); ``public``: ``Public/`` over ``vmail/vmail/Maildir`` with
    the reader's flags in ``~/Maildir/public``."""
    pvt = f":INDEXPVT=~/Maildir/shared/%%{login}" if private_index else ""
    pub = f"""namespace PUBLIC {{
  type = public
  separator = /
  prefix = Public/
  subscriptions = no
  list = children
  location = maildir:{vmail}/vmail/Maildir:INDEXPVT=~/Maildir/public
}}
""" if public else ""
    return f"""
mail_plugins = $mail_plugins acl listescape
protocol imap {{
  mail_plugins = $mail_plugins imap_acl
}}
namespace shared {{
  type = shared
  separator = /
  prefix = Shared/%%{login}/
  location = maildir:{vmail}/%%{login}/Maildir{pvt}
  subscriptions = no
  list = children
}}
{pub}plugin {{
  acl = vfile
  acl_shared_dict = file:{vmail}/shared-mailboxes.db
  listescape_char = "\\\\"
}}
"""
