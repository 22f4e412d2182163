"""NethServer 7 -> 8 account-provider rules, checked before anything moves.

NS8 finds a remote NS7 provider by name: an external user domain whose name is the provider's BaseDN
read as a DNS name (``dc=directory,dc=nh`` <-> ``directory.nh``), pointing at the same LDAP database.
If it is missing the migration must stop with that instruction, not half-way.  A local provider is the
opposite: its BaseDN must not already be an NS8 domain (NS8 creates a temporary external domain of that
name for the applications migrated before it), and it moves last, after every application using it.
Password policy: OpenLDAP's is not migrated (set it again in NS8); Samba's expiration is kept and its
strength setting becomes the Windows 2003+ complexity rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

PROVIDER_APP = "account-provider"


class ProviderMismatch(ConfigError):
    """The target has no external user domain matching the remote provider's BaseDN."""


class ProviderCollision(ConfigError):
    """A local provider's BaseDN is already a domain on the target."""


def base_dn_to_domain(base_dn: str) -> str:
    parts = []
    for rdn in base_dn.split(","):
        attr, sep, value = rdn.partition("=")
        if not sep or attr.strip().lower() != "dc" or not value.strip():
            raise ConfigError(f"BaseDN {base_dn!r} is not made of dc= components only: NS8 cannot name a "
                              f"user domain after it")
        parts.append(value.strip().lower())
    return ".".join(parts)


def domain_to_base_dn(domain: str) -> str:
    return ",".join(f"dc={p}" for p in domain.strip(".").lower().split("."))


@dataclass(frozen=True)
class AccountProvider:
    """The NS7 account provider: ``kind`` is ``ldap`` (OpenLDAP) or ``samba`` (Samba DC / AD)."""

    kind: str
    base_dn: str
    local: bool
    password_policy: dict = field(default_factory=dict)  # NS7 props: Users=strong|none, MaxPassAge, MinPassAge, PassExpires


@dataclass
class ProviderPlan:
    domain: str
    migrate_provider: bool  # local providers move (last); remote ones are only pointed at
    order: list[str]
    password_policy: dict | None
    notes: list[str]


def check_provider(provider: AccountProvider, target_domains: list[str]) -> str:
    """Raise the clear error the NS8 documentation describes, or return the matching domain name."""
    domain = base_dn_to_domain(provider.base_dn)
    names = {d.strip(".").lower() for d in target_domains}
    if not provider.local and domain not in names:
        raise ProviderMismatch(
            f"NS7 uses a remote account provider with BaseDN {provider.base_dn}: NS8 needs an external user "
            f"domain named {domain} that points to the same LDAP database before anything is migrated "
            f"(NS8 has: {', '.join(sorted(names)) or 'no user domains'})")
    if provider.local and domain in names:
        raise ProviderCollision(
            f"NS7's local account provider has BaseDN {provider.base_dn}, but NS8 already has a user domain "
            f"named {domain}: rename or remove that domain first (NS8 needs the name for a temporary "
            f"external domain while applications move)")
    return domain


def convert_password_policy(provider: AccountProvider) -> tuple[dict | None, str]:
    """(policy for NS8 or None, what the report says)."""
    p = provider.password_policy
    if provider.kind == "ldap":
        return None, ("password policy (strength and expiration) is not migrated for OpenLDAP: enable it "
                      "under the domain settings of Domains and users in NS8")
    if provider.kind != "samba":
        raise ConfigError(f"unknown account provider kind {provider.kind!r} (ldap, samba)")
    out: dict = {"expiration": {"enabled": p.get("PassExpires", "no") == "yes"}}
    for k, name in (("MaxPassAge", "max_age_days"), ("MinPassAge", "min_age_days")):
        if str(p.get(k, "")).isdigit():
            out["expiration"][name] = int(p[k])
    strong = p.get("Users", "none") == "strong"
    out["strength"] = {"enabled": strong, "complexity": strong, "min_length": 7 if strong else 0,
                       "history_length": 24 if strong else 0}
    note = "password expiration kept"
    if strong:
        note += ("; password strength converted to the Windows 2003+ complexity rules (at least 7 characters, "
                 "3 of 4 character classes, not containing the account name), enforced on future changes")
    return out, note


def plan_provider(provider: AccountProvider, target_domains: list[str], apps: list[str]) -> ProviderPlan:
    """Check the provider against the target and put the migration steps in order."""
    domain = check_provider(provider, target_domains)
    apps = [a for a in apps if a != PROVIDER_APP]
    policy, note = convert_password_policy(provider) if provider.local else (None, "remote provider: "
                                                                               "its policy stays where it is")
    notes = [note]
    if provider.local:
        notes.append(f"applications reach the NS7 provider through a temporary external domain {domain} "
                     f"until the provider itself is migrated, last")
        order = apps + [PROVIDER_APP]
    else:
        order = apps
    return ProviderPlan(domain, provider.local, order, policy, notes)
