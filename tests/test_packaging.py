"""A plain ``pip install mailmigrate`` (no extras) syncs mailboxes, and a command that needs an optional part
names the extra to install instead of dying in an ImportError (issue: packaging with extras)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Makes the optional packages unimportable in the child, as they are after a plain `pip install .`.
_WITHOUT_EXTRAS = """
import sys
BLOCKED = {"flask", "werkzeug", "jinja2", "celery", "kombu", "redis", "psycopg", "ldap3", "pymysql"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
from mailmigrate.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def _mm(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_sync_works_without_any_extra(tmp_path):
    p = _mm("sync", f"maildir:{ROOT / 'examples' / 'sample-maildir'}", f"maildir:{tmp_path / 'out'}",
            "--state", tmp_path / "state.db")
    assert p.returncode == 0, p.stderr
    assert any((tmp_path / "out").rglob("cur/*"))


SAMPLE = ROOT / "examples" / "sample-maildir"


@pytest.mark.parametrize("args, extra", [
    (["serve", "p.toml"], "dashboard"),
    (["directory", "diff", "ldap://127.0.0.1:1/dc=x", "passwd-file:/nonexistent"], "ldap"),
    (["sync", f"maildir:{SAMPLE}", "maildir:out", "--state", "postgresql://127.0.0.1:1/x"], "postgres"),
])
def test_a_missing_extra_is_named_with_exit_2(tmp_path, args, extra):
    made = _mm("project", "init", "p.toml", "--source", f"maildir:{SAMPLE}", "--target", "maildir:out",
               cwd=tmp_path)
    assert made.returncode == 0, made.stderr  # projects themselves need no extra
    p = _mm(*args, cwd=tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    assert f"pip install 'mailmigrate[{extra}]'" in p.stderr, p.stderr
    assert p.returncode == 2


def test_version():
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "--version"], capture_output=True, text=True)
    from mailmigrate import __version__
    assert p.returncode == 0 and p.stdout.strip() == f"mailmigrate {__version__}"
