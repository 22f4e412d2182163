"""The ``mailmigrate`` command: one sub-command per module listed in COMMAND_MODULES.

Each module in the list defines ``register(subparsers)`` which adds its sub-command(s) and sets
``func=run`` where ``run(args) -> int`` returns the exit status (0 ok, 1 partial failure, 2 usage or
configuration error).

A command line that names its sub-command imports only that sub-command's module (:data:`COMMANDS`):
importing all of them costs about 30 ms, a tenth of a rerun with nothing to copy, paid at every run of a
cutover loop.  Help, no command or an unknown word still build the whole parser.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from .. import __version__
from ..errors import ConfigError, MailmigrateError

#: The optional part of mailmigrate each third-party package belongs to (pyproject.toml's extras). A plain
#: ``pip install mailmigrate`` syncs mailboxes; a command that needs more says which extra to add.
EXTRA_OF_MODULE = {
    "flask": "dashboard", "werkzeug": "dashboard", "jinja2": "dashboard",
    "celery": "fleet", "kombu": "fleet", "redis": "fleet",
    "psycopg": "postgres",
    "ldap3": "ldap",
    "pymysql": "kopano",
}

COMMAND_MODULES = [
    "mailmigrate.cli.sync",
    "mailmigrate.cli.project",
    "mailmigrate.cli.serve",
    "mailmigrate.cli.directory",
    "mailmigrate.cli.communigate",
    "mailmigrate.cli.worker",
    "mailmigrate.cli.fleet",
    "mailmigrate.cli.nethserver",
    "mailmigrate.cli.kopano",
]

#: Each sub-command word and the module that registers it (checked against the modules by the tests).
COMMANDS = {
    "sync": "mailmigrate.cli.sync",
    "project": "mailmigrate.cli.project",
    "serve": "mailmigrate.cli.serve",
    "directory": "mailmigrate.cli.directory",
    "communigate": "mailmigrate.cli.communigate",
    "worker": "mailmigrate.cli.worker",
    "state": "mailmigrate.cli.worker",
    "fleet": "mailmigrate.cli.fleet",
    "sme-import": "mailmigrate.cli.nethserver",
    "ns7": "mailmigrate.cli.nethserver",
    "kopano": "mailmigrate.cli.kopano",
}


def build_parser(modules: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailmigrate",
        description="Move a whole mail server: mailboxes, accounts, aliases, directory data, configuration.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for protocol)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules or COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _modules_for(argv: list[str]) -> list[str] | None:
    """The one module a command line needs, when its first word is a known sub-command."""
    for word in argv:
        if word.startswith("-"):
            if word in ("-h", "--help"):
                return None
            continue
        module = COMMANDS.get(word)
        return [module] if module else None
    return None


def main(argv: list[str] | None = None) -> int:
    entry_point = argv is None
    argv = sys.argv[1:] if argv is None else argv
    collecting = entry_point and gc.isenabled()
    if collecting:
        # The command's imports create some 20,000 container objects that live as long as the process: the
        # cyclic garbage collector would go through them again and again while they load, at each full
        # collection after and at exit (together ~13 ms of a rerun's CPU).  Frozen, they are never looked at.
        gc.disable()
    try:
        parser = build_parser(_modules_for(argv))
    finally:
        if collecting:
            gc.freeze()
            gc.enable()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors already; keep its status
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_guarded("mailmigrate", lambda: args.func(args))


def run_guarded(prog: str, fn) -> int:
    """Run a command and turn mailmigrate's errors into the exit status every command promises:
    2 usage or configuration error, 1 something failed, 130 interrupted (rerun to resume)."""
    try:
        return int(fn() or 0)
    except ConfigError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except MailmigrateError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as e:
        extra = EXTRA_OF_MODULE.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"{prog}: this needs the optional '{extra}' part of mailmigrate, which is not installed: "
              f"pip install 'mailmigrate[{extra}]' (or 'mailmigrate[all]')", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    sys.exit(main())
