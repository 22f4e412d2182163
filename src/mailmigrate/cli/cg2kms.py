"""``cg2kms``: Kerio's CommuniGate-to-Kerio tool's own command line, so that its documented examples run as
written.  Without ``-migrate`` it prints the overview; with it, the migration (paths/communigate/migrate.py,
the same as ``mailmigrate communigate migrate``).  Parsing and printing only."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HELP = """\
cg2kms -path PATH [options]          CommuniGate Pro to Kerio Connect migration (mailmigrate)

  -path PATH             CommuniGate base directory (required), e.g. /var/CommuniGate
  -domain DOMAIN         only this domain (overview or migration)
  -user USER             only this user
  -server SERVER         Kerio Connect's name or address (required for -migrate)
  -port PORT             its IMAP port (default 143)
  -password PASSWORD     Kerio's master authentication password.  Visible to every user of this machine
                         while cg2kms runs: prefer MAILMIGRATE_TARGET_PASSWORD in the environment.
  -setPass PASSWORD      single-user migration (-user): the password of the created user when its
                         CommuniGate password is encrypted
  -forceSetPass PASSWORD single-user migration (-user): the password of the created user, always
                         (with more than one account both are ignored, said on screen and in the log:
                         each created user gets its readable or a generated password)
  -migrate               migrate; without it, an overview of the store is printed
  -force                 also migrate users that already exist in Kerio (they are not changed)
  -primaryDomain DOMAIN  name of the main domain (default: Settings/Main.settings, else this host's name)
  -quiet                 print nothing but errors
  -help, -?              this help

Missing users are created through Kerio's administration API at https://SERVER:4040 (the certificate is
verified), as the administrator MAILMIGRATE_ADMIN_USER with the password MAILMIGRATE_ADMIN_PASSWORD (or
-adminUser, -adminPasswordFile); without them cg2kms stops before copying anything.

mailmigrate's additions:
  -adminUrl URL -adminUser USER   Kerio's administration API elsewhere than https://SERVER:4040
  -adminPasswordFile PATH         the administrator's password (a 0600 file)
  -passwdFile PATH                or in a Dovecot passwd-file
  -target kerio|imap -masterUser U  any IMAP server with a master user instead of Kerio
  -tls auto|none|starttls|imaps  -cafile PATH  -insecure   TLS towards the server (auto: plain to this
                                  machine, STARTTLS required otherwise)
  -state PATH                     state file (default ./cg2kms_state.db): a rerun copies only new mail
  -json                           the final report as JSON
  -caldav URL -carddav URL        also each account's calendars, task lists and contacts, after its mail,
                                  to these DAV URLs (%u the address, %n its local part, %d its domain),
                                  e.g. caldav://SERVER/calendars/%d/%n/ for Kerio Connect's own layout
  -davUser USER -davPasswordFile PATH   the DAV login with rights on every user's collections (its
                                  password also from MAILMIGRATE_DAV_PASSWORD)

Every password set goes to cg2kms_<datetime>.pass (mode 0600), everything to cg2kms_<datetime>.log, in the
current directory.  Exit status: 0 all migrated, 1 something was not (listed), 2 usage error.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cg2kms", add_help=False, allow_abbrev=False, usage="cg2kms -path PATH [options]")
    p.add_argument("-help", "-?", "-h", "--help", dest="help", action="store_true")
    p.add_argument("-path")
    p.add_argument("-domain")
    p.add_argument("-user")
    p.add_argument("-server")
    p.add_argument("-port", type=int, default=143)
    p.add_argument("-password")
    p.add_argument("-setPass")
    p.add_argument("-forceSetPass")
    p.add_argument("-migrate", action="store_true")
    p.add_argument("-force", action="store_true")
    p.add_argument("-primaryDomain")
    p.add_argument("-quiet", action="store_true")
    p.add_argument("-adminUrl")
    p.add_argument("-adminUser")
    p.add_argument("-adminPasswordFile")
    p.add_argument("-passwdFile")
    p.add_argument("-target", choices=("kerio", "imap"), default="kerio")
    p.add_argument("-masterUser")
    p.add_argument("-tls", choices=("auto", "none", "starttls", "imaps"), default="auto")
    p.add_argument("-cafile")
    p.add_argument("-insecure", action="store_true")
    p.add_argument("-state")
    p.add_argument("-json", action="store_true")
    p.add_argument("-caldav")
    p.add_argument("-carddav")
    p.add_argument("-davUser")
    p.add_argument("-davPasswordFile")
    return p


class _Usage(Exception):
    pass


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = build_parser()
    # argparse's own error text may repeat a value; a value may be a password, so say only what is wrong.
    def error(message: str):
        if message.startswith("unrecognized arguments"):
            message = "unrecognized arguments"
        raise _Usage(re.sub(r":\s*'.*$", "", message))

    parser.error = error  # type: ignore[method-assign]
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _parse(argv)
    except _Usage as e:
        print(f"cg2kms: {e}; cg2kms -help lists the options", file=sys.stderr)
        return 2
    if args.help or not argv:
        sys.stdout.write(HELP)
        return 0
    if not args.path:
        print("cg2kms: -path is required (cg2kms -help)", file=sys.stderr)
        return 2
    from .main import run_guarded

    return run_guarded("cg2kms", lambda: _migrate(args) if args.migrate else _overview(args))


def _overview(args) -> int:
    from ..paths.communigate.overview import build_overview, dumps, render

    ov = build_overview(args.path, domain=args.domain, user=args.user, primary_domain=args.primaryDomain,
                        target_directory="passwd-file" if args.passwdFile else "kerio")
    if args.json:
        sys.stdout.write(dumps(ov) + "\n")
    elif not args.quiet:
        from rich.console import Console

        render(ov, Console())
    damaged = any(a.problems for a in ov.accounts) or any(d.domain.errors for d in ov.domains)
    return 1 if damaged else 0


def _migrate(args) -> int:
    import os

    from ..errors import ConfigError
    from ..model import Secret
    from ..paths.communigate.migrate import MigrateOptions, open_directory_for
    from ..credentials import ADMIN, DAV, SECRETS, TARGET
    from .communigate import print_migration

    if not args.server:
        raise ConfigError("-server is required with -migrate")
    master = Secret(args.password) if args.password else TARGET.read()
    for given in (args.password, args.setPass, args.forceSetPass):  # cg2kms's own options: on argv, as the seed
        SECRETS.add(given)
    if not master:
        raise ConfigError("-password (or MAILMIGRATE_TARGET_PASSWORD) is required with -migrate")
    admin = ADMIN.read(args.adminPasswordFile)
    admin_user = args.adminUser or os.environ.get("MAILMIGRATE_ADMIN_USER") or None
    admin_url = args.adminUrl
    if args.target == "kerio" and not admin_url and not args.passwdFile:
        # cg2kms creates the users it does not find (the seed): that needs Kerio's administration API, on
        # the -server host's own port unless told otherwise.
        missing = [x for x, ok in (("MAILMIGRATE_ADMIN_USER (or -adminUser)", admin_user),
                                   ("MAILMIGRATE_ADMIN_PASSWORD (or -adminPasswordFile)", admin)) if not ok]
        if missing:
            raise ConfigError(f"cg2kms creates missing users through Kerio's administration API at "
                              f"https://{args.server}:4040 and needs its administrator: set "
                              f"{' and '.join(missing)}; nothing was copied")
        admin_url = f"https://[{args.server}]" if ":" in args.server else f"https://{args.server}"
    directory = open_directory_for(args.target, admin_url=admin_url, admin_user=admin_user,
                                   admin_password=admin, passwd_file=args.passwdFile, cafile=args.cafile,
                                   insecure=args.insecure)
    opts = MigrateOptions(
        base=Path(args.path), server=args.server, port=args.port, master_password=master, domain=args.domain,
        user=args.user, force=args.force,
        set_password=Secret(args.setPass) if args.setPass else None,
        force_set_password=Secret(args.forceSetPass) if args.forceSetPass else None,
        passwords_single_user_only=True,
        primary_domain=args.primaryDomain, target=args.target, master_user=args.masterUser, tls=args.tls,
        cafile=args.cafile, insecure=args.insecure, directory=directory,
        state_path=Path(args.state) if args.state else None, output_dir=Path.cwd(),
        caldav=args.caldav, carddav=args.carddav, dav_user=args.davUser,
        dav_password=DAV.read(args.davPasswordFile)
        if (args.caldav or args.carddav) else None,
    )
    return print_migration(opts, json_output=args.json, quiet=args.quiet)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
