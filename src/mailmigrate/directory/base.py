"""One model of directory data, and the interface every directory reader and writer implements.

Every migration path moves accounts as well as mail, and every legacy system spells them differently
(LDAP attributes, e-smith props, CommuniGate settings, Kerio's JSON).  Readers translate into these
values and writers translate out of them, so ``diff`` and ``copy`` are written once and any pair of
directories can be compared or copied.

Names are compared case-insensitively (logins, group names, addresses), because every directory we meet
treats them that way; the values keep the spelling the source used.

Passwords travel as :class:`~mailmigrate.model.Secret` (clear text) or :class:`PasswordHash` (a scheme
and its hash, the hash itself also kept in a Secret: a crackable hash is not something to print).  A
directory that cannot reveal passwords (Active Directory) leaves ``password`` None and says why in
``password_note``, so the copy can report it per user instead of silently creating users without one.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Iterable, Union

from ..errors import StoreError
from ..model import Secret


class DirectoryError(StoreError):
    """A directory refused or failed an operation (bind, search, write); names the directory."""


class UnsupportedByDirectory(DirectoryError):
    """The directory has no place for this kind of object (e.g. contacts in a passwd-file)."""

    scope = "message"


@dataclass(frozen=True)
class PasswordHash:
    """A stored password hash as RFC 2307 / Dovecot write it: ``{SCHEME}hash``.

    ``scheme`` is upper-case without braces (``SSHA``, ``CRYPT``, ``SHA512-CRYPT``, ``BLF-CRYPT``);
    ``value`` is the part after the braces.
    """

    scheme: str
    value: Secret

    @classmethod
    def parse(cls, text: str) -> "PasswordHash | None":
        """``{SCHEME}rest`` -> PasswordHash; anything else (no braces) -> None (treat as clear or unknown)."""
        if not text.startswith("{"):
            return None
        end = text.find("}")
        if end <= 1:
            return None
        scheme = text[1:end].strip().upper()
        if not scheme or any(c.isspace() for c in scheme):
            return None
        return cls(scheme, Secret(text[end + 1 :]))

    def tagged(self) -> str:
        """The ``{SCHEME}hash`` text, to be written into a directory (never to a log)."""
        return "{" + self.scheme + "}" + self.value.reveal()

    def __repr__(self) -> str:
        return f"PasswordHash({self.scheme!r}, '***')"


#: A password as a directory holds it: clear text, a hash with its scheme, or unknown.
Password = Union[Secret, PasswordHash, None]


def password_scheme(password: Password) -> str | None:
    """'PLAIN' for clear text, the hash scheme for a hash, None when there is no password."""
    if isinstance(password, Secret):
        return "PLAIN"
    if isinstance(password, PasswordHash):
        return password.scheme
    return None


def fold(name: str) -> str:
    """The key under which directories compare a login, group name or address."""
    return name.strip().casefold()


@dataclass
class User:
    """One account.

    ``mail`` is the primary address; ``aliases`` are the other addresses that deliver to this user.
    ``forwards`` are addresses mail is passed on to; ``keep_copy`` says whether the mailbox keeps one.
    ``quota`` is in bytes (None: no limit or not known).  ``send_as`` lists logins or group names allowed
    to send as this user; ``delegates`` those with access to the mailbox.  ``extra`` keeps
    directory-specific attributes (e.g. Zarafa/Kopano feature flags) that a writer of the same kind can
    restore; other writers ignore it.
    """

    login: str
    real_name: str = ""
    first_name: str = ""
    last_name: str = ""
    mail: str | None = None
    aliases: list[str] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)
    keep_copy: bool = True
    quota: int | None = None
    password: Password = None
    password_note: str | None = None  # why the password is None (e.g. "Active Directory does not reveal it")
    enabled: bool = True
    disabled_by: str | None = None  # the source's marker that made ``enabled`` False, for reports
    domain: str | None = None
    company: str | None = None
    send_as: list[str] = field(default_factory=list)
    delegates: list[str] = field(default_factory=list)
    uid: int | None = None
    gid: int | None = None
    home: str | None = None
    shell: str | None = None
    admin: bool = False
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return fold(self.login)

    def addresses(self) -> list[str]:
        """Primary address first, then aliases, without duplicates (case-insensitive)."""
        seen, out = set(), []
        for a in ([self.mail] if self.mail else []) + list(self.aliases):
            if fold(a) not in seen:
                seen.add(fold(a))
                out.append(a)
        return out

    def __repr__(self) -> str:  # the dataclass repr would be fine (Secret hides itself) but stays short
        return f"User({self.login!r})"


@dataclass
class Group:
    """A group: ``members`` are user logins, ``groups`` are nested group names (members of this one)."""

    name: str
    members: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    mail: str | None = None
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    company: str | None = None
    send_as: list[str] = field(default_factory=list)
    gid: int | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return fold(self.name)


@dataclass
class Alias:
    """An address that delivers elsewhere (e-smith pseudonym, CommuniGate alias, Kerio alias)."""

    address: str
    targets: list[str] = field(default_factory=list)
    internal_only: bool = False  # e-smith "Visible internal": not reachable from outside

    @property
    def key(self) -> str:
        return fold(self.address)


@dataclass
class Contact:
    """An address-book entry without a mailbox (Zarafa/Kopano contact, Kerio contact)."""

    name: str
    mail: str | None = None
    real_name: str = ""
    company: str | None = None

    @property
    def key(self) -> str:
        return fold(self.name)


@dataclass
class Company:
    """A tenant of a multi-company directory (Zarafa/Kopano hosted mode)."""

    name: str
    admins: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return fold(self.name)


@dataclass
class AddressList:
    """A named LDAP filter that shows a subset of the address book (Zarafa/Kopano addresslist)."""

    name: str
    filter: str = ""
    company: str | None = None

    @property
    def key(self) -> str:
        return fold(self.name)


@dataclass
class DynamicGroup:
    """A group whose members are whoever matches a filter (Zarafa/Kopano dynamicgroup)."""

    name: str
    filter: str = ""
    mail: str | None = None
    company: str | None = None

    @property
    def key(self) -> str:
        return fold(self.name)


#: The kinds of object a directory can hold, in the order a copy creates them (companies first, so users
#: can be placed in one; groups after users, so members exist).
KINDS = ("companies", "users", "groups", "aliases", "contacts", "address_lists", "dynamic_groups")


@dataclass
class Directory:
    """Everything one directory holds, as read at one moment.  Each mapping is keyed by :func:`fold`."""

    name: str = ""  # for reports: "ldap://host/dc=example,dc=com", "esmith:/path/accounts"
    base_dn: str | None = None
    domains: list[str] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    contacts: dict[str, Contact] = field(default_factory=dict)
    companies: dict[str, Company] = field(default_factory=dict)
    address_lists: dict[str, AddressList] = field(default_factory=dict)
    dynamic_groups: dict[str, DynamicGroup] = field(default_factory=dict)
    #: Things the reader saw but could not represent, or could not read (one line each, for the report).
    notes: list[str] = field(default_factory=list)

    def add(self, obj) -> None:
        """Put a User/Group/Alias/... in its mapping; a second object with the same key replaces the first."""
        getattr(self, kind_of(obj))[obj.key] = obj

    def extend(self, objs: Iterable) -> None:
        for o in objs:
            self.add(o)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in KINDS}


_KIND_BY_TYPE = {
    User: "users",
    Group: "groups",
    Alias: "aliases",
    Contact: "contacts",
    Company: "companies",
    AddressList: "address_lists",
    DynamicGroup: "dynamic_groups",
}


def kind_of(obj) -> str:
    try:
        return _KIND_BY_TYPE[type(obj)]
    except KeyError:
        raise TypeError(f"not a directory object: {type(obj).__name__}") from None


#: Fields compared per kind when a writer does not say which it holds (``DirectoryWriter.fields``).
DEFAULT_FIELDS: dict[str, frozenset[str]] = {
    "users": frozenset({"real_name", "mail", "aliases", "enabled"}),
    "groups": frozenset({"members", "groups", "mail"}),
    "aliases": frozenset({"targets"}),
    "contacts": frozenset({"mail", "real_name"}),
    "companies": frozenset(),
    "address_lists": frozenset({"filter"}),
    "dynamic_groups": frozenset({"filter", "mail"}),
}


class DirectoryReader(abc.ABC):
    """Reads a whole directory into a :class:`Directory`.

    Readers are used as context managers (connections are opened on enter or on first use and closed on
    exit).  ``describe()`` names the directory without any credential, for reports and errors.
    """

    @abc.abstractmethod
    def read(self) -> Directory: ...

    @abc.abstractmethod
    def describe(self) -> str: ...

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DirectoryWriter(DirectoryReader):
    """A directory that can also be written.  A writer is always a reader too: copy reads it to diff.

    ``kinds`` says which kinds of object (from :data:`KINDS`) the directory can hold; ``copy`` reports
    the others as not migrated instead of calling ``add``.  ``fields`` says which fields per kind it
    holds (the password is handled apart).  ``password_schemes`` says which hash schemes
    it stores as they are (upper-case, e.g. ``{"SSHA", "CRYPT"}``); ``accepts_clear`` whether it takes a
    clear-text password (a writer may hash it itself).

    ``add`` creates an object that does not exist yet; ``update`` replaces an existing object's fields
    with those of ``new`` (``old`` is the current value as this writer read it, so a writer can send only
    the difference).  ``commit`` makes writes durable where a writer buffers them (files); LDAP and API
    writers apply each call at once and may leave it empty.  Each call either completes or raises a
    :class:`DirectoryError` naming the object, so a failed object never stops the others.
    """

    kinds: frozenset[str] = frozenset({"users", "groups", "aliases"})
    #: Per kind, the fields this directory can hold; ``diff`` compares only those, so a rerun against a
    #: directory that cannot store, say, forwards does not see a difference for ever.
    fields: dict[str, frozenset[str]] = DEFAULT_FIELDS
    password_schemes: frozenset[str] = frozenset()
    accepts_clear: bool = True

    #: Prefixes of ``User.extra`` keys this directory writes back (e.g. ``shadow:`` for shadowAccount); copy
    #: notes the users whose other prefixed attributes are left behind.
    extra_prefixes: frozenset[str] = frozenset()

    def can_disable(self, user: User) -> bool:
        """Whether this directory can hold ``user`` (with the password it is about to be given) as disabled.
        Where it cannot, copy refuses to create the user enabled unless told to."""
        return "enabled" in self.fields.get("users", frozenset())

    def disabled_form(self, user: User) -> str:
        """How a disabled user is written here, for the report."""
        return "disabled"

    def accepts(self, password: Password) -> bool:
        if isinstance(password, Secret):
            return self.accepts_clear
        if isinstance(password, PasswordHash):
            return password.scheme.upper() in self.password_schemes
        return True

    @abc.abstractmethod
    def add(self, obj) -> None: ...

    @abc.abstractmethod
    def update(self, old, new) -> None: ...

    def delete(self, kind: str, name: str) -> None:
        """Remove one object (``kind`` from :data:`KINDS`).  Only an abort calls it, for what a migration
        itself created; writers that cannot remove say so."""
        raise UnsupportedByDirectory(f"{self.describe()}: cannot remove {kind} here")

    def commit(self) -> None:
        pass
