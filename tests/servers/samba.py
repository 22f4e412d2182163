"""A throwaway Samba Active Directory domain controller (Debian's ``samba``) on a loopback address, for tests.

``samba-tool domain provision`` writes a new domain into a directory of the test's own (a few seconds; done
once per session by the fixture that uses it); the ``samba`` process then serves that domain's LDAP on
``127.0.0.X:389``.  A domain controller listens on fixed ports (389, 88, 53...), so instead of a free port
it gets a loopback address of its own: with ``bind interfaces only`` and ``interfaces = 127.0.0.X/8``
Samba binds that address only, whatever else the machine runs on 127.0.0.1.  Only the LDAP service runs
(``server services = ldap, cldap``: no DNS, Kerberos, SMB), and simple binds over plain LDAP are allowed
(``ldap server require strong auth = no``), as a migration tool reading a DC on a trusted network would
be allowed to; everything else is the real DC: its schema, ranged retrieval, userAccountControl.

Provisioning and filling a domain with a few thousand objects takes a minute on a busy machine, so
:meth:`SambaDC.start_from_template` keeps the filled domain, stopped, under ``MAILMIGRATE_TEST_CACHE``
(default /var/tmp/mailmigrate-test-cache), keyed on the samba version and a key naming the contents, and
later sessions start a copy of it.

Use::

    dc = SambaDC(tmp_path / "dc").start()
    ldap3.Connection(dc.url, dc.admin_dn, dc.admin_pw, auto_bind=True)
    dc.stop()
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from servers.processes import ldap_answers, stop_group

SETUP = Path("/usr/share/samba/setup/ad-schema")
CACHE = Path(os.environ.get("MAILMIGRATE_TEST_CACHE", "/var/tmp/mailmigrate-test-cache"))


def samba_version() -> str:
    out = subprocess.run(["samba", "-V"], capture_output=True, text=True, check=True).stdout
    return out.split()[-1].replace("/", "_")


def _regular_files_only(directory, names):
    """copytree's ignore: sockets and pipes a stopped samba left behind cannot be copied, nor are they needed."""
    return [n for n in names if not (os.path.isdir(os.path.join(directory, n)) or
                                      os.path.isfile(os.path.join(directory, n)))]


def available() -> bool:
    """Root (samba drops privileges itself), the samba binaries and the provisioning data (samba-ad-provision)."""
    return os.geteuid() == 0 and bool(shutil.which("samba")) and bool(shutil.which("samba-tool")) and SETUP.is_dir()


def _free_address() -> str:
    """A 127.0.0.X whose port 389 nobody holds (tried, not assumed)."""
    candidates = list(range(100, 250))
    random.shuffle(candidates)
    for x in candidates:
        addr = f"127.0.0.{x}"
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((addr, 389))
            except OSError:
                continue
            return addr
    raise RuntimeError("no loopback address with port 389 free")


class SambaDC:
    def __init__(self, root: Path, realm: str = "CORP.EXAMPLE", domain: str = "CORP",
                 admin_pw: str = "Adm1n-Passw0rd!"):
        self.root = Path(root)
        self.realm = realm
        self.domain = domain
        self.admin_pw = admin_pw
        self.base_dn = ",".join(f"DC={p}" for p in realm.lower().split("."))
        self.admin_dn = f"CN=Administrator,CN=Users,{self.base_dn}"
        self.address: str | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ldap://{self.address}"

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "smb.conf"

    def provision(self) -> None:
        if self.conf.exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        p = subprocess.run(
            ["samba-tool", "domain", "provision", f"--realm={self.realm}", f"--domain={self.domain}",
             "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", f"--adminpass={self.admin_pw}",
             "--host-name=dc1", f"--targetdir={self.root}"],
            capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"samba-tool domain provision failed ({p.returncode}):\n{p.stderr[-3000:]}")

    def _write_conf(self) -> None:
        """The provisioned smb.conf, with this run's address and everything the process writes kept inside
        ``root`` (logs, pid, sockets), and only the LDAP services."""
        r = self.root
        (r / "run").mkdir(exist_ok=True)
        own = {
            "interfaces": f"{self.address}/8",
            "bind interfaces only": "yes",
            "server services": "ldap, cldap",
            "ldap server require strong auth": "no",
            "log file": str(r / "samba.log"),
            "logging": "file",
            "pid directory": str(r / "run"),
            "ncalrpc dir": str(r / "run" / "ncalrpc"),
            "winbindd socket directory": str(r / "run" / "winbindd"),
        }
        out, in_global = [], False
        for line in self.conf.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith("["):
                if in_global:
                    out += [f"\t{k} = {v}" for k, v in own.items()]
                in_global = stripped.lower() == "[global]"
            elif in_global and stripped.split("=", 1)[0].strip().lower() in own:
                continue
            out.append(line)
        if in_global:
            out += [f"\t{k} = {v}" for k, v in own.items()]
        self.conf.write_text("\n".join(out) + "\n")

    def start_from_template(self, key: str, populate) -> "SambaDC":
        """Start a copy of the domain that ``populate(dc)`` fills (called once, on a started DC, the first
        time this samba version meets ``key``; change the key when ``populate`` changes)."""
        cache = CACHE / f"samba-{samba_version()}-{key}"
        if not (cache / "etc" / "smb.conf").exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            build = SambaDC(Path(tempfile.mkdtemp(prefix=f".{key}-", dir=CACHE)) / "dc", self.realm, self.domain,
                            self.admin_pw).start()
            try:
                populate(build)
            finally:
                build.stop()
            (build.root / "built-at").write_text(str(build.root))  # the paths its smb.conf names
            try:
                os.rename(build.root, cache)  # atomic: a concurrent builder's copy wins, ours goes
            except OSError:
                shutil.rmtree(build.root, ignore_errors=True)
            shutil.rmtree(build.root.parent, ignore_errors=True)
        shutil.copytree(cache, self.root, symlinks=True, ignore=_regular_files_only)
        conf = self.conf.read_text()
        self.conf.write_text(conf.replace((cache / "built-at").read_text(), str(self.root)))
        return self.start()

    def start(self, timeout: float = 60.0) -> "SambaDC":
        self.provision()
        last = ""
        for _ in range(3):  # another test may take the address between our check and samba's bind
            self.address = _free_address()
            self._write_conf()
            log = open(self.root / "samba.out", "wb")
            self.proc = subprocess.Popen(["samba", "--foreground", "--no-process-group", "-s", str(self.conf)],
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                if ldap_answers(self.address, 389):
                    return self
                time.sleep(0.2)
            last = (self.root / "samba.out").read_text(errors="replace")[-2000:]
            logf = self.root / "samba.log"
            if logf.exists():
                last += logf.read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"samba did not serve LDAP on loopback:\n{last}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        stop_group(p, 20)
