"""Migrate actions for what NethServer's own packages migrate besides accounts and mail: spam sorting and
retention, SME's global fetchmail (secondary mail server), ibays, and the events that apply an import.

Each follows the vendor's action of the same name:

* ``nethserver-mail-server-migrate`` (NethServer/nethserver-mail): SME's ``spamassassin`` record in
  ``configuration``: ``SortSpam=enabled`` -> ``dovecot`` ``SpamFolder=Junk`` (else empty: no sorting);
  ``MessageRetentionTime`` days -> ``SpamRetentionTime``, the nearest of 1 2 4 7 15 30 60 90 180 days, 0 ->
  ``infinite``; then it signals ``nethserver-mail-server-save``;
* ``nethserver-ibays-migrate-begin`` / ``-commit`` and ``nethserver-samba-migrate-ibays``
  (NethServer/nethserver-samba): each SME ``ibay`` becomes a NethServer ``ibay`` record (``UserAccess``
  mapped to ``GroupAccess``/``OtherAccess``, ``Group`` to ``OwningGroup`` ``group@DOMAIN`` or ``domain
  users@DOMAIN`` for SME's ``shared``, Samba props), its files ``home/e-smith/files/ibays/NAME`` move to
  ``/var/lib/nethserver/ibay/NAME``, then ``ibay-create NAME`` is signalled; POSIX ACLs come from the
  backup's ``acls.dump``.

mailmigrate writes databases and files under a root and runs no e-smith event: every event the vendor's
actions would signal is listed at the end of the import (:func:`pending_events`) with the command to run.
"""

from __future__ import annotations

from ...formats.esmith import Record
from .mailboxes import copy_tree
from .registry import Context, action

RETENTION_DAYS = (1, 2, 4, 7, 15, 30, 60, 90, 180)
IBAY_ACCESS = {
    "wr-admin-rd-group": {"GroupAccess": "r", "OtherAccess": ""},
    "wr-group-rd-everyone": {"GroupAccess": "rw", "OtherAccess": "r"},
    "wr-group-rd-group": {"GroupAccess": "rw", "OtherAccess": ""},
}
IBAY_ACCESS_DEFAULT = {"GroupAccess": "rw", "OtherAccess": "r"}


def signal(ctx: Context, event: str, *args: str, by: str) -> None:
    """Remember an event the vendor's action signals at this point, to list at the end."""
    ctx.shared.setdefault("events", []).append((event, args, by))


def pending_events(ctx: Context) -> list[str]:
    return [f"signal-event {' '.join((e, *a))}  ({by})" for e, a, by in ctx.shared.get("events", [])]


def retention(days: str) -> str:
    try:
        n = int(days or 0)
    except ValueError:
        n = 0
    if n == 0:
        return "infinite"
    return f"{min(RETENTION_DAYS, key=lambda v: abs(n - v))}d"  # a tie goes to the shorter, as the vendor's loop


@action("nethserver-mail-server-migrate", 55)
def migrate_spam_sorting(ctx: Context) -> None:
    """SME's spam sorting and retention -> NethServer's spam folder and its retention."""
    name = "nethserver-mail-server-migrate"
    sa = ctx.src_db("configuration").get("spamassassin")
    if sa is None:
        ctx.log.info(name, "no spamassassin record in the source configuration")
        return
    dovecot = ctx.dst_db("configuration").setdefault("dovecot", Record("service", {}))
    folder = "Junk" if sa.props.get("SortSpam") == "enabled" else ""
    keep = retention(sa.props.get("MessageRetentionTime", ""))
    dovecot.props.update({"SpamFolder": folder, "SpamRetentionTime": keep})
    ctx.save("configuration")
    ctx.log.info(name, f"spam {'sorted into ' + folder if folder else 'not sorted'}, kept {keep} "
                       f"(SME: SortSpam={sa.props.get('SortSpam', '-')}, "
                       f"MessageRetentionTime={sa.props.get('MessageRetentionTime', '-')})")
    signal(ctx, "nethserver-mail-server-save", by=name)


#: SME's server-manager "email" panel: every15min ... every2hrs -> minutes (``never``: no schedule)
FETCH_FREQUENCY = {"every5min": 5, "every15min": 15, "every30min": 30, "everyhour": 60, "every2hrs": 120}


@action("nethserver-getmail-migrate-secondary", 51)
def migrate_secondary_mail_server(ctx: Context) -> None:
    """SME's global mail retrieval (``fetchmail`` record in ``configuration``).

    As SME's "email" panel writes it: ``Method`` standard (``status`` disabled: mail arrives by SMTP, nothing
    is fetched), ``etrn`` (the secondary MX is asked over SMTP to flush its queue) or ``multidrop`` (one POP
    mailbox ``SecondaryMailAccount``/``SecondaryMailPassword`` on ``SecondaryMailServer``, sorted to local
    users by a header, ``SecondaryMailEnvelope``, every ``FreqOffice``).  NethServer's POP3 connector fetches
    one mailbox for one user: multidrop is carried as a connector account for admin, written disabled with a
    WARNING (the per-user sorting is lost: decide before enabling it); ETRN is listed, not carried."""
    name = "nethserver-getmail-migrate-secondary"
    rec = ctx.src_db("configuration").get("fetchmail")
    props = rec.props if rec is not None else {}
    method = props.get("Method", "standard") if props.get("status") == "enabled" else "standard"
    server = props.get("SecondaryMailServer", "")
    if method == "standard":
        ctx.log.info(name, "SME fetched no mail (standard mode: mail arrives by SMTP)")
        return
    if method == "etrn" or not server:
        ctx.log.warning(name, f"mail retrieval {method} from {server or '(no server)'}: not carried, NethServer "
                              "has no ETRN client; let the secondary MX deliver to NethServer directly")
        return
    account = props.get("SecondaryMailAccount", "")
    key = account if "@" in account else f"{account}@{server}"
    minutes = FETCH_FREQUENCY.get(props.get("FreqOffice", "every15min"), 15)
    ctx.dst_db("getmail")[key] = Record("getmail", {
        "Server": server, "Username": account, "Password": props.get("SecondaryMailPassword", ""),
        "Account": f"admin@{ctx.domain}", "Retriever": "SimplePOP3Retriever", "Delete": "-1",
        "Time": str(minutes), "VirusCheck": "enabled", "SpamCheck": "enabled", "status": "disabled"})
    ctx.save("getmail")
    sort = props.get("SecondaryMailEnvelope") or "SME's default headers"
    ctx.log.warning(name, f"multi-drop mailbox {account} on {server} (sorted to users by {sort} on SME) -> POP3 "
                          f"connector account {key} for admin@{ctx.domain}, written disabled: NethServer's "
                          "connector delivers a mailbox to one user, so the sorting is lost; enable it once "
                          "decided")
    signal(ctx, "nethserver-getmail-save", by=name)


@action("nethserver-ibays-migrate", 62)
def migrate_ibays(ctx: Context) -> None:
    """ibays -> NethServer shared folders: records with their access rights, files under ibay/NAME."""
    name = "nethserver-ibays-migrate"
    dst = ctx.dst_db("accounts")
    n = 0
    for key, rec in ctx.src_db("accounts").of_type("ibay"):
        group = rec.props.get("Group", "shared")
        access = IBAY_ACCESS.get(rec.props.get("UserAccess", ""), IBAY_ACCESS_DEFAULT)
        target = dst.get(key)
        if target is not None and target.type not in ("ibay", "ibay-migrate"):
            ctx.log.error(name, f"ibay {key}: the target has a {target.type} of that name; not migrated")
            continue
        props = dict(target.props) if target is not None else {}
        props.update({
            "Description": f"{rec.props.get('Name', key)} [migration]",
            "OwningGroup": f"domain users@{ctx.domain}" if group == "shared" else f"{group}@{ctx.domain}",
            "AclRead": "", "AclWrite": "", **access,
            "SmbRecycleBinStatus": rec.props.get("RecycleBin", "disabled"), "SmbShareBrowseable": "enabled",
            "SmbStatus": "enabled", "SmbProfileType": "migration"})
        dst[key] = Record("ibay", props)
        src_dir = ctx.source.root / "home/e-smith/files/ibays" / key
        files = 0
        if src_dir.is_dir() and not ctx.dry_run:
            skipped: list[str] = []
            files = copy_tree(src_dir, ctx.target.root / "var/lib/nethserver/ibay" / key, skipped=skipped)
            for link in skipped:
                ctx.log.warning(name, f"ibay {key}: symlink {link} points out of the ibay; not copied")
        ctx.log.info(name, f"ibay {key}: group {props['OwningGroup']} {access['GroupAccess'] or '-'}, others "
                           f"{access['OtherAccess'] or '-'}, {files} file(s) copied")
        signal(ctx, "ibay-create", key, by=name)
        n += 1
    if not n:
        return
    ctx.save("accounts")
    acls = ctx.source.db("acls.dump")
    if acls.is_file():
        ctx.log.warning(name, "POSIX ACLs of the ibays (home/e-smith/db/acls.dump) are not restored here: on the "
                              "NethServer host, in /var/lib/nethserver/ibay, run: sed 's/^group:shared:/group:"
                              "domain users:/' acls.dump | setfacl --restore=/dev/stdin")
