"""Migrate actions for configuration: system names, mail filter lists, smart host, fetchmail accounts, and the
report of what the seed says is not migrated."""

from __future__ import annotations

from ...formats.esmith import Record
from . import rules
from .registry import Context, action
from .sme_services import signal


def _service(db, key: str) -> Record:
    rec = db.get(key)
    if rec is None:
        rec = db[key] = Record("service", {})
    return rec


@action("nethserver-base-migrate-names", 5)
def migrate_names(ctx: Context) -> None:
    """DomainName and SystemName, which every later action and NethServer itself build addresses from."""
    name = "nethserver-base-migrate-names"
    src, dst = ctx.src_db("configuration"), ctx.dst_db("configuration")
    for key in ("DomainName", "SystemName"):
        rec = src.get(key)
        if rec is None or not rec.type:
            ctx.log.warning(name, f"the source configuration has no {key}")
            continue
        cur = dst.get(key)
        if cur is None:
            dst[key] = Record(rec.type, {})
        elif cur.type != rec.type:
            ctx.log.warning(name, f"{key} is {cur.type} on the target and {rec.type} on the source; target kept "
                                  "(mail addresses are built from the source's)")
    ctx.save("configuration")


@action("nethserver-mail-filter-migrate", 40)
def migrate_filter_lists(ctx: Context) -> None:
    """Sender white/black lists and the recipient white list; only *@domain wildcards can be carried."""
    name = "nethserver-mail-filter-migrate"
    sa = ctx.src_db("spamassassin")
    senders = dict(sa["wbl.global"].props) if "wbl.global" in sa else {}
    recipients = dict(sa["wbl.global_to"].props) if "wbl.global_to" in sa else {}
    lists = rules.translate_wbl(senders, recipients)
    ctx.log.notes(name, lists.notes)
    rec = _service(ctx.dst_db("configuration"), "rspamd")
    for prop, values in (("SenderWhiteList", lists.sender_white), ("SenderBlackList", lists.sender_black),
                         ("RecipientWhiteList", lists.recipient_white)):
        rec.props[prop] = rules.merge_list(rec.props.get(prop, ""), values)
    ctx.save("configuration")
    ctx.log.info(name, f"{len(lists.sender_white)} sender white, {len(lists.sender_black)} sender black, "
                       f"{len(lists.recipient_white)} recipient white rule(s); the bayes database is not migrated")


@action("nethserver-mail-smarthost-migrate", 45)
def migrate_smarthost(ctx: Context) -> None:
    """SME's SMTPSmartHost (with optional SMTPAuthProxy credentials) -> NethServer postfix SmartHost*."""
    name = "nethserver-mail-smarthost-migrate"
    src = ctx.src_db("configuration")
    rec = src.get("SMTPSmartHost")
    host = rec.type.strip() if rec is not None else ""
    if not host or host == "off":
        ctx.log.info(name, "no smart host configured")
        return
    port = "25"
    if ":" in host:
        host, _, port = host.partition(":")
    auth = src.get("SMTPAuthProxy")
    user = auth.props.get("Userid", "") if auth is not None and auth.props.get("status") == "enabled" else ""
    pw = auth.props.get("Passwd", "") if user else ""
    postfix = _service(ctx.dst_db("configuration"), "postfix")
    postfix.props.update({
        "SmartHostStatus": "enabled", "SmartHostName": host, "SmartHostPort": port,
        "SmartHostUsername": user, "SmartHostPassword": pw,
        "SmartHostAuthStatus": "enabled" if user else "disabled", "SmartHostTlsStatus": "enabled",
    })
    ctx.save("configuration")
    ctx.log.info(name, f"smart host {host}:{port}" + (" with authentication" if user else ""))


@action("nethserver-getmail-migrate", 50)
def migrate_fetchmail(ctx: Context) -> None:
    """fetchmail accounts -> getmail accounts (POP3, delivered to the local user)."""
    name = "nethserver-getmail-migrate"
    if not ctx.source.db("fetchmail").exists():
        ctx.log.info(name, "no fetchmail database in the archive")
        return
    src, dst = ctx.src_db("fetchmail"), ctx.dst_db("getmail")
    users = set(ctx.users())
    n = 0
    for key, rec in src.items():
        props, notes = rules.fetchmail_to_getmail(key, rec.props, ctx.domain)
        ctx.log.notes(name, notes)
        local = rec.props.get("account", "")
        if local and "@" not in local and local not in users:
            ctx.log.error(name, f"fetchmail account {key}: delivers to {local}, who is not a migrated user; "
                                "migrated disabled")
            props["status"] = "disabled"
        if props["Delete"] != "-1":
            ctx.log.warning(name, f"fetchmail account {key}: deletes mail on {props['Server']} after download")
        dst[key] = Record("getmail", props)
        n += 1
    ctx.save("getmail")
    ctx.log.info(name, f"{n} account(s)")
    signal(ctx, "nethserver-getmail-save", by=name)


@action("nethserver-base-migrate-not-migrated", 90)
def report_not_migrated(ctx: Context) -> None:
    """Say which configuration the seed does not migrate, for what this source actually has."""
    name = "nethserver-base-migrate-not-migrated"
    cfg = ctx.src_db("configuration")
    keys = [k for k in cfg if k in rules.NOT_MIGRATED_KEYS]
    green = [k for k in cfg if k in rules.GREEN_NETWORK_KEYS]
    ports = sorted({f"{k}.{p}" for k, r in cfg.items() for p in r.props if p in rules.NOT_MIGRATED_PROPS})
    if keys:
        ctx.log.info(name, "not migrated (recomputed or set in bootstrap-console): " + ", ".join(keys))
    if green:
        ctx.log.info(name, "green network configuration not migrated: " + ", ".join(green))
    if ports:
        ctx.log.info(name, "network ports reset to NethServer defaults: " + ", ".join(ports))
    ctx.log.info(name, "backup configuration is not migrated: configure the backup again")
    if any(r.type == "ibay" for _, r in ctx.src_db("accounts").items()):
        ctx.log.warning(name, "ibays exist: their virtual host relations are not migrated automatically; check "
                              "the configuration by hand")
