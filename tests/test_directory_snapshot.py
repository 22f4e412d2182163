"""Before/after proof of a directory: a snapshot taken before the work, compared after it."""

from __future__ import annotations

import json
import subprocess
import sys

MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def mm(*args):
    return subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, timeout=120)


def test_snapshot_then_checklist_finds_what_went_missing(tmp_path):
    users = tmp_path / "users"
    users.write_text("ann:{SSHA}c2VjcmV0aGFzaGFubg==:1000:1000:Ann Archer::::\n"
                     "bob:{CRYPT}$6$salt$hashbob:1001:1000:Bob Baker::::\n")
    snap = tmp_path / "before.json"
    p = mm("directory", "snapshot", f"passwd-file:{users}", snap)
    assert p.returncode == 0, p.stderr
    text = snap.read_text()
    assert "ann" in text and "c2VjcmV0aGFzaGFubg" not in text and "hashbob" not in text  # no passwords kept
    same = mm("directory", "checklist", snap, f"passwd-file:{users}", "--json")
    assert same.returncode == 0 and json.loads(same.stdout)["ok"]
    users.write_text("ann:{SSHA}c2VjcmV0aGFzaGFubg==:1000:1000:Ann Archer::::\n")  # the "upgrade" lost bob
    after = mm("directory", "checklist", snap, f"passwd-file:{users}")
    assert after.returncode == 1 and "missing: bob" in after.stdout and "FAIL" in after.stdout


def test_a_damaged_snapshot_is_refused(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"format": "something else"}')
    p = mm("directory", "checklist", bad, bad)
    assert p.returncode != 0 and "not a mailmigrate directory snapshot" in p.stderr


def test_a_missing_passwd_file_is_an_error_where_it_is_read_and_created_where_it_is_written(tmp_path):
    """A mistyped path must not read as a directory without users: two such would 'match' perfectly and a
    copy from one would report nothing to do."""
    users = tmp_path / "users"
    users.write_text("ann:{SSHA}c2VjcmV0aGFzaGFubg==:1000:1000:Ann Archer::::\n")
    typo = tmp_path / "usres"
    for args in (("directory", "checklist", f"passwd-file:{typo}", f"passwd-file:{typo}"),
                 ("directory", "diff", f"passwd-file:{typo}", f"passwd-file:{users}"),
                 ("directory", "copy", f"passwd-file:{typo}", f"passwd-file:{users}"),
                 ("directory", "snapshot", f"passwd-file:{typo}", tmp_path / "snap.json")):
        p = mm(*args)
        assert p.returncode != 0 and f"passwd-file:{typo}: no such file" in p.stderr, (args, p.stdout, p.stderr)
    new = tmp_path / "new" / "users"
    p = mm("directory", "copy", f"passwd-file:{users}", f"passwd-file:{new}")
    assert p.returncode == 0, p.stderr
    assert new.read_text().startswith("ann:")
