"""Migrate actions for files: home directories, mailboxes (through the sync engine) and the shared-mailbox
index."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ...errors import MailmigrateError
from ...sync.state import StateDB
from .mailboxes import apply_ownership, copy_file, copy_tree, folder_dirs, sync_maildir, target_folder_dir
from .registry import Context, action

MAIL_NAMES = ("Maildir", "sieve", ".dovecot.sieve")
#: admin's home on SME is /home/e-smith, which also holds the databases and every user's files
ADMIN_HOME_EXCLUDE = MAIL_NAMES + ("db", "files", "ssl.crt", "ssl.key", "ssl.pem", ".mailmigrate-unpacked")


@action("nethserver-base-migrate-homes", 35)
def migrate_homes(ctx: Context) -> None:
    """Users' home directories to /var/lib/nethserver/home, admin's to migration/admin with a link in /root."""
    name = "nethserver-base-migrate-homes"
    copied = 0
    for u in ctx.users():
        src = ctx.source.user_home(u)
        if not src.is_dir():
            ctx.log.warning(name, f"user {u}: no home directory in the archive")
            continue
        if not ctx.dry_run:
            copied += copy_tree(src, ctx.target.home / u, exclude=MAIL_NAMES)
    admin = ctx.target.admin_migration
    if ctx.source.admin_home.is_dir() and not ctx.dry_run:
        copied += copy_tree(ctx.source.admin_home, admin, exclude=ADMIN_HOME_EXCLUDE)
        home = ctx.target.root_home
        home.mkdir(parents=True, exist_ok=True)
        if not any(p.name.startswith("admin-migration-") for p in home.iterdir()):
            link = home / f"admin-migration-{ctx.timestamp}"
            os.symlink(os.path.relpath(admin, home), link)
            ctx.log.info(name, f"admin's home directory is in {admin}, linked from {link}")
    ctx.log.info(name, f"{copied} file(s) copied")


@action("nethserver-mail-migrate-mailboxes", 60)
def migrate_mailboxes(ctx: Context) -> None:
    """Every user's Maildir and sieve scripts to vmail/<user>@<domain>, incrementally; backslash folders renamed."""
    name = "nethserver-mail-migrate-mailboxes"
    domain = ctx.domain
    scratch = tempfile.TemporaryDirectory(prefix="mailmigrate-dry-") if ctx.dry_run else None
    state_path = (Path(scratch.name) if scratch else ctx.target.state_dir) / "sme-import-mail.sqlite"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = StateDB.open(state_path)
    totals = {"copied": 0, "skipped": 0, "failed": 0}
    ownership_missing = False
    try:
        for u in ctx.users() + ["admin"]:
            src = ctx.source.maildir(u)
            if not src.is_dir():
                if u != "admin":
                    ctx.log.warning(name, f"user {u}: no Maildir in the archive")
                continue
            home = ctx.target.mail_home(u, domain)
            dst = home / "Maildir"
            try:
                res = sync_maildir(src, dst, account=f"{u}@{domain}", state=state, dry_run=ctx.dry_run,
                                   listescaped_target=True)
            except MailmigrateError as e:
                ctx.log.error(name, f"user {u}: {e}")
                continue
            c = res.counters
            totals["copied"] += c.copied
            totals["skipped"] += c.skipped
            totals["failed"] += c.failed
            if res.error:
                ctx.log.error(name, f"user {u}: {res.error}")
            for p in res.problems:
                ctx.log.error(name, p.describe())
            renamed = [f for f, _ in folder_dirs(src) if any("\\" in c for c in f)]
            for f in renamed:
                ctx.log.info(name, f"user {u}: folder {'/'.join(f)} stored listescaped (\\ -> \\5c)")
            if ctx.dry_run:
                continue
            _copy_acl_files(src, dst)
            if (src.parent / "sieve").is_dir():
                copy_tree(src.parent / "sieve", home / "sieve")
            link = src.parent / ".dovecot.sieve"
            if link.is_symlink() and not (home / ".dovecot.sieve").is_symlink():
                os.symlink(os.readlink(link), home / ".dovecot.sieve")
            if not apply_ownership(home):
                ownership_missing = True
    finally:
        state.close()
        if scratch is not None:
            scratch.cleanup()
    if ownership_missing:
        ctx.log.warning(name, "no vmail user on this machine: mail files keep their current owner; run "
                              f"chown -R vmail:vmail {ctx.target.vmail} on the NethServer host")
    ctx.log.info(name, f"{totals['copied']} message(s) copied, {totals['skipped']} skipped, "
                       f"{totals['failed']} failed")


def _copy_acl_files(src, dst) -> None:
    """Dovecot keeps a folder's ACL in its directory; the engine copies messages only."""
    for folder, d in folder_dirs(src):
        acl = d / "dovecot-acl"
        if acl.is_file():
            copy_file(acl, target_folder_dir(dst, folder, listescaped=True) / "dovecot-acl")


@action("nethserver-mail-migrate-shared-index", 65)
def migrate_shared_index(ctx: Context) -> None:
    """The shared-mailbox index, copied as the seed's workaround says (users need not re-share)."""
    name = "nethserver-mail-migrate-shared-index"
    src = ctx.source.shared_index
    if not src.is_file():
        ctx.log.info(name, "no shared-mailbox index in the archive")
        return
    if not ctx.dry_run:
        copy_file(src, ctx.target.shared_index)
    ctx.log.info(name, f"shared-mailbox index copied to {ctx.target.shared_index}; restart dovecot")
