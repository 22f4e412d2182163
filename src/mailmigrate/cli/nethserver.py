"""``mailmigrate sme-import`` and ``mailmigrate ns7 ACTION APP``: the NethServer paths (docs/nethserver.md)."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sme-import", help="SME Server / NethService backup -> NethServer tree (migration-import event)",
        description="Run the migration-import event: every migrate action in order, then a summary of every "
                    "ERROR and WARNING.  Safe to run again.")
    p.add_argument("source", metavar="ARCHIVE|DIR", help="full backup archive (tar.gz) or its unpacked tree")
    p.add_argument("--root", required=True, help="root of the NethServer tree to write (/ on the real machine)")
    p.add_argument("--dry-run", action="store_true", help="decide and report, write nothing")
    p.add_argument("--only", action="append", metavar="ACTION", help="run only this action (repeatable)")
    p.add_argument("--list-actions", action="store_true", help="print the actions in order and exit")
    p.set_defaults(func=run)

    n = subparsers.add_parser(
        "ns7", help="NethServer 7 -> 8, per application: start, sync, finish, abort, skip, status",
        description="Migrate an NS7 application's data to an NS8 tree; the applications' states, history and logs are "
                    "kept in the workflow store TARGETROOT/.mailmigrate/ns7-workflow.db.")
    n.add_argument("action", choices=["start", "sync", "finish", "abort", "skip", "status"])
    n.add_argument("app", nargs="?", default="mail",
                   help="application: mail (default), sogo or webtop (calendars and contacts through DAV), or "
                        "account-provider (NS7's local OpenLDAP, migrated last)")
    n.add_argument("--source-root", required=True, help="root of the NS7 system (/ on the NS7 machine)")
    n.add_argument("--root", required=True, help="root of the NS8 mail application's data")
    n.add_argument("--keep-source", action="store_true", help="finish without disabling the NS7 application")
    n.add_argument("--dovecot-config", metavar="PATH",
                   help="finish: the running NS8 Dovecot's configuration; quota is then recalculated with "
                        "doveadm and checked against the migrated mail")
    n.add_argument("--doveadm", default="doveadm", metavar="PROGRAM", help="doveadm to use (default: doveadm)")
    n.add_argument("--source-ldap", metavar="URL", help="account-provider: NS7's OpenLDAP, "
                                                       "ldap://HOST/BASEDN?bind=DN")
    n.add_argument("--target-ldap", metavar="URL", help="account-provider: the NS8 provider, ldap://HOST/BASEDN?bind=DN")
    n.add_argument("--source-ldap-password-file", metavar="FILE",
                   help="bind password of --source-ldap (mode 0600; or MAILMIGRATE_SOURCE_PASSWORD)")
    n.add_argument("--target-ldap-password-file", metavar="FILE",
                   help="bind password of --target-ldap (mode 0600; or MAILMIGRATE_TARGET_PASSWORD)")
    n.add_argument("--ns8-url", metavar="URL",
                   help="NethServer 8's cluster API (https://LEADER/cluster-admin): start installs the mail module "
                        "if NS8 has none, finish applies the mail settings and fetch tasks and reads them back, "
                        "abort removes a module start installed. Without it: files under --root only")
    n.add_argument("--ns8-user", default="admin", metavar="NAME", help="NS8 administrator (default admin, no 2FA)")
    n.add_argument("--ns8-password-file", metavar="FILE", help="its password (mode 0600; or MAILMIGRATE_NS8_PASSWORD)")
    n.add_argument("--ns8-node", type=int, default=1, metavar="N", help="node for a new mail module (default 1)")
    n.add_argument("--ns8-cafile", metavar="FILE", help="CA certificate(s) to verify the NS8 leader with")
    n.add_argument("--ns8-insecure", action="store_true", help="do not verify the NS8 leader's TLS certificate")
    g = n.add_argument_group("sogo and webtop: calendars and contacts through DAV (docs/nethserver.md)")
    g.add_argument("--dav-source", metavar="URL", help="NS7's DAV, a caldav:// URL whose path or login names each "
                   "user (%%u name@domain, %%n name, %%d domain); contacts are read at the same URL as carddav://. "
                   "SOGo: caldav://NS7/SOGo/dav/%%n/ with a super user; WebTop: caldav://NS7/webtop-dav/server.php/")
    g.add_argument("--dav-target", metavar="URL", help="NS8's DAV of the same application, the same way")
    g.add_argument("--dav-source-user", metavar="LOGIN", help="login on NS7 (a SOGo super user such as admin; "
                   "WebTop default: admin!%%u, its administrator acting as each user)")
    g.add_argument("--dav-target-user", metavar="LOGIN", help="login on NS8, the same way")
    g.add_argument("--dav-source-password-file", metavar="FILE",
                   help="its password (mode 0600; or MAILMIGRATE_DAV_SOURCE_PASSWORD)")
    g.add_argument("--dav-target-password-file", metavar="FILE",
                   help="its password (mode 0600; or MAILMIGRATE_DAV_TARGET_PASSWORD)")
    g.add_argument("--dav-insecure", action="store_true", help="do not verify the DAV servers' TLS certificates")
    n.add_argument("--dry-run", action="store_true", help="finish: show everything finish would do, change nothing")
    n.add_argument("--json", action="store_true", help="print the result as JSON")
    n.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.command == "sme-import":
        return _sme(args)
    return _ns7(args)


def _sme(args) -> int:
    from ..paths.nethserver.registry import ordered
    from ..paths.nethserver.sme_import import run_import

    if args.list_actions:
        for a in ordered():
            print(f"{a.priority:3d}  {a.name}  {a.doc}")
        return 0
    res = run_import(args.source, args.root, dry_run=args.dry_run, only=args.only)
    print(res.log.summary())
    return 0 if res.ok else 1


def _ns7(args) -> int:
    from ..errors import ConfigError
    from ..paths.nethserver.ns7_groupware import DAV_APPS
    from ..paths.nethserver.plugin import DavSettings, NethServerSettings, steps_project
    from ..workflow import ns7 as steps

    if (args.source_ldap or args.target_ldap) and not (args.source_ldap and args.target_ldap):
        raise ConfigError("give both --source-ldap and --target-ldap")
    dav = {}
    if args.dav_source or args.dav_target:
        if args.app not in DAV_APPS:
            raise ConfigError(f"--dav-source/--dav-target are for {' and '.join(DAV_APPS)}, not {args.app}")
        if not (args.dav_source and args.dav_target):
            raise ConfigError("give both --dav-source and --dav-target")
        dav[args.app] = DavSettings(args.dav_source, args.dav_target, args.dav_source_user, args.dav_target_user,
                                    args.dav_source_password_file, args.dav_target_password_file,
                                    dav_insecure=args.dav_insecure)
    p = steps_project(NethServerSettings(
        args.source_root, args.root, source_ldap=args.source_ldap, target_ldap=args.target_ldap,
        source_ldap_password_file=args.source_ldap_password_file,
        target_ldap_password_file=args.target_ldap_password_file, ns8_url=args.ns8_url, ns8_user=args.ns8_user,
        ns8_password_file=args.ns8_password_file, ns8_cafile=args.ns8_cafile, ns8_insecure=args.ns8_insecure,
        ns8_node=args.ns8_node, dav=dav))
    if args.dry_run:
        if args.action != "finish" or args.app != "mail":
            raise ConfigError("--dry-run: only for ns7 finish mail")
        plan = steps.finish_plan(p)
        print(json.dumps(plan, indent=2) if args.json else steps.describe_plan(plan))
        return 0
    if args.action == "status":
        st = steps.status(p)
        print(json.dumps(st, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in st.items()))
        return 0
    if args.action == "finish":
        from ..paths.nethserver.quota import Doveadm

        dovecot = Doveadm(args.dovecot_config, args.doveadm) if args.dovecot_config else None
        res = steps.finish(p, args.app, disable_source=not args.keep_source, dovecot=dovecot)
    else:
        res = getattr(steps, args.action)(p, args.app)
    if args.json:
        out = {"app": res.app, "action": res.action, "state": res.state, "details": res.details,
               "errors": [e.line() for e in res.log.errors], "warnings": [e.line() for e in res.log.warnings]}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        print(f"{res.app}: {res.action} -> {res.state}")
        print(res.log.summary())
    return 0 if res.ok else 1
