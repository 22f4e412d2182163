"""NethServer 7 mail settings -> what NS8's mail module holds: addresses, users, groups, relay rules, filter.

Pure functions over e-smith records.  The mapping follows what NethServer's own migration carries
(``nethserver-ns8-migration`` exports ``accounts``, ``domains``, ``smarthosts``, ``networks`` and the
``postfix``/``dovecot``/``rspamd``/``clamd`` records; ``ns8-mail``'s ``import-module`` scripts turn them into
NS8 tables and environment), so a mailbox, an address or a setting NS8's tool would carry is carried here
too, and what neither carries is returned as a note saying so and why, never dropped in silence.

NS7 keys users and groups ``name@domain``; NS8 names them without the domain.  A public folder is reached
through an address whose destination is ``vmail+NAME`` (NS7's ``mailbox/create`` writes ``NAME@`` ->
``vmail+NAME``), which NS8 understands the same way, so it is kept as it is.  ``root`` is a destination NS8
replaces by its ``postmaster`` public mailbox; root's own login is disabled there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...formats.esmith import EsmithDb
from . import ns8
from .rules import INFO, WARNING, Note, split_list

PUBLIC_PREFIX = "vmail+"
ROOT_DESTINATION = "vmail+postmaster"


@dataclass
class Accounts:
    """Who exists on NS7, by the names its pseudonyms use (``alice@example.com``, ``sales@example.com``)."""

    domain: str
    users: dict[str, str] = field(default_factory=dict)  # NS7 name -> NS8 name
    groups: dict[str, str] = field(default_factory=dict)
    pseudonyms: dict[str, list[str]] = field(default_factory=dict)
    private: set[str] = field(default_factory=set)  # pseudonyms with Access=private (internal on NS8)

    @classmethod
    def read(cls, accounts: EsmithDb, domain: str, mail_dirs: dict[str, str]) -> "Accounts":
        a = cls(domain)
        for key, _rec in accounts.of_type("user"):
            name = key if "@" in key else f"{key}@{domain}"
            a.users[name] = ns8.strip_domain(name)
        a.users.update({k: v for k, v in mail_dirs.items() if "@" in k})  # a mailbox without a record
        for key, _rec in accounts.of_type("group"):
            name = key if "@" in key else f"{key}@{domain}"
            a.groups[name] = ns8.strip_domain(name)
        a.pseudonyms = {k: split_list(r.props.get("Account", "")) for k, r in accounts.of_type("pseudonym")}
        a.private = {k for k, r in accounts.of_type("pseudonym") if r.props.get("Access") == "private"}
        return a

    def local_domains(self) -> set[str]:
        return {self.domain} | {n.partition("@")[2] for n in (*self.users, *self.groups)}


def addresses(acc: Accounts) -> tuple[list[dict], list[Note]]:
    """Every NS7 pseudonym as an NS8 address with the destinations NS8 delivers to.

    A destination that is a pseudonym is followed (NS8 would follow it at delivery; flattening keeps the
    result readable and loop-proof).  Users and groups lose ``@domain``; ``vmail+NAME`` (a public folder)
    and external addresses stay; ``root`` becomes ``vmail+postmaster``.  A destination in one of the
    server's domains that names nothing is kept as it is, as NS8's import keeps it, with a WARNING: NS7
    bounced mail to it too, so carrying it changes nothing a user would notice and is no migration error.
    """
    notes: list[Note] = []
    local = acc.local_domains()

    def resolve(dest: str, chain: list[str]) -> list[str]:
        if dest == "root":
            return [ROOT_DESTINATION]
        if dest.startswith(PUBLIC_PREFIX):
            return [dest]
        if dest in acc.users:
            return [acc.users[dest]]
        if dest in acc.groups:
            return [acc.groups[dest]]
        local_part, _, dom = dest.partition("@")
        for cand in (dest, local_part + "@"):
            if cand in acc.pseudonyms and cand not in chain and (dom in local or not dom):
                return [x for d in acc.pseudonyms[cand] for x in resolve(d, chain + [cand])]
        if not dom or dom in local:
            notes.append(Note(WARNING, f"address {chain[0]}: destination {dest} is no user, group, public "
                                       "folder or address on NS7; carried as it is (it bounced there too)"))
        return [dest]

    out = []
    for key, dests in acc.pseudonyms.items():
        final = list(dict.fromkeys(x for d in dests for x in resolve(d, [key])))
        alocal, _, dom = key.partition("@")
        out.append({"address": key, "local": alocal, "domain": dom or "*", "destinations": final,
                    "internal": key in acc.private})
        if not final:
            notes.append(Note(WARNING, f"address {key}: no destination on NS7; carried without one"))
    return out, notes


def user_settings(accounts: EsmithDb, acc: Accounts) -> tuple[dict[str, dict], list[str], list[Note]]:
    """Per NS8 user: quota, forward, internal-only, spam retention; and the users NS8 must not let log in.

    ``MailQuotaCustom=unlimited`` is NS8's 0 (unlimited), not the default; ``MailStatus=disabled`` puts the
    user on NS8's disabled list (``DOVECOT_DISABLED_USERS``) as NethServer's import does; ``MailAccess=private``
    is NS8's ``internal`` (receives only from local senders); root is always disabled."""
    notes: list[Note] = []
    out: dict[str, dict] = {}
    disabled = ["root"]
    for key, rec in accounts.of_type("user"):
        name = acc.users.get(key if "@" in key else f"{key}@{acc.domain}", ns8.strip_domain(key))
        props = rec.props
        entry: dict = {}
        if props.get("MailQuotaType") == "custom":
            raw = props.get("MailQuotaCustom", "")
            if raw == "unlimited":
                entry["quota_mb"] = 0
            elif raw.isdigit():
                entry["quota_mb"] = ns8.quota_mb(raw)
            else:
                notes.append(Note(WARNING, f"user {key}: MailQuotaCustom={raw!r} not understood; default quota"))
        fw = ns8.forward_settings(props)
        if fw:
            entry["forward"] = fw
        if props.get("MailAccess") == "private":
            entry["internal"] = True
        if props.get("MailStatus") == "disabled":
            entry["disabled"] = True
            disabled.append(name)
            notes.append(Note(INFO, f"user {key}: mail disabled on NS7; mailbox copied, login disabled on NS8"))
        if props.get("MailSpamRetentionStatus") == "enabled":
            days = props.get("MailSpamRetentionTime", "").removesuffix("d")
            if days.isdigit():
                entry["spam_retention_days"] = int(days)
        out[name] = entry
    return out, list(dict.fromkeys(disabled)), notes


def group_settings(accounts: EsmithDb, acc: Accounts) -> tuple[dict[str, dict], list[Note]]:
    """Group mailboxes: NS8 has no disabled group address; NethServer's import makes a disabled or private
    group ``internal``, and so does this, with a WARNING for the disabled ones (local senders now reach it)."""
    notes: list[Note] = []
    out: dict[str, dict] = {}
    for key, rec in accounts.of_type("group"):
        name = acc.groups.get(key if "@" in key else f"{key}@{acc.domain}", ns8.strip_domain(key))
        status, access = rec.props.get("MailStatus"), rec.props.get("MailAccess")
        if access == "private" or status == "disabled":
            out[name] = {"internal": True}
            if status == "disabled":
                notes.append(Note(WARNING, f"group {key}: mail disabled on NS7; NS8 has no disabled group "
                                           "address, so it is internal-only there (local senders reach it)"))
        else:
            out[name] = {}
    return out, notes


def relay_rules(smarthosts: EsmithDb, postfix: dict[str, str]) -> tuple[list[dict], list[Note]]:
    """Per-sender and per-domain smart hosts (``smarthosts`` db) and the global one, as NS8 relay rules."""
    rules, notes = [], []
    for key, rec in smarthosts.items():
        p = rec.props
        rules.append({"rule_type": rec.type, "rule_subject": key.removeprefix("@"), "host": p.get("Host", ""),
                      "port": int(p.get("Port") or 25), "tls": p.get("TlsStatus") == "enabled",
                      "username": p.get("Username", ""), "password": p.get("Password", ""),
                      "enabled": p.get("status") == "enabled"})
        notes.append(Note(INFO, f"smart host for {rec.type} {key} -> relay rule ({p.get('Host', '')})"))
    g = ns8.relay_rule(postfix)
    if g:
        rules.append(g)
        notes.append(Note(INFO, f"global smart host {g['host']}:{g['port']} -> relay rule for *"))
    return rules, notes


def domains(domains_db: EsmithDb, postfix: dict[str, str], mail_domain: str) -> tuple[list[dict], list[Note]]:
    """Local-delivery domains, as NS8 takes them (the mail domain adds users, and groups when
    ``DynamicGroupAlias`` is on); other transport types are not carried by NS8's import: listed."""
    out, notes = [], []
    dyn = postfix.get("DynamicGroupAlias") == "enabled"
    for key, rec in domains_db.items():
        if rec.type != "domain":
            continue
        transport = rec.props.get("TransportType", "")
        if transport != "LocalDelivery":
            notes.append(Note(WARNING, f"domain {key} (TransportType={transport or 'none'}, relay "
                                       f"{rec.props.get('RelayHost', '-')}): not carried, NS8's mail module "
                                       "takes only local-delivery domains; add a relay rule on NS8 by hand"))
            continue
        main = key == mail_domain
        out.append({"domain": key, "add_users": main, "add_groups": main and dyn,
                    "description": rec.props.get("Description", "")})
    return out, notes


def filter_settings(rspamd: dict[str, str], postfix: dict[str, str], clamd: dict[str, str]) -> tuple[dict, list[Note]]:
    """Antispam, antivirus, bypass lists and trusted networks, in the shape of NS8's
    ``set-filter-configuration`` and bypass maps (ns8-mail ``55import_filter``)."""
    notes: list[Note] = []

    def num(key: str, default: float) -> float:
        try:
            return float(rspamd.get(key, default))
        except ValueError:
            notes.append(Note(WARNING, f"rspamd {key}={rspamd.get(key)!r} not a number; NS8 default {default}"))
            return default

    bypass: dict[str, list[str]] = {"sender": [], "sender_domain": [], "recipient": [], "recipient_domain": []}
    for e in split_list(rspamd.get("SenderWhiteList", "")):
        bypass["sender" if "@" in e else "sender_domain"].append(e)
    for e in split_list(rspamd.get("RecipientWhiteList", "")):
        bypass["recipient" if "@" in e else "recipient_domain"].append(e)
    networks = split_list(postfix.get("AccessBypassList", ""))
    try:
        grey = {"enabled": True, "threshold": float(rspamd["SpamGreyLevel"])}
    except (KeyError, ValueError):
        grey = {"enabled": False}
    prefix = ({"enabled": True, "prefix": rspamd.get("SpamSubjectPrefixString", "***SPAM***")}
              if rspamd.get("SpamSubjectPrefixStatus") == "enabled" else {"enabled": False})
    antispam = ({"enabled": True, "spam_flag_threshold": num("SpamTag2Level", 6.0),
                 "deny_message_threshold": num("SpamKillLevel", 15.0), "greylist": grey,
                 "prefix_email_subject": prefix}
                if rspamd.get("SpamCheckStatus", "enabled") == "enabled" else {"enabled": False})
    antivirus = ({"enabled": True, "clamav_official_sigs": clamd.get("OfficialSignatures", "disabled") == "enabled",
                  "third_party_sigs_rating": clamd.get("UnofficialSignaturesRating", "medium")}
                 if rspamd.get("VirusCheckStatus", "enabled") == "enabled" else {"enabled": False})
    black = split_list(rspamd.get("SenderBlackList", ""))
    if black:
        notes.append(Note(WARNING, f"sender black list ({len(black)} entries: {', '.join(black)}): not carried, "
                                   "NS8's import has no black list map; re-enter it in NS8's filter by hand"))
    if postfix.get("AccessPolicies") == "trustednetworks":
        notes.append(Note(WARNING, "postfix AccessPolicies=trustednetworks: NS7's trusted networks are not "
                                   "known to this import; add them to NS8's relay networks by hand"))
    return {"antispam": antispam, "antivirus": antivirus, "bypass": bypass, "relay_networks": networks,
            "sender_validation": postfix.get("SenderValidation") == "enabled"}, notes


def mailbox_settings(dovecot: dict[str, str], rspamd: dict[str, str]) -> dict:
    """Server-wide mailbox settings NS8's import sets in its environment (``20import_environment``)."""
    retention = dovecot.get("SpamRetentionTime", "")
    return {
        "spam_folder": dovecot.get("SpamFolder", "Junk"),
        "spam_retention_days": int(retention[:-1]) if retention.endswith("d") and retention[:-1].isdigit() else 15,
        "shared_seen": dovecot.get("SharedSeen") == "enabled",
        "spam_subject_prefix": (rspamd.get("SpamSubjectPrefixString", "")
                                if rspamd.get("SpamSubjectPrefixStatus") == "enabled" else ""),
    }
