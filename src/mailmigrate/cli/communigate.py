"""``mailmigrate communigate overview|migrate PATH``: cg2kms's overview of a CommuniGate Pro store (table or
JSON) and its migration into Kerio Connect or any IMAP server (paths/communigate/migrate.py does the work)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("communigate", help="read a CommuniGate Pro store from disk (overview, migrate)",
                              description="CommuniGate Pro as a migration source, read from its base directory.")
    sub = p.add_subparsers(dest="communigate_command", metavar="ACTION")
    o = sub.add_parser("overview", help="domains, accounts, folders, message counts and sizes, password state",
                       description="What the store holds, without changing or copying anything.")
    o.add_argument("path", metavar="PATH", help="CommuniGate base directory, e.g. /var/CommuniGate")
    o.add_argument("--domain", help="only this domain")
    o.add_argument("--user", help="only this account (in --domain, or in any domain)")
    o.add_argument("--primary-domain", help="name of the main domain (Accounts/) when Settings/Main.settings "
                                            "does not say; default: this machine's host name")
    o.add_argument("--target-directory", choices=("kerio", "passwd-file", "ldap", "none"), default="kerio",
                   help="where the migration will create the users (default kerio): each account lists the "
                        "aliases, domain-alias addresses and forwarding that target will not get")
    o.add_argument("--json", action="store_true", help="print JSON instead of tables")
    o.set_defaults(func=run)
    _register_migrate(sub)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run(args: argparse.Namespace) -> int:
    from ..paths.communigate.overview import build_overview, dumps, render

    ov = build_overview(args.path, domain=args.domain, user=args.user, primary_domain=args.primary_domain,
                        target_directory=args.target_directory)
    if args.json:
        sys.stdout.write(dumps(ov) + "\n")
    else:
        from rich.console import Console

        render(ov, Console())
    damaged = any(a.problems for a in ov.accounts) or any(d.domain.errors for d in ov.domains)
    return 1 if damaged else 0


MIGRATE_EPILOG = """\
Passwords never go on the command line: the target's master password comes from
MAILMIGRATE_TARGET_PASSWORD (or --target-password-file), Kerio's administrator password from
MAILMIGRATE_ADMIN_PASSWORD (or --admin-password-file), --set-password/--force-set-password from 0600 files.
Every password set on a created user goes to cg2kms_<datetime>.pass (mode 0600) in --output-dir, everything
that happens to cg2kms_<datetime>.log; exit status 0 when everything arrived, 1 when something did not
(listed at the end), 2 for a usage or configuration error."""


def _register_migrate(sub) -> None:
    m = sub.add_parser(
        "migrate", help="create missing users and copy every account's mail (cg2kms -migrate)",
        description="Migrate one user (--user), one domain (--domain) or every domain of a CommuniGate Pro "
                    "store into Kerio Connect (IMAP master authentication) or any IMAP server with a master "
                    "user. Reruns copy only new mail.",
        epilog=MIGRATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("path", metavar="PATH", help="CommuniGate base directory, e.g. /var/CommuniGate")
    m.add_argument("--server", required=True, help="the target's IMAP host")
    m.add_argument("--port", type=int, default=143, help="its IMAP port (default 143)")
    m.add_argument("--domain", help="only this domain")
    m.add_argument("--user", help="only this account (in --domain, or in the main domain)")
    m.add_argument("--force", action="store_true",
                   help="also migrate the mail of users that already exist on the target (they are not changed)")
    m.add_argument("--set-password-file", metavar="F",
                   help="password for created users whose CommuniGate password is not readable (0600 file)")
    m.add_argument("--force-set-password-file", metavar="F",
                   help="password for every created user, whatever CommuniGate holds (0600 file)")
    m.add_argument("--primary-domain", metavar="D",
                   help="name of the main domain (Accounts/) when Settings/Main.settings does not say; "
                        "default: this machine's host name (cg2kms's -primaryDomain)")
    m.add_argument("--target", choices=("kerio", "imap"), default="kerio",
                   help="kerio: X-MASTERAUTH + X-SETUSER (default); imap: the server's master-user login")
    m.add_argument("--master-user", metavar="U",
                   help="the IMAP master user's name (required with --target imap)")
    m.add_argument("--master-mode", choices=("plain", "star"), default="plain",
                   help="--target imap: SASL PLAIN with authzid (default) or LOGIN user*master")
    m.add_argument("--target-password-file", metavar="F", help="the master password (0600 file)")
    m.add_argument("--admin-url", metavar="URL", help="Kerio's administration API, https://HOST:4040: "
                   "missing users are created there")
    m.add_argument("--admin-user", metavar="U", help="Kerio administrator")
    m.add_argument("--admin-password-file", metavar="F", help="its password (0600 file)")
    m.add_argument("--passwd-file", metavar="PATH", help="a Dovecot passwd-file: missing users are created there")
    m.add_argument("--directory", metavar="URL", help="any writable directory URL (ldap://HOST/BASEDN?bind=DN, "
                   "passwd-file:PATH, kerio://ADMIN@HOST); its password from MAILMIGRATE_ADMIN_PASSWORD")
    m.add_argument("--tls", choices=("auto", "none", "starttls", "imaps"), default="auto",
                   help="auto (default): plain IMAP towards this machine, STARTTLS (required) otherwise")
    m.add_argument("--cafile", metavar="PATH", help="CA certificate for the target's IMAP and admin API")
    m.add_argument("--insecure", action="store_true", help="do not verify the target's certificates")
    m.add_argument("--state", metavar="PATH", help="state file (default OUTPUT_DIR/cg2kms_state.db)")
    m.add_argument("--output-dir", metavar="DIR", default=".", help="where the .log and .pass files go (default .)")
    m.add_argument("--jobs", type=int, default=1, help="accounts migrated at once (default 1)")
    m.add_argument("--caldav", metavar="URL", help="also copy each account's calendars and task lists to this "
                   "CalDAV URL (%%u: the account's address, %%n: its local part, %%d: its domain), e.g. caldav://dav.example.org/%%u/")
    m.add_argument("--carddav", metavar="URL", help="also copy each account's contacts to this CardDAV URL")
    m.add_argument("--dav-user", metavar="U", help="the DAV login with rights on every user's collections")
    m.add_argument("--dav-password-file", metavar="F", help="its password (0600 file; or MAILMIGRATE_DAV_PASSWORD)")
    m.add_argument("--quiet", action="store_true", help="print nothing but errors (the log has everything)")
    m.add_argument("--json", action="store_true", help="print the final report as JSON (no progress lines)")
    m.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from ..model import Secret
    from ..paths.communigate.migrate import MigrateOptions, open_directory_for
    from ..credentials import ADMIN, DAV, TARGET, read_password_file

    def opt_file(path, what):
        return read_password_file(path, what) if path else None

    master = TARGET.read(args.target_password_file)
    admin = ADMIN.read(args.admin_password_file)
    directory = open_directory_for(args.target, admin_url=args.admin_url, admin_user=args.admin_user,
                                   admin_password=admin, passwd_file=args.passwd_file,
                                   directory_url=args.directory, cafile=args.cafile, insecure=args.insecure)
    opts = MigrateOptions(
        base=Path(args.path), server=args.server, port=args.port, master_password=master or Secret(""),
        domain=args.domain, user=args.user, force=args.force,
        set_password=opt_file(args.set_password_file, "--set-password"),
        force_set_password=opt_file(args.force_set_password_file, "--force-set-password"),
        primary_domain=args.primary_domain, target=args.target, master_user=args.master_user,
        master_mode=args.master_mode, tls=args.tls, cafile=args.cafile, insecure=args.insecure,
        directory=directory, state_path=Path(args.state) if args.state else None,
        output_dir=Path(args.output_dir), jobs=args.jobs,
        caldav=args.caldav, carddav=args.carddav, dav_user=args.dav_user,
        dav_password=DAV.read(args.dav_password_file)
        if (args.caldav or args.carddav) else None,
    )
    return print_migration(opts, json_output=args.json, quiet=args.quiet)


def print_migration(opts, *, json_output: bool = False, quiet: bool = False) -> int:
    """Run the migration, printing folder lines as they come and the summary (or JSON) at the end."""
    import json

    from ..paths.communigate.migrate import migrate

    def out(line: str) -> None:
        if not quiet and not json_output:
            print(line, flush=True)

    try:
        report = migrate(opts, out)
    finally:
        if opts.directory is not None:
            opts.directory.close()
    if json_output:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
    elif not quiet:
        print("\n".join(report.summary_lines()))
    elif not report.ok:
        print("\n".join(report.summary_lines()), file=sys.stderr)
    return 0 if report.ok else 1
