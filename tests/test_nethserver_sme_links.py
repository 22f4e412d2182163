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
    for what in ("1700009999.M1P1Q1.evil:2,S", ".Borrowed", "notes -> /etc/passwd"):
        assert what in p.stdout, what  # in the summary, by name
    vmail = root / "var/lib/nethserver/vmail"
    modes = {f.stat().st_mode & 0o777 for f in vmail.rglob("*") if "@" in str(f.relative_to(vmail)) and not f.is_symlink()}
    assert modes <= {0o600, 0o700}, modes  # no vmail user here: private to the one running the import
