"""`mailmigrate sync SOURCE TARGET`: the mailbox sync, for one account or many."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path

from ..errors import ConfigError
from ..model import Account, printable
from ..stores.registry import StoreOptions, parse_spec
from ..credentials import SECRETS, SOURCE, TARGET
from ..sync.engine import SyncOptions
from ..sync.selection import Selection, parse_pair
from ..sync.runner import SyncRequest, run_sync
from . import oauth_options
from .output import PlainProgress, setup_logging

EPILOG = """\
SOURCE, TARGET:
  imap://[USER@]HOST[:PORT][?tls=none|starttls]   (STARTTLS by default, required)
  imap://…?compress=auto|yes|no                   (COMPRESS=DEFLATE; auto: only to non-local addresses)
  imaps://[USER@]HOST[:PORT]
  imap://[USER@][HOST]?preset=gmail|m365            (provider defaults: host, TLS, OAuth mechanism, limits;
                                                   &max_message_size=BYTES overrides the size limit, 0: none;
                                                   see docs/PROVIDERS.md)
  maildir:PATH   mbox:PATH   communigate:PATH      (PATH may hold %u, %n, %d for --accounts)
passwords: MAILMIGRATE_SOURCE_PASSWORD / MAILMIGRATE_TARGET_PASSWORD, --source-password-file /
  --target-password-file, or the --accounts file; never on the command line. At a terminal, a one-account
  IMAP run given none asks for it (not echoed).
With --source-master/--target-master the USER is the mailbox owner and the password is the master's
(IMAP option ?master=plain|star|kerio picks SASL PLAIN authzid, user*master, or Kerio X-MASTERAUTH).
  imap://…?cafile=PATH                            (trust this CA: a private or self-signed certificate)
Exit status: 0 all synced; 1 some messages, folders or accounts failed (listed); 2 a usage or configuration
error: the command line, or an account's settings (login refused, unknown host, TLS or certificate
mismatch), which are not retried.
"""


def register(sub) -> None:
    p = sub.add_parser("sync", help="copy mailboxes from SOURCE to TARGET, incrementally",
                       description="Copy mailboxes from SOURCE to TARGET; rerun at will, each run copies only "
                                   "what changed.", epilog=EPILOG, formatter_class=_raw())
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--source-master", metavar="USER", help="log in to the source as this master/admin user")
    p.add_argument("--target-master", metavar="USER", help="log in to the target as this master/admin user")
    p.add_argument("--source-id", metavar="NAME",
                   help="name the source server in the state, whatever host name, address, port or scheme "
                        "reaches it (same as ?id=NAME in the URL)")
    p.add_argument("--target-id", metavar="NAME", help="the same for the target server")
    p.add_argument("--source-password-file", metavar="FILE")
    p.add_argument("--target-password-file", metavar="FILE")
    p.add_argument("--state", metavar="PATH", help="state database (default: one per SOURCE/TARGET pair "
                                                   "under ~/.local/state/mailmigrate), or postgresql://…")
    p.add_argument("--lock-wait", type=float, default=0, metavar="S",
                   help="PostgreSQL state: wait up to S seconds for an account another run or fleet worker is "
                        "syncing (default 0: that account fails at once, the others go on)")
    p.add_argument("--executor", choices=("local", "celery"), default="local",
                   help="local: this machine (default); celery: one job per account for `mailmigrate worker`s")
    p.add_argument("--broker", metavar="URL", help="--executor celery: redis://… or amqp://… "
                                                    "(default: MAILMIGRATE_BROKER)")
    p.add_argument("--fleet-timeout", type=float, metavar="S",
                   help="--executor celery: stop waiting for the workers after S seconds; accounts not finished "
                        "by then are reported failed and exit status is 1, their jobs still run later "
                        "(default: no limit)")
    p.add_argument("--idle-warning", type=float, metavar="S",
                   help="--executor celery: warn when queued jobs have not been taken by any worker for S "
                        "seconds (default 60)")
    oauth_options.add_arguments(p)
    p.add_argument("--stale-after", type=float, metavar="S",
                   help="--executor celery: a running account whose worker said nothing for S seconds (killed, "
                        "frozen, cut off) has its job sent again (default 120; workers beat every 10 s)")
    p.add_argument("--accounts", metavar="FILE",
                   help="CSV: source_user,target_user[,source_password,target_password]")
    p.add_argument("--delete", action="store_true",
                   help="remove from TARGET the copies of messages that left SOURCE (only copies "
                        "mailmigrate made)")
    p.add_argument("--force-delete", action="store_true",
                   help="with --delete: delete even where the source looks emptied (see --delete-guard)")
    p.add_argument("--delete-guard", type=float, default=50, metavar="PERCENT",
                   help="with --delete: a source folder (or account) that lists no messages while copies exist, "
                        "or would lose more than PERCENT%% of its copies (10 or more) in one run, gets no deletes "
                        "and the run exits 1, unless --force-delete (default 50)")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    p.add_argument("--keep-uids", action="store_true",
                   help="maildir: to maildir: between two Dovecot servers: copy file by file so UIDVALIDITY, "
                        "UIDs, UIDNEXT, keywords and POP3 UIDLs stay what clients cached (verified)")
    p.add_argument("--just-login", action="store_true",
                   help="only log in to both sides of every account (in parallel, up to --jobs at once, 16 by "
                        "default) and list the accounts that cannot; copies nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="accounts at once (default 1)")
    g = p.add_argument_group("choosing folders and messages (README: Choosing folders and messages)")
    g.add_argument("--include", action="append", default=[], metavar="REGEX",
                   help="only source folders whose path (levels joined with /) matches one of these")
    g.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                   help="leave out source folders whose path matches (wins over --include)")
    g.add_argument("--folder", action="append", default=[], metavar="NAME",
                   help="only this source folder (repeatable; path with /)")
    g.add_argument("--folder-recursive", action="store_true", help="--folder takes the folders' children too")
    g.add_argument("--map", action="append", default=[], metavar="OLD=NEW",
                   help="copy source folder OLD (and its children) to target folder NEW")
    g.add_argument("--rename", action="append", default=[], metavar="REGEX=REPLACEMENT",
                   help="rewrite target folder names, in the order given, after --map")
    g.add_argument("--no-special-use", action="store_true",
                   help="keep every folder's own name: no mapping of Sent, Drafts, Trash, Junk, Archive onto "
                        "the target's folders of that role")
    g.add_argument("--special-use", action="append", default=[], metavar="FOLDER=ROLE",
                   help="give source folder FOLDER this role (sent, drafts, trash, junk, archive, all, flagged) "
                        "or none, whatever the server says or its name suggests (repeatable)")
    g.add_argument("--gmail-all-mail", choices=("dedupe", "copy", "skip"), default="dedupe",
                   help="a ?preset=gmail source's [Gmail]/All Mail: dedupe (default: copied last, only the mail no "
                        "label folder holds, into Archive), copy (every folder as it is, Important and Starred "
                        "too), skip (left out, and archived mail with it)")
    g.add_argument("--min-age", type=float, metavar="DAYS", help="only messages at least this old (INTERNALDATE)")
    g.add_argument("--max-age", type=float, metavar="DAYS", help="only messages at most this old (INTERNALDATE)")
    g.add_argument("--min-size", type=int, metavar="BYTES", help="only messages of at least this size")
    g.add_argument("--max-size", type=int, metavar="BYTES", help="only messages of at most this size")
    g.add_argument("--search", metavar="'IMAP SEARCH KEYS'",
                   help="only messages the IMAP source server finds with these SEARCH keys "
                        "(e.g. 'SINCE 1-Jan-2024 NOT FROM spam@example.org'); IMAP sources only")
    g.add_argument("--just-folders", action="store_true", help="create the folder tree on the target; copy nothing")
    p.add_argument("--connections", type=int, default=3, metavar="N",
                   help="connections per side and account: folders synced at once (default 3)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--max-rate", type=float, metavar="MSGS", help="at most this many messages per second to the "
                   "target server, over all accounts")
    p.add_argument("--max-bandwidth", type=float, metavar="MIB", help="at most this many MiB per second to the "
                   "target server, over all accounts (0: no limit, even where a provider preset sets one)")
    p.add_argument("--max-connections", type=int, metavar="N", help="at most this many connections per server, "
                   "over all accounts (reduces --jobs and --connections to fit)")
    p.add_argument("--retries", type=int, default=6, metavar="N",
                   help="attempts per account on lost connections and busy servers, with backoff (default 6)")
    p.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="allow ?tls=none towards a host that is not loopback")
    p.add_argument("--log-file", metavar="FILE", help="also write a detailed log here")
    p.add_argument("--no-progress", action="store_true", help="no progress bars, even on a terminal")
    p.set_defaults(func=run)


def _raw():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def default_state_path(source, target, written: tuple[str, str] | None = None) -> Path:
    """One state file per pair of servers, named after their identities (so another spelling of a server
    finds the same file); a file an earlier version named after the URLs as ``written`` is used while it is
    the only one.  Groupware passes its URLs as text and is named by them."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "mailmigrate"

    def named(a: str, b: str) -> Path:
        import hashlib  # here: a run given --state does not load it (see model.fingerprint_bytes)

        digest = hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:16]
        return base / f"sync-{digest}.db"

    path = named(*(x if isinstance(x, str) else x.identity() for x in (source, target)))
    if written:
        legacy = named(*written)
        if legacy.exists() and not path.exists():
            return legacy
    return path


def run(args) -> int:
    if not args.json:
        return _run(args)
    # --json: a configuration error is JSON too, so that a script reads one format whatever happened
    try:
        return _run(args)
    except ConfigError as e:
        json.dump({"ok": False, "exit_status": 2, "errors": [{"kind": "configuration", "account": None,
                                                              "folder": None, "message": str(e)}],
                   "accounts": []}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        raise


def _run(args) -> int:
    setup_logging(args.verbose, args.log_file)
    from . import groupware

    if groupware.wanted(args):  # caldav://, carddav://, vdir: on both sides
        return groupware.run(args, default_state_path)
    if (args.force_delete or args.delete_guard != 50) and not args.delete:
        raise ConfigError("--force-delete and --delete-guard are about deleting; they need --delete")
    if not 0 <= args.delete_guard <= 100:
        raise ConfigError("--delete-guard is a percentage between 0 and 100")
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    selection = selection_from_args(args)
    if selection.just_folders and args.delete:
        raise ConfigError("--just-folders copies nothing; it cannot be combined with --delete")
    if args.executor != "celery" and (args.fleet_timeout is not None or args.idle_warning is not None
                                      or args.stale_after is not None):
        raise ConfigError("--fleet-timeout, --idle-warning and --stale-after are about waiting for the fleet; "
                          "they need --executor celery")
    source = parse_spec(args.source).with_id(args.source_id)
    if selection.search is not None and not source.searches:
        raise ConfigError(f"--search takes IMAP SEARCH keys: it works on IMAP sources only, not on {source.kind}:")
    target = parse_spec(args.target).with_id(args.target_id)
    if args.keep_uids:
        return _keep_uids(args, source, target)
    if not target.writable:
        raise ConfigError(f"{target.kind} cannot be a target; use an IMAP server or maildir:PATH")

    if source.is_file and "%" not in source.path and not os.path.exists(source.resolved_path()):
        raise ConfigError(f"source {source.kind} {source.resolved_path()} does not exist")
    src_pw = SOURCE.read(args.source_password_file) or _ask(SOURCE, source, source.user, args, "source")
    tgt_pw = TARGET.read(args.target_password_file) or _ask(TARGET, target, target.user or source.user, args,
                                                            "target")
    if args.accounts:
        from ..sync.accounts import load_accounts_file

        accounts = load_accounts_file(args.accounts)
    else:
        accounts = [Account(source.user, target.user or source.user)]

    from ..sync.state_pg import is_pg_url, open_state

    pg_state = is_pg_url(args.state)
    state_path = args.state if pg_state else Path(args.state) if args.state else default_state_path(
        source, target, (args.source, args.target))
    interactive = sys.stderr.isatty() and not args.no_progress and not args.json
    if interactive:  # the bars' module only on a terminal (a cron job or cutover loop pays no import for them)
        from .progress import ScaledProgress

        progress = ScaledProgress(len(accounts))
    else:
        progress = PlainProgress()
    req = SyncRequest(
        source=source,
        target=target,
        accounts=accounts,
        state_path=state_path,
        source_options=StoreOptions(insecure=args.insecure, allow_plaintext=args.allow_plaintext,
                                    master_user=args.source_master),
        target_options=StoreOptions(insecure=args.insecure, allow_plaintext=args.allow_plaintext,
                                    master_user=args.target_master),
        source_password=src_pw,
        target_password=tgt_pw,
        jobs=args.jobs,
        max_rate=args.max_rate,
        # None: not given (a provider preset may set it); 0: given, no limit
        max_bandwidth=None if args.max_bandwidth is None else args.max_bandwidth * (1 << 20),
        max_connections=args.max_connections,
        sync=SyncOptions(delete=args.delete, dry_run=args.dry_run, progress=progress,
                         force_delete=args.force_delete, delete_guard=args.delete_guard / 100,
                         connections=max(1, args.connections), max_attempts=max(1, args.retries),
                         selection=selection),
        state_factory=open_state if pg_state else None,
        lock_wait=max(0.0, args.lock_wait),
    )
    oauth_options.apply(args, req.source_options, req.target_options)
    if args.executor == "celery" and (req.source_options.oauth or req.target_options.oauth):
        print("mailmigrate: OAuth token sources stay here; give the workers the same options "
              "(mailmigrate worker --source-oauth-… / --target-oauth-…)", file=sys.stderr)
    if args.just_login:
        return _just_login(args, req)
    if args.executor == "celery":
        from ..fleet.app import broker_from
        from ..fleet.follow import STALE_AFTER
        from ..fleet.submit import print_progress, run_fleet

        if any(a.source_password or a.target_password for a in accounts):
            print("mailmigrate: per-account passwords stay here; give the workers the accounts file "
                  "(mailmigrate worker --accounts FILE)", file=sys.stderr)
        result = run_fleet(req, broker=broker_from(args.broker), state_url=args.state or "",
                           on_progress=None if args.no_progress else print_progress,
                           timeout=args.fleet_timeout, idle_warning=args.idle_warning,
                           stale_after=args.stale_after if args.stale_after is not None else STALE_AFTER)
    else:
        with _stop_on_ctrl_c(req.sync.stop_requested), (progress if interactive else contextlib.nullcontext()):
            result = run_sync(req)

    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        print_summary(result)
    if req.sync.stop_requested.is_set():
        return 130
    return result.exit_status


def _ask(password, spec, user: str | None, args, side: str):
    """The password of a one-account IMAP run that was given none, typed at the terminal (PasswordSource.ask).
    Not for an accounts file (its lines carry their passwords, or the run's master's come from the file or the
    environment) nor for an OAuth login; without a terminal nothing is asked and the run says what is missing."""
    if spec.kind != "imap" or args.accounts or any(
            getattr(args, f"{side}_oauth_{k}", None) for k in ("token_file", "command", "refresh_file")):
        return None
    if not user:
        return None
    master = getattr(args, f"{side}_master", None)
    return password.ask(f"{master} (master user, logging in as {user}) at {spec.host}" if master
                        else f"{user} at {spec.host}")


def _just_login(args, req) -> int:
    from ..sync.logins import check_logins

    results = check_logins(req, req.accounts, jobs=args.jobs if args.jobs > 1 else 16)
    bad = [r for r in results if not r.ok]
    if args.json:
        json.dump({"ok": not bad, "accounts_total": len(results), "accounts_failed": len(bad),
                   "errors": [{"kind": "configuration" if r.configuration else "failure", "account": r.account,
                               "side": r.side, "folder": None, "message": r.error} for r in bad]},
                  sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for r in bad:
            print(printable(SECRETS.redact(f"LOGIN FAILED {r.account} ({r.side}): {r.error}")))
        print(f"{len(results) - len(bad)} of {len(results)} account(s) logged in on both sides"
              + (f"; {len(bad)} failed" if bad else ""))
    if not bad:
        return 0
    return 2 if any(r.configuration for r in bad) else 1


@contextlib.contextmanager
def _stop_on_ctrl_c(stop):
    """The first Ctrl-C asks every account to stop before its next batch, and says so at once; a second
    one stops at once (what is in flight is recovered by the next run, by fingerprint)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if stop.is_set():
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set()
        print("\nmailmigrate: stopping after the current batch… (Ctrl-C again to stop at once)", file=sys.stderr,
              flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _keep_uids(args, source, target) -> int:
    """Two Dovecot Maildirs: a file-by-file clone per account (:mod:`mailmigrate.sync.maildir_clone`), then
    its verification; the engine is not used, so nothing else of ``sync`` applies."""
    from ..sync import maildir_clone
    from ..sync.accounts import load_accounts_file

    if source.kind != "maildir" or target.kind != "maildir":
        raise ConfigError("--keep-uids works between two maildir: paths (Dovecot on both sides)")
    if args.executor != "local" or args.delete:
        raise ConfigError("--keep-uids: files the clone wrote and the source no longer has are always removed; "
                          "--delete and --executor do not apply")
    accounts = (load_accounts_file(args.accounts) if args.accounts
                else [Account(source.user, target.user or source.user)])
    state = Path(args.state) if args.state else default_state_path(source.text, target.text)
    manifest_path = state.with_name(state.name + ".files.sqlite")
    out, ok = [], True
    manifest = None if args.dry_run else maildir_clone.Manifest(manifest_path)
    try:
        for a in accounts:
            src = Path(source.resolved_path(a.source_user))
            dst = Path(target.resolved_path(a.target_user or a.source_user))
            if not src.is_dir():
                raise ConfigError(f"source maildir {src} does not exist")
            item = {"account": a.source_user or str(src)}
            if manifest is not None:
                res = maildir_clone.copy_home(src, dst, manifest, home=str(src))
                item.update(copied=res.copied, files=res.files, renamed=res.renamed, removed=res.removed,
                            symlinks_skipped=res.links, problems=res.problems)
            item["differences"] = maildir_clone.verify_home(src, dst) if dst.is_dir() else ["target missing"]
            ok = ok and not item.get("problems") and (args.dry_run or not item["differences"])
            out.append(item)
    finally:
        if manifest is not None:
            manifest.close()
    if args.json:
        json.dump({"ok": ok, "accounts": out}, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        for item in out:
            head = item["account"] + (" (dry run)" if args.dry_run else
                                      f": {item['copied']} message(s), {item['files']} other file(s) copied, "
                                      f"{item['renamed']} renamed, {item['removed']} removed")
            print(head)
            for x in item.get("symlinks_skipped", []):
                print(f"  symlink skipped, not followed: {x}")
            for x in item.get("problems", []) + item["differences"]:
                print(f"  {x}")
            if not args.dry_run and not item["differences"]:
                print("  verified: same files, UIDVALIDITY, UIDNEXT, UIDs, POP3 UIDLs and keywords per folder")
    return 0 if ok else 1


def print_summary(result) -> None:
    t = result.totals
    head = "Dry run — nothing was changed. Would copy" if result.dry_run else "Copied"
    failed_accounts = sum(1 for a in result.accounts if a.error)
    print(f"{head} {t.copied} messages ({t.bytes_copied / (1 << 20):.1f} MiB), {t.skipped} already there, "
          f"{t.flags_updated} flag updates, {t.deleted} deleted, {t.failed} messages failed; "
          f"{len(result.accounts)} account(s), {failed_accounts} failed; state {result.state_path}")
    if t.skipped_by_rule:
        print(f"  {t.skipped_by_rule} messages skipped by rule (--min/--max-age, --min/--max-size, --search): "
              "not copied, not failed, and their earlier copies are not deleted")
    if t.skipped_too_large:
        print(f"  {t.skipped_too_large} messages larger than the target's message size limit: not copied, not "
              "failed (listed below; ?max_message_size= on the target URL changes the limit)")
    if t.skipped_in_label:
        print(f"  {t.skipped_in_label} Gmail All Mail messages were already copied from a label folder: not "
              "copied twice")
    if t.late_duplicates_removed:
        print(f"  removed {t.late_duplicates_removed} late duplicates of interrupted runs (copies a killed run's "
              "server committed after they had been copied again)")
    if t.deletes_withheld:
        print(f"  {t.deletes_withheld} copies NOT deleted: the source looks emptied (listed below); check it, "
              "then run again, with --force-delete if the deletions are right")
    if t.adopted or t.target_only:
        print(f"  {t.adopted} messages were already on the target (adopted, not copied again); "
              f"{t.target_only} target messages are no copy of a source message (left alone)")
    for a in result.accounts:
        if a.error:
            print(printable(SECRETS.redact(f"  ACCOUNT FAILED {a.account}: {a.error}")))
        for p in a.problems:
            print(SECRETS.redact(f"  {p.kind.upper()}: {p.describe()}"))


def selection_from_args(args) -> Selection:
    """The folder and message rules as the command line gave them (checked by Selection itself)."""
    return Selection(include=tuple(args.include), exclude=tuple(args.exclude), folders=tuple(args.folder),
                     folder_recursive=args.folder_recursive,
                     maps=tuple(parse_pair(m, "--map") for m in args.map),
                     renames=tuple(parse_pair(r, "--rename") for r in args.rename),
                     special_use=not args.no_special_use, min_age=args.min_age, max_age=args.max_age,
                     min_size=args.min_size, max_size=args.max_size, just_folders=args.just_folders,
                     search=args.search,
                     special_uses=tuple(parse_pair(u, "--special-use") for u in args.special_use),
                     gmail_all_mail=args.gmail_all_mail)
