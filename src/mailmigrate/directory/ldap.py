"""LDAP directories over ldap3: OpenLDAP (inetOrgPerson, posixAccount, posixGroup, groupOfNames,
nisMailAlias, Zarafa/Kopano schemas) read and written, Active Directory / Samba AD read.

What is read where:

* users: ``inetOrgPerson``/``posixAccount``/``zarafa-user``/``kopano-user`` entries (AD: person users);
  login from ``uid`` (AD: ``sAMAccountName``); the first ``mail`` is the primary address, further ``mail``
  values, ``zarafaAliases``/``kopanoAliases`` and AD ``proxyAddresses`` (``smtp:``) are aliases;
  ``userPassword`` is the password (AD never reveals one: the user gets a ``password_note`` instead);
  quota and enabled from the Zarafa/Kopano attributes (``*QuotaHard`` in MB, ``*Account``) or AD's
  ``userAccountControl``; ``*SendAsPrivilege`` is send-as.  Every other ``zarafa*``/``kopano*``
  attribute is kept in ``extra`` under ``kopano:<Suffix>`` so a Kopano target gets it back under its own
  prefix (the schemas differ by prefix only).
* groups: ``groupOfNames``/``groupOfUniqueNames`` (member DNs, which may be groups: nesting),
  ``posixGroup`` (``memberUid`` logins), Zarafa/Kopano groups, AD groups.
* aliases: ``nisMailAlias`` (cn = address, ``rfc822MailMember`` = targets).
* companies, contacts, address lists, dynamic groups: the Zarafa/Kopano object classes.

The writer puts users under ``ou=People``, groups under ``ou=Groups`` and aliases under ``ou=Aliases``
of the base DN (created when missing).  New groups take the shape the target's own tools expect
(``group_style``): ``groupOfNames`` with member DNs, or ``posix`` (``posixGroup`` with ``memberUid`` logins
and the source's ``gidNumber``, as NethServer's OpenLDAP provider keeps them: files owned by a group id must
still belong to that group after the move).  An existing group is updated in the shape it was read in, so a
posixGroup is never sent a ``member`` it cannot hold.  When the target's schema has ``kopano-user`` or
``zarafa-user`` the users get that class and the Kopano attributes too.  Clear-text passwords are hashed ({SSHA})
before they are sent, so the target never stores clear text.

Disabled accounts are read from every common marker: AD's ``userAccountControl`` bit 2 (514, 66050...),
``shadowExpire`` on or before today, a ``{CRYPT}!...`` hash locked the /etc/shadow way, ppolicy's
``pwdAccountLockedTime`` and the Kopano ``*Account`` flag.  They are written as ppolicy's permanent lock
(``pwdAccountLockedTime: 000001010000Z``) where the server knows that attribute (its ppolicy module is
loaded), else as a locked crypt hash; a user with some other hash and no ppolicy cannot be held disabled
(:meth:`LdapDirectory.can_disable`).

Active Directory splits a multi-valued attribute over 1,500 values (``member;range=0-1499``); the rest
is asked for here, range after range, rather than left to ldap3's automatic range handling.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from typing import Iterable

import ldap3
from ldap3.core import exceptions as lex
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from ..errors import AuthenticationFailed, ConfigError, ConnectionLost
from ..model import Secret
from ..formats import shacrypt
from . import passwords
from .base import (
    AddressList,
    Alias,
    Company,
    Contact,
    Directory,
    DirectoryError,
    DirectoryWriter,
    DynamicGroup,
    Group,
    PasswordHash,
    User,
    fold,
    password_scheme,
)

log = logging.getLogger(__name__)

PREFIXES = ("zarafa", "kopano")
AD_CAPABILITY = "1.2.840.113556.1.4.800"
UAC_DISABLED = 0x2
MB = 1024 * 1024
#: ppolicy's value for "locked until an administrator unlocks it".
PERMANENT_LOCK = "000001010000Z"
_RANGE = re.compile(r"^(?P<attr>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$", re.IGNORECASE)
#: shadowAccount attributes carried as ``extra["shadow:<name>"]``.
SHADOW_ATTRS = ("shadowLastChange", "shadowMin", "shadowMax", "shadowWarning", "shadowInactive",
                "shadowExpire", "shadowFlag")


def norm_dn(dn: str) -> str:
    """A DN in one spelling for comparisons: lower case, no blanks around separators."""
    try:
        return ",".join(f"{a.strip().lower()}={v.strip().lower()}" for a, v, _ in parse_dn(dn))
    except (lex.LDAPInvalidDnError, ValueError, TypeError):
        return dn.strip().lower()


def first_rdn_value(dn: str) -> str:
    try:
        return parse_dn(dn)[0][1]
    except Exception:
        return dn.split(",", 1)[0].partition("=")[2]


def _vals(entry: dict, name: str) -> list:
    low = name.lower()
    for k, v in entry.items():
        if k.lower() == low:
            if v is None:
                return []
            return list(v) if isinstance(v, (list, tuple)) else [v]
    return []


def _txt(entry: dict, name: str) -> list[str]:
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in _vals(entry, name)]


def _one(entry: dict, name: str, default=None):
    v = _txt(entry, name)
    return v[0] if v else default


def _kop(entry: dict, suffix: str) -> list[str]:
    for p in PREFIXES:
        v = _txt(entry, p + suffix)
        if v:
            return v
    return []


def _classes(entry: dict) -> set[str]:
    return {c.lower() for c in _txt(entry, "objectClass")}


def _kop_name(entry: dict, suffix: str) -> str:
    for p in PREFIXES:
        if _txt(entry, p + suffix):
            return p + suffix
    return PREFIXES[0] + suffix


def _critical(entry: dict) -> bool:
    return (_one(entry, "isCriticalSystemObject") or "").upper() == "TRUE"


def _without_builtins(entries: list, what: str, d: Directory) -> list:
    """AD entries less the domain's own (Administrator, Guest, krbtgt, Domain Users...: not people or teams to
    move), which the reading names in a note."""
    builtin = [_one(e, "sAMAccountName") or dn for dn, e in entries if _critical(e)]
    if builtin:
        d.notes.append(f"Active Directory: {len(builtin)} built-in {what} (isCriticalSystemObject) not read: "
                       f"{', '.join(sorted(builtin, key=str.casefold))}")
    return [(dn, e) for dn, e in entries if not _critical(e)]


def _has_kop_class(classes: set[str], kind: str) -> bool:
    return any(f"{p}-{kind}" in classes for p in PREFIXES)


_HANDLED_SUFFIXES = {"aliases", "quotahard", "account", "sendasprivilege", "admin", "filter"}

#: ``group_style`` values, as written in a URL (case-blind) -> the spelling kept.
GROUP_STYLES = {"groupofnames": "groupOfNames", "posix": "posix"}
_MEMBER_CLASSES = ("groupofnames", "groupofuniquenames", "posixgroup")


class LdapDirectory(DirectoryWriter):
    """One LDAP directory.  ``flavor`` is ``auto`` (asks the root DSE), ``openldap`` or ``ad``.

    ``group_style`` is the shape of the groups this writer creates: ``groupOfNames`` (the default) or
    ``posix``; with ``posix`` the gid is one of the fields compared, so a group whose gidNumber differs
    is seen as different rather than as the same group.
    """

    password_schemes = frozenset({"SSHA", "SHA", "SMD5", "LDAP-MD5", "CRYPT"})
    accepts_clear = True

    def __init__(self, url: str, base_dn: str, *, bind_dn: str | None = None, password: Secret | None = None,
                 flavor: str = "auto", starttls: bool = False, insecure: bool = False,
                 users_ou: str = "ou=People", groups_ou: str = "ou=Groups", aliases_ou: str = "ou=Aliases",
                 timeout: int = 30, group_style: str = "groupOfNames", cafile: str | None = None,
                 range_step: int | None = None):
        if flavor not in ("auto", "openldap", "ad"):
            raise ConfigError(f"unknown LDAP flavor {flavor!r} (auto, openldap, ad)")
        style = GROUP_STYLES.get(str(group_style).lower())
        if style is None:
            raise ConfigError(f"unknown LDAP group_style {group_style!r} ({', '.join(GROUP_STYLES.values())})")
        self.group_style = style
        self.url = url
        self.base_dn = base_dn
        self.bind_dn = bind_dn
        self._password = password
        self.flavor = flavor
        self.starttls = starttls
        self.insecure = insecure
        self.cafile = cafile
        #: AD only: ask for group members ``range_step`` at a time instead of taking the server's own
        #: MaxValRange (1,500 on AD); Samba hands out every value unless asked for a range.
        self.range_step = range_step
        self.users_ou, self.groups_ou, self.aliases_ou = users_ou, groups_ou, aliases_ou
        self.timeout = int(timeout)
        self._conn: ldap3.Connection | None = None
        self._kop_prefix: str | None = None  # "kopano"/"zarafa" when the target schema has it
        self._dn: dict[tuple[str, str], str] = {}  # (kind, folded name) -> DN
        self._group_classes: dict[str, set[str]] = {}  # folded group name -> its object classes, lower case
        self._schema_classes: set[str] = set()
        self._schema_attrs: set[str] = set()
        self._containers: set[str] = set()  # ou DNs known to exist (looked up or made once per writer)
        self.kinds = frozenset({"users", "groups", "aliases"})  # narrowed to the schema on connect
        self.fields = {
            "users": frozenset({"real_name", "first_name", "last_name", "mail", "aliases", "enabled"}),
            "groups": frozenset({"members", "groups", "mail"} | ({"gid"} if style == "posix" else set())),
            "aliases": frozenset({"targets"}),
        }

    def describe(self) -> str:
        return f"{self.url}/{self.base_dn}"

    # -- connection -----------------------------------------------------------------------------------

    def _connect(self) -> ldap3.Connection:
        if self._conn is not None:
            return self._conn
        tls = None
        if self.url.startswith("ldaps://") or self.starttls:
            tls = ldap3.Tls(validate=ssl.CERT_NONE if self.insecure else ssl.CERT_REQUIRED,
                            ca_certs_file=self.cafile or None)
        server = ldap3.Server(self.url, get_info=ldap3.ALL, tls=tls, connect_timeout=self.timeout)
        try:
            conn = ldap3.Connection(server, user=self.bind_dn,
                                    password=self._password.reveal() if self._password else None,
                                    receive_timeout=self.timeout, raise_exceptions=False,
                                    # ranges are completed here (_complete_ranges); ldap3's "empty
                                    # attributes" pass breaks on a ranged answer when auto_range is off
                                    auto_range=False, return_empty_attributes=False)
            if not conn.open() and conn.closed:
                raise ConnectionLost(f"{self.describe()}: cannot connect")
            if self.starttls and not conn.start_tls():
                raise DirectoryError(f"{self.describe()}: StartTLS refused: {conn.result.get('description')}")
            if not conn.bind():
                raise AuthenticationFailed(
                    f"{self.describe()}: bind as {self.bind_dn or '(anonymous)'} refused: "
                    f"{conn.result.get('description')}")
        except lex.LDAPSocketOpenError as e:
            raise ConnectionLost(f"{self.describe()}: cannot connect: {e}") from None
        except lex.LDAPSSLConfigurationError as e:
            raise ConfigError(f"{self.describe()}: TLS setup: {e}") from None
        except lex.LDAPException as e:
            raise DirectoryError(f"{self.describe()}: {type(e).__name__}: {e}") from None
        self._conn = conn
        info = server.info
        if self.flavor == "auto":
            # ldap3 lists a root DSE's capabilities as (oid, kind, name, vendor) tuples: compare the OIDs
            caps = {c[0] if isinstance(c, tuple) else c for c in
                    list(info.supported_features or []) + list(info.other.get("supportedCapabilities") or [])}
            self.flavor = "ad" if AD_CAPABILITY in caps else "openldap"
        names = {n.lower() for n in server.schema.object_classes} if server.schema is not None else set()
        self._schema_classes = names
        if server.schema is not None:
            self._schema_attrs = {n.lower() for n in server.schema.attribute_types}
        for p in PREFIXES[::-1]:
            if f"{p}-user" in names:
                self._kop_prefix = p
                break
        # aliases need nisMailAlias (misc.schema), which a minimal OpenLDAP does not load
        self.kinds = frozenset({"users", "groups"} | ({"aliases"} if "nismailalias" in names else set()))
        if self._kop_prefix:
            self.kinds |= {"contacts", "companies"}
            self.fields = dict(self.fields, users=self.fields["users"] | {"quota", "enabled", "send_as", "admin"})
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.unbind()
            except Exception:
                pass
            self._conn = None

    def _check_result(self, conn, what: str, got: int) -> None:
        code = conn.result.get("result") if conn.result else None
        if code in (0, None):
            return
        if code == 4:  # sizeLimitExceeded: a partial reading must never pass for the whole directory
            raise DirectoryError(
                f"{self.describe()}: search {what} stopped after {got} entries: sizeLimitExceeded.  The server "
                f"limits how many entries {self.bind_dn or 'an anonymous bind'} may read (OpenLDAP: olcSizeLimit "
                f"/ olcLimits size.prtotal for that DN; Active Directory: MaxPageSize).  Raise the limit for this "
                f"bind DN (size.prtotal=unlimited) or bind as a DN without one; nothing was copied from a "
                f"partial reading")
        raise DirectoryError(f"{self.describe()}: search {what} failed: {conn.result.get('description')} "
                             f"{conn.result.get('message') or ''}".rstrip())

    def _complete_ranges(self, dn: str, entry: dict) -> None:
        """Replace AD's ``attr;range=0-1499`` values with the whole attribute, asking for the next range
        (``attr;range=1500-*``) until the server answers with one ending in ``*``."""
        for key in [k for k in entry if ";range=" in k.lower()]:
            m = _RANGE.match(key)
            if not m:
                continue
            attr, values, high = m["attr"], list(_vals(entry, key)), m["high"]
            del entry[key]
            conn = self._connect()
            while high != "*":
                low = int(high) + 1
                ask = f"{attr};range={low}-{low + self.range_step - 1 if self.range_step else '*'}"
                if not conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[ask]):
                    self._check_result(conn, f"{ask} of {dn}", len(values))
                    raise DirectoryError(f"{self.describe()}: {dn}: no {attr} values from {low} on")
                got = (conn.response or [{}])[0].get("raw_attributes") or {}
                nxt = [(k, _RANGE.match(k)) for k in got if _RANGE.match(k) and
                       _RANGE.match(k)["attr"].lower() == attr.lower()]
                if not nxt:
                    raise DirectoryError(f"{self.describe()}: {dn}: the server gave no {attr};range= answer "
                                         f"after {len(values)} values; the group would be incomplete")
                k, mm = nxt[0]
                if int(mm["low"]) != low:
                    raise DirectoryError(f"{self.describe()}: {dn}: asked {attr} from {low}, got {k}")
                values += list(got[k])
                high = mm["high"]
            entry[attr] = values

    def _search(self, flt: str, attrs=ldap3.ALL_ATTRIBUTES, ranges: bool = False) -> list[tuple[str, dict]]:
        conn = self._connect()
        try:
            gen = conn.extend.standard.paged_search(self.base_dn, flt, ldap3.SUBTREE, attributes=attrs,
                                                    paged_size=500, generator=True)
            out = []
            for r in gen:
                if r.get("type") == "searchResEntry":
                    out.append((r["dn"], dict(r.get("raw_attributes") or {})))  # ldap3's dict folds ;range=
            self._check_result(conn, flt, len(out))
            if ranges:
                for dn, e in out:
                    self._complete_ranges(dn, e)
            return out
        except lex.LDAPSocketOpenError as e:
            raise ConnectionLost(f"{self.describe()}: {e}") from None
        except lex.LDAPException as e:
            raise DirectoryError(f"{self.describe()}: search failed: {e}") from None

    def _any_class(self, *classes: str) -> str:
        """A filter for any of ``classes`` that the server's schema knows (ldap3 refuses unknown ones)."""
        known = [c for c in classes if c.lower() in self._schema_classes] or [classes[0]]
        return "(|" + "".join(f"(objectClass={c})" for c in known) + ")"

    def _group_filter(self) -> str:
        return self._any_class("groupOfNames", "groupOfUniqueNames", "posixGroup", "zarafa-group", "kopano-group")

    # -- read -----------------------------------------------------------------------------------------

    def read(self) -> Directory:
        self._connect()
        d = Directory(name=self.describe(), base_dn=self.base_dn)
        ad = self.flavor == "ad"
        if ad:
            # Users, not computer accounts (a computer is also objectClass=user); the usual shorthand
            # (objectCategory=person) works only where the server expands it, as AD itself does.
            user_filter = "(&(objectClass=user)(!(objectClass=computer)))"
            group_filter = "(objectClass=group)"
        else:
            user_filter = self._any_class("inetOrgPerson", "posixAccount", "zarafa-user", "kopano-user")
            group_filter = self._group_filter()
        # companies, contacts, address lists and dynamic groups exist only where a Zarafa/Kopano schema does:
        # elsewhere (AD, a plain OpenLDAP) the whole tree is not read a second time for them
        everything = self._search("(objectClass=*)") if self._kop_prefix else []
        companies = {}
        for dn, e in everything:
            cls = _classes(e)
            if _has_kop_class(cls, "company"):
                name = _one(e, "ou") if "kopano-company" in cls else None
                name = name or _one(e, "cn") or first_rdn_value(dn)
                companies[norm_dn(dn)] = name
                d.add(Company(name, admins=_kop(e, "Admin")))
        def company_of(dn: str) -> str | None:
            n = norm_dn(dn)
            for cdn, name in companies.items():
                if n != cdn and n.endswith("," + cdn):
                    return name
            return None

        users_by_dn: dict[str, str] = {}
        groups_by_dn: dict[str, str] = {}
        user_attrs = [ldap3.ALL_ATTRIBUTES] + [a for a in ("pwdAccountLockedTime", "isCriticalSystemObject")
                                               if a.lower() in self._schema_attrs]
        user_entries = [(dn, e) for dn, e in self._search(user_filter, user_attrs)]
        if ad:
            user_entries = _without_builtins(user_entries, "accounts", d)
        else:
            # contacts carry inetOrgPerson too; they are not users
            user_entries = [(dn, e) for dn, e in user_entries if not _has_kop_class(_classes(e), "contact")]
        for dn, e in user_entries:
            login = _one(e, "sAMAccountName" if ad else "uid")
            if not login:
                d.notes.append(f"{dn}: no {'sAMAccountName' if ad else 'uid'}, not read as a user")
                continue
            users_by_dn[norm_dn(dn)] = login
            self._dn[("users", fold(login))] = dn
        group_attrs = ldap3.ALL_ATTRIBUTES
        if ad:
            group_attrs = ["objectClass", "sAMAccountName", "cn", "description", "mail", "proxyAddresses",
                           "gidNumber", "isCriticalSystemObject",
                           f"member;range=0-{self.range_step - 1}" if self.range_step else "member"]
        group_entries = self._search(group_filter, group_attrs, ranges=True)
        if ad:
            group_entries = _without_builtins(group_entries, "groups", d)
        for dn, e in group_entries:
            name = _one(e, "sAMAccountName" if ad else "cn") or first_rdn_value(dn)
            groups_by_dn[norm_dn(dn)] = name
            self._dn[("groups", fold(name))] = dn
            self._group_classes[fold(name)] = _classes(e)

        def resolve(dn: str) -> tuple[str, str]:
            n = norm_dn(dn)
            if n in users_by_dn:
                return "user", users_by_dn[n]
            if n in groups_by_dn:
                return "group", groups_by_dn[n]
            return "unknown", first_rdn_value(dn)

        for dn, e in user_entries:
            login = users_by_dn.get(norm_dn(dn))
            if login is None:
                continue
            d.add(self._user(dn, e, login, ad, company_of(dn), resolve))
        for dn, e in group_entries:
            name = groups_by_dn[norm_dn(dn)]
            g = Group(name, description=_one(e, "description", ""), company=company_of(dn))
            for m in _txt(e, "member") + _txt(e, "uniqueMember"):
                if not m.strip():
                    continue
                kind, who = resolve(m)
                if norm_dn(m) == norm_dn(dn):
                    continue
                (g.groups if kind == "group" else g.members).append(who)
                if kind == "unknown":
                    d.notes.append(f"group {name}: member {m} is not a user or group in this directory")
            for uid in _txt(e, "memberUid"):
                if fold(uid) not in {fold(x) for x in g.members}:
                    g.members.append(uid)
            mails = _txt(e, "mail")
            g.mail = mails[0] if mails else None
            g.aliases = mails[1:] + _kop(e, "Aliases")
            g.send_as = [resolve(v)[1] if "=" in v else v for v in _kop(e, "SendAsPrivilege")]
            gid = _one(e, "gidNumber")
            g.gid = int(gid) if gid and gid.isdigit() else None
            d.add(g)
        if not ad and "nismailalias" in self._schema_classes:
            for dn, e in self._search("(objectClass=nisMailAlias)"):
                addr = _one(e, "cn")
                if addr:
                    d.add(Alias(addr, _txt(e, "rfc822MailMember")))
                    self._dn[("aliases", fold(addr))] = dn
        for dn, e in everything:
            cls = _classes(e)
            if _has_kop_class(cls, "contact"):
                mails = _txt(e, "mail")
                d.add(Contact(_one(e, "cn") or first_rdn_value(dn), mails[0] if mails else None,
                              _one(e, "displayName", "") or "", company_of(dn)))
            elif _has_kop_class(cls, "addresslist"):
                d.add(AddressList(_one(e, "cn") or first_rdn_value(dn), (_kop(e, "Filter") or [""])[0],
                                  company_of(dn)))
            elif _has_kop_class(cls, "dynamicgroup"):
                mails = _txt(e, "mail")
                d.add(DynamicGroup(_one(e, "cn") or first_rdn_value(dn), (_kop(e, "Filter") or [""])[0],
                                   mails[0] if mails else None, company_of(dn)))
        if ad:
            d.notes.append("Active Directory does not reveal password hashes over LDAP: no password was read")
        return d

    def _user(self, dn, e, login, ad, company, resolve) -> User:
        mails = _txt(e, "mail")
        aliases = mails[1:] + _kop(e, "Aliases")
        if ad:
            primary = None
            for p in _txt(e, "proxyAddresses"):
                kind, _, addr = p.partition(":")
                if kind == "SMTP":
                    primary = addr
                elif kind.lower() == "smtp":
                    aliases.append(addr)
            if primary and not mails:
                mails = [primary]
            elif primary and fold(primary) != fold(mails[0]):
                aliases.append(primary)
        u = User(
            login=login,
            real_name=_one(e, "displayName") or _one(e, "cn", "") or "",
            first_name=_one(e, "givenName", "") or "",
            last_name=_one(e, "sn", "") or "",
            mail=mails[0] if mails else None,
            aliases=[a for a in dict.fromkeys(aliases) if not mails or fold(a) != fold(mails[0])],
            company=company,
        )
        if ad:
            u.password_note = "Active Directory does not reveal password hashes over LDAP"
            uac = _one(e, "userAccountControl")
            if uac and uac.lstrip("-").isdigit() and int(uac) & UAC_DISABLED:
                u.enabled, u.disabled_by = False, f"userAccountControl {uac}"
        else:
            pw = _vals(e, "userPassword")
            if pw:
                u.password = passwords.from_ldap(pw[0].decode("utf-8", "replace") if isinstance(pw[0], bytes)
                                                 else str(pw[0]))
                if isinstance(u.password, PasswordHash):
                    u.password, locked = passwords.split_lock(u.password)
                    if locked:
                        u.enabled, u.disabled_by = False, "locked {CRYPT}! hash"
                    if u.password is None:
                        u.password_note = "the {CRYPT} hash is a lock only ('!' or '*'): no password"
            else:
                u.password_note = "no userPassword (or not readable with this bind DN)"
            acct = _kop(e, "Account")
            if acct and acct[0] == "0":
                u.enabled, u.disabled_by = False, f"{_kop_name(e, 'Account')} 0"
            expire = _one(e, "shadowExpire")
            if expire and expire.isdigit() and 0 < int(expire) <= int(time.time() // 86400):
                u.enabled, u.disabled_by = False, f"shadowExpire {expire} (expired)"
            locked_at = _one(e, "pwdAccountLockedTime")
            if locked_at:
                u.enabled, u.disabled_by = False, f"ppolicy pwdAccountLockedTime {locked_at}"
            for attr in SHADOW_ATTRS:
                if _txt(e, attr):
                    u.extra["shadow:" + attr] = _txt(e, attr)
        q = _kop(e, "QuotaHard")
        if q and q[0].isdigit():
            u.quota = int(q[0]) * MB
        adm = _kop(e, "Admin")
        u.admin = bool(adm and adm[0] not in ("0", ""))
        u.send_as = [resolve(v)[1] if "=" in v else v for v in _kop(e, "SendAsPrivilege")]
        for attr, conv in (("uidNumber", int), ("gidNumber", int)):
            v = _one(e, attr)
            if v and v.lstrip("-").isdigit():
                setattr(u, attr[:3], conv(v))
        u.home = _one(e, "homeDirectory")
        u.shell = _one(e, "loginShell")
        for k in e:
            for p in PREFIXES:
                if k.lower().startswith(p) and k[len(p):].lower() not in _HANDLED_SUFFIXES:
                    u.extra["kopano:" + k[len(p):]] = _txt(e, k)
        return u

    # -- write ----------------------------------------------------------------------------------------

    def _container(self, rdn: str) -> str:
        dn = f"{rdn},{self.base_dn}"
        if dn in self._containers:
            return dn
        conn = self._connect()
        if not conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["1.1"]):
            if conn.result.get("result") != 32:  # noSuchObject
                raise DirectoryError(f"{self.describe()}: cannot look up {dn}: {conn.result.get('description')}")
            ou = first_rdn_value(rdn)
            if not conn.add(dn, ["organizationalUnit"], {"ou": ou}) and conn.result.get("result") != 68:
                raise DirectoryError(f"{self.describe()}: cannot create {dn}: {conn.result.get('description')}")
        self._containers.add(dn)
        return dn

    def _dn_for(self, kind: str, name: str) -> str:
        got = self._dn.get((kind, fold(name)))
        if got:
            return got
        rdn_attr, ou = {"users": ("uid", self.users_ou), "groups": ("cn", self.groups_ou),
                        "aliases": ("cn", self.aliases_ou), "contacts": ("cn", self.users_ou),
                        "companies": ("ou", None)}[kind]
        parent = self.base_dn if ou is None else f"{ou},{self.base_dn}"
        return f"{rdn_attr}={escape_rdn(name)},{parent}"

    def _check_writable(self) -> None:
        self._connect()
        if self.flavor == "ad":
            raise DirectoryError(f"{self.describe()}: Active Directory is read only here (create users with "
                                 f"samba-tool or the AD tools; their passwords cannot be set over plain LDAP)")

    @property
    def extra_prefixes(self) -> frozenset[str]:
        return frozenset({"shadow:"} if "shadowaccount" in self._schema_classes else ())

    def _ppolicy(self) -> bool:
        """Whether the server knows ppolicy's lock attribute (its module is loaded)."""
        self._connect()
        return "pwdaccountlockedtime" in self._schema_attrs

    def _lockable_password(self, u: User):
        """The password of ``u`` as it will be stored when disabled without ppolicy: a locked crypt hash,
        or None when this password has no locked form (another hash scheme)."""
        pw = u.password
        if isinstance(pw, Secret) and pw:
            return passwords.lock(PasswordHash("CRYPT", Secret(shacrypt.make(pw.reveal(), "6"))))
        if isinstance(pw, PasswordHash):
            adapted = passwords.adapt(pw, self.password_schemes)
            if adapted is None or adapted.scheme not in passwords.CRYPT_SCHEMES:
                return None
            return passwords.lock(adapted)
        return passwords.lock(PasswordHash("CRYPT", Secret("")))  # no password: a lock alone

    def _has_locked_form(self, u: User) -> bool:
        """What :meth:`_lockable_password` can lock, without hashing anything to find out."""
        if isinstance(u.password, PasswordHash):
            adapted = passwords.adapt(u.password, self.password_schemes)
            return adapted is not None and adapted.scheme in passwords.CRYPT_SCHEMES
        return True

    def can_disable(self, user: User) -> bool:
        self._connect()
        if self._kop_prefix or self.flavor == "ad":
            return True
        return self._ppolicy() or self._has_locked_form(user)

    def disabled_form(self, user: User) -> str:
        self._connect()
        if self._kop_prefix:
            return f"{self._kop_prefix}Account 0" + (" and ppolicy lock" if self._ppolicy() else "")
        if self._ppolicy():
            return f"ppolicy pwdAccountLockedTime {PERMANENT_LOCK}"
        if self._has_locked_form(user):
            return "locked {CRYPT}! hash"
        return (f"no ppolicy here and a {{{password_scheme(user.password)}}} hash has no locked form (load "
                f"slapd's ppolicy module, or give the user a crypt hash)")

    def _user_attrs(self, u: User) -> tuple[list[str], dict]:
        classes = ["inetOrgPerson"]
        attrs: dict = {
            "uid": u.login,
            "cn": u.real_name or u.login,
            "sn": u.last_name or u.real_name or u.login,
        }
        if u.first_name:
            attrs["givenName"] = u.first_name
        if u.real_name:
            attrs["displayName"] = u.real_name
        mails = u.addresses()
        p = self._kop_prefix
        if p:
            classes.append(f"{p}-user")
            if u.mail:
                attrs["mail"] = u.mail
            if u.aliases:
                attrs[f"{p}Aliases"] = list(u.aliases)
            attrs[f"{p}Account"] = "1" if u.enabled else "0"
            attrs[f"{p}Admin"] = "1" if u.admin else "0"
            if u.quota is not None:
                attrs[f"{p}QuotaOverride"] = "1"
                attrs[f"{p}QuotaHard"] = str(-(-u.quota // MB))
            if u.send_as:
                attrs[f"{p}SendAsPrivilege"] = list(u.send_as)
            for k, v in u.extra.items():
                if k.startswith("kopano:") and v:
                    attrs[p + k.split(":", 1)[1]] = v
        elif mails:
            attrs["mail"] = mails
        if u.uid is not None and u.gid is not None:
            classes.append("posixAccount")
            attrs["uidNumber"] = str(u.uid)
            attrs["gidNumber"] = str(u.gid)
            attrs["homeDirectory"] = u.home or f"/home/{u.login}"
            if u.shell:
                attrs["loginShell"] = u.shell
        shadow = {k.split(":", 1)[1]: v for k, v in u.extra.items() if k.startswith("shadow:") and v}
        if shadow and "shadowaccount" in self._schema_classes:
            classes.append("shadowAccount")
            attrs.update(shadow)
        pw = u.password
        if not u.enabled and not self._ppolicy() and not self._kop_prefix:
            locked = self._lockable_password(u)
            if locked is None:
                raise DirectoryError(f"user {u.login}: disabled, and {self.disabled_form(u)}")
            attrs["userPassword"] = passwords.to_ldap(locked)
            return classes, attrs
        if isinstance(pw, Secret) and pw:
            pw = passwords.ssha(pw)
        if isinstance(pw, PasswordHash):
            adapted = passwords.adapt(pw, self.password_schemes)
            if adapted is None:
                raise DirectoryError(f"user {u.login}: {passwords.refusal(pw, self.password_schemes)}")
            attrs["userPassword"] = passwords.to_ldap(adapted)
        if not u.enabled and self._ppolicy():
            attrs["pwdAccountLockedTime"] = PERMANENT_LOCK
        return classes, attrs

    def _group_shape(self, name: str) -> set[str]:
        """The member-holding classes of a group's entry: as read from the server, else those
        ``group_style`` creates (an entry read with none of them, e.g. a bare Kopano group, gets those too)."""
        classes = self._group_classes.get(fold(name), set()) & set(_MEMBER_CLASSES)
        return classes or {"posixgroup" if self.group_style == "posix" else "groupofnames"}

    def _group_members(self, g: Group, shape: set[str]) -> dict[str, list[str]]:
        """The member attributes of ``g`` for an entry of ``shape``.  A posixGroup names users only: nested
        groups there are refused by name rather than dropped."""
        dns = [self._dn_for("users", m) for m in g.members] + [self._dn_for("groups", s) for s in g.groups]
        out: dict[str, list[str]] = {}
        if "groupofnames" in shape:
            out["member"] = dns or [""]
        if "groupofuniquenames" in shape:
            out["uniqueMember"] = dns or [""]
        if "posixgroup" in shape:
            if g.groups and not out:
                raise DirectoryError(f"group {g.name}: a posixGroup cannot hold the nested group(s) "
                                     f"{', '.join(g.groups)}")
            out["memberUid"] = list(g.members)
        return out

    def _check_gid_free(self, g: Group) -> None:
        """Refuse a gidNumber another group already has here: two groups on one gid would merge their file
        ownership, and renumbering would orphan every file the source's gid owns."""
        dn = norm_dn(self._dn_for("groups", g.name))
        for odn, e in self._search(f"(&(gidNumber={g.gid}){self._group_filter()})", ["cn"]):
            if norm_dn(odn) != dn:
                other = _one(e, "cn") or first_rdn_value(odn)
                raise DirectoryError(f"group {g.name}: gidNumber {g.gid} is already group {other}'s on "
                                     f"{self.describe()}; not renumbered (free it there or change it on the source)")

    def add(self, obj) -> None:
        self._check_writable()
        conn = self._connect()
        if isinstance(obj, User):
            classes, attrs = self._user_attrs(obj)
            self._container(self.users_ou)
            dn = self._dn_for("users", obj.login)
        elif isinstance(obj, Group):
            classes, attrs = self._new_group(obj)
            self._container(self.groups_ou)
            dn = self._dn_for("groups", obj.name)
        elif isinstance(obj, Alias):
            classes, attrs = ["nisMailAlias"], {"cn": obj.address, "rfc822MailMember": list(obj.targets)}
            self._container(self.aliases_ou)
            dn = self._dn_for("aliases", obj.address)
        elif isinstance(obj, Contact) and self._kop_prefix:
            classes = ["inetOrgPerson", f"{self._kop_prefix}-contact"]
            attrs = {"cn": obj.name, "sn": obj.name}
            if obj.mail:
                attrs["mail"] = obj.mail
            self._container(self.users_ou)
            dn = self._dn_for("contacts", obj.name)
        elif isinstance(obj, Company) and self._kop_prefix:
            classes = ["organizationalUnit", f"{self._kop_prefix}-company"]
            attrs = {"ou": obj.name}
            if self._kop_prefix == "zarafa":
                attrs["cn"] = obj.name
            dn = self._dn_for("companies", obj.name)
        else:
            raise DirectoryError(f"{self.describe()}: cannot hold a {type(obj).__name__}")
        if not conn.add(dn, classes, attrs):
            raise DirectoryError(f"{self.describe()}: add {dn} refused: {conn.result.get('description')} "
                                 f"{conn.result.get('message') or ''}".rstrip())
        key = ("users" if isinstance(obj, User) else "groups" if isinstance(obj, Group) else
               "aliases" if isinstance(obj, Alias) else "contacts" if isinstance(obj, Contact) else "companies")
        self._dn[(key, obj.key)] = dn
        if isinstance(obj, Group):
            self._group_classes[obj.key] = {c.lower() for c in classes}

    def _new_group(self, g: Group) -> tuple[list[str], dict]:
        if self.group_style == "posix":
            if self._schema_classes and "posixgroup" not in self._schema_classes:
                raise DirectoryError(f"{self.describe()}: group_style posix needs the posixGroup class (nis "
                                     f"schema), which this server does not know")
            if g.gid is None:
                raise DirectoryError(f"group {g.name}: the source gives it no gidNumber, which a posixGroup "
                                     f"must have")
            self._check_gid_free(g)
            classes = ["posixGroup"]
            attrs: dict = {"cn": g.name, "gidNumber": str(g.gid)}
            attrs.update((k, v) for k, v in self._group_members(g, {"posixgroup"}).items() if v)
        else:
            classes = ["groupOfNames"]
            attrs = {"cn": g.name, **self._group_members(g, {"groupofnames"})}
        if g.description:
            attrs["description"] = g.description
        if g.mail:
            classes.append(f"{self._kop_prefix}-group" if self._kop_prefix else "extensibleObject")
            attrs["mail"] = g.mail
        return classes, attrs

    def update(self, old, new) -> None:
        self._check_writable()
        conn = self._connect()
        if isinstance(new, User):
            dn = self._dn_for("users", new.login)
            _, attrs = self._user_attrs(new)
            attrs.pop("uid", None)
            attrs.pop("objectClass", None)
            for k in ("pwdAccountLockedTime",):  # set below, only when the state changes
                attrs.pop(k, None)
            if new.password is None or new.password == old.password:
                attrs.pop("userPassword", None)
            keep_posix = {"uidNumber", "gidNumber", "homeDirectory", "loginShell", *SHADOW_ATTRS}
            changes = {k: [(ldap3.MODIFY_REPLACE, v if isinstance(v, list) else [v])] for k, v in attrs.items()
                       if k not in keep_posix}
            if new.enabled != old.enabled:
                if self._ppolicy():
                    changes["pwdAccountLockedTime"] = [(ldap3.MODIFY_REPLACE, [] if new.enabled else [PERMANENT_LOCK])]
                elif ("userPassword" not in changes and isinstance(old.password, PasswordHash)
                      and old.password.scheme in passwords.CRYPT_SCHEMES):
                    # the stored hash stays the password; only its lock changes
                    pw = old.password if new.enabled else passwords.lock(old.password)
                    changes["userPassword"] = [(ldap3.MODIFY_REPLACE, [passwords.to_ldap(pw)])]
            if not self._kop_prefix and not new.addresses():
                changes["mail"] = [(ldap3.MODIFY_REPLACE, [])]
        elif isinstance(new, Group):
            dn = self._dn_for("groups", new.name)
            shape = self._group_shape(new.name)
            changes = {k: [(ldap3.MODIFY_REPLACE, v)] for k, v in self._group_members(new, shape).items()}
            if "posixgroup" in shape and new.gid is not None and new.gid != old.gid:
                self._check_gid_free(new)
                changes["gidNumber"] = [(ldap3.MODIFY_REPLACE, [str(new.gid)])]
            if new.mail and (self._kop_prefix or fold(new.mail or "") != fold(old.mail or "")):
                changes["mail"] = [(ldap3.MODIFY_REPLACE, [new.mail])]
        elif isinstance(new, Alias):
            dn = self._dn_for("aliases", new.address)
            changes = {"rfc822MailMember": [(ldap3.MODIFY_REPLACE, list(new.targets))]}
        else:
            raise DirectoryError(f"{self.describe()}: cannot update a {type(new).__name__}")
        if not conn.modify(dn, changes):
            raise DirectoryError(f"{self.describe()}: modify {dn} refused: {conn.result.get('description')} "
                                 f"{conn.result.get('message') or ''}".rstrip())

    def delete(self, kind: str, name: str) -> None:
        """Remove the entry :meth:`read` found for ``name`` (read first: the DN is taken from there, never
        guessed, so nothing but that entry can go); an entry already gone is not an error."""
        self._check_writable()
        conn = self._connect()
        dn = self._dn.get((kind, fold(name)))
        if dn is None:
            raise DirectoryError(f"{self.describe()}: no {kind} entry {name!r} was read here")
        if not conn.delete(dn) and conn.result.get("result") != 32:  # noSuchObject
            raise DirectoryError(f"{self.describe()}: delete {dn} refused: {conn.result.get('description')}")
        self._dn.pop((kind, fold(name)), None)
        if kind == "groups":
            self._group_classes.pop(fold(name), None)
