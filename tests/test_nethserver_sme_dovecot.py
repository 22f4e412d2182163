"""The SME Server backup imported into a NethServer tree, then served by a real Dovecot (Maildir++ with
listescape, as NethServer's Dovecot): every message of every folder is there over IMAP, byte for byte, a
folder name with a backslash stays one folder, and users log in as NethServer's user@domain."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from servers import dovecot, imapcheck

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ARCHIVE = EXAMPLES / "sme-backup.tgz"
sys.path.insert(0, str(EXAMPLES))
import make_nethserver  # noqa: E402

pytestmark = pytest.mark.skipif(not dovecot.available(), reason="needs root and Debian's dovecot-imapd")
D = "example.com"


def imap_name(dirname: str) -> str:
    """".Work\\Projects" (as SME stored it) -> the IMAP name Dovecot shows: INBOX, A/B, Work\\Projects."""
    return "INBOX" if dirname == "" else dirname[1:].replace(".", "/")


def test_imported_mail_is_served_byte_for_byte(tmp_path):
    root = Path(tempfile.mkdtemp(prefix="mm-sme-", dir="/tmp"))
    os.chmod(root, 0o755)
    server = None
    try:
        r = subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "sme-import", str(ARCHIVE), "--root",
                            str(root)], capture_output=True, text=True, timeout=300)
        assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: the sample's reported errors, on purpose
        vmail = root / "var/lib/nethserver/vmail"
        dv = pwd.getpwnam("dovecot")
        for p in [root / "var", root / "var/lib", root / "var/lib/nethserver", vmail, *vmail.rglob("*")]:
            os.lchown(p, dv.pw_uid, dv.pw_gid)
            if p.is_dir() and not p.is_symlink():
                os.chmod(p, 0o755)
        want = make_nethserver.build_sme_tree(tmp_path / "src")  # user -> {".Folder": [bytes]}
        users = sorted(want)
        passwd = tmp_path / "users"
        passwd.write_text("".join(f"{u}@{D}:{{PLAIN}}pw-{u}::::::\n" for u in users))
        conf = 'mail_plugins = $mail_plugins listescape\nplugin {\n  listescape_char = "\\\\"\n}\n'
        server = dovecot.DovecotServer(mail_location=f"maildir:{vmail}/%u/Maildir", passdb_file=passwd,
                                       extra_conf=conf).start()
        for user in users:
            got = imapcheck.account(server.port, f"{user}@{D}", f"pw-{user}")
            got_bodies = {name: Counter(k[0] for k in msgs.elements()) for name, msgs in got.items() if msgs}
            expected = {imap_name(name): Counter(bodies) for name, bodies in want[user].items() if bodies}
            assert got_bodies == expected, user
        assert "Work\\Projects" in imapcheck.account(server.port, f"alice@{D}", "pw-alice")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
