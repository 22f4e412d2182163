"""Nothing merged, nothing twice, deletes that are safe: the engine's promise in the situations an administrator
meets besides a fresh target and a state file that is never lost (issue 15, part two; issue 19's verified deletes).

Every test runs mailmigrate as a user does (the command line) against real Dovecot servers on loopback and
reads the result back with Python's own imaplib (tests/servers/imapcheck.py).
"""

from __future__ import annotations

import json
import os

from servers import imapcheck
from test_sync_imap import assert_same, env_for, mm, msg, populate, snapshot, sync


def _write_private(path, text):
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


# --- accounts file and summary (issue 15: "target password missing", "0 failed" beside ACCOUNT FAILED) ---

def test_accounts_file_password_with_target_master_logs_in(imap_accounts, tmp_path):
    """--target-master in the run, but no master password given: the 4th column is the account's own
    password and is used (it was ignored, and the account failed with "target password missing")."""
    src, dst = imap_accounts
    populate(src, {"INBOX": [(msg(1), "\\Seen")]})
    accounts = _write_private(tmp_path / "users.csv", f"{src.user},{dst.user},{src.password},{dst.password}\n")
    p = mm("sync", src.url(), dst.url(), "--accounts", accounts, "--target-master", "master",
           "--state", tmp_path / "s.db", "--json", env={"MAILMIGRATE_TARGET_PASSWORD": ""}, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    assert json.loads(p.stdout)["copied"] == 1
    assert_same(src, dst)


def test_summary_counts_failed_accounts(imap_accounts, tmp_path):
    src, dst = imap_accounts
    p = mm("sync", src.url(), dst.url(), "--state", tmp_path / "s.db",
           env={"MAILMIGRATE_SOURCE_PASSWORD": src.password, "MAILMIGRATE_TARGET_PASSWORD": "wrong-pw-9"},
           check=False)
    assert p.returncode == 1
    assert "ACCOUNT FAILED" in p.stdout
    assert "1 account(s), 1 failed" in p.stdout, p.stdout
