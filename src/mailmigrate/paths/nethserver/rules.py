"""Pure rules of the SME Server / NethService -> NethServer import: no files, no I/O, easy to test alone.

Each rule returns what it decided *and* what the administrator must hear about it (``Note``), because the
seed's complaint is that a migration which silently maps a pseudonym to postmaster, or drops a wildcard
from a white list, is only found out when mail goes astray weeks later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..journal import ERROR, INFO, WARNING  # noqa: F401  (the levels of a Note are the event log's)

#: Local parts NethServer defines itself; a migrated pseudonym would shadow or duplicate them.
RESERVED_PSEUDONYMS = ("postmaster", "everyone")

#: Accounts whose pseudonyms the seed maps to postmaster: the SME administrator is not a NethServer
#: mailbox user, and shared folders (ibays) have no mailbox at all.
POSTMASTER_TARGETS_TYPES = ("ibay",)
ADMIN = "admin"

#: Configuration keys (records) of the configuration db the seed lists as not migrated.
NOT_MIGRATED_KEYS = ("bootstrap-console", "dns", "sysconfig", "SystemMode", "ActiveAccounts",
                     "UnsavedChanges")
#: Props the seed lists as not migrated, on whatever record they sit.
NOT_MIGRATED_PROPS = ("PasswordSet", "UnsavedChanges", "UDPPort", "TCPPort", "UDPPorts", "TCPPorts",
                      "ActiveAccounts")
#: The "green network configuration": filled in again by NethServer's bootstrap console.
GREEN_NETWORK_KEYS = ("LocalIP", "LocalNetmask", "GatewayIP", "ExternalIP", "ExternalNetmask",
                      "ExternalInterface", "InternalInterface", "DNSForwarder")


@dataclass(frozen=True)
class Note:
    level: str  # ERROR | WARNING | INFO
    text: str


@dataclass(frozen=True)
class Pseudonym:
    """A NethServer pseudonym record: ``key`` is ``local@`` (every domain) or ``local@domain``."""

    key: str
    targets: tuple[str, ...]  # full addresses
    access: str  # public | private


@dataclass
class PseudonymPlan:
    pseudonyms: list[Pseudonym] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for n in self.notes if n.level == ERROR)


def pseudonym_key(source_key: str) -> str:
    """SME keys are bare local parts (``john.doe``) or addresses; NethServer writes ``john.doe@``."""
    return source_key if "@" in source_key else source_key + "@"


def local_part(key: str) -> str:
    return key.partition("@")[0].lower()


def flatten_pseudonyms(accounts: dict, domain: str) -> PseudonymPlan:
    """Map every SME pseudonym to the NethServer addresses it finally delivers to.

    ``accounts`` maps key -> record with ``.type`` and ``.props`` (the SME accounts db).  A pseudonym
    pointing to another pseudonym is followed to its end; a group becomes its members (nested groups
    expanded); a user becomes ``user@domain``.  Targets that do not exist, loops, the admin account and
    shared folders end at ``postmaster@domain``: the first two are errors (mail would have bounced on SME
    too, or the data is damaged), the last two are what the seed prescribes and are warnings.
    """
    plan = PseudonymPlan()
    postmaster = f"postmaster@{domain}"
    for key, rec in accounts.items():
        if rec.type != "pseudonym":
            continue
        if local_part(key) in RESERVED_PSEUDONYMS:
            plan.notes.append(Note(INFO, f"pseudonym {key}: {local_part(key)}@ is defined by the mail server "
                                         "itself and is not migrated"))
            continue
        targets, notes = _resolve(accounts, rec.props.get("Account", ""), domain, [key])
        for n in notes:
            plan.notes.append(Note(n.level, f"pseudonym {key}: {n.text}"))
        if not targets:
            targets = [postmaster]
        access = "private" if rec.props.get("Visible") == "internal" else "public"
        plan.pseudonyms.append(Pseudonym(pseudonym_key(key), tuple(dict.fromkeys(targets)), access))
    return plan


def _resolve(accounts: dict, name: str, domain: str, chain: list[str]) -> tuple[list[str], list[Note]]:
    postmaster = f"postmaster@{domain}"
    if not name:
        return [postmaster], [Note(ERROR, "has no target account; mapped to " + postmaster)]
    if name in chain:
        return [postmaster], [Note(ERROR, "loop " + " -> ".join(chain + [name]) + "; mapped to " + postmaster)]
    rec = accounts.get(name)
    if rec is None and "@" in name:
        local, _, dom = name.partition("@")
        if dom.lower() != domain.lower():
            return [name], []  # an address elsewhere: delivered by forwarding, as on SME
        if local in accounts:
            return _resolve(accounts, local, domain, chain)
    if rec is None:
        return [postmaster], [Note(ERROR, f"target {name} does not exist; mapped to {postmaster}")]
    if name == ADMIN:
        return [postmaster], [Note(WARNING, f"target is the administrator account; mapped to {postmaster}")]
    if rec.type == "user":
        return [f"{name}@{domain}"], []
    if rec.type == "group":
        return expand_group(accounts, name, domain, chain + [name])
    if rec.type == "pseudonym":
        return _resolve(accounts, rec.props.get("Account", ""), domain, chain + [name])
    if rec.type in POSTMASTER_TARGETS_TYPES:
        return [postmaster], [Note(WARNING, f"target {name} is a shared folder ({rec.type}); mapped to "
                                            f"{postmaster}")]
    return [postmaster], [Note(ERROR, f"target {name} is a {rec.type}, not an account; mapped to {postmaster}")]


def expand_group(accounts: dict, name: str, domain: str, chain: list[str]) -> tuple[list[str], list[Note]]:
    out: list[str] = []
    notes: list[Note] = []
    for member in split_list(accounts[name].props.get("Members", "")):
        rec = accounts.get(member)
        if rec is not None and rec.type == "group":
            if member in chain:
                notes.append(Note(ERROR, f"group loop {' -> '.join(chain + [member])}; member skipped"))
                continue
            t, n = expand_group(accounts, member, domain, chain + [member])
        elif rec is not None and rec.type == "user":
            t, n = [f"{member}@{domain}"], []
        else:
            t, n = [], [Note(WARNING, f"group {name} member {member} is not a user; skipped")]
        out += t
        notes += n
    if not out:
        notes.append(Note(ERROR, f"group {name} has no members"))
    return out, notes


def split_list(value: str) -> list[str]:
    return [x.strip() for x in (value or "").split(",") if x.strip()]


# -- mail filter white/black lists -------------------------------------------------------------------


def filter_rule(rule: str) -> tuple[str | None, Note | None]:
    """``*@domain.tld`` -> ``domain.tld``; an address or domain stays; any other wildcard is dropped.

    NethServer's filter lists hold only full addresses and domain names, so a wildcard that does not
    stand for a whole local part cannot be expressed and must be reported, not half-translated.
    """
    rule = rule.strip()
    if rule.startswith("*@") and len(rule) > 2 and "*" not in rule[2:] and "?" not in rule[2:]:
        return rule[2:].lower(), None
    if "*" in rule or "?" in rule:
        return None, Note(WARNING, f"filter rule {rule}: wildcards other than *@domain are not supported; "
                                   "skipped")
    if not rule:
        return None, None
    return rule.lower(), None


@dataclass
class FilterLists:
    sender_white: list[str] = field(default_factory=list)
    sender_black: list[str] = field(default_factory=list)
    recipient_white: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def translate_wbl(senders: dict[str, str], recipients: dict[str, str]) -> FilterLists:
    """SME's spamassassin db ``wbl.global`` (sender -> White|Black) and ``wbl.global_to`` (recipient ->
    White) into NethServer's three lists; a recipient black list has no NethServer counterpart."""
    out = FilterLists()
    _file_rules(senders, {"white": out.sender_white, "black": out.sender_black}, out.notes,
                lambda rule, kind: f"sender rule {rule}: kind {kind!r} is not supported; skipped")
    _file_rules(recipients, {"white": out.recipient_white}, out.notes,
                lambda rule, kind: f"recipient rule {rule}: recipient {kind.lower()} lists are not "
                                   "implemented in NethServer; skipped")
    for name in ("sender_white", "sender_black", "recipient_white"):
        setattr(out, name, list(dict.fromkeys(getattr(out, name))))
    return out


def _file_rules(entries: dict[str, str], lists: dict[str, list[str]], notes: list[Note],
                unsupported: Callable[[str, str], str]) -> None:
    """Sender and recipient rules go through one procedure so that both report a wildcard the same way;
    only which kinds have a NethServer list, and how a kind without one is explained, differ."""
    for rule, kind in entries.items():
        value, note = filter_rule(rule)
        if note:
            notes.append(note)
        if value is None:
            continue
        target = lists.get(kind.lower())
        if target is None:
            notes.append(Note(WARNING, unsupported(rule, kind)))
        else:
            target.append(value)


def merge_list(existing: str, new: list[str]) -> str:
    """A comma list with the new values added once, order kept: reruns add nothing."""
    return ",".join(dict.fromkeys(split_list(existing) + new))


# -- folders -----------------------------------------------------------------------------------------


def listescape(name: str) -> str:
    """A folder name component as Dovecot's listescape plugin stores it: ``\\`` becomes ``\\5c``.

    The seed renames such directories after copying (``${SRC//\\\\/\\\\5c}``); we write the escaped name
    directly, which is the same result without a window where Dovecot sees the raw backslash.
    """
    return name.replace("\\", "\\5c")


def unlistescape(name: str) -> str:
    return name.replace("\\5c", "\\")


# -- users -------------------------------------------------------------------------------------------


def forward_props(props: dict[str, str]) -> tuple[dict[str, str], list[Note]]:
    """SME's ``EmailForward`` local|forward|both + ``ForwardAddress`` -> NethServer's MailForward* props."""
    mode = props.get("EmailForward", "local") or "local"
    address = ",".join(split_list(props.get("ForwardAddress", "")))
    if mode == "local":
        return {}, []
    if mode not in ("forward", "both"):
        return {}, [Note(WARNING, f"EmailForward={mode!r} is not known; mail stays local")]
    if not address:
        return {}, [Note(WARNING, f"EmailForward={mode} without ForwardAddress; mail stays local")]
    return {"MailForwardStatus": "enabled", "MailForwardAddress": address,
            "MailForwardKeepMessageCopy": "yes" if mode == "both" else "no"}, []


def strip_not_migrated(props: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The props minus those the seed does not migrate, and the names dropped (for the report)."""
    kept = {k: v for k, v in props.items() if k not in NOT_MIGRATED_PROPS}
    return kept, sorted(k for k in props if k in NOT_MIGRATED_PROPS)


def fetchmail_to_getmail(key: str, props: dict[str, str], domain: str) -> tuple[dict[str, str], list[Note]]:
    """An SME/NethService ``fetchmail`` db record -> NethServer ``getmail`` record props.

    ``nokeep=YES`` means the remote copy is removed after download: getmail's ``Delete`` counts days
    (-1 never, 0 at once), so it becomes 0; anything else keeps mail on the remote (-1).
    """
    notes = []
    account = props.get("account", "")
    if not props.get("popserver"):
        notes.append(Note(ERROR, f"fetchmail account {key}: no popserver; migrated disabled"))
    out = {
        "Account": f"{account}@{domain}" if account and "@" not in account else account,
        "Delete": "0" if props.get("nokeep", "").upper() == "YES" else "-1",
        "Password": props.get("password", ""),
        "Retriever": "SimplePOP3Retriever",
        "Server": props.get("popserver", ""),
        "SpamCheck": "enabled",
        "Time": "30",
        "Username": props.get("username", ""),
        "VirusCheck": "enabled",
        "status": "enabled" if props.get("active", "").upper() == "YES" and props.get("popserver") else "disabled",
    }
    if not account:
        notes.append(Note(ERROR, f"fetchmail account {key}: no local account to deliver to"))
    return out, notes
