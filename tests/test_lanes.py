"""The fast lane (README, "Test lanes") leaves out exactly the tests that need a server: collected, not run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collected(*args: str) -> set[str]:
    p = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode in (0, 5), p.stdout + p.stderr  # 5: nothing collected
    return {line.strip() for line in p.stdout.splitlines() if "::" in line}


def test_the_fast_lane_keeps_local_tests_and_leaves_out_every_server():
    files = ["tests/test_sync_imap.py", "tests/test_directory_slapd.py", "tests/test_kopano_lob.py",
             "tests/test_formats_mbox.py", "tests/contract/test_store_contract.py"]
    everything = _collected(*files)
    fast = _collected("-m", "not needs_server", *files)
    # a test using the shared Dovecot fixture, one starting slapd in its body, one connecting to MariaDB
    assert not [t for t in fast if t.startswith(("tests/test_sync_imap.py", "tests/test_kopano_lob.py"))]
    assert "tests/test_directory_slapd.py::test_converted_schema_matches_debians_own_ldif" in fast
    assert not [t for t in fast if "test_directory_slapd" in t and "converted_schema" not in t]
    # parser tests and the contract suite's local stores stay; its server kinds (by parameter) go
    assert {t for t in everything if t.startswith("tests/test_formats_mbox.py")} <= fast
    contract = {t for t in fast if "test_store_contract" in t}
    assert [t for t in contract if "[memory" in t] and [t for t in contract if "[maildir" in t]
    assert not [t for t in contract if any(f"[{k}" in t for k in ("imap", "cyrus", "courier"))]


def test_one_server_lane():
    only = _collected("-m", "needs_cyrus", "tests/contract/test_store_contract.py", "tests/test_formats_mbox.py")
    assert only and all("[cyrus" in t for t in only)
