"""``mailmigrate kopano ACTION``: the Zarafa -> Kopano drop-in migration and Kopano upgrade steps.

Every action is a plan (paths/plan.py): ``--dry-run`` prints exactly what would change and changes
nothing; without it the unfinished steps are applied, each outcome appended to ``--log``, and running the
same command again continues where it stopped.  Exit status 0 when every step is done, 1 when a step
failed (named in the output), 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from ..model import Secret
from .output import secret_from, setup_logging

EPILOG = """\
Passwords never go on the command line: the database password comes from MAILMIGRATE_DB_PASSWORD or
--password-file, the LDAP bind password from MAILMIGRATE_LDAP_PASSWORD or --password-file."""


def _password(env: str, file: str | None) -> Secret | None:
    return secret_from(env, file, "password")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    p.add_argument("--log", metavar="FILE", help="append every step's outcome to FILE")


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db-host", default="127.0.0.1")
    p.add_argument("--db-port", type=int, default=3306)
    p.add_argument("--db-socket", help="unix socket of the database server instead of host/port")
    p.add_argument("--db-user", default="root")
    p.add_argument("--database", default="kopano", help="Kopano's database (mysql_database of server.cfg)")
    p.add_argument("--password-file", help="file holding the database password (else MAILMIGRATE_DB_PASSWORD)")


def _db(args):
    from ..paths.kopano.lob import DbParams

    return DbParams(args.database, user=args.db_user, password=_password("MAILMIGRATE_DB_PASSWORD",
                                                                          args.password_file),
                    host=args.db_host, port=args.db_port, unix_socket=args.db_socket)


def register(subparsers) -> None:
    p = subparsers.add_parser("kopano", help="Zarafa -> Kopano migration and Kopano upgrade steps",
                              description="Zarafa -> Kopano drop-in migration and Kopano upgrade, step by step; "
                                          "every action takes --dry-run.", epilog=EPILOG)
    sub = p.add_subparsers(dest="kopano_command", metavar="ACTION")

    c = sub.add_parser("config", help="take over /etc/zarafa into /etc/kopano")
    c.add_argument("--zarafa-dir", default="/etc/zarafa")
    c.add_argument("--kopano-dir", default="/etc/kopano")
    c.add_argument("--mode", choices=("changed", "copy"), default="changed",
                   help="changed: carry only directives changed from Zarafa's defaults into Kopano's files "
                        "(recommended); copy: keep kopano-orig, copy everything, fix up")
    c.add_argument("--zarafa-defaults", help="Zarafa's example-config directory (for --mode changed)")
    c.add_argument("--kopano-defaults", help="Kopano's example-config directory (names Kopano knows)")
    c.add_argument("--ldap-schema", choices=("kopano", "zarafa"), default="kopano",
                   help="LDAP schema Kopano will read (default kopano: the directory is migrated too)")
    _common(c)

    a = sub.add_parser("attachments-move", help="move attachment_path from Zarafa's place to Kopano's")
    a.add_argument("--source", default="/var/lib/zarafa/attachments")
    a.add_argument("--target", default="/var/lib/kopano/attachments")
    a.add_argument("--server-cfg", default="/etc/kopano/server.cfg", help="point its attachment_path at --target")
    a.add_argument("--copy", action="store_true", help="copy and remove even on one file system")
    _common(a)

    pm = sub.add_parser("permissions", help="the seed's file permissions and zarafa -> kopano ownership")
    pm.add_argument("--root", default="/", help="prefix of every path (a copy of the system)")
    pm.add_argument("--extra-dir", action="append", default=[],
                    help="also re-own this directory (attachment_path, search index_path); repeatable")
    _common(pm)

    lo = sub.add_parser("ldap-offline", help="slapcat LDIF in the Zarafa schema -> LDIF in the Kopano schema")
    lo.add_argument("source", help="LDIF written by slapcat")
    lo.add_argument("target", help="LDIF to write, for slapadd")
    _common(lo)

    ln = sub.add_parser("ldap-online", help="migrate a live directory to the Kopano schema (both schemas loaded)")
    ln.add_argument("--url", required=True, help="ldap://host:port")
    ln.add_argument("--base", required=True, help="base DN of the Kopano objects")
    ln.add_argument("--bind-dn", required=True)
    ln.add_argument("--password-file", help="file holding the bind password (else MAILMIGRATE_LDAP_PASSWORD)")
    ln.add_argument("--state-dir", required=True, help="where the backup LDIF and the journal are kept")
    ln.add_argument("--no-checklist", action="store_true", help="skip the before/after directory comparison")
    _common(ln)

    lb = sub.add_parser("lob-to-files", help="attachments from the database lob table to files")
    _db_args(lb)
    lb.add_argument("--path", required=True, help="attachment_path to write to")
    lb.add_argument("--compression", action="store_true", help="write id.gz (attachment_compression != 0)")
    lb.add_argument("--delete", action="store_true", help="empty lob once every file matched the database")
    _common(lb)

    b = sub.add_parser("backup", help="database, then attachments, then configuration")
    _db_args(b)
    b.add_argument("--dest", required=True, help="backup directory")
    b.add_argument("--attachments", default="/var/lib/kopano/attachments")
    b.add_argument("--config", default="/etc/kopano")
    b.add_argument("--max-age", type=float, default=12.0, metavar="HOURS",
                   help="a backup in --dest begun longer ago than this is moved aside and made anew (default 12)")
    _common(b)

    k = sub.add_parser("check-config", help="options of the example configuration new to the installed one")
    k.add_argument("--kopano-dir", default="/etc/kopano")
    k.add_argument("--example-dir", default="/usr/share/doc/kopano/example-config")

    mg = sub.add_parser("migrate", help="the whole Zarafa -> Kopano runbook as one resumable plan",
                        description="Every step of the drop-in migration and of the upgrade chapter in order: stop "
                                    "the MTA and services, back up, packages, configuration, attachments, "
                                    "permissions, LDAP, safe-mode first start with the log checked, start in "
                                    "reverse order, checklist. A rerun continues after the last finished step.",
                        epilog=EPILOG)
    mg.add_argument("--from-version", default="7.2", help="ZCP version migrated from (7.1 rebuilds the search index)")
    mg.add_argument("--zarafa-dir", help="Zarafa's configuration (default /etc/zarafa)")
    mg.add_argument("--mode", choices=("changed", "copy"), default="changed", help="configuration takeover, as for "
                    "'kopano config'")
    mg.add_argument("--zarafa-defaults", help="Zarafa's example-config directory (for --mode changed)")
    mg.add_argument("--kopano-defaults", help="Kopano's example-config directory")
    mg.add_argument("--ldap", choices=("none", "offline", "online"), default="none",
                    help="move the directory to the Kopano schema: offline (slapcat/slapadd on this host's stopped "
                         "slapd) or online (both schemas loaded); none keeps the Zarafa schema")
    mg.add_argument("--ldap-config-dir", default="/etc/ldap/slapd.d")
    mg.add_argument("--ldap-data-dir", default="/var/lib/ldap")
    mg.add_argument("--ldap-db", type=int, default=1, help="slapd database number of the Kopano data (default 1)")
    mg.add_argument("--ldap-service", default="slapd")
    mg.add_argument("--ldap-url", help="for --ldap online")
    mg.add_argument("--ldap-base", help="for --ldap online")
    mg.add_argument("--ldap-bind-dn", help="for --ldap online (password: MAILMIGRATE_LDAP_PASSWORD or "
                                           "--ldap-password-file)")
    mg.add_argument("--ldap-password-file")

    up = sub.add_parser("upgrade", help="the whole Kopano upgrade runbook as one resumable plan",
                        description="Stop the MTA and services, back up, upgrade packages, new options, database "
                                    "attachments to files, safe-mode first start with the log checked, start in "
                                    "reverse order, optimize-imap, checklist. A rerun continues after the last "
                                    "finished step.", epilog=EPILOG)
    up.add_argument("--from-version", default="8.0", help="installed Kopano version (below 8.2: findroots reminder)")
    up.add_argument("--example-dir", help="the new release's example-config (default "
                                          "/usr/share/doc/kopano/example-config)")
    for r in (mg, up):
        r.add_argument("--work-dir", default="/var/lib/mailmigrate/kopano-runbook",
                       help="run state, backups, LDIF files (default /var/lib/mailmigrate/kopano-runbook)")
        r.add_argument("--kopano-dir", help="Kopano's configuration (default /etc/kopano)")
        r.add_argument("--root", default="/", help="prefix of every system path (a copy of the system)")
        _db_args(r)
        r.set_defaults(database=None)
        r.add_argument("--services", choices=("auto", "systemctl", "service"), default="auto",
                       help="how services are stopped and started (auto: systemctl under systemd, else service)")
        r.add_argument("--mta", default="postfix", help="MTA service stopped first and started last")
        r.add_argument("--distro", choices=("debian", "rhel", "suse"), help="package commands for (default: from "
                                                                             "/etc/os-release)")
        r.add_argument("--package-dir", help="directory of the release's .deb/.rpm files (else the repository)")
        r.add_argument("--run-packages", action="store_true",
                       help="run the package commands (else they are printed and the runbook waits for a rerun)")
        r.add_argument("--imap-gateway", choices=("auto", "yes", "no"), default="auto",
                       help="run optimize-imap.py (auto: when the gateway is installed with IMAP enabled)")
        r.add_argument("--web-service", help="web server service to restart for php-mapi (apache2, httpd)")
        r.add_argument("--max-backup-age", type=float, default=12.0, metavar="HOURS")
        _common(r)

    for s in (c, a, pm, lo, ln, lb, b, k, mg, up):
        s.set_defaults(func=run)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _run_plan(plan, args) -> int:
    res = plan.run(dry_run=args.dry_run, log_path=args.log)
    print(res.render())
    return 0 if res.ok else 1


def run(args: argparse.Namespace) -> int:
    setup_logging(getattr(args, "verbose", 0))
    cmd = args.kopano_command
    if cmd == "config":
        from ..paths.kopano.config import ConfigMigration

        m = ConfigMigration(Path(args.zarafa_dir), Path(args.kopano_dir), mode=args.mode,
                            zarafa_defaults=args.zarafa_defaults and Path(args.zarafa_defaults),
                            kopano_defaults=args.kopano_defaults and Path(args.kopano_defaults),
                            ldap_schema=args.ldap_schema)
        res = m.plan().run(dry_run=args.dry_run, log_path=args.log)
        print(res.render())
        # An applied takeover already listed its warnings and notes among its lines: print only the others
        # (dry run, already done), once each (issue 17: every warning appeared twice).
        shown = {ln.strip() for o in res.outcomes for ln in o.lines}
        t = m.compute()
        for line in [f"warning: {w}" for w in t.warnings] + [f"note: {n}" for n in t.notes]:
            if line not in shown:
                print(line)
        return 0 if res.ok else 1
    if cmd == "attachments-move":
        from ..paths.kopano.attachments_move import AttachmentMove

        return _run_plan(AttachmentMove(args.source, args.target, server_cfg=args.server_cfg,
                                        force_copy=args.copy).plan(), args)
    if cmd == "permissions":
        from ..paths.kopano.permissions import Permissions

        return _run_plan(Permissions(args.root, extra_dirs=args.extra_dir).plan(), args)
    if cmd == "ldap-offline":
        from ..paths.kopano import ldap_offline

        if not Path(args.source).is_file():
            raise ConfigError(f"{args.source}: no such LDIF file")
        return _run_plan(ldap_offline.plan(Path(args.source), Path(args.target)), args)
    if cmd == "ldap-online":
        return _ldap_online(args)
    if cmd == "lob-to-files":
        from ..paths.kopano.lob import LobToFiles

        job = LobToFiles(_db(args), args.path, compression=args.compression, delete=args.delete)
        try:
            return _run_plan(job.plan(), args)
        finally:
            job.close()
    if cmd == "backup":
        from ..paths.kopano.backup import KopanoBackup

        return _run_plan(KopanoBackup(_db(args), args.dest, attachments=args.attachments or None,
                                      config=args.config, max_age=args.max_age).plan(), args)
    if cmd in ("migrate", "upgrade"):
        return _runbook(args)
    if cmd == "check-config":
        from ..paths.kopano.upgrade import check_config_dir

        checks = check_config_dir(args.kopano_dir, args.example_dir)
        for c in checks:
            print(c.render())
        return 0
    raise ConfigError(f"unknown kopano action {cmd!r}")


def _ldap_online(args) -> int:
    from ..directory.ldap import LdapDirectory
    from ..paths.kopano.ldap_online import OnlineMigration
    from ..paths.kopano.upgrade import directory_checklist

    pw = _password("MAILMIGRATE_LDAP_PASSWORD", args.password_file)
    m = OnlineMigration(args.url, args.base, bind_dn=args.bind_dn, password=pw, state_dir=args.state_dir)

    def read():
        d = LdapDirectory(args.url, args.base, bind_dn=args.bind_dn, password=pw)
        try:
            return d.read()
        finally:
            d.close()

    check = not args.no_checklist and not args.dry_run
    before = read() if check else None
    try:
        status = _run_plan(m.plan(), args)
    finally:
        m.close()
    if check:
        result = directory_checklist(before, read())
        print(result.render())
        if not result.ok:
            status = 1
    return status


def _distro(root: Path) -> str:
    """Package family from os-release's ID and ID_LIKE."""
    try:
        text = (root / "etc/os-release").read_text()
    except OSError:
        raise ConfigError("no /etc/os-release: choose --distro") from None
    ids = " ".join(v.strip().strip('"') for k, _, v in (ln.partition("=") for ln in text.splitlines())
                   if k in ("ID", "ID_LIKE")).split()
    for family, names in (("debian", ("debian", "ubuntu")), ("suse", ("suse", "sles", "sled")),
                          ("rhel", ("rhel", "centos", "fedora"))):
        if any(i in names or (family == "suse" and i.startswith("opensuse")) for i in ids):
            return family
    raise ConfigError(f"unknown distribution ({' '.join(ids) or 'no ID'}): choose --distro")


def _runbook(args) -> int:
    from ..paths.kopano.runbook import Runbook, RunbookSettings
    from ..paths.kopano.services import Runner, services_for

    root = Path(args.root)
    mig = args.kopano_command == "migrate"
    opt = lambda name: getattr(args, name, None)  # noqa: E731
    settings = RunbookSettings(
        args.kopano_command, Path(args.work_dir), root=root, from_version=args.from_version,
        zarafa_dir=Path(opt("zarafa_dir")) if opt("zarafa_dir") else None,
        kopano_dir=Path(args.kopano_dir) if args.kopano_dir else None,
        config_mode=opt("mode") or "changed",
        zarafa_defaults=Path(opt("zarafa_defaults")) if opt("zarafa_defaults") else None,
        kopano_defaults=Path(opt("kopano_defaults")) if opt("kopano_defaults") else None,
        example_dir=Path(opt("example_dir")) if opt("example_dir") else None,
        db_user=args.db_user, db_password=_password("MAILMIGRATE_DB_PASSWORD", args.password_file),
        db_host=args.db_host, db_port=args.db_port, db_socket=args.db_socket, database=args.database,
        ldap=opt("ldap") or "none",
        ldap_config_dir=Path(opt("ldap_config_dir") or "/etc/ldap/slapd.d"),
        ldap_data_dir=Path(opt("ldap_data_dir") or "/var/lib/ldap"), ldap_db=opt("ldap_db") or 1,
        ldap_service=opt("ldap_service") or "slapd", ldap_url=opt("ldap_url"), ldap_base=opt("ldap_base"),
        ldap_bind_dn=opt("ldap_bind_dn"),
        ldap_password=_password("MAILMIGRATE_LDAP_PASSWORD", opt("ldap_password_file")) if mig and
        opt("ldap") == "online" else None,
        mta=args.mta, imap_gateway=args.imap_gateway, distro=args.distro or _distro(root),
        run_packages=args.run_packages, package_dir=Path(opt("package_dir")) if opt("package_dir") else None,
        web_service=args.web_service, max_backup_age=args.max_backup_age)
    runner = Runner()
    book = Runbook(settings, runner, services_for(args.services, runner))
    res = book.run(dry_run=args.dry_run, log_path=args.log)
    print(res.render())
    return 0 if res.ok else 1
