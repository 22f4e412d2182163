"""Migrate actions for files: home directories, mailboxes (file by file, UIDs kept), the shared-mailbox
index, and SME's short names in the files of Dovecot's acl plugin."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import MailmigrateError
from ...formats.atomic import replace_file
from ...formats.dovecot_acl import ACL_FILE, parse_acl_line
from ...sync import maildir_clone
from .identifiers import Qualifier
from .mailboxes import apply_ownership, copy_file, copy_tree, folder_dirs, target_folder_dir
from .registry import Context, action
from .rules import listescape, unlistescape

MAIL_NAMES = ("Maildir", "sieve", ".dovecot.sieve")
#: admin's home on SME is /home/e-smith, which also holds the databases and every user's files
ADMIN_HOME_EXCLUDE = MAIL_NAMES + ("db", "files", "ssl.crt", "ssl.key", "ssl.pem", ".mailmigrate-unpacked")


@action("nethserver-base-migrate-homes", 35)
def migrate_homes(ctx: Context) -> None:
    """Users' home directories to /var/lib/nethserver/home, admin's to migration/admin with a link in /root."""
    name = "nethserver-base-migrate-homes"
    copied = 0
    skipped: list[str] = []
    for u in ctx.users():
        src = ctx.source.user_home(u)
        if not src.is_dir():
            ctx.log.warning(name, f"user {u}: no home directory in the archive")
            continue
        if not ctx.dry_run:
            copied += copy_tree(src, ctx.target.home / u, exclude=MAIL_NAMES, skipped=skipped)
    admin = ctx.target.admin_migration
    if ctx.source.admin_home.is_dir() and not ctx.dry_run:
        copied += copy_tree(ctx.source.admin_home, admin, exclude=ADMIN_HOME_EXCLUDE, skipped=skipped)
        home = ctx.target.root_home
        home.mkdir(parents=True, exist_ok=True)
        if not any(p.name.startswith("admin-migration-") for p in home.iterdir()):
            link = home / f"admin-migration-{ctx.timestamp}"
            os.symlink(os.path.relpath(admin, home), link)
            ctx.log.info(name, f"admin's home directory is in {admin}, linked from {link}")
    for link in skipped:
        ctx.log.warning(name, f"symlink {link} points out of its home; not copied, not followed")
    ctx.log.info(name, f"{copied} file(s) copied")


@action("nethserver-mail-migrate-mailboxes", 60)
def migrate_mailboxes(ctx: Context) -> None:
    """Every user's Maildir and sieve scripts to vmail/<user>@<domain>, incrementally; backslash folders renamed."""
    name = "nethserver-mail-migrate-mailboxes"
    domain = ctx.domain
    totals = {"copied": 0, "failed": 0, "links": 0}
    ownership_missing = False
    manifest = None if ctx.dry_run else maildir_clone.Manifest(ctx.target.state_dir / "sme-import-mail-files.sqlite")
    try:
        for u in ctx.users() + ["admin"]:
            src = ctx.source.maildir(u)
            if not src.is_dir():
                if u != "admin":
                    ctx.log.warning(name, f"user {u}: no Maildir in the archive")
                continue
            renamed = [f for f, _ in folder_dirs(src) if any("\\" in c for c in f)]
            for f in renamed:
                ctx.log.info(name, f"user {u}: folder {'/'.join(f)} stored listescaped (\\ -> \\5c)")
            if manifest is None:
                n = sum(1 for _, d in folder_dirs(src) for sub in maildir_clone.MESSAGE_DIRS if (d / sub).is_dir()
                        for e in os.scandir(d / sub) if e.is_file(follow_symlinks=False))
                ctx.log.info(name, f"user {u}: {n} message file(s) would be copied")
                continue
            home = ctx.target.mail_home(u, domain)
            dst = home / "Maildir"
            # SME's Dovecot keeps the same Maildir files as NethServer's: copied file by file, clients keep
            # their UIDs and POP3 UIDLs; a symlink (a user could plant one to any file of the backup or the
            # server) is never followed.  subscriptions: copied once below, then owned by
            # nethserver-mail-migrate-shared-identifiers, which qualifies the Shared/ owners
            try:
                res = maildir_clone.copy_home(src, dst, manifest, home=f"{u}@{domain}", rel_map=_listescaped,
                                              exclude=("subscriptions",), skip_files=(ACL_FILE,))
            except (OSError, MailmigrateError) as e:
                ctx.log.error(name, f"user {u}: mailbox not copied: {e}")
                totals["failed"] += 1
                continue
            totals["copied"] += res.copied
            totals["failed"] += len(res.problems)
            totals["links"] += len(res.links)
            for link in res.links:
                ctx.log.warning(name, f"user {u}: symlink {link} skipped, not followed")
            for pr in res.problems:
                ctx.log.error(name, f"user {u}: {pr}")
            subs = dst / "subscriptions"
            if (src / "subscriptions").is_file() and not (src / "subscriptions").is_symlink() and not subs.exists():
                copy_file(src / "subscriptions", subs)  # once: the identifier step then owns it
                os.chmod(subs, maildir_clone.FILE_MODE)
            for pr in maildir_clone.verify_home(src, dst, rel_map=_listescaped):
                ctx.log.error(name, f"user {u}: not as on SME: {pr}")
            _copy_acl_files(src, dst, qualifier(ctx))
            if (src.parent / "sieve").is_dir():
                copy_tree(src.parent / "sieve", home / "sieve")
            bad = maildir_clone.link_active_script(src.parent, home)
            if bad:
                ctx.log.warning(name, f"user {u}: symlink {bad} points out of the home's sieve/; not linked")
            if not apply_ownership(home):
                ownership_missing = True
    finally:
        if manifest is not None:
            manifest.close()
    if ownership_missing:
        ctx.log.warning(name, "no vmail user on this machine: mail files are private (0600/0700) to the user "
                              f"running the import; run chown -R vmail:vmail {ctx.target.vmail} on the NethServer host")
    ctx.log.info(name, f"{totals['copied']} message(s) copied with their UIDs, {totals['failed']} failed, "
                       f"{totals['links']} symlink(s) skipped")


def _listescaped(rel: tuple[str, ...]) -> tuple[str, ...]:
    """SME's folder directories as NethServer's Dovecot (listescape) stores them: ``\\`` -> ``\\5c``."""
    if rel and rel[0].startswith("."):
        return (listescape(rel[0]),) + rel[1:]
    return rel


def qualifier(ctx: Context) -> Qualifier:
    """The accounts whose mailboxes move to vmail/<name>@<domain>: the users, and admin's mailbox."""
    return Qualifier(frozenset(ctx.users()) | {"admin"}, ctx.domain)


def _copy_if_changed(src: Path, dst: Path, same) -> bool:
    """Copy unless the target already holds the source as the identifier step leaves it (``same`` maps both
    to that form), so a rerun, or this action run alone, never puts SME's short names back."""
    if dst.is_file() and same(dst.read_bytes()) == same(src.read_bytes()):
        return False
    return copy_file(src, dst)


def _copy_acl_files(src, dst, q: Qualifier) -> None:
    """Dovecot keeps a folder's ACL in its directory; the engine copies messages only."""
    def same(b: bytes) -> str:
        return q.acl(b.decode("utf-8", "surrogateescape"))

    for folder, d in folder_dirs(src):
        acl = d / ACL_FILE
        if acl.is_file():
            _copy_if_changed(acl, target_folder_dir(dst, folder, listescaped=True) / ACL_FILE, same)


@action("nethserver-mail-migrate-shared-index", 65)
def migrate_shared_index(ctx: Context) -> None:
    """The shared-mailbox index, copied as the seed's workaround says (users need not re-share)."""
    name = "nethserver-mail-migrate-shared-index"
    src = ctx.source.shared_index
    if not src.is_file():
        ctx.log.info(name, "no shared-mailbox index in the archive")
        return
    if not ctx.dry_run:
        _copy_if_changed(src, ctx.target.shared_index, qualifier(ctx).shared_dict)
        apply_ownership(ctx.target.shared_index)
    ctx.log.info(name, f"shared-mailbox index copied to {ctx.target.shared_index}; restart dovecot")


@action("nethserver-mail-migrate-shared-identifiers", 70)
def migrate_shared_identifiers(ctx: Context) -> None:
    """SME's short names in dovecot-acl files, the shared-mailbox index and Shared/ subscriptions -> user@domain."""
    name = "nethserver-mail-migrate-shared-identifiers"
    q = qualifier(ctx)
    changed = 0

    def report(where: str, what: str) -> None:
        for n in q.take_unknown():
            ctx.log.warning(name, f"{where}: {what}{n} names no migrated account; left as it is (it matches "
                                  "nobody on NethServer)")

    def rewrite(path: Path, data: bytes | None, new: bytes | None) -> None:
        nonlocal changed
        if new is not None and new != data:
            changed += 1
            if not ctx.dry_run:
                _replace(path, new)

    for u in sorted(q.accounts):
        src_md = ctx.source.maildir(u)
        md = ctx.target.mail_home(u, ctx.domain) / "Maildir"
        # a dry run wrote no target: it reads what the mailbox action would have copied
        base = src_md if ctx.dry_run else md
        if not base.is_dir():
            continue
        for folder, d in folder_dirs(base):
            f = d / ACL_FILE
            if not f.is_file():
                continue
            text = f.read_text("utf-8", "surrogateescape")
            new = q.acl(text)
            shown = folder if ctx.dry_run else tuple(unlistescape(c) for c in folder)
            where = f"{u}@{ctx.domain} {'/'.join(shown)} {ACL_FILE}"
            report(where, "user=")
            for e in filter(None, map(parse_acl_line, text.splitlines())):
                if e.kind in ("group", "group-override"):
                    ctx.log.warning(name, f"{where}: {e.identifier} kept as it is (NethServer's own rename "
                                          "leaves groups alone): check the grant works for the group's members")
            rewrite(f, text.encode("utf-8", "surrogateescape"), new.encode("utf-8", "surrogateescape"))
        subs = md / "subscriptions"
        old = subs.read_bytes() if subs.is_file() and not ctx.dry_run else None
        src_subs = src_md / "subscriptions"
        new = q.subscriptions(old, src_subs.read_bytes() if src_subs.is_file() else b"")
        report(f"{u}@{ctx.domain} subscriptions", "Shared/")
        rewrite(subs, old, new)
    index = ctx.target.shared_index
    data = index.read_bytes() if index.is_file() and not ctx.dry_run else None
    if data is None and ctx.source.shared_index.is_file():
        data = ctx.source.shared_index.read_bytes()
        rewrite(index, None, q.shared_dict(data))
    elif data is not None:
        rewrite(index, data, q.shared_dict(data))
    report("shared-mailbox index", "")
    ctx.log.info(name, f"{changed} file(s) {'would be ' if ctx.dry_run else ''}rewritten with user@{ctx.domain}")


def _replace(path: Path, data: bytes) -> None:
    """Write beside and rename, so Dovecot never reads half a file; the file keeps its owner and mode, a new
    one gets its directory's owner and no group/other access, as the mailbox action leaves mail files."""
    path.parent.mkdir(parents=True, exist_ok=True)
    like = path if path.exists() else path.parent
    st = like.stat()
    replace_file(path, data, st.st_mode & 0o7777 if like is path else 0o600, owner=(st.st_uid, st.st_gid),
                 suffix=".mailmigrate-tmp")
