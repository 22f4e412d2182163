"""The ``mailmigrate`` command line: every sub-command reachable by its word, each loading only its own
module (a rerun in a cutover loop should not pay for the dashboard's or the directory's imports)."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

from mailmigrate.cli import main as cli


def _registered(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    importlib.import_module(module).register(parser.add_subparsers())
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_registered_sub_command_is_mapped_to_its_module():
    mapped: dict[str, str] = {}
    for module in cli.COMMAND_MODULES:
        for word in _registered(module):
            mapped[word] = module
    assert mapped == cli.COMMANDS


def test_a_named_sub_command_imports_only_its_module():
    code = ("import sys; from mailmigrate.cli.main import main, COMMAND_MODULES\n"
            "try:\n    main(['-v', 'state', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in COMMAND_MODULES if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "upgrade" in out  # the sub-command's own help was printed
    assert out.strip().splitlines()[-1] == "['mailmigrate.cli.worker']"


def test_help_and_unknown_words_still_list_every_command(capsys):
    assert cli.main(["snyc"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and all(word in err for word in cli.COMMANDS)
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert all(word in out for word in cli.COMMANDS), out


#: What a plain mail sync (one account, no terminal, no OAuth, no --accounts) never needs: the other
#: commands' layers, the optional extras, the groupware stores, the token sources (urllib.request,
#: http.client, email), the progress bars, the accounts-file reader and the pool for accounts at once; and,
#: with no provider preset, no --delete and no per-account rules, the Gmail rules, the delete checks and
#: shlex; nor typing (annotations are never evaluated: its names are imported for type checkers only), nor,
#: with ?tls=none, ssl.
NOT_FOR_A_MAIL_SYNC = ("mailmigrate.dashboard", "mailmigrate.fleet", "mailmigrate.directory", "mailmigrate.paths",
                       "mailmigrate.workflow", "mailmigrate.stores.groupware", "mailmigrate.stores.dav",
                       "mailmigrate.stores.vdir", "mailmigrate.sync.groupware", "mailmigrate.stores.oauth",
                       "mailmigrate.cli.progress", "mailmigrate.sync.accounts", "mailmigrate.cli.worker",
                       "mailmigrate.cli.project", "mailmigrate.cli.serve", "flask", "jinja2", "werkzeug", "celery",
                       "kombu", "redis", "psycopg", "ldap3", "pymysql", "email", "http", "urllib.request", "csv",
                       "concurrent.futures", "mailmigrate.sync.gmail", "mailmigrate.sync.deletes", "shlex",
                       "typing", "ssl")


def _modules_after_sync(source: str, target: str, state, env=None) -> list[str]:
    """The modules loaded by one `mailmigrate sync` run through the entry point, in a fresh interpreter (and
    the garbage collector, which start-up turns off while the command loads, is on again)."""
    code = ("import gc, sys\nfrom mailmigrate.cli.main import main\n"
            f"sys.argv = ['mailmigrate', 'sync', {source!r}, {target!r}, '--state', {str(state)!r}, '--no-progress']\n"
            "status = main()\n"
            "assert gc.isenabled()\n"
            "print('modules:', status, *sorted(sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr
    status, *modules = p.stdout.rpartition("modules:")[2].split()
    assert status == "0", p.stdout + p.stderr
    return modules


def _optional(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == x or m.startswith(x + ".") for x in NOT_FOR_A_MAIL_SYNC)]


def test_a_plain_maildir_sync_loads_none_of_the_optional_parts(tmp_path):
    """A sync (rerun at every pass of a cutover loop) pays only for what copying mail needs: each module left
    out here is start-up CPU of every run."""
    src = tmp_path / "src"
    for sub in ("cur", "new", "tmp"):
        (src / sub).mkdir(parents=True)
    (src / "cur" / "1.host:2,S").write_bytes(b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n")
    modules = _modules_after_sync(f"maildir:{src}", f"maildir:{tmp_path / 'dst'}", tmp_path / "state.db")
    assert "mailmigrate.sync.engine" in modules  # it did sync
    assert list((tmp_path / "dst" / "cur").iterdir())
    assert _optional(modules) == []


def test_a_plain_imap_sync_loads_none_of_the_optional_parts(imap_accounts, tmp_path):
    from test_sync_imap import env_for, msg, populate

    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen")]})
    modules = _modules_after_sync(src.url(), dst.url(), tmp_path / "state.db", env=env_for(src, dst))
    assert "mailmigrate.stores.imap" in modules
    assert _optional(modules) == []
    # a rerun with nothing to copy hashes nothing: hashlib (OpenSSL's libcrypto) is not loaded
    again = _modules_after_sync(src.url(), dst.url(), tmp_path / "state.db", env=env_for(src, dst))
    assert "hashlib" in modules and "hashlib" not in again and _optional(again) == []
