"""SME Server backup -> NethServer tree: the shipped sample migrated into a scratch root, checked record by record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailmigrate.formats.esmith import read_esmith
from mailmigrate.formats.shadow import parse_shadow
from mailmigrate.paths.nethserver.sme_import import run_import

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARCHIVE = EXAMPLES / "sme-backup.tgz"
sys.path.insert(0, str(EXAMPLES))
import make_nethserver  # noqa: E402

D = "example.com"


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    result = run_import(ARCHIVE, root)
    return root, result


def db(root: Path, name: str):
    return read_esmith(root / "var/lib/nethserver/db" / name)


def files(maildir: Path) -> dict[str, set[bytes]]:
    out = {}
    for d in [maildir] + sorted(p for p in maildir.iterdir() if p.name.startswith(".") and p.is_dir()):
        bodies = {f.read_bytes() for sub in ("cur", "new") for f in (d / sub).glob("*")} if (d / "cur").is_dir() else set()
        if bodies:
            out[d.name if d != maildir else ""] = bodies
    return out


def test_shipped_archive_is_what_the_generator_writes(tmp_path):
    make_nethserver.build_sme_archive(tmp_path / "a.tgz")
    assert (tmp_path / "a.tgz").read_bytes() == ARCHIVE.read_bytes()


def test_users_groups_and_passwords(migrated):
    root, _ = migrated
    a = db(root, "accounts")
    users = {k: r.props for k, r in a.of_type("user")}
    assert set(users) == {"alice", "bob", "carol"}  # admin is NethServer's own
    assert users["alice"] == {"FirstName": "Alice", "LastName": "Smith", "Uid": "5001", "Gid": "5001",
                              "Phone": "555-0101"}  # PasswordSet and EmailForward=local gone
    assert users["bob"] == {"FirstName": "Bob", "LastName": "Jones", "Uid": "5002", "Gid": "5002",
                            "MailForwardStatus": "enabled", "MailForwardAddress": "bob@elsewhere.example",
                            "MailForwardKeepMessageCopy": "yes"}
    assert users["carol"]["MailForwardKeepMessageCopy"] == "no"
    assert users["carol"]["MailForwardAddress"] == "carol@else.example"
    groups = {k: r.props["Members"] for k, r in a.of_type("group")}
    assert groups == {"sales": "alice,bob", "staff": "sales,carol"}  # ghostuser dropped
    shadow = {e.name: e.hash for e in parse_shadow((root / "etc/shadow").read_bytes())}
    assert shadow == {u: make_nethserver.HASHES[u] for u in ("alice", "bob")}  # carol had none
    assert (root / "etc/shadow").stat().st_mode & 0o077 == 0


def test_pseudonyms_record_by_record(migrated):
    root, result = migrated
    p = {k: (r.props["Account"], r.props["Access"]) for k, r in db(root, "accounts").of_type("pseudonym")}
    A, B, C, PM = (f"{u}@{D}" for u in ("alice", "bob", "carol", "postmaster"))
    assert p == {
        "alice@": (A, "public"), "bob@": (B, "public"), "carol@": (C, "public"),
        "alice.smith@": (A, "public"), "alice_smith@": (A, "public"),
        "a.smith@": (A, "public"), "as@": (A, "public"),  # recursive, flattened
        "info@": (f"{A},{B}", "public"), "team@": (f"{A},{B},{C}", "public"),  # groups expanded
        "sales@example.com": (f"{A},{B}", "public"), "staff@example.com": (f"{A},{B},{C}", "public"),
        "sales@example.org": (f"{A},{B}", "public"),
        "ghost@": (PM, "public"), "loop1@": (PM, "public"), "loop2@": (PM, "public"),  # errors
        "boss@": (PM, "public"), "docs@": (PM, "public"),  # admin and ibay: warnings
        "helpdesk@": (B, "private"),
    }
    errors = [e.text for e in result.log.errors]
    assert sum("mapped to postmaster" in t for t in errors) == 3
    assert not any("postmaster@" == k or "everyone@" == k for k in p)


def test_domains_names_filter_lists_smarthost_getmail(migrated):
    root, result = migrated
    doms = db(root, "domains")
    assert sorted(doms) == ["example.com", "example.org"]
    assert doms["example.org"].props["TransportType"] == "LocalDelivery"
    assert doms["example.org"].props["Description"] == "Second domain"
    cfg = db(root, "configuration")
    assert cfg["DomainName"].type == D and cfg["SystemName"].type == "mail"
    assert "LocalIP" not in cfg and "bootstrap-console" not in cfg and "UnsavedChanges" not in cfg
    r = cfg["rspamd"].props
    assert r["SenderWhiteList"] == "friends.example,boss@partner.example"
    assert r["SenderBlackList"] == "spam.example,junk.example"
    assert r["RecipientWhiteList"] == "example.org,alice@example.com"
    pf = cfg["postfix"].props
    assert (pf["SmartHostName"], pf["SmartHostPort"], pf["SmartHostUsername"], pf["SmartHostStatus"]) == \
        ("smtp.isp.example", "587", "relayuser", "enabled")
    g = {k: r.props for k, r in db(root, "getmail").items()}
    assert g["alice-isp"]["Account"] == f"alice@{D}" and g["alice-isp"]["Delete"] == "-1"
    assert g["alice-isp"]["status"] == "enabled" and g["alice-isp"]["Server"] == "pop.isp.example"
    assert g["carol-old"]["Delete"] == "0" and g["carol-old"]["status"] == "disabled"
    assert g["zed-lost"]["status"] == "disabled"
    warnings = " ".join(e.text for e in result.log.warnings)
    for rule in ("*spam*", "bad?.example", "x*@example.com"):
        assert rule in warnings
    assert "carol-old" in warnings  # deletes on the remote


def test_mailboxes_homes_and_shared_index(migrated, tmp_path):
    root, _ = migrated
    src = tmp_path / "src"
    msgs = make_nethserver.build_sme_tree(src)
    vmail = root / "var/lib/nethserver/vmail"
    for user, folders in msgs.items():
        got = files(vmail / f"{user}@{D}" / "Maildir")
        want = {(name.replace("\\", "\\5c")): set(b) for name, b in folders.items() if b}
        assert got == want, user
    assert (vmail / f"alice@{D}/Maildir/.Work\\5cProjects/dovecot-acl").is_file()
    assert not (vmail / f"alice@{D}/Maildir/.Work\\Projects").exists()
    assert os.readlink(vmail / f"alice@{D}/.dovecot.sieve") == "sieve/main.sieve"
    assert (root / "var/lib/nethserver/home/alice/notes.txt").read_text() == "Alice's notes\n"
    assert not (root / "var/lib/nethserver/home/alice/Maildir").exists()
    assert (root / "var/lib/nethserver/migration/admin/.bash_profile").exists()
    assert not (root / "var/lib/nethserver/migration/admin/db").exists()
    links = list((root / "root").glob("admin-migration-*"))
    assert len(links) == 1 and (links[0] / ".bash_profile").exists()


def test_shared_folder_identifiers_name_nethserver_logins(migrated):
    root, result = migrated
    vmail = root / "var/lib/nethserver/vmail"
    md = {u: vmail / f"{u}@{D}/Maildir" for u in ("alice", "bob", "carol")}
    assert (md["alice"] / ".Work\\5cProjects/dovecot-acl").read_text() == \
        f"owner lrwstipekxa\nuser=bob@{D} lr\nuser=zed lr\n"  # zed was deleted on SME: left, reported
    assert (md["bob"] / ".Team/dovecot-acl").read_text() == f"owner lrwstipekxa\nuser=alice@{D} lrwstipe\n"
    assert (md["carol"] / ".Lists/dovecot-acl").read_text() == "owner lrwstipekxa\nanyone lr\n"
    assert (vmail / "shared-mailboxes.db").read_text() == (
        f"shared/shared-boxes/user/alice@{D}/bob@{D}\n1\nshared/shared-boxes/user/bob@{D}/alice@{D}\n1\n"
        f"shared/shared-boxes/anyone/carol@{D}\n1\nshared/shared-boxes/user/zed/alice@{D}\n1\n"
        "shared/shared-boxes/anyone/vmail\n1\n")
    subs = (md["alice"] / "subscriptions").read_bytes()
    assert subs.startswith(b"V\t2\n\n") and f"\nShared/bob@{D}/Team\n".encode() in subs
    assert b"Shared/bob/" not in subs
    warned = [e.text for e in result.log.warnings if e.action == "nethserver-mail-migrate-shared-identifiers"]
    assert len(warned) == 2 and all("zed names no migrated account" in w for w in warned), warned
    assert any("Work\\Projects dovecot-acl" in w for w in warned) and any("shared-mailbox index" in w for w in warned)
    assert all(e.line() in result.log.summary() for e in result.log.warnings)


def test_identifiers_are_qualified_once_whatever_runs_again(tmp_path):
    root = tmp_path / "root"
    run_import(ARCHIVE, root)
    vmail = root / "var/lib/nethserver/vmail"
    snap = {p: p.read_bytes() for p in vmail.rglob("*") if p.is_file()}
    # the identifier step alone, twice, and the copying steps alone: nothing changes, nothing is un-done
    for only in (["nethserver-mail-migrate-shared-identifiers"], ["nethserver-mail-migrate-shared-identifiers"],
                 ["nethserver-mail-migrate-mailboxes", "nethserver-mail-migrate-shared-index"]):
        res = run_import(ARCHIVE, root, only=only)
        assert not res.log.errors
        assert {p: p.read_bytes() for p in vmail.rglob("*") if p.is_file()} == snap, only
    assert not any(f"@{D}@".encode() in b for b in snap.values())
    # an index lost on the target is rebuilt from the archive by the identifier step alone
    (vmail / "shared-mailboxes.db").unlink()
    run_import(ARCHIVE, root, only=["nethserver-mail-migrate-shared-identifiers"])
    assert (vmail / "shared-mailboxes.db").read_bytes() == snap[vmail / "shared-mailboxes.db"]


def test_summary_lists_every_error_and_warning_and_the_log_file(migrated):
    root, result = migrated
    summary = result.log.summary()
    assert summary.startswith(f"migration-import: {len(result.log.errors)} error(s)")
    for e in result.log.errors + result.log.warnings:
        assert e.line() in summary
    logtext = (root / "var/log/mailmigrate-migration-import.log").read_text()
    assert "[ERROR] nethserver-mail-migrate-pseudonyms: pseudonym ghost" in logtext
    assert "relay-secret" not in logtext and "isp-secret" not in logtext and "$6$" not in logtext
    assert "not migrated" in logtext and "PasswordSet" in logtext


def test_rerun_changes_nothing(tmp_path):
    root = tmp_path / "root"
    run_import(ARCHIVE, root)
    snap = {p: p.read_bytes() for p in (root / "var/lib/nethserver").rglob("*") if p.is_file() and "lock" not in p.name}
    again = run_import(ARCHIVE, root)
    after = {p: p.read_bytes() for p in (root / "var/lib/nethserver").rglob("*") if p.is_file() and "lock" not in p.name}
    assert after == snap
    assert "0 message(s) copied" in " ".join(e.text for e in again.log.entries)
    assert len(list((root / "root").glob("admin-migration-*"))) == 1


def test_dry_run_writes_nothing_but_the_unpacked_archive(tmp_path):
    root = tmp_path / "root"
    res = run_import(ARCHIVE, root, dry_run=True)
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert all(w.startswith("var/lib/migration/") for w in written), written
    assert any("mapped to postmaster" in e.text for e in res.log.errors)
    # the identifier step says what it would rewrite and whom it cannot place, from the archive
    ids = [e for e in res.log.entries if e.action == "nethserver-mail-migrate-shared-identifiers"]
    assert any("4 file(s) would be rewritten" in e.text for e in ids), [e.text for e in ids]
    assert sum("zed names no migrated account" in e.text for e in ids) == 2


def test_an_unpacked_directory_works_and_target_props_are_kept(tmp_path):
    src = tmp_path / "src"
    make_nethserver.build_sme_tree(src)
    root = tmp_path / "root"
    (root / "var/lib/nethserver/db").mkdir(parents=True)
    (root / "var/lib/nethserver/db/configuration").write_text(
        "rspamd=service|SenderWhiteList|already.example|status|enabled\nDomainName=other.example\n")
    res = run_import(src, root)
    cfg = db(root, "configuration")
    assert cfg["rspamd"].props["SenderWhiteList"] == "already.example,friends.example,boss@partner.example"
    assert cfg["rspamd"].props["status"] == "enabled"
    assert cfg["DomainName"].type == "other.example"
    assert any("DomainName" in e.text for e in res.log.warnings)


def test_cli_sme_import(tmp_path):
    root = tmp_path / "root"
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sme-import", str(ARCHIVE), "--root",
                        str(root)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 1, p.stderr  # the sample has errors on purpose
    assert "ERROR" in p.stdout and "pseudonym ghost" in p.stdout
    assert "relay-secret" not in p.stdout + p.stderr
    assert (root / "var/lib/nethserver/db/accounts").exists()
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sme-import", str(tmp_path / "nope.tgz"),
                        "--root", str(root)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "no such backup" in p.stderr
