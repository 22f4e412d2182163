"""CommuniGate Pro accounts as a directory: who each account is, its password and where its mail also goes;
plus each domain's aliases.  (The account files are found with the store's own layout walk, a sibling
module of this layer; the settings are parsed by formats/communigate_settings.py.)

What a migration needs from a CommuniGate account's settings: who it is, its password and where its mail
also goes; plus each domain's aliases.

cg2kms's password rules hinge on one question, "can the CommuniGate password be read?", so that answer is
computed here once: a password is readable when its stored value does not start with a control byte
(CommuniGate writes encrypted values with a leading byte 1, ``"\\001..."`` in the file; any other control
byte is taken as some other encryption's mark) and the ``PasswordEncryption`` in force is absent or
``clear``.  That setting is inherited: an account that does not set it gets it from its domain's account
template and defaults, and those from the server's (:data:`ENCRYPTION_SOURCES`), so all of them are read.
A value under any other ``PasswordEncryption`` (``A-crpt``...) is treated as unreadable even without the
mark, because setting a hash as a user's password would lock them out.  The password itself only ever lives
in a :class:`~mailmigrate.model.Secret`.

A damaged settings file costs only the settings: the account is still listed (``error`` set, naming file
and line) and its mail still migrates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .base import Directory, DirectoryReader, User

from ..errors import FormatError
from ..formats import communigate_settings as cgs
from ..model import Secret
from ..stores.communigate import AccountLocation, domain_accounts, domain_dirs

ENCRYPTED_MARKER = "\x01"
#: Where an account that does not set ``PasswordEncryption`` inherits it from, first found wins:
#: (directory: "domain" = the domain's Settings/, "server" = the base directory's Settings/; file; key
#: holding a dictionary of account settings, or None when the file's top level is one).
#: Template.settings is the domain's account template (FACTS); DomainDefault.settings' ``AccountDefaults``
#: is seen in a real file (communigate-cpanel-adaptor, CGP/Settings/DomainDefault.settings, which sets
#: ``PasswordEncryption = A-crpt``); the other two names are UNVERIFIED and read when present.
ENCRYPTION_SOURCES = (
    ("domain", "Template.settings", None),
    ("domain", "Domain.settings", "AccountDefaults"),
    ("domain", "AccountDefaults.settings", None),
    ("server", "AccountDefaults.settings", None),
    ("server", "DomainDefault.settings", "AccountDefaults"),
)
#: Rule actions that send a copy of each message elsewhere.
FORWARD_ACTIONS = {"redirect to", "forward to", "mirror to"}


@dataclass
class CGAccount:
    name: str
    domain: str
    kind: str  # "multi" | "single"
    real_name: str | None = None
    password: Secret | None = None  # only when readable
    password_state: str = "none"  # "readable" | "encrypted" | "none"
    password_encryption: str | None = None
    password_encryption_from: str | None = None  # the file the setting was inherited from, if it was
    forwarding: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    domain_aliases: list[str] = field(default_factory=list)  # other names of the account's domain
    calendar_boxes: dict[str, str] = field(default_factory=dict)  # role ("CalendarBox") -> mailbox name
    error: str | None = None

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    @property
    def alias_addresses(self) -> list[str]:
        """The aliases as addresses: Aliases.data names them bare, meaning this account's domain."""
        return [a if "@" in a else f"{a}@{self.domain}" for a in self.aliases]

    @property
    def password_readable(self) -> bool:
        return self.password_state == "readable"


@dataclass
class CGDomain:
    name: str
    domain_aliases: list[str] = field(default_factory=list)  # other names of the domain itself
    account_aliases: dict[str, list[str]] = field(default_factory=dict)  # account -> its alias names
    errors: list[str] = field(default_factory=list)
    inherited_encryption: tuple[str, str] | None = None  # (PasswordEncryption, the file it comes from)


def password_state(settings: dict, inherited: str | None = None) -> tuple[str, Secret | None, str | None]:
    """(state, Secret when readable, the PasswordEncryption in force).  ``inherited``: the setting the
    account gets from its domain or server when it does not set its own."""
    enc = settings.get("PasswordEncryption")
    enc = enc if isinstance(enc, str) else inherited
    pw = settings.get("Password")
    if not isinstance(pw, str) or pw == "":
        return "none", None, enc
    if _marked(pw) or (enc is not None and enc.lower() != "clear"):
        return "encrypted", None, enc
    return "readable", Secret(pw), enc


def _marked(value: str) -> bool:
    """A stored value that starts with a control byte is an encrypted one (``\\001`` is CommuniGate's own
    mark; no readable password starts with a control character)."""
    return ord(value[0]) < 32 or ord(value[0]) == 127


def forwarding_addresses(settings: dict) -> list[str]:
    """Addresses the account's rules redirect, forward or mirror mail to (CommuniGate has no separate
    forwarding setting: it is a rule action)."""
    out: list[str] = []

    def walk(v):
        if isinstance(v, list):
            if len(v) >= 2 and isinstance(v[0], str) and v[0].strip().lower() in FORWARD_ACTIONS:
                targets = v[1] if isinstance(v[1], list) else [v[1]]
                for t in targets:
                    if isinstance(t, str):
                        for addr in t.replace(";", ",").split(","):
                            addr = addr.strip()
                            if addr and addr not in out:
                                out.append(addr)
                return
            for x in v:
                walk(x)

    walk(settings.get("Rules"))
    return out


def _read_dict(path: Path, errors: list[str]) -> dict:
    if path.is_symlink():
        errors.append(f"{path} is a symbolic link: not followed, its settings are not read")
        return {}
    if not path.is_file():
        return {}
    try:
        value = cgs.parse_file(path)
    except FormatError as e:
        errors.append(str(e))
        return {}
    except OSError as e:
        errors.append(f"{path}: {e}")
        return {}
    if not isinstance(value, dict):
        errors.append(f"{path}: holds a {type(value).__name__}, not a dictionary")
        return {}
    return value


def read_account(loc: AccountLocation, domain: CGDomain | None = None) -> CGAccount:
    errors: list[str] = []
    if loc.kind == "multi" and loc.root.is_symlink():
        # Its files would be read from wherever the link points: not followed (the store reports the link).
        errors.append(f"{loc.root} is a symbolic link: not followed, its settings are not read")
        settings, info = {}, {}
    else:
        settings = _read_dict(loc.settings_path, errors)
        info = _read_dict(loc.info_path, errors)
    inherited = domain.inherited_encryption if domain else None
    state, secret, enc = password_state(settings, inherited[0] if inherited else None)
    real = settings.get("RealName")
    acc = CGAccount(
        name=loc.name,
        domain=loc.domain,
        kind=loc.kind,
        real_name=real if isinstance(real, str) else None,
        password=secret,
        password_state=state,
        password_encryption=enc,
        password_encryption_from=inherited[1] if inherited and not isinstance(settings.get("PasswordEncryption"), str)
        else None,
        forwarding=forwarding_addresses(settings),
        aliases=list(domain.account_aliases.get(loc.name.lower(), [])) if domain else [],
        domain_aliases=list(domain.domain_aliases) if domain else [],
        calendar_boxes=groupware_boxes(info),
        error="; ".join(errors) or None,
    )
    return acc


def groupware_boxes(info: dict) -> dict[str, str]:
    """Role (``CalendarBox``, ``ContactsBox``, ``TasksBox``...) -> mailbox name, from ``account.info``: the
    ``"#Viewer"`` dictionary names them (seen in cgp2zarafa's cgp-migrate.sh, which reads CalendarBox,
    TasksBox and ContactsBox from it), so a renamed box (``Kalender``) is still known; keys ending in
    ``Box`` at the top level are read too, the viewer's entries win."""
    out = {k: v for k, v in info.items() if k.endswith("Box") and isinstance(v, str)}
    viewer = info.get("#Viewer")
    if isinstance(viewer, dict):
        out.update({k: v for k, v in viewer.items() if k.endswith("Box") and isinstance(v, str) and v})
    return out


def _store_base(directory: Path) -> Path:
    """The base directory of a domain directory: ``BASE/Accounts`` (main domain) or ``BASE/Domains/NAME``."""
    return directory.parent if directory.name == "Accounts" else directory.parent.parent


def inherited_encryption(directory: Path, errors: list[str]) -> tuple[str, str] | None:
    """The ``PasswordEncryption`` an account of this domain inherits, and the file that sets it."""
    base = _store_base(directory)
    for where, file, key in ENCRYPTION_SOURCES:
        path = (directory if where == "domain" else base) / "Settings" / file
        value = _read_dict(path, errors)
        if key is not None:
            value = value.get(key)
        if isinstance(value, dict) and isinstance(value.get("PasswordEncryption"), str):
            return value["PasswordEncryption"], str(path)
    return None


def read_domain(name: str, directory: Path, accounts: list[str] | None = None) -> CGDomain:
    """The domain's aliases (Settings/Domain.settings ``DomainAliases``, Settings/Aliases.data) and the
    password encryption its accounts inherit.

    Aliases.data is read in either shape seen - account -> alias or list of aliases, or alias -> account -
    by checking every key and value against the accounts that exist (``accounts``, found when not given):
    an entry that fits neither shape is reported in ``errors`` and not used, never guessed."""
    dom = CGDomain(name)
    settings = _read_dict(directory / "Settings" / "Domain.settings", dom.errors)
    da = settings.get("DomainAliases")
    if isinstance(da, str):
        da = [da]
    if isinstance(da, list):
        dom.domain_aliases = [x.lower() for x in da if isinstance(x, str)]
    dom.inherited_encryption = inherited_encryption(directory, dom.errors)
    path = directory / "Settings" / "Aliases.data"
    aliases = _read_dict(path, dom.errors)
    if not aliases:
        return dom
    if accounts is None:
        accounts = [loc.name for loc in domain_accounts(name, directory)]
    known = {a.lower(): a for a in accounts}

    def account_of(value: str) -> str | None:
        local, at, dom_part = value.lower().partition("@")
        if at and dom_part not in (name, *dom.domain_aliases):
            return None
        return known.get(local)

    for key, value in aliases.items():
        vals = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in vals) or not vals:
            dom.errors.append(f"{path}: entry {key!r} holds a {type(value).__name__} that is neither an "
                              "alias nor an account name: not used")
            continue
        owner = account_of(key)
        if owner is not None:  # account -> its aliases
            for v in vals:
                if account_of(v) is not None:
                    dom.errors.append(f"{path}: {v!r}, listed as an alias of account {owner}, is an account "
                                      "itself: not used")
                else:
                    dom.account_aliases.setdefault(owner.lower(), []).append(v)
        elif len(vals) == 1 and account_of(vals[0]) is not None:  # alias -> account
            dom.account_aliases.setdefault(account_of(vals[0]).lower(), []).append(key)
        else:
            dom.errors.append(f"{path}: entry {key!r} = {', '.join(map(repr, vals))} names no account of "
                              f"domain {name} on either side: not used")
    return dom


class CommuniGateDirectory(DirectoryReader):
    """Every account of a CommuniGate store as users (login ``name@domain``), with readable passwords in
    clear text and encrypted ones reported per user; account aliases become user aliases."""

    def __init__(self, base_path, *, primary_domain: str | None = None):
        self.base = Path(base_path)
        self.primary_domain = primary_domain

    def describe(self) -> str:
        return f"communigate:{self.base}"

    def read(self) -> Directory:
        d = Directory(name=self.describe())
        for domain, directory in domain_dirs(self.base, self.primary_domain).items():
            d.domains.append(domain)
            locs = domain_accounts(domain, directory)
            dom = read_domain(domain, directory, [loc.name for loc in locs])
            d.notes.extend(dom.errors)
            for loc in locs:
                acc = read_account(loc, dom)
                u = User(login=acc.address, real_name=acc.real_name or "", mail=acc.address,
                         aliases=acc.alias_addresses,
                         forwards=list(acc.forwarding), domain=domain)
                if acc.password is not None:
                    u.password = acc.password
                elif acc.password_state == "encrypted":
                    u.password_note = (f"encrypted in CommuniGate ({acc.password_encryption or 'marked'}): "
                                       "cannot be read")
                else:
                    u.password_note = "no password in CommuniGate"
                if acc.error:
                    d.notes.append(f"{acc.address}: {acc.error}")
                d.add(u)
        return d
