"""SME import of a backup whose users planted symlinks in their homes and Maildirs (issue 19, "Local files").

The shipped sample archive plus: a message file that is a relative symlink staying inside the unpacked tree
to the backup's own ``etc/shadow``, a folder that is a symlink to another user's Maildir, and an absolute
symlink in a home.  None is followed, each is reported, the rest is imported, and the mail is private.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARCHIVE = EXAMPLES / "sme-backup.tgz"
ALICE = "home/e-smith/files/users/alice"


def _link(tf: tarfile.TarFile, name: str, target: str) -> None:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    tf.addfile(ti)


def hostile_archive(path: Path) -> Path:
    with tarfile.open(ARCHIVE) as src, tarfile.open(path, "w:gz") as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        _link(out, f"{ALICE}/Maildir/cur/1700009999.M1P1Q1.evil:2,S", "../../../../../../../etc/shadow")
        _link(out, f"{ALICE}/Maildir/.Borrowed", "../../bob/Maildir")
        _link(out, f"{ALICE}/notes", "/etc/passwd")
        _link(out, "home/e-smith/files/users/bob/.dovecot.sieve", "../../../../../etc/shadow")
        _link(out, f"{ALICE}/escape", "../../../../../etc/shadow")  # inside the backup, out of the home
        _link(out, f"{ALICE}/shortcut", "Documents")  # a home's own shortcut: kept
        # SME's Dovecot numbered bob's Team folder: UIDs clients cached (Dovecot's dovecot-uidlist, version 3)
        data = b"3 V1500000000 N8 G0123456789abcdef0123456789abcdef\n7 P00000abc :1700000002.M2P100Q2.sample\n"
        ti = tarfile.TarInfo("home/e-smith/files/users/bob/Maildir/.Team/dovecot-uidlist")
        ti.size = len(data)
        out.addfile(ti, io.BytesIO(data))
    return path


def test_symlinks_are_skipped_reported_and_the_rest_imported_privately(tmp_path):
    root = tmp_path / "root"
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))
    p = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sme-import",
                        str(hostile_archive(tmp_path / "hostile.tgz")), "--root", str(root)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode != 2, p.stdout + p.stderr  # one absolute link no longer blocks the import
    shadow = (root / "var/lib/migration/etc/shadow").read_bytes()
    maildir = root / "var/lib/nethserver/vmail/alice@example.com/Maildir"
    mail = [f for f in maildir.rglob("*") if f.is_file()]
    assert mail and not any(f.read_bytes() == shadow for f in mail)
    assert not any(f.name.startswith("1700009999") for f in mail)
    assert not (maildir / ".Borrowed").exists()
    for what in ("1700009999.M1P1Q1.evil:2,S", ".Borrowed", "notes -> /etc/passwd",
                 ".dovecot.sieve -> ../../../../../etc/shadow"):
        assert what in p.stdout, what  # in the summary, by name
    home = root / "var/lib/nethserver/home/alice"
    assert not os.path.lexists(home / "escape") and os.readlink(home / "shortcut") == "Documents"
    assert "escape -> ../../../../../etc/shadow" in p.stdout
    bob = root / "var/lib/nethserver/vmail/bob@example.com"
    assert not (bob / ".dovecot.sieve").is_symlink()
    # bob's client keeps its UIDs: the same file name and UID list on NethServer
    assert (bob / "Maildir/.Team/dovecot-uidlist").read_bytes().startswith(b"3 V1500000000 N8 ")
    assert (bob / "Maildir/.Team/cur/1700000002.M2P100Q2.sample:2,").is_file()
    vmail = root / "var/lib/nethserver/vmail"
    modes = {f.stat().st_mode & 0o777 for f in vmail.rglob("*") if "@" in str(f.relative_to(vmail)) and not f.is_symlink()}
    assert modes <= {0o600, 0o700}, modes  # no vmail user here: private to the one running the import


def test_fetchmail_spam_sorting_ibays_and_pending_events_are_carried_or_listed(tmp_path):
    """The sample backup plus what SME keeps in ``configuration`` (the global fetchmail of a secondary mail
    server; spam sorting and retention, as NethServer's ``nethserver-mail-server-migrate`` reads them) and an
    ibay's files (``home/e-smith/files/ibays/NAME``, as ``nethserver-ibays-migrate-commit`` reads them)."""
    from mailmigrate.formats.esmith import read_esmith
    from mailmigrate.paths.nethserver.sme_import import run_import

    src = tmp_path / "backup"
    with tarfile.open(ARCHIVE) as tf:
        tf.extractall(src, filter="data")
    with open(src / "home/e-smith/db/configuration", "a") as f:
        # SME's "email" panel: Method standard|etrn|multidrop; multidrop fetches one POP mailbox for everyone
        f.write("fetchmail=service|FreqOffice|every30min|Method|multidrop|SecondaryMailAccount|office|"
                "SecondaryMailPassword|fm-secret|SecondaryMailServer|pop.isp.example|status|enabled\n"
                "spamassassin=service|MessageRetentionTime|45|SortSpam|enabled|status|enabled\n")
    ibay = src / "home/e-smith/files/ibays/shared/files"
    ibay.mkdir(parents=True)
    (ibay / "readme.txt").write_bytes(b"team files\n")
    root = tmp_path / "root"
    res = run_import(src, root)
    text = " ".join(e.text for e in res.log.entries)
    assert "fm-secret" not in text
    cfg = read_esmith(root / "var/lib/nethserver/db/configuration")
    assert cfg["dovecot"].props["SpamFolder"] == "Junk" and cfg["dovecot"].props["SpamRetentionTime"] == "30d"
    getmail = read_esmith(root / "var/lib/nethserver/db/getmail")
    acct = getmail["office@pop.isp.example"].props
    assert (acct["Server"], acct["Password"], acct["Account"], acct["status"], acct["Time"]) == (
        "pop.isp.example", "fm-secret", "admin@example.com", "disabled", "30")
    assert any("multi-drop" in w.text and "pop.isp.example" in w.text and "disabled" in w.text
               for w in res.log.warnings)
    accounts = read_esmith(root / "var/lib/nethserver/db/accounts")
    shared = accounts["shared"]
    assert shared.type == "ibay" and shared.props["OwningGroup"] == "staff@example.com"
    assert (shared.props["GroupAccess"], shared.props["OtherAccess"]) == ("rw", "r")
    assert (root / "var/lib/nethserver/ibay/shared/files/readme.txt").read_bytes() == b"team files\n"
    pending = [w.text for w in res.log.warnings if w.text.startswith("pending on the NethServer host")]
    for event in ("nethserver-mail-server-save", "nethserver-getmail-save", "ibay-create shared"):
        assert any(event in t for t in pending), event


def _uids(port: int, user: str, password: str, folders: list[str]) -> dict:
    import imaplib
    import re

    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(user, password)
    out = {}
    for f in folders:
        typ, data = c.status(f'"{f}"', "(UIDVALIDITY UIDNEXT)")
        assert typ == "OK", (user, f, data)
        c.select(f'"{f}"', readonly=True)
        typ, rows = c.uid("FETCH", "1:*", "(BODY.PEEK[])")
        msgs = {int(re.search(rb"UID (\d+)", x[0]).group(1)): x[1] for x in rows if isinstance(x, tuple)}
        out[f] = (re.findall(rb"(?:UIDVALIDITY|UIDNEXT) (\d+)", data[0]), msgs)
    c.logout()
    return out


def test_sme_clients_keep_their_uids_on_nethserver(tmp_path):
    """SME's Dovecot served the mailboxes (clients cached its UIDs); after the import NethServer's Dovecot
    shows every folder with the same UIDVALIDITY, UIDNEXT and UIDs."""
    import pwd
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    from servers import dovecot

    if not dovecot.available():
        import pytest

        pytest.skip("needs root and Debian's dovecot-imapd")
    base = Path(tempfile.mkdtemp(prefix="mm-smeuid-", dir="/tmp"))
    try:
        src = base / "backup"
        with tarfile.open(ARCHIVE) as tf:
            tf.extractall(src, filter="data")
        users_dir = src / "home/e-smith/files/users"
        dv = pwd.getpwnam("dovecot")
        for p in [base, src, src / "home", src / "home/e-smith", src / "home/e-smith/files", users_dir,
                  *users_dir.rglob("*")]:
            os.lchown(p, dv.pw_uid, dv.pw_gid)
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)
        users = sorted(d.name for d in users_dir.iterdir() if (d / "Maildir").is_dir())
        folders = {u: ["INBOX"] + sorted(d.name[1:].replace(".", "/") for d in (users_dir / u / "Maildir").iterdir()
                                         if d.name.startswith(".") and "\\" not in d.name and (d / "cur").is_dir())
                   for u in users}
        passwd = base / "sme.passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}pw-{u}::::::\n" for u in users))
        sme = dovecot.DovecotServer(mail_location=f"maildir:{users_dir}/%u/Maildir", passdb_file=passwd,
                                    home=f"{users_dir}/%u").start()
        try:
            before = {u: _uids(sme.port, u, f"pw-{u}", folders[u]) for u in users}
        finally:
            sme.stop()
        root = base / "root"
        run_import_result = subprocess.run(
            [sys.executable, "-m", "mailmigrate.cli.main", "sme-import", str(src), "--root", str(root)],
            capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src")))
        assert run_import_result.returncode in (0, 1), run_import_result.stderr[-2000:]
        assert "not as on SME" not in run_import_result.stdout
        vmail = root / "var/lib/nethserver/vmail"
        for p in [root, root / "var", root / "var/lib", root / "var/lib/nethserver", vmail, *vmail.rglob("*")]:
            os.lchown(p, dv.pw_uid, dv.pw_gid)
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)
        ns_passwd = base / "ns.passwd"
        ns_passwd.write_text("".join(f"{u}@example.com:{{PLAIN}}pw-{u}::::::\n" for u in users))
        with dovecot.nethserver_vmail(vmail, ns_passwd, login="u") as ns:
            after = {u: _uids(ns.port, f"{u}@example.com", f"pw-{u}", folders[u]) for u in users}
        assert after == before
        assert sum(len(m) for f in before.values() for _, m in f.values()) > 3
    finally:
        shutil.rmtree(base, ignore_errors=True)
