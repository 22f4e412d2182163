"""NethServer 7 -> 8 mail conversions: pure functions from NS7 text and records to NS8 ones.

NS8 names mail users without the domain (``john.doe``, not ``john.doe@example.com``), so every place NS7
wrote a qualified name changes: the maildir, the identifiers in Dovecot ACL files, the keys of the
shared-mailbox dictionary and the ``Shared/<owner>@<domain>/`` paths inside sieve scripts.  What NS8 cannot
take (custom templates, the "always send a copy" setting) is listed, never silently dropped.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ...formats.dovecot_acl import (NAMED_KINDS, dump_dict_file, parse_acl, parse_acl_line,  # noqa: F401
                                    parse_dict_file, rename_shared_key, rename_shared_subscription)
from .rules import ERROR, INFO, WARNING, Note, split_list

NS7_FULL_RIGHTS = "akeilprwts"
NS8_FULL_RIGHTS = "akxeilprwts"
QUOTA_UNIT_MB = 102.4  # NS7 MailQuotaCustom counts tenths of a GiB
QUOTA_GIB_ROUNDING_ABOVE_MB = 20000


def strip_domain(name: str) -> str:
    return name.partition("@")[0]


def ns8_user(ns7_name: str) -> str:
    """Maildir ``<u>@<domain>`` (and any qualified user name) -> ``<u>``."""
    return strip_domain(ns7_name)


# -- Dovecot ACL files -------------------------------------------------------------------------------


def convert_acl_line(line: str) -> str | None:
    """One ``dovecot-acl`` line for NS8, or None when it must go.

    ``user=john@example.com akeilprwts`` -> ``user=john akxeilprwts``: identifiers lose the domain (NS8
    logins have none), NS7's full-access set gains ``x`` (delete mailbox, which NS7's Dovecot implied by
    ``k``), and entries for ``user=root`` are dropped (NS7's master login, no user on NS8).  Comments,
    ``owner``, ``anyone``, ``authenticated`` and rights other than the full set stay as they are.
    """
    e = parse_acl_line(line)
    if e is None:
        return line
    if e.kind == "user" and strip_domain(e.name) == "root":
        return None
    ident = f"{e.kind}={strip_domain(e.name)}" if e.kind in NAMED_KINDS else e.kind
    rights = e.rights
    if rights == NS7_FULL_RIGHTS:
        rights = NS8_FULL_RIGHTS
    elif rights.startswith("-") and rights[1:] == NS7_FULL_RIGHTS:
        rights = "-" + NS8_FULL_RIGHTS
    return ident + (" " + rights if rights else "")


def convert_acl(text: str) -> str:
    out = []
    for line in text.splitlines():
        new = convert_acl_line(line)
        if new is not None:
            out.append(new)
    return "".join(x + "\n" for x in out)


# -- shared-mailbox dictionary and sieve -------------------------------------------------------------

_SHARED_PATH = re.compile(r"(Shared/)([^/@\s\"']+)@[^/\s\"']+/")


def convert_shared_path(text: str) -> str:
    """``Shared/x@domain/`` -> ``Shared/x/`` anywhere in the text (sieve ``fileinto`` targets)."""
    return _SHARED_PATH.sub(r"\1\2/", text)


def convert_subscriptions(data: bytes) -> bytes:
    """A ``subscriptions`` file for NS8: ``Shared/<owner>@<domain>/...`` lines lose the domain as the owner's
    login does, or the reader's subscriptions to other users' folders would name nothing on NS8 (NS8's own
    import leaves them; the client then shows them unsubscribed).  Every other byte stays."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    out = [rename_shared_subscription(ln, strip_domain) for ln in lines]
    return "\n".join(out).encode("utf-8", "surrogateescape")


def convert_shared_key(key: str) -> str:
    """``shared/shared-boxes/user/<to>/<from>`` and ``.../anyone/<from>``: every user name loses its domain;
    ``Shared/x@domain/`` paths are rewritten too."""
    key = rename_shared_key(key, lambda _role, name: strip_domain(name))
    return convert_shared_path(key)


def convert_shared_dict(data: bytes) -> tuple[bytes, list[Note]]:
    notes = []
    out: dict[str, str] = {}
    for k, v in parse_dict_file(data):
        nk = convert_shared_key(k)
        if nk in out and out[nk] != v:
            notes.append(Note(WARNING, f"shared-mailbox key {k}: collides with another after the domain is "
                                       "removed; the first one kept"))
            continue
        out.setdefault(nk, v)
    return dump_dict_file(list(out.items())), notes


# -- quotas ------------------------------------------------------------------------------------------


def quota_mb(ns7_value: str | int) -> int:
    """NS7 quota (tenths of a GiB) -> NS8 megabytes: x 102.4, and above 20000 MB rounded up to whole GiB."""
    mb = int(ns7_value) * QUOTA_UNIT_MB
    if mb > QUOTA_GIB_ROUNDING_ABOVE_MB:
        return int(math.ceil(mb / 1024 - 1e-9) * 1024)
    return int(math.ceil(mb - 1e-9))


# -- smart host and connector accounts ---------------------------------------------------------------


def relay_rule(postfix_props: dict[str, str]) -> dict | None:
    """The global smart host of NS7 (``postfix`` record) -> NS8 relay rule for every sender (``*``)."""
    if postfix_props.get("SmartHostStatus") != "enabled" or not postfix_props.get("SmartHostName"):
        return None
    user = postfix_props.get("SmartHostUsername", "")
    auth = postfix_props.get("SmartHostAuthStatus", "enabled" if user else "disabled") == "enabled" and user
    return {
        "rule_type": "wildcard",
        "rule_subject": "*",
        "host": postfix_props["SmartHostName"],
        "port": int(postfix_props.get("SmartHostPort") or 25),
        "tls": postfix_props.get("SmartHostTlsStatus", "enabled") == "enabled",
        "username": user if auth else "",
        "password": postfix_props.get("SmartHostPassword", "") if auth else "",
        "enabled": True,
    }


@dataclass
class FetchTask:
    """One POP3/IMAP connector account as a mailmigrate fetch task; ``password`` never printed."""

    source: str  # the getmail key: the remote address
    protocol: str  # imap | pop3
    tls: bool
    server: str
    username: str
    password: str = field(repr=False)
    deliver_to: str  # NS8 user
    interval_minutes: int
    delete_on_remote: bool
    delete_after_days: int | None
    enabled: bool
    scheduled: bool  # IMAP: a working task; POP3: left for review
    review: str | None = None

    def as_dict(self, *, with_password: bool) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "password"}
        if with_password:
            d["password"] = self.password
        return d


def getmail_to_task(key: str, props: dict[str, str]) -> tuple[FetchTask, list[Note]]:
    """getmail ``Retriever`` says the protocol; ``Delete`` other than -1 means mail is removed remotely
    (0 at once, N after N days), which is carried as an explicit setting and reported, since a task that
    deletes someone's remote mail must never be a surprise."""
    notes: list[Note] = []
    retriever = props.get("Retriever", "SimplePOP3Retriever")
    imap = "IMAP" in retriever.upper()
    tls = "SSL" in retriever.upper()
    raw_delete = (props.get("Delete") or "-1").strip()
    if raw_delete in ("enabled", "disabled"):  # older records wrote a switch
        days = 0 if raw_delete == "enabled" else -1
    else:
        try:
            days = int(raw_delete)
        except ValueError:
            days = -1
            notes.append(Note(WARNING, f"connector {key}: Delete={raw_delete!r} not understood; remote mail kept"))
    try:
        interval = int(props.get("Time") or 30)
    except ValueError:
        interval = 30
    task = FetchTask(
        source=key, protocol="imap" if imap else "pop3", tls=tls, server=props.get("Server", ""),
        username=props.get("Username", ""), password=props.get("Password", ""),
        deliver_to=ns8_user(props.get("Account", "")), interval_minutes=interval,
        delete_on_remote=days != -1, delete_after_days=None if days == -1 else days,
        enabled=props.get("status", "enabled") == "enabled", scheduled=imap,
        review=None if imap else "POP3 account: review the settings and start the task by hand",
    )
    if task.delete_on_remote:
        when = "at once" if days == 0 else f"after {days} days"
        notes.append(Note(WARNING, f"connector {key}: deletes mail on {task.server} {when} "
                                   "(carried as delete_on_remote=true)"))
    if not imap:
        notes.append(Note(WARNING, f"connector {key}: POP3 account listed for review, not scheduled"))
    else:
        notes.append(Note(INFO, f"connector {key}: IMAP fetch task scheduled every {interval} min"))
    if not task.server or not task.deliver_to:
        notes.append(Note(ERROR, f"connector {key}: no server or no local account; task disabled"))
        task.enabled = task.scheduled = False
    return task, notes


# -- configurations NS8 does not take ----------------------------------------------------------------


def excluded_configurations(postfix_props: dict[str, str], custom_templates: list[str]) -> list[Note]:
    """The seed's "Configurations excluded from migration", for what this source actually has set."""
    notes = []
    for t in custom_templates:
        notes.append(Note(WARNING, f"custom template {t} is not migrated"))
    if postfix_props.get("AlwaysBccStatus") == "enabled":
        addr = postfix_props.get("AlwaysBccAddress", "")
        # NS8's documentation lists it as excluded, but ns8-mail's import-module (48import_always_bcc) sets it
        notes.append(Note(INFO, f"'Forward a copy of all messages' (always Bcc to {addr}): carried as "
                                "always_bcc, as NS8's own import does (its documentation still lists it as "
                                "not migrated)"))
    notes.append(Note(INFO, "account provider password policy settings are not migrated with the mail app"))
    return notes


def forward_settings(props: dict[str, str]) -> dict | None:
    if props.get("MailForwardStatus") != "enabled":
        return None
    return {"addresses": split_list(props.get("MailForwardAddress", "")),
            "keep_copy": props.get("MailForwardKeepMessageCopy", "no") == "yes"}
