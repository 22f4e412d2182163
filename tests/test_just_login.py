"""`sync --just-login` over an accounts file of 50 accounts on real Dovecot servers: every login tried on both
sides, the one wrong password named, nothing copied (issue 21)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from servers import imapcheck
from test_sync_imap import msg, populate

MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def test_just_login_names_the_one_wrong_password_of_50(dovecot_pair, tmp_path):
    src_srv, dst_srv = dovecot_pair
    tag = f"jl{os.getpid()}"
    lines = []
    for i in range(50):
        user = f"{tag}u{i:02d}"
        src_srv.add_user(user, f"s-{i}")
        dst_srv.add_user(user, f"t-{i}")
        target_pw = "wrong-one" if i == 37 else f"t-{i}"
        lines.append(f"{user},{user},s-{i},{target_pw}\n")
    from conftest import ImapAccount

    populate(ImapAccount(src_srv, f"{tag}u00", "s-0"), {"INBOX": [(msg(1), "")]})
    acc = tmp_path / "users.csv"
    acc.write_text("".join(lines))
    os.chmod(acc, 0o600)
    p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{src_srv.port}?tls=none",
                        f"imap://127.0.0.1:{dst_srv.port}?tls=none", "--accounts", str(acc), "--just-login",
                        "--state", str(tmp_path / "s.db"), "--json"], capture_output=True, text=True, timeout=300)
    out = json.loads(p.stdout)
    assert p.returncode == 2, p.stdout + p.stderr  # a refused login is a configuration error
    assert out["accounts_total"] == 50 and out["accounts_failed"] == 1
    (err,) = out["errors"]
    assert err["side"] == "target" and f"{tag}u37" in err["account"] and "wrong-one" not in p.stdout + p.stderr
    # nothing was copied
    assert imapcheck.account(dst_srv.port, f"{tag}u00", "t-0").get("INBOX", {}) == {}
    # and in words, without --json
    p = subprocess.run([*MM, "sync", f"imap://127.0.0.1:{src_srv.port}?tls=none",
                        f"imap://127.0.0.1:{dst_srv.port}?tls=none", "--accounts", str(acc), "--just-login",
                        "--state", str(tmp_path / "s.db")], capture_output=True, text=True, timeout=300)
    assert f"LOGIN FAILED imap://{tag}u37@" in p.stdout and "49 of 50 account(s) logged in" in p.stdout
