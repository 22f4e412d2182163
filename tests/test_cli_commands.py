"""The ``mailmigrate`` command line: every sub-command reachable by its word, each loading only its own
module (a rerun in a cutover loop should not pay for the dashboard's or the directory's imports)."""

from __future__ import annotations

import argparse
import importlib
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
