"""Migrate actions for accounts: users (with their password hashes), groups, domains and pseudonyms."""

from __future__ import annotations

from pathlib import Path

from ...errors import FormatError
from ...formats.atomic import replace_file
from ...formats.esmith import Record
from ...formats.shadow import ShadowEntry, dump_shadow, parse_shadow
from . import rules
from .registry import Context, action


def _merge(db, key: str, rec: Record) -> bool:
    """Put ``rec`` at ``key`` keeping props the target added itself; True when anything changed."""
    old = db.get(key)
    if old is not None and old.type == rec.type and all(old.props.get(k) == v for k, v in rec.props.items()):
        return False
    props = dict(old.props) if old is not None and old.type == rec.type else {}
    props.update(rec.props)
    db[key] = Record(rec.type, props)
    return True


@action("nethserver-directory-migrate-users", 10)
def migrate_users(ctx: Context) -> None:
    """Users with their props and forwarding settings, and their password hashes from etc/shadow."""
    name = "nethserver-directory-migrate-users"
    src, dst = ctx.src_db("accounts"), ctx.dst_db("accounts")
    try:
        shadow_src = {e.name: e for e in parse_shadow(ctx.source.shadow.read_bytes(), ctx.source.shadow)}
    except FileNotFoundError:
        shadow_src = {}
        ctx.log.error(name, "the archive has no etc/shadow: users are migrated without passwords")
    dropped: set[str] = set()
    changed = 0
    migrated = []
    for key, rec in src.of_type("user"):
        if key == "admin":
            ctx.log.info(name, "admin is NethServer's own administrator: not migrated as a user "
                               "(its mailbox and home directory are)")
            continue
        props, gone = rules.strip_not_migrated(rec.props)
        dropped.update(gone)
        fw, notes = rules.forward_props(props)
        ctx.log.notes(name, [rules.Note(n.level, f"user {key}: {n.text}") for n in notes])
        for p in ("EmailForward", "ForwardAddress"):
            props.pop(p, None)
        props.update(fw)
        changed += _merge(dst, key, Record("user", props))
        migrated.append(key)
    ctx.shared["users"] = migrated
    if dropped:
        ctx.log.info(name, "props not migrated (reset or recomputed by NethServer): " + ", ".join(sorted(dropped)))
    _migrate_hashes(ctx, name, migrated, shadow_src)
    ctx.save("accounts")
    ctx.log.info(name, f"{len(migrated)} user(s), {changed} record(s) written")


def _migrate_hashes(ctx: Context, name: str, users: list[str], shadow_src: dict[str, ShadowEntry]) -> None:
    target = ctx.target.shadow
    try:
        entries = parse_shadow(target.read_bytes(), target)
    except FileNotFoundError:
        entries = []
    except FormatError as e:
        ctx.log.error(name, f"target shadow file unreadable, hashes not written: {e}")
        return
    by_name = {e.name: e for e in entries}
    changed = False
    for u in users:
        s = shadow_src.get(u)
        if s is None or s.crypt_hash is None:
            if shadow_src:
                ctx.log.warning(name, f"user {u}: no password hash in the archive; set a password by hand")
            continue
        cur = by_name.get(u)
        if cur is None:
            e = ShadowEntry(u, s.hash, list(s.rest))
            entries.append(e)
            by_name[u] = e
            changed = True
        elif cur.hash != s.hash:
            cur.hash = s.hash
            changed = True
    if changed and not ctx.dry_run:
        _replace(target, dump_shadow(entries))


def _replace(path: Path, data: bytes) -> None:
    """Write a file holding hashes: 0600 from the first byte, atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, data, 0o600)


@action("nethserver-directory-migrate-groups", 15)
def migrate_groups(ctx: Context) -> None:
    """Groups with their members (members that are not users or groups are dropped and reported)."""
    name = "nethserver-directory-migrate-groups"
    src, dst = ctx.src_db("accounts"), ctx.dst_db("accounts")
    n = 0
    for key, rec in src.of_type("group"):
        props, _ = rules.strip_not_migrated(rec.props)
        members = []
        for m in rules.split_list(props.get("Members", "")):
            r = src.get(m)
            if r is None or r.type not in ("user", "group") or m == "admin":
                ctx.log.warning(name, f"group {key}: member {m} is not a migrated user or group; dropped")
                continue
            members.append(m)
        props["Members"] = ",".join(members)
        _merge(dst, key, Record("group", props))
        n += 1
    ctx.save("accounts")
    ctx.log.info(name, f"{n} group(s)")


@action("nethserver-mail-migrate-domains", 20)
def migrate_domains(ctx: Context) -> None:
    """Mail domains, delivered locally; a domain that exists on the target is left as it is."""
    name = "nethserver-mail-migrate-domains"
    src, dst = ctx.src_db("domains"), ctx.dst_db("domains")
    keys = [k for k, _ in src.of_type("domain")]
    if ctx.domain not in keys:
        keys.insert(0, ctx.domain)
    made = ctx.shared.setdefault("domains_made", [])
    for key in keys:
        rec = src.get(key)
        if key in dst:
            if key not in made and dst[key].props.get("MigratedBy") != "mailmigrate":
                ctx.log.warning(name, f"domain {key} exists on the target; left as it is")
            continue
        dst[key] = Record("domain", {
            "AlwaysBccStatus": "disabled",
            "Description": (rec.props.get("Description", "") if rec else ""),
            "DisclaimerStatus": "disabled",
            "MigratedBy": "mailmigrate",
            "TransportType": "LocalDelivery",
            "UnknownRecipientsActionDeliverMailbox": "",
            "UnknownRecipientsActionType": "bounce",
        })
        made.append(key)
    ctx.save("domains")
    ctx.log.info(name, f"{len(keys)} domain(s)")


@action("nethserver-mail-migrate-pseudonyms", 30)
def migrate_pseudonyms(ctx: Context) -> None:
    """Pseudonyms flattened to final addresses; user and group addresses; reserved ones skipped."""
    name = "nethserver-mail-migrate-pseudonyms"
    src, dst = ctx.src_db("accounts"), ctx.dst_db("accounts")
    domain = ctx.domain
    plan = rules.flatten_pseudonyms(src, domain)
    ctx.log.notes(name, plan.notes)
    wanted: list[rules.Pseudonym] = []
    for u in ctx.users():
        wanted.append(rules.Pseudonym(f"{u}@", (f"{u}@{domain}",), "public"))
    for g, rec in src.of_type("group"):
        t, notes = rules.expand_group(src, g, domain, [g])
        ctx.log.notes(name, [rules.Note(x.level, f"group address {g}@{domain}: {x.text}") for x in notes])
        if t:
            wanted.append(rules.Pseudonym(f"{g}@{domain}", tuple(dict.fromkeys(t)), "public"))
    wanted += plan.pseudonyms
    written = 0
    for p in wanted:
        if rules.local_part(p.key) in rules.RESERVED_PSEUDONYMS:
            continue
        old = dst.get(p.key)
        rec = Record("pseudonym", {"Account": ",".join(p.targets), "Access": p.access,
                                   "Description": old.props.get("Description", "") if old else ""})
        if old is not None and old.type != "pseudonym":
            ctx.log.error(name, f"{p.key} exists on the target as a {old.type}; pseudonym not written")
            continue
        written += _merge(dst, p.key, rec)
    ctx.save("accounts")
    ctx.log.info(name, f"{len(wanted)} pseudonym(s), {written} written, {plan.errors} mapped to postmaster "
                       "by error")
