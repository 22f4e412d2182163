"""A throwaway OpenLDAP server (Debian's slapd) on loopback, for tests.

The configuration is a real cn=config tree loaded with ``slapadd -n0`` from LDIF written here: core,
cosine, inetorgperson and nis from /etc/ldap/schema, plus any extra schemas a test passes (``.ldif`` files
as they are, ``.schema`` files converted to cn=config LDIF by :func:`schema_to_ldif`, the way
``slaptest -f ... -F ...`` would, so that e.g. zarafa.schema and kopano.schema can be loaded as shipped).
The data lives in an mdb database under ``root``; slapd runs in the foreground as a child process on
``ldap://127.0.0.1:<free port>`` and ``stop()`` kills it.

Use::

    srv = SlapdServer(tmp_path / "ldap", schemas=[Path("kopano.schema")]).start()
    ldap3.Connection(srv.url, srv.admin_dn, srv.admin_pw, auto_bind=True)
    srv.stop()
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable

from mailmigrate.formats.ldif import LdifEntry, dump_ldif, parse_ldif
from mailmigrate.formats.slapd_schema import schema_config_entry
from servers.processes import ldap_answers, stop_group

SCHEMA_DIR = Path("/etc/ldap/schema")
BASE_SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
MODULE_PATH = "/usr/lib/ldap"


def ssha(password: str) -> str:
    """An RFC 2307 {SSHA} hash (SHA-1 of password+salt, then salt, base64), as slappasswd makes."""
    salt = secrets.token_bytes(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- .schema -> cn=config LDIF ------------------------------------------------------------------------



def schema_to_ldif(text: str, name: str) -> LdifEntry:
    """slapd.conf schema syntax as one ``cn=<name>,cn=schema,cn=config`` entry: the product's own converter
    (formats/slapd_schema.py), so the fixture loads schemas the way the Kopano runbook does."""
    return schema_config_entry(text, name)


def _schema_entries(path: Path) -> list[LdifEntry]:
    if path.suffix == ".ldif":
        return parse_ldif(path.read_bytes(), path)
    return [schema_to_ldif(path.read_text(), path.stem)]


def _suffix_entry(suffix: str) -> LdifEntry:
    rdn = suffix.split(",", 1)[0]
    attr, _, value = rdn.partition("=")
    attr = attr.strip().lower()
    v = value.strip().encode()
    if attr == "dc":
        return LdifEntry(suffix, {"objectClass": [b"dcObject", b"organization"], "dc": [v], "o": [v]})
    if attr == "o":
        return LdifEntry(suffix, {"objectClass": [b"organization"], "o": [v]})
    if attr == "ou":
        return LdifEntry(suffix, {"objectClass": [b"organizationalUnit"], "ou": [v]})
    raise ValueError(f"cannot make a root entry for suffix {suffix!r}")


class SlapdServer:
    def __init__(self, root: Path, suffix: str = "dc=example,dc=com", *, schemas: Iterable[Path] = (),
                 admin_pw: str = "secret", modules: Iterable[str] = (), ppolicy: bool = False,
                 db_options: dict[str, list[str]] | None = None, tls: tuple[Path, Path] | None = None):
        """``modules``: more slapd modules to load (e.g. ``pw-pbkdf2``, ``argon2``, so binds verify those
        hashes); ``ppolicy``: load the ppolicy overlay on the database (pwdAccountLockedTime locks an
        account); ``db_options``: more olc attributes of the database (e.g. ``olcLimits``); ``tls``: (certificate,
        key) PEM files: slapd also serves ``ldaps_url`` with them."""
        self.tls = tls
        self.tls_port: int | None = None
        self.modules = list(modules) + (["ppolicy"] if ppolicy else [])
        self.ppolicy = ppolicy
        self.db_options = db_options or {}
        self.root = Path(root)
        self.policy_dn = f"cn=default,ou=Policies,{suffix}"
        self.suffix = suffix
        self.schemas = [Path(s) for s in schemas]
        self.admin_pw = admin_pw
        self.admin_dn = f"cn=admin,{suffix}"
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._built = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    # -- build ----------------------------------------------------------------------------------------

    def _config_entries(self) -> list[LdifEntry]:
        r = self.root
        e = [
            LdifEntry("cn=config", {"objectClass": [b"olcGlobal"], "cn": [b"config"],
                                    "olcPidFile": [str(r / "slapd.pid").encode()],
                                    "olcArgsFile": [str(r / "slapd.args").encode()],
                                    # {CRYPT} hashes made by slapd itself are SHA-512 crypt, as Linux makes
                                    "olcPasswordCryptSaltFormat": [b"$6$%.16s"],
                                    **({"olcTLSCertificateFile": [str(self.tls[0]).encode()],
                                        "olcTLSCertificateKeyFile": [str(self.tls[1]).encode()]}
                                       if self.tls else {})}),
            LdifEntry("cn=module{0},cn=config", {"objectClass": [b"olcModuleList"], "cn": [b"module{0}"],
                                                 "olcModulePath": [MODULE_PATH.encode()],
                                                 "olcModuleLoad": [f"{{{i}}}{m}".encode() for i, m in
                                                                   enumerate(["back_mdb", *self.modules])]}),
            LdifEntry("cn=schema,cn=config", {"objectClass": [b"olcSchemaConfig"], "cn": [b"schema"]}),
        ]
        for name in BASE_SCHEMAS:
            e += _schema_entries(SCHEMA_DIR / f"{name}.ldif")
        for s in self.schemas:
            e += _schema_entries(s)
        e += [
            LdifEntry("olcDatabase={-1}frontend,cn=config", {
                "objectClass": [b"olcDatabaseConfig", b"olcFrontendConfig"],
                "olcDatabase": [b"{-1}frontend"], "olcSizeLimit": [b"unlimited"]}),
            LdifEntry("olcDatabase={0}config,cn=config", {
                "objectClass": [b"olcDatabaseConfig"], "olcDatabase": [b"{0}config"],
                "olcAccess": [b"{0}to * by * none"]}),
            LdifEntry("olcDatabase={1}mdb,cn=config", {
                "objectClass": [b"olcDatabaseConfig", b"olcMdbConfig"],
                "olcDatabase": [b"{1}mdb"],
                "olcSuffix": [self.suffix.encode()],
                "olcDbDirectory": [str(r / "data").encode()],
                "olcRootDN": [self.admin_dn.encode()],
                "olcRootPW": [ssha(self.admin_pw).encode()],
                "olcDbMaxSize": [b"268435456"],
                "olcDbIndex": [b"objectClass eq", b"uid eq", b"mail eq"],
                "olcAccess": [b"{0}to attrs=userPassword by self write by anonymous auth by * none",
                              b"{1}to * by * read"],
                "olcSizeLimit": [b"unlimited"],
                **{k: [v.encode() for v in vs] for k, vs in self.db_options.items()}}),
        ]
        if self.ppolicy:
            e.append(LdifEntry("olcOverlay={0}ppolicy,olcDatabase={1}mdb,cn=config", {
                "objectClass": [b"olcOverlayConfig", b"olcPPolicyConfig"], "olcOverlay": [b"{0}ppolicy"],
                "olcPPolicyDefault": [self.policy_dn.encode()]}))
        return e

    def build(self) -> None:
        """Write the cn=config tree and the root entry with slapadd (once; a restart reuses them)."""
        if self._built or (self.root / "slapd.d" / "cn=config.ldif").exists():
            self._built = True
            return
        for d in ("slapd.d", "data"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        cfg = self.root / "config.ldif"
        cfg.write_bytes(dump_ldif(self._config_entries()))
        self._slapadd(["-n0", "-F", str(self.root / "slapd.d"), "-l", str(cfg)])
        base = self.root / "base.ldif"
        entries = [_suffix_entry(self.suffix)]
        if self.ppolicy:
            # the default policy: without one ppolicy enforces nothing, not even pwdAccountLockedTime
            entries += [
                LdifEntry(f"ou=Policies,{self.suffix}", {"objectClass": [b"organizationalUnit"], "ou": [b"Policies"]}),
                LdifEntry(self.policy_dn, {"objectClass": [b"device", b"pwdPolicy"], "cn": [b"default"],
                                           "pwdAttribute": [b"userPassword"], "pwdLockout": [b"TRUE"]})]
        base.write_bytes(dump_ldif(entries))
        self._slapadd(["-n1", "-F", str(self.root / "slapd.d"), "-l", str(base)])
        self._built = True

    def _slapadd(self, args: list[str]) -> None:
        p = subprocess.run(["slapadd", *args], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"slapadd {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")

    # -- run ------------------------------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> "SlapdServer":
        if shutil.which("slapd") is None and not Path("/usr/sbin/slapd").exists():
            raise RuntimeError("slapd is not installed (apt-get install slapd)")
        self.build()
        last_err = ""
        for _ in range(5):  # another process may take the free port between our check and slapd's bind
            self.port = free_port()
            self.tls_port = free_port() if self.tls else None
            urls = self.url + (f" {self.ldaps_url}" if self.tls else "")
            log = open(self.root / "slapd.log", "wb")
            self.proc = subprocess.Popen(
                ["/usr/sbin/slapd", "-d", "0", "-F", str(self.root / "slapd.d"), "-h", urls],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if ldap_answers("127.0.0.1", self.port):
                    return self
                time.sleep(0.05)
            last_err = (self.root / "slapd.log").read_text(errors="replace")[-2000:]
            self.stop()
        raise RuntimeError(f"slapd did not start on loopback:\n{last_err}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        stop_group(p, 10)

    def __enter__(self) -> "SlapdServer":
        # `with srv.start():` is the common spelling; starting again here would orphan the first slapd.
        if self.proc is not None and self.proc.poll() is None:
            return self
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
