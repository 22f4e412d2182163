"""The addresses of a CommuniGate account that a migration leaves behind.

Mail copied is not the whole of an account: CommuniGate also delivers to the account's aliases
(``Aliases.data``), to its name under each other name of its domain (``DomainAliases``), and its rules pass
mail on elsewhere (``Redirect to``/``Forward to``/``Mirror to``).  A target directory that holds none of
these makes mail to ``ali@example.com`` bounce the moment the MX points at the new server, and nobody notices
until a customer complains.  So the overview (before anything is done) and every migration's result (per
account, as a warning: the mail itself arrived) name each such address, so an administrator can create
them by hand before the cutover.

What a target carries is read from its directory writer's ``fields``, the same declaration ``directory
copy`` trusts, so this list cannot drift from what the writers actually write.  Only user aliases are ever
handed to a writer (at creation); domain aliases (mailmigrate creates no domains) and forwarding (no
writer of this path's targets holds it) are always left behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...directory.base import DirectoryWriter
from .accounts import CGAccount

ALIAS, DOMAIN_ALIAS, FORWARDING = "alias", "domain alias", "forwarding"

#: The target directories the overview can be asked about (``--target-directory``), each with how its
#: text names it; "none" is a migration without a directory (users taken to exist).
TARGETS = {"kerio": "Kerio", "passwd-file": "a passwd-file", "ldap": "LDAP", "none": None}


@dataclass(frozen=True)
class LeftBehind:
    """One kind of address the target will not have, with every address of that kind."""

    kind: str  # ALIAS | DOMAIN_ALIAS | FORWARDING
    addresses: tuple[str, ...]
    why: str

    def describe(self) -> str:
        listed = ", ".join(self.addresses)
        if self.kind == FORWARDING:
            return (f"forwarding not carried over ({self.why}): CommuniGate's rules also send this account's "
                    f"mail to {listed}; set it up on the target by hand")
        return (f"{self.kind}es not carried over ({self.why}): mail to {listed} will bounce after the cutover; "
                f"create {'them' if len(self.addresses) > 1 else 'it'} on the target by hand")

    def as_dict(self) -> dict:
        return {"kind": self.kind, "addresses": list(self.addresses), "why": self.why}


def writer_class(target: str) -> type[DirectoryWriter] | None:
    """The directory writer a target directory kind stands for (None: no directory)."""
    if target == "kerio":
        from ...directory.kerio import KerioDirectory
        return KerioDirectory
    if target == "passwd-file":
        from ...directory.passwdfile import PasswdFileDirectory
        return PasswdFileDirectory
    if target == "ldap":
        from ...directory.ldap import LdapDirectory
        return LdapDirectory
    if target == "none":
        return None
    raise ValueError(f"target directory must be one of {', '.join(TARGETS)}, not {target!r}")


def carries_aliases(directory: DirectoryWriter | type[DirectoryWriter] | None) -> bool:
    """Whether users written to this directory keep their aliases (a writer instance or its class)."""
    if directory is None:
        return False
    fields = getattr(directory, "fields", None) or {}
    return "users" in getattr(directory, "kinds", ()) and "aliases" in fields.get("users", ())


def left_behind(account: CGAccount, *, aliases_carried: bool, target: str | None,
                user_written: bool = True) -> list[LeftBehind]:
    """What of ``account`` the target will not deliver.  ``target`` names the target directory (None: the
    migration has none); ``aliases_carried``: its writer keeps user aliases; ``user_written``: the user was
    (or will be) created by the migration, so the aliases went with it; a user that existed and was left
    as it is got none of them."""
    out: list[LeftBehind] = []
    aliases = tuple(account.alias_addresses)
    if aliases and not (aliases_carried and user_written):
        why = ("no target directory to write them to" if target is None
               else f"mailmigrate writes no user aliases to {target}" if not aliases_carried
               else "the user existed on the target and was left as it is")
        out.append(LeftBehind(ALIAS, aliases, why))
    if account.domain_aliases:
        names = [account.name] + [a for a in account.aliases if "@" not in a]
        out.append(LeftBehind(
            DOMAIN_ALIAS, tuple(f"{n}@{d}" for d in account.domain_aliases for n in names),
            f"{', '.join(account.domain_aliases)} {'is' if len(account.domain_aliases) == 1 else 'are'} "
            f"other names of {account.domain} in CommuniGate; mailmigrate creates no domain aliases"))
    if account.forwarding:
        out.append(LeftBehind(FORWARDING, tuple(account.forwarding),
                              "mailmigrate writes no forwarding" + (f" to {target}" if target else "")))
    return out
