"""`mailmigrate sync` between groupware stores (caldav://, carddav://, vdir:): the same command, options and
exit status as for mail; only parsing and printing here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..model import Account
from ..stores.groupware_urls import is_groupware_url
from ..credentials import SOURCE, TARGET


def wanted(args) -> bool:
    src, tgt = is_groupware_url(args.source), is_groupware_url(args.target)
    if src != tgt:
        raise ConfigError("calendars and contacts go from a groupware store to a groupware store "
                          "(caldav://, carddav://, vdir:), mail from a mail store to a mail store")
    return src


def run(args, default_state) -> int:
    for opt in ("executor",):
        if getattr(args, opt, None) not in (None, "local"):
            raise ConfigError("groupware runs on this machine; --executor celery is for mail")
    src_pw = SOURCE.read(args.source_password_file)
    tgt_pw = TARGET.read(args.target_password_file)
    if args.accounts:
        from ..sync.accounts import load_accounts_file

        accounts = load_accounts_file(args.accounts)
    else:
        accounts = [Account(None, None)]  # the users in the URLs
    from ..sync.groupware import run_groupware  # here: a mail sync only asks wanted()
    from ..sync.state_pg import is_pg_url

    state = (args.state if is_pg_url(args.state) else Path(args.state)) if args.state \
        else default_state(args.source, args.target)
    result = run_groupware(args.source, args.target, accounts, state, source_password=src_pw,
                           target_password=tgt_pw, delete=args.delete, dry_run=args.dry_run,
                           insecure=args.insecure, allow_plaintext=args.allow_plaintext)
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        t = result.totals()
        head = "Dry run — nothing was changed. Would copy" if result.dry_run else "Copied"
        print(f"{head} {t.copied} items, updated {t.updated}, {t.unchanged} unchanged, {t.adopted} already there, "
              f"{t.deleted} deleted, {t.failed} failed; {t.collections} collection(s) "
              f"({t.collections_created} created), {len(result.accounts)} account(s), state {result.state_path}")
        if t.normalised:
            print(f"  {t.normalised} item(s) stored rewritten by the target (listed below)")
        for a in result.accounts:
            if a.error:
                print(f"  ACCOUNT FAILED {a.account}: {a.error}")
            for p in a.problems:
                print(f"  {p.kind.upper()}: {p.describe()}")
    return 0 if result.ok else 1
