"""A Dovecot passwd-file as a directory: users with a password, uid/gid, home and userdb extra fields.

This is what a plain Dovecot target authenticates against, so a migration can hand users over with their
existing hashes: every scheme Dovecot verifies is accepted as it is (crypt strings from /etc/shadow or
LDAP ``{CRYPT}`` included).  Clear text is stored as ``{SSHA512}``, never as PLAIN.  Aliases, forwards
and groups have no place in the file; copy reports them as not migrated.

``uid``/``gid``/``home`` given in the URL win over the source's POSIX attributes (uidNumber, gidNumber,
homeDirectory): they say how this Dovecot runs (one virtual-mail user, homes under its own tree), which the
source's login accounts know nothing about.  Without them the source's values are written.  A disabled
user is written with ``nologin`` (Dovecot refuses the login even with the right password).

Writes go to a temporary file that replaces the old one, keeping its owner and mode (a new file is
0600; it is never made world-readable, it holds hashes).  Entries not touched stay as they were.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FormatError
from ..formats.atomic import replace_file
from ..formats.passwdfile import PasswdEntry, dump_passwd_file, parse_passwd_file
from ..model import Secret
from . import passwords
from .base import Directory, DirectoryError, DirectoryWriter, PasswordHash, User, fold

DOVECOT_SCHEMES = frozenset({
    "SSHA", "SHA", "SSHA256", "SSHA512", "SHA256", "SHA512", "SMD5", "LDAP-MD5", "PLAIN-MD5",
    "CRYPT", "DES-CRYPT", "MD5-CRYPT", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT",
    "PBKDF2", "ARGON2I", "ARGON2ID", "CRAM-MD5", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
})


class PasswdFileDirectory(DirectoryWriter):
    kinds = frozenset({"users"})
    fields = {"users": frozenset({"real_name", "enabled", "quota"})}
    password_schemes = DOVECOT_SCHEMES
    accepts_clear = True

    def __init__(self, path: str | os.PathLike, *, uid: str = "", gid: str = "", home_template: str = "",
                 must_exist: bool = False):
        """``uid``/``gid``/``home_template`` (``{login}`` is replaced) fill new users' userdb fields.

        A missing file is an empty directory, for a target written for the first time; ``must_exist`` (a
        source, a checklist's sides) makes it an error instead, since a mistyped path would otherwise read
        as "no users" and a comparison of two of them as a perfect match."""
        self.path = Path(path)
        self.must_exist = must_exist
        self.uid, self.gid, self.home_template = uid, gid, home_template
        self._entries: list[PasswdEntry] | None = None
        self._dirty = False

    def describe(self) -> str:
        return f"passwd-file:{self.path}"

    def _load(self) -> list[PasswdEntry]:
        if self._entries is None:
            try:
                self._entries = parse_passwd_file(self.path.read_bytes(), self.path)
            except FileNotFoundError:
                if self.must_exist:
                    raise DirectoryError(f"{self.describe()}: no such file") from None
                self._entries = []
        return self._entries

    def read(self) -> Directory:
        d = Directory(name=self.describe())
        for e in self._load():
            extra = e.extra_dict()
            u = User(login=e.user, real_name=e.gecos, home=e.home or None, shell=e.shell or None,
                     password=passwords.from_dovecot(e.password))
            if u.password is None:
                u.password_note = "no password in the passwd-file"
            if e.uid.isdigit():
                u.uid = int(e.uid)
            if e.gid.isdigit():
                u.gid = int(e.gid)
            if isinstance(u.password, PasswordHash):
                u.password, locked = passwords.split_lock(u.password)
                if locked:
                    u.enabled, u.disabled_by = False, "locked crypt hash ('!')"
            if extra.get("nologin") in ("y", "yes") or "nologin" in extra:
                u.enabled, u.disabled_by = False, "nologin"
            q = extra.get("userdb_quota_rule", "")
            if q.startswith("*:bytes="):
                try:
                    u.quota = int(q[len("*:bytes="):])
                except ValueError:
                    pass
            if "@" in e.user:
                u.mail = e.user
            u.extra = {"passwd-file:" + k: [v] for k, v in extra.items()}
            d.add(u)
        return d

    def disabled_form(self, user: User) -> str:
        return "nologin (Dovecot refuses the login)"

    def _password_field(self, u: User) -> str:
        pw = u.password
        if isinstance(pw, Secret) and pw:
            pw = passwords.ssha512(pw)
        if pw is None:
            return ""
        adapted = passwords.adapt(pw, self.password_schemes)
        if adapted is None:
            raise DirectoryError(f"user {u.login}: {passwords.refusal(pw, self.password_schemes)}")
        return adapted.tagged()

    def _entry(self, u: User, old: PasswdEntry | None = None) -> PasswdEntry:
        if ":" in u.login or any(c.isspace() for c in u.login):
            raise DirectoryError(f"user {u.login!r}: a passwd-file login cannot hold ':' or blanks")
        extra = dict(old.extra_dict()) if old else {}
        extra.pop("nologin", None)
        extra.pop("reason", None)
        if not u.enabled:
            extra["nologin"] = "y"
            extra["reason"] = "disabled"
        if u.quota is not None:
            extra["userdb_quota_rule"] = f"*:bytes={u.quota}"
        else:
            extra.pop("userdb_quota_rule", None)
        gecos = (u.real_name or "").replace(":", " ").replace("\n", " ")

        def pick(url: str, source, kept: str) -> str:
            return url or (str(source) if source is not None else kept)

        home = self.home_template.replace("{login}", u.login)
        return PasswdEntry(
            u.login, self._password_field(u),
            pick(self.uid, u.uid, old.uid if old else ""),
            pick(self.gid, u.gid, old.gid if old else ""),
            gecos,
            home or (old.home if old and old.home else u.home or ""),
            old.shell if old else "",
            [f"{k}={v}" if v != "" else k for k, v in extra.items()],
        )

    def add(self, obj) -> None:
        if not isinstance(obj, User):
            raise DirectoryError(f"{self.describe()}: a passwd-file holds users only")
        entries = self._load()
        if any(fold(e.user) == obj.key for e in entries):
            raise DirectoryError(f"{self.describe()}: user {obj.login} exists already")
        entries.append(self._entry(obj))
        self._dirty = True

    def update(self, old, new) -> None:
        entries = self._load()
        for i, e in enumerate(entries):
            if fold(e.user) == new.key:
                keep_pw = new.password is None or new.password == old.password
                entry = self._entry(new if not keep_pw else _without_password(new), e)
                if keep_pw:
                    entry.password = e.password
                entries[i] = entry
                self._dirty = True
                return
        raise DirectoryError(f"{self.describe()}: user {new.login} does not exist")

    def commit(self) -> None:
        if not self._dirty:
            return
        data = dump_passwd_file(self._load())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = self.path.stat()
            mode, owner = st.st_mode & 0o7777, (st.st_uid, st.st_gid)
        except FileNotFoundError:
            mode, owner = 0o600, None
        # Never world-readable: it holds hashes.  Someone allowed to replace the file but not to give it
        # away (an administrator in its group) still gets it written, owned by them.
        replace_file(self.path, data, mode & 0o660, owner=owner, owner_best_effort=True)
        self._dirty = False


def _without_password(u: User) -> User:
    from dataclasses import replace
    return replace(u, password=None)
