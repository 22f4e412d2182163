"""`mailmigrate directory diff|copy SOURCE TARGET`: users, groups and aliases between directories."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..credentials import write_private
from ..directory import snapshot
from ..directory.base import DirectoryWriter
from ..directory.checklist import compare
from ..directory.copy import PasswordPolicy, copy, diff
from ..directory.urls import open_directory
from ..errors import ConfigError
from ..model import Secret
from .output import secret_from, setup_logging

EPILOG = """\
SOURCE, TARGET:
  ldap://HOST[:PORT]/BASEDN[?bind=DN][&flavor=auto|openldap|ad][&starttls=1][&cafile=PEM][&insecure=1]
                                                             (also ldaps://)
  passwd-file:PATH[?uid=N&gid=N&home=/srv/mail/{login}]      a Dovecot passwd-file
  esmith:ACCOUNTS_DB[?shadow=PATH][&domain=DOMAIN]           SME/NethServer accounts db + shadow
  kerio://ADMIN@HOST[:PORT][/DOMAIN]                         Kerio Connect administration API
passwords: MAILMIGRATE_SOURCE_PASSWORD / MAILMIGRATE_TARGET_PASSWORD or --source-password-file /
  --target-password-file; never on the command line.
Users that exist on TARGET are left alone unless --update-existing.  A password hash the target cannot
take is handled by --passwords: skip (no password), set (--new-password-file), generate (written to
--generated-passwords FILE, mode 0600; a dry run generates and writes nothing).
A user disabled on SOURCE is created disabled; where TARGET cannot hold that for the user, the user is
refused unless --disabled-as-enabled.
Exit status: 0 done (diff: no differences), 1 some objects failed (diff: differences found), 2 usage error.
"""


def register(sub) -> None:
    p = sub.add_parser("directory", help="compare or copy users, groups and aliases between directories",
                       description="Compare (diff) or copy users, groups and aliases from SOURCE to TARGET; "
                                   "copy is idempotent.", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("diff", "copy", "snapshot", "checklist"),
                   help="diff/copy SOURCE TARGET; snapshot SOURCE FILE (save a reading, no passwords); "
                        "checklist BEFORE AFTER (each a snapshot file or a directory URL)")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--source-password-file", metavar="FILE")
    p.add_argument("--target-password-file", metavar="FILE")
    p.add_argument("--update-existing", action="store_true", help="also change objects that exist on TARGET")
    p.add_argument("--dry-run", action="store_true", help="copy: say what would be done, change nothing")
    p.add_argument("--passwords", choices=("skip", "set", "generate"), default="skip",
                   help="for users whose password TARGET cannot take (default: skip)")
    p.add_argument("--new-password-file", metavar="FILE", help="the password for --passwords set")
    p.add_argument("--generated-passwords", metavar="FILE",
                   help="where --passwords generate writes login:password lines (mode 0600)")
    p.add_argument("--disabled-as-enabled", action="store_true",
                   help="create users disabled on SOURCE enabled where TARGET cannot hold them disabled "
                        "(default: refuse them; each is named in the report either way)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(func=run)


def _password(env: str, file: str | None) -> Secret | None:
    return secret_from(env, file, "password")


def run(args) -> int:
    setup_logging(getattr(args, "verbose", 0))
    policy_pw = _password("MAILMIGRATE_NEW_PASSWORD", args.new_password_file) if args.passwords == "set" else None
    if args.passwords == "set" and not policy_pw:
        raise ConfigError("--passwords set needs --new-password-file")
    if args.passwords == "generate" and not args.generated_passwords and args.action == "copy" and not args.dry_run:
        raise ConfigError("--passwords generate needs --generated-passwords FILE to hand the passwords over")
    if args.action == "snapshot":
        with open_directory(args.source, _password("MAILMIGRATE_SOURCE_PASSWORD", args.source_password_file),
                            must_exist=True) as src:
            d = src.read()
        snapshot.save(d, args.target)
        print(f"saved {sum(d.counts().values())} objects ({', '.join(f'{k} {v}' for k, v in d.counts().items() if v)}) "
              f"to {args.target}", file=sys.stderr)
        return 0
    if args.action == "checklist":
        before = _reading(args.source, "MAILMIGRATE_SOURCE_PASSWORD", args.source_password_file)
        after = _reading(args.target, "MAILMIGRATE_TARGET_PASSWORD", args.target_password_file)
        cl = compare(before, after)
        print(cl.as_json() if args.json else cl.render())
        return 0 if cl.ok else 1
    source = open_directory(args.source, _password("MAILMIGRATE_SOURCE_PASSWORD", args.source_password_file),
                            must_exist=True)
    target = open_directory(args.target, _password("MAILMIGRATE_TARGET_PASSWORD", args.target_password_file))
    with source, target:
        if args.action == "diff":
            d = diff(source, target)
            print(json.dumps(d.as_dict(), indent=2) if args.json else d.render())
            return 0 if d.empty else 1
        if not isinstance(target, DirectoryWriter):
            raise ConfigError(f"{args.target}: cannot be written")
        report = copy(source, target, update_existing=args.update_existing, dry_run=args.dry_run,
                      password_policy=PasswordPolicy(args.passwords, policy_pw),
                      disabled_as_enabled=args.disabled_as_enabled)
    generated = report.generated_passwords()
    if generated and args.generated_passwords and not args.dry_run:
        _write_secret_file(Path(args.generated_passwords), generated)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.render())
    return 0 if report.ok else 1


def _reading(text: str, env: str, password_file: str | None):
    """A snapshot file (written by `directory snapshot`) or a live directory URL."""
    if Path(text).is_file():
        return snapshot.load(text)
    with open_directory(text, _password(env, password_file), must_exist=True) as d:
        return d.read()


def _write_secret_file(path: Path, pairs) -> None:
    """Append login:password lines to a file only the owner can read (created 0600, re-checked if it existed)."""
    write_private(path, "".join(f"{login}:{pw.reveal()}\n" for login, pw in pairs), append=True)
    print(f"generated passwords for {len(pairs)} user(s) written to {path}", file=sys.stderr)
