"""CommuniGate Pro accounts as a directory: who each account is, its password and where its mail also goes;
plus each domain's aliases.  (The account files are found with the store's own layout walk, a sibling
module of this layer; the settings are parsed by formats/communigate_settings.py.)

What a migration needs from a CommuniGate account's settings: who it is, its password and where its mail
also goes; plus each domain's aliases.

cg2kms's password rules hinge on one question, "can the CommuniGate password be read?", so that answer is
computed here once: a password is readable when its stored value is not marked encrypted (CommuniGate writes
encrypted values with a leading byte 1, ``"\\001..."`` in the file) and ``PasswordEncryption`` is absent or
``clear``.  A value under any other ``PasswordEncryption`` is treated as unreadable even without the marker,
because using a hash as a password would lock the user out.  The password itself only ever lives in a
:class:`~mailmigrate.model.Secret`.

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


def password_state(settings: dict) -> tuple[str, Secret | None, str | None]:
    """(state, Secret when readable, the PasswordEncryption setting)."""
    enc = settings.get("PasswordEncryption")
    enc = enc if isinstance(enc, str) else None
    pw = settings.get("Password")
    if not isinstance(pw, str) or pw == "":
        return "none", None, enc
    if pw.startswith(ENCRYPTED_MARKER) or (enc is not None and enc.lower() != "clear"):
        return "encrypted", None, enc
    return "readable", Secret(pw), enc


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
    settings = _read_dict(loc.settings_path, errors)
    info = _read_dict(loc.info_path, errors)
    state, secret, enc = password_state(settings)
    real = settings.get("RealName")
    acc = CGAccount(
        name=loc.name,
        domain=loc.domain,
        kind=loc.kind,
        real_name=real if isinstance(real, str) else None,
        password=secret,
        password_state=state,
        password_encryption=enc,
        forwarding=forwarding_addresses(settings),
        aliases=list(domain.account_aliases.get(loc.name.lower(), [])) if domain else [],
        domain_aliases=list(domain.domain_aliases) if domain else [],
        calendar_boxes={k: v for k, v in info.items() if k.endswith("Box") and isinstance(v, str)},
        error="; ".join(errors) or None,
    )
    return acc


def read_domain(name: str, directory: Path) -> CGDomain:
    """The domain's aliases: Settings/Domain.settings ``DomainAliases`` and Settings/Aliases.data
    (account name -> alias or list of aliases)."""
    dom = CGDomain(name)
    settings = _read_dict(directory / "Settings" / "Domain.settings", dom.errors)
    da = settings.get("DomainAliases")
    if isinstance(da, str):
        da = [da]
    if isinstance(da, list):
        dom.domain_aliases = [x.lower() for x in da if isinstance(x, str)]
    aliases = _read_dict(directory / "Settings" / "Aliases.data", dom.errors)
    for account, value in aliases.items():
        vals = value if isinstance(value, list) else [value]
        dom.account_aliases[account.lower()] = [v for v in vals if isinstance(v, str)]
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
            dom = read_domain(domain, directory)
            d.notes.extend(dom.errors)
            for loc in domain_accounts(domain, directory):
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
