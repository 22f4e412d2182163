"""CommuniGate Pro accounts as a directory: read from the store's settings, copied to a Dovecot passwd-file,
with readable passwords carried over and encrypted ones reported and replaced by the chosen policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailmigrate.directory.communigate import CommuniGateDirectory

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "communigate"
MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def test_reader_users_passwords_aliases_forwards():
    d = CommuniGateDirectory(SAMPLE, primary_domain="example.com").read()
    assert set(d.domains) == {"example.com", "example.org", "shop.example.net"}
    alice, bob = d.users["alice@example.com"], d.users["bob@example.com"]
    assert alice.password.reveal() == 'Wonder land "42"' and "a.archer@example.com" in alice.aliases
    assert alice.forwards == ["alice.archer@elsewhere.org"]
    assert bob.password is None and "encrypted" in bob.password_note  # never guessed, never dropped silently
    assert "Wonder land" not in repr(d)


def test_copy_to_passwd_file_carries_readable_passwords(tmp_path):
    pf, gen = tmp_path / "users", tmp_path / "generated"
    p = subprocess.run(MM + ["directory", "copy", f"communigate:{SAMPLE}?primary_domain=example.com",
                             f"passwd-file:{pf}", "--passwords", "generate", "--generated-passwords", str(gen),
                             "--json"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Wonder land" not in p.stdout + p.stderr
    lines = {l.split(":")[0]: l.split(":")[1] for l in pf.read_text().splitlines()}
    assert set(lines) == {"alice@example.com", "bob@example.com", "carol@example.com", "dave@example.org",
                          "erin@example.org", "frank@shop.example.net"}
    generated = {l.split(":")[0] for l in gen.read_text().splitlines()}
    assert generated == {"bob@example.com", "dave@example.org"}  # the two encrypted ones
    if shutil.which("doveadm"):
        ok = subprocess.run(["doveadm", "pw", "-t", lines["carol@example.com"], "-p", "c4rol"],
                            capture_output=True, text=True)
        assert ok.returncode == 0
    assert oct(os.stat(gen).st_mode & 0o777) == "0o600"
