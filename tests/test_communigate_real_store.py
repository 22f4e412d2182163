"""Issue 16: CommuniGate Pro right on a store written from the vendor's public descriptions and real files
(tests/cgp_fixture.py), not from our own sample generator.  Each defect the issue lists has a test here or
in test_communigate_mailbox.py / test_communigate_settings.py; the store is migrated into a real Dovecot
(master user, users created in a passwd-file Dovecot reads) through both command lines, and every message
must arrive byte-exact with its flags and date, nothing extra."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import cgp_fixture
from mailmigrate.directory.communigate import CommuniGateDirectory, read_domain
from mailmigrate.paths.communigate.overview import build_overview, to_json
from mailmigrate.stores.communigate import domain_dirs, main_domain_name
from servers import imapcheck

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
CG2KMS = [sys.executable, "-c", "import sys; from mailmigrate.cli.cg2kms import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> cgp_fixture.Fixture:
    return cgp_fixture.build(tmp_path_factory.mktemp("cgp") / "CommuniGate")


def test_main_domain_is_main_settings_domain_name(fx):
    assert main_domain_name(fx.base) == cgp_fixture.MAIN
    assert list(domain_dirs(fx.base)) == [cgp_fixture.MAIN, "example.org", "shop.example.net"]


def test_passwords_each_encoding_and_inherited_encryption(fx):
    d = CommuniGateDirectory(fx.base).read()
    assert sorted(d.users) == fx.addresses
    for address, readable in fx.readable.items():
        u = d.users[address]
        got = u.password.reveal() if u.password is not None else None
        assert got == readable, address
    # A hash is never offered as a password, and the reason is given.
    for address in ("dave@example.org", "frank@shop.example.net", f"carol@{cgp_fixture.MAIN}"):
        assert "encrypted" in d.users[address].password_note, address
    assert d.users[f"alice@{cgp_fixture.MAIN}"].real_name == "Alice Liddell"  # adjacent strings
    assert d.users["erin@example.org"].real_name == "Erin O'Neil"
    for address, forwards in fx.forwarding.items():  # "Mirror to" and "Redirect to" rule actions
        assert d.users[address].forwards == forwards


def test_every_settings_escape(fx):
    from mailmigrate.formats.communigate_settings import parse_file

    v = parse_file(fx.base / "Accounts" / "alice.macnt" / "account.settings")
    assert v["Notes"] == "tab\there\ncr\rlf\nend" and v["Key"] == b"ABC" and v["Quota"] == -1
    assert v["Password"] == 'Tea "party" \\ At 4' and v["RealName"] == "Alice Liddell"


def test_aliases_in_both_shapes_checked_against_the_accounts(fx):
    d = CommuniGateDirectory(fx.base).read()
    for address, aliases in fx.aliases.items():
        assert set(d.users[address].aliases) == aliases, address
    assert all(not d.users[a].aliases for a in fx.addresses if a not in fx.aliases)
    notes = "\n".join(d.notes)
    assert "'bogus'" in notes and "names no account" in notes and "Aliases.data" in notes
    # An alias that is itself an account is reported, never used.
    dom_dir = domain_dirs(fx.base)["example.org"]
    (dom_dir / "Settings" / "Aliases.data").write_text("{ dave = (dj, erin); }\n")
    try:
        dom = read_domain("example.org", dom_dir)
        assert dom.account_aliases == {"dave": ["dj"]}
        assert any("'erin'" in e and "is an account itself" in e for e in dom.errors)
    finally:
        (dom_dir / "Settings" / "Aliases.data").write_text("{ dave = (dj); }\n")


def test_overview_knows_renamed_groupware_boxes(fx):
    ov = to_json(build_overview(fx.base, user="alice"))
    (acc,) = [a for dom in ov["domains"] for a in dom["accounts"]]
    roles = {f["name"]: f["role"] for f in acc["folders"]}
    for role, folder in fx.boxes[f"alice@{cgp_fixture.MAIN}"].items():
        assert roles[folder] == role
    dave = to_json(build_overview(fx.base, domain="example.org", user="dave"))["domains"][0]["accounts"][0]
    assert dave["password"] == "encrypted" and dave["password_encryption"] == "A-crpt"
    assert dave["password_encryption_from"].endswith("Domains/example.org/Settings/Template.settings")
    counts = {f["name"]: f["messages"] for f in acc["folders"] if f["format"]}
    expected = fx.mail[f"alice@{cgp_fixture.MAIN}"]
    assert {k: v for k, v in counts.items()} == {k: len(v) for k, v in expected.items()}
    assert not acc["problems"]


# --- migrated into a real Dovecot ----------------------------------------------------------------------------


def wire(data: bytes) -> bytes:
    """IMAP carries CRLF line ends; a stored bare LF comes back as CRLF, every other byte is exact."""
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def expected_mail(fx, address: str) -> dict[str, Counter]:
    return {folder: Counter((wire(b), flags, when.timestamp()) for b, flags, when in msgs)
            for folder, msgs in fx.mail[address].items()}


def read_pass_file(out: Path) -> dict[str, tuple[str, str]]:
    (f,) = out.glob("cg2kms_*.pass")
    assert f.stat().st_mode & 0o077 == 0
    return {a: (p, how) for a, p, how in (ln.split("\t") for ln in f.read_text().splitlines()
                                          if not ln.startswith("#"))}


def login_mail(port: int, address: str, password: str) -> dict[str, Counter]:
    deadline = time.monotonic() + 10  # Dovecot re-reads its passwd-file at most once a second
    while True:
        try:
            return imapcheck.account(port, address, password)
        except imapcheck.imaplib.IMAP4.error:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.parametrize("cli", ["communigate-migrate", "cg2kms"])
def test_fixture_store_migrates_into_dovecot_byte_exact(fx, cli, dovecot_factory, tmp_path):
    dovecot = dovecot_factory()
    passwd = dovecot.root / "users.passwd"
    out = tmp_path / "out"
    out.mkdir()
    setpw = tmp_path / "initial.pw"
    setpw.write_text("Initial-Pw-9\n")
    os.chmod(setpw, 0o600)
    env = {**os.environ, "MAILMIGRATE_TARGET_PASSWORD": "masterpw"}
    if cli == "cg2kms":
        cmd = CG2KMS + ["-path", str(fx.base), "-migrate", "-server", "127.0.0.1", "-port", str(dovecot.port),
                        "-target", "imap", "-masterUser", "master", "-tls", "none", "-passwdFile", str(passwd),
                        "-setPass", "Initial-Pw-9", "-state", str(out / "state.db"), "-json"]
    else:
        cmd = MM + ["communigate", "migrate", str(fx.base), "--server", "127.0.0.1", "--port", str(dovecot.port),
                    "--target", "imap", "--master-user", "master", "--tls", "none", "--passwd-file", str(passwd),
                    "--set-password-file", str(setpw), "--output-dir", str(out), "--json"]
    r = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True, timeout=300)
    report = json.loads(r.stdout)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert report["accounts_created"] == len(fx.addresses) and report["failed"] == 0 and not report["not_copied"]
    # The UW-IMAP pseudo-message is not counted anywhere as mail; nothing was turned into a fake message.
    assert report["copied"] == sum(len(m) for a in fx.addresses for m in fx.mail[a].values())

    pw = read_pass_file(out)
    assert set(pw) == set(fx.addresses)
    for address, readable in fx.readable.items():
        if readable:
            assert pw[address] == (readable, "migrated"), address
        elif cli == "cg2kms":  # -setPass is for a single-user migration (the seed); here each gets its own
            assert pw[address][1] == "generated" and pw[address][0] != "Initial-Pw-9", address
        else:
            assert pw[address] == ("Initial-Pw-9", "set-password"), address
    text = (out / next(out.glob("cg2kms_*.pass")).name).read_text()
    for hashed in ("looks-plain", "frank-plain", "c2VjcmV0LWhhc2g=", "abc"):
        assert hashed not in text  # an encrypted value is never written as a password

    os.chmod(passwd, 0o644)  # the writer keeps it 0600; this throwaway Dovecot's auth reads it as another user
    for address in fx.addresses:
        got = login_mail(dovecot.port, address, pw[address][0])
        want = expected_mail(fx, address)
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v}, address
        assert set(want) <= set(got), address  # empty mailboxes exist too
        assert not any(f.startswith("$CGP_") for c in got.values() for _, flags, _ in c for f in flags)
