"""``mailmigrate communigate overview PATH``: cg2kms's overview of a CommuniGate Pro store, as a table or JSON.

Migration sub-commands are added to the same ``communigate`` command later; this module owns the parser.
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("communigate", help="read a CommuniGate Pro store from disk (overview)",
                              description="CommuniGate Pro as a migration source, read from its base directory.")
    sub = p.add_subparsers(dest="communigate_command", metavar="ACTION")
    o = sub.add_parser("overview", help="domains, accounts, folders, message counts and sizes, password state",
                       description="What the store holds, without changing or copying anything.")
    o.add_argument("path", metavar="PATH", help="CommuniGate base directory, e.g. /var/CommuniGate")
    o.add_argument("--domain", help="only this domain")
    o.add_argument("--user", help="only this account (in --domain, or in any domain)")
    o.add_argument("--primary-domain", help="name of the main domain (Accounts/) when Settings/Main.settings "
                                            "does not say; default: this machine's host name")
    o.add_argument("--json", action="store_true", help="print JSON instead of tables")
    o.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from ..paths.communigate.overview import build_overview, dumps, render

    ov = build_overview(args.path, domain=args.domain, user=args.user, primary_domain=args.primary_domain)
    if args.json:
        sys.stdout.write(dumps(ov) + "\n")
    else:
        from rich.console import Console

        render(ov, Console())
    damaged = any(a.problems for a in ov.accounts) or any(d.domain.errors for d in ov.domains)
    return 1 if damaged else 0
