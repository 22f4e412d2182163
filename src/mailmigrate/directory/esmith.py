"""SME Server / NethService / NethServer e-smith ``accounts`` database, with the archive's ``/etc/shadow``.

The accounts db holds users, groups and pseudonyms; the hashes live in /etc/shadow (field 2), which a
backup archive carries as ``etc/shadow``.  Reading maps:

* ``user`` records: FirstName/LastName; forwards from SME's ``EmailForward`` (local|forward|both) with
  ``ForwardAddress`` or NethServer's ``MailForwardStatus``/``MailForwardAddress``/
  ``MailForwardKeepMessageCopy``; quota from ``MailQuotaType=custom`` + ``MailQuotaCustom`` (NS7 unit:
  0.1 GiB); ``Uid``/``Gid``; the password from the shadow file; a locked shadow hash (``!``) means disabled.
* ``group`` records: ``Members`` (comma list; a member that is itself a group is a nested group).
* ``pseudonym`` records: an alias to ``Account``; ``Visible=internal`` means reachable only from inside.
  Pseudonym keys are local parts; with ``domain`` given, user mail addresses are ``login@domain``.

Writing adds records in the same props and, when a shadow path is given, shadow lines with the crypt
hash (clear text is hashed as SHA-512 crypt first).  This writes the files of an unpacked archive or a
staging copy; on a live e-smith system the ``user-create`` events must still run to make real accounts.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

from ..formats import shacrypt
from ..formats.atomic import replace_file
from ..formats.esmith import EsmithDb, Record, read_esmith, write_esmith
from ..formats.shadow import ShadowEntry, dump_shadow, parse_shadow
from ..model import Secret
from . import passwords
from .base import Alias, Directory, DirectoryError, DirectoryWriter, Group, PasswordHash, User, fold

GIB = 1 << 30
QUOTA_UNIT = GIB / 10  # NS7 MailQuotaCustom is in tenths of a GiB


def _crypt_sha512(clear: Secret) -> PasswordHash:
    return PasswordHash("SHA512-CRYPT", Secret(shacrypt.make(clear.reveal(), "6")))


class EsmithDirectory(DirectoryWriter):
    kinds = frozenset({"users", "groups", "aliases"})
    fields = {
        "users": frozenset({"first_name", "last_name", "forwards", "keep_copy", "quota"}),
        "groups": frozenset({"members", "groups"}),
        "aliases": frozenset({"targets"}),
    }

    def __init__(self, accounts: str | os.PathLike, *, shadow: str | os.PathLike | None = None,
                 domain: str | None = None):
        self.accounts = Path(accounts)
        self.shadow = Path(shadow) if shadow else None
        self.domain = domain
        self._db: EsmithDb | None = None
        self._shadow: list[ShadowEntry] | None = None
        self._dirty_db = self._dirty_shadow = False
        self.password_schemes = passwords.CRYPT_SCHEMES if self.shadow else frozenset()
        self.accepts_clear = self.shadow is not None

    def describe(self) -> str:
        return f"esmith:{self.accounts}" + (f"?shadow={self.shadow}" if self.shadow else "")

    def _load(self) -> tuple[EsmithDb, list[ShadowEntry]]:
        if self._db is None:
            self._db = read_esmith(self.accounts)
            if self.shadow is not None:
                try:
                    self._shadow = parse_shadow(self.shadow.read_bytes(), self.shadow)
                except FileNotFoundError:
                    self._shadow = []
            else:
                self._shadow = []
        return self._db, self._shadow

    def _addr(self, local: str) -> str:
        return f"{local}@{self.domain}" if self.domain and "@" not in local else local

    def read(self) -> Directory:
        db, shadow = self._load()
        by_name = {e.name: e for e in shadow}
        d = Directory(name=self.describe(), domains=[self.domain] if self.domain else [])
        for key, r in db.of_type("user"):
            p = r.props
            u = User(login=key, first_name=p.get("FirstName", ""), last_name=p.get("LastName", ""),
                     mail=self._addr(key) if self.domain else None)
            u.real_name = " ".join(x for x in (u.first_name, u.last_name) if x)
            fw = p.get("EmailForward")
            if fw in ("forward", "both") and p.get("ForwardAddress"):
                u.forwards = [a.strip() for a in p["ForwardAddress"].split(",") if a.strip()]
                u.keep_copy = fw == "both"
            if p.get("MailForwardStatus") == "enabled" and p.get("MailForwardAddress"):
                u.forwards = [a.strip() for a in p["MailForwardAddress"].split(",") if a.strip()]
                u.keep_copy = p.get("MailForwardKeepMessageCopy", "yes") == "yes"
            if p.get("MailQuotaType") == "custom" and p.get("MailQuotaCustom", "").isdigit():
                u.quota = round(int(p["MailQuotaCustom"]) * QUOTA_UNIT)
            for prop, attr in (("Uid", "uid"), ("Gid", "gid")):
                if p.get(prop, "").isdigit():
                    setattr(u, attr, int(p[prop]))
            s = by_name.get(key)
            if s is None:
                u.password_note = "no shadow entry" if self.shadow else "no shadow file given"
            else:
                u.password = passwords.from_crypt(s.crypt_hash or "")
                u.enabled = not s.hash.startswith("!")
                if u.password is None:
                    u.password_note = "the shadow entry holds no hash (password never set)"
            d.add(u)
        groups = {k for k, _ in db.of_type("group")}
        for key, r in db.of_type("group"):
            members = [m.strip() for m in r.props.get("Members", "").split(",") if m.strip()]
            d.add(Group(key, members=[m for m in members if m not in groups],
                        groups=[m for m in members if m in groups], description=r.props.get("Description", ""),
                        mail=self._addr(key) if self.domain else None))
        for key, r in db.of_type("pseudonym"):
            target = r.props.get("Account", "")
            d.add(Alias(self._addr(key), [self._addr(target)] if target else [],
                        internal_only=r.props.get("Visible") == "internal"))
        return d

    # -- write ----------------------------------------------------------------------------------------

    def _local(self, address: str) -> str:
        local, _, dom = address.partition("@")
        if dom and self.domain and fold(dom) != fold(self.domain):
            raise DirectoryError(f"{address}: not in this server's domain {self.domain}")
        return local if dom else address

    def _user_record(self, u: User, old: Record | None) -> Record:
        props = dict(old.props) if old else {}
        first, last = u.first_name, u.last_name
        if not (first or last) and u.real_name:
            first, _, last = u.real_name.partition(" ")
        props["FirstName"], props["LastName"] = first or u.login, last or u.login
        for k in ("EmailForward", "ForwardAddress"):
            props.pop(k, None)
        if u.forwards:
            props["EmailForward"] = "both" if u.keep_copy else "forward"
            props["ForwardAddress"] = ",".join(u.forwards)
        else:
            props["EmailForward"] = "local"
        if u.quota is not None:
            props["MailQuotaType"] = "custom"
            props["MailQuotaCustom"] = str(math.ceil(u.quota / QUOTA_UNIT))
        elif props.get("MailQuotaType") == "custom":
            props["MailQuotaType"] = "default"
        if u.uid is not None:
            props["Uid"] = str(u.uid)
        if u.gid is not None:
            props["Gid"] = str(u.gid)
        return Record("user", props)

    def _set_shadow(self, u: User) -> None:
        pw = u.password
        if self.shadow is None or pw is None:
            return
        if isinstance(pw, Secret):
            pw = _crypt_sha512(pw)
        adapted = passwords.adapt(pw, self.password_schemes)
        if adapted is None:
            raise DirectoryError(f"user {u.login}: /etc/shadow cannot take a {{{pw.scheme}}} hash")
        h = ("" if u.enabled else "!") + adapted.value.reveal()
        _, shadow = self._load()
        for e in shadow:
            if e.name == u.login:
                e.hash = h
                break
        else:
            shadow.append(ShadowEntry(u.login, h, [""] * 7))
        self._dirty_shadow = True

    def add(self, obj) -> None:
        db, _ = self._load()
        if isinstance(obj, User):
            key = obj.login
            rec = self._user_record(obj, None)
        elif isinstance(obj, Group):
            key = obj.name
            rec = Record("group", {"Description": obj.description or obj.name,
                                   "Members": ",".join(obj.members + obj.groups)})
        elif isinstance(obj, Alias):
            key = self._local(obj.address)
            if len(obj.targets) != 1:
                raise DirectoryError(f"alias {obj.address}: an e-smith pseudonym has exactly one target, "
                                     f"not {len(obj.targets)}")
            rec = Record("pseudonym", {"Account": self._local(obj.targets[0])})
            if obj.internal_only:
                rec.props["Visible"] = "internal"
        else:
            raise DirectoryError(f"{self.describe()}: cannot hold a {type(obj).__name__}")
        if key in db:
            raise DirectoryError(f"{self.describe()}: {key} exists already (as a {db[key].type})")
        if isinstance(obj, User):
            self._set_shadow(obj)
        db[key] = rec
        self._dirty_db = True

    def update(self, old, new) -> None:
        db, _ = self._load()
        if isinstance(new, User):
            db[new.login] = self._user_record(new, db.get(new.login))
            if new.password is not None and new.password != old.password:
                self._set_shadow(new)
        elif isinstance(new, Group):
            rec = db.get(new.name) or Record("group")
            rec.props["Members"] = ",".join(new.members + new.groups)
            db[new.name] = rec
        elif isinstance(new, Alias):
            self.add(replace(new)) if self._local(new.address) not in db else None
            if len(new.targets) == 1:
                db[self._local(new.address)].props["Account"] = self._local(new.targets[0])
        self._dirty_db = True

    def commit(self) -> None:
        if self._dirty_db:
            write_esmith(self.accounts, self._db)
            self._dirty_db = False
        if self._dirty_shadow and self.shadow is not None:
            _replace(self.shadow, dump_shadow(self._shadow))
            self._dirty_shadow = False


def _replace(path: Path, data: bytes) -> None:
    """The shadow file keeps its mode, but never more than 0640: it holds hashes."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o600
    replace_file(path, data, mode & 0o640)
