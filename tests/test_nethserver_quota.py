"""NethServer 7 -> 8 quota, served by a real Dovecot: after ``ns7 finish`` every NS8 user's GETQUOTAROOT shows
the limit converted from NS7 and the usage of exactly the mail that was migrated.

Two target configurations, each migrated from the shipped NS7 sample (which carries NS7's own stale
``maildirsize`` files) while a Dovecot already serves the NS8 tree, as NS8's mail application does from
``start`` on, and with a message arriving on NS7 between start and finish:

* ``count``: NS8's own quota (``quota = count``, ``quota_vsizes = yes``, limits from the userdb, and a
  background count for mailboxes with many unindexed messages: NS8 sets ``mail_vsize_bg_after_count = 100``,
  scaled here to 1 for a sample of a few messages).  finish is given the Dovecot's configuration and
  recalculates with doveadm; without that, the first GETQUOTAROOT after the import has no usage to show.
* ``maildir``: Maildir++ quota (NS7's kind).  Users looked at their quota before the final sync, so Dovecot
  wrote a ``maildirsize`` that the late message is missing from; finish runs with no Dovecot at hand and
  only removes those files, and Dovecot recounts.

Limits: the NS8 server's userdb (a passwd-file with ``userdb_quota_rule``) and default rule are written from
the ``mail-settings.json`` finish produced; the expected limits and usages are computed here from the NS7
sample itself (the e-smith databases and the message files).
"""

from __future__ import annotations

import json
import math
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from servers import dovecot, imapcheck  # noqa: E402

pytestmark = pytest.mark.skipif(not dovecot.available(), reason="needs dovecot and root")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SAMPLE = EXAMPLES / "nethserver7"
USERS = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com",
         "dave": "dave@example.org", "vmail": "vmail"}  # NS8 user -> NS7 mail directory
PW = {u: f"{u}-quota" for u in USERS}
LATE = b"".join([b"From: late@example.net\r\nTo: alice@example.com\r\nSubject: arrived during the migration\r\n\r\n"]
                + [b"late line %04d with some text to make it count\r\n" % i for i in range(120)])


# -- the NS7 sample, read independently -----------------------------------------------------------------


def esmith(path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """``key=type|prop|value|...`` lines -> {key: (type, props)}."""
    out = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, rest = line.partition("=")
        typ, *pv = rest.split("|")
        out[key] = (typ, dict(zip(pv[::2], pv[1::2])))
    return out


def ns8_mb(tenths_of_gib: str) -> int:
    """NS7 quotas count tenths of a GiB: x 102.4 MB, and above 20000 MB whole GiB (rounded up)."""
    mb = Fraction(int(tenths_of_gib) * 1024, 10)
    return math.ceil(mb / 1024) * 1024 if mb > 20000 else math.ceil(mb)


def expected_limits_mb(ns7: Path) -> dict[str, int]:
    db = ns7 / "var/lib/nethserver/db"
    default = ns8_mb(esmith(db / "configuration")["dovecot"][1]["QuotaDefaultSize"])
    accounts = esmith(db / "accounts")
    out = {}
    for user, ns7_name in USERS.items():
        typ, props = accounts.get(ns7_name, ("", {}))
        custom = typ == "user" and props.get("MailQuotaType") == "custom"
        out[user] = ns8_mb(props["MailQuotaCustom"]) if custom else default
    return out


def expected_usage(ns7: Path, user: str, *, virtual: bool) -> tuple[int, int]:
    """(KiB as IMAP shows STORAGE: rounded up, messages) of every message file of the user's NS7 Maildir."""
    md = ns7 / "var/lib/nethserver/vmail" / USERS[user] / "Maildir"
    files = [f for d in [md, *(p for p in md.iterdir() if p.is_dir() and p.name.startswith("."))]
             for s in ("cur", "new") if (d / s).is_dir() for f in (d / s).iterdir()]
    total = 0
    for f in files:
        data = f.read_bytes()
        total += len(data) + (data.count(b"\n") - data.count(b"\r\n") if virtual else 0)
    return math.ceil(total / 1024), len(files)


# -- the migration and the servers --------------------------------------------------------------------


def quota_conf(backend: str, default_mb: int) -> str:
    vsize = "yes" if backend == "count" else "no"
    return f"""
mail_plugins = $mail_plugins quota listescape
protocol imap {{
  mail_plugins = $mail_plugins imap_quota
}}
protocol !indexer-worker {{
  mail_vsize_bg_after_count = 1
}}
plugin {{
  quota = {backend}:Quota
  quota_rule = *:storage={default_mb}M
  quota_vsizes = {vsize}
  listescape_char = "\\\\"
}}
"""


def passwd(path: Path, limits_mb: dict[str, int | None]) -> Path:
    path.write_text("".join(f"{u}:{{PLAIN}}{PW[u]}::::::"
                            + (f"userdb_quota_rule=*:storage={mb}M" if mb else "") + "\n"
                            for u, mb in limits_mb.items()))
    return path


def give_to_dovecot(tree: Path) -> None:
    dv = pwd.getpwnam("dovecot")
    for p in [tree, *tree.rglob("*")]:
        os.lchown(p, dv.pw_uid, dv.pw_gid)


def getquotaroot(port: int, user: str) -> tuple[int, int] | None:
    """(used KiB, limit KiB) of INBOX's quota root, or None when Dovecot has no usage to show yet."""
    c = imapcheck.connect(port, user, PW[user])
    try:
        typ, data = c.getquotaroot("INBOX")
    finally:
        c.logout()
    assert typ == "OK", data
    for item in data[1] if len(data) > 1 else []:
        m = re.search(rb"\(STORAGE (\d+) (\d+)\)", item or b"")
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


@pytest.fixture(scope="module", params=["count", "maildir"])
def migrated(request, tmp_path_factory):
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"ns8quota-{backend}")
    src = tmp / "ns7"
    shutil.copytree(SAMPLE, src, symlinks=True)
    root = Path(tempfile.mkdtemp(prefix="mm-ns8q-", dir="/tmp"))  # Dovecot must traverse it
    os.chmod(root, 0o755)
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES.parent / "src"))

    def cli(*a):
        return subprocess.run([sys.executable, "-m", "mailmigrate.cli.main", "ns7", *a, "--source-root", str(src),
                               "--root", str(root)], capture_output=True, text=True, env=env, timeout=300)

    location = f"maildir:{root}/vmail/%n/Maildir"
    limits = expected_limits_mb(src)
    try:
        r = cli("start", "mail")
        assert r.returncode == 0, r.stdout + r.stderr
        give_to_dovecot(root / "vmail")
        during = dovecot.DovecotServer(mail_location=location, passdb_file=passwd(tmp / "during.passwd", limits),
                                       extra_conf=quota_conf(backend, limits["vmail"])).start()
        try:
            if backend == "maildir":
                for user in USERS:  # users look at their quota while NS7 still takes their mail
                    assert getquotaroot(during.port, user) is not None
                assert (root / "vmail/alice/Maildir/maildirsize").is_file()
            late = src / "var/lib/nethserver/vmail/alice@example.com/Maildir/new/1800000000.M7P7Q7.late"
            late.parent.mkdir(exist_ok=True)
            late.write_bytes(LATE)
            extra = ["--dovecot-config", str(during.root / "dovecot.conf")] if backend == "count" else []
            r = cli("finish", "mail", *extra)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "mail: finish -> migrated" in r.stdout
        finally:
            during.stop()
        give_to_dovecot(root / "vmail")
        settings = json.loads((root / "mail-settings.json").read_text())
        ns8_limits = {u: settings["users"].get(u, {}).get("quota_mb") for u in USERS}
        after = dovecot.DovecotServer(mail_location=location, passdb_file=passwd(tmp / "ns8.passwd", ns8_limits),
                                      extra_conf=quota_conf(backend, settings["default_quota_mb"])).start()
        try:
            yield backend, after, src, settings, r.stdout
        finally:
            log = after.log()
            after.stop()
            if "Error" in log or "Panic" in log:
                print(log[-4000:])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_getquotaroot_shows_the_converted_limit_and_the_usage_of_the_migrated_mail(migrated):
    backend, server, src, _, _ = migrated
    limits = expected_limits_mb(src)
    assert limits["alice"] != limits["dave"]  # custom and default limits are both exercised
    for user in USERS:
        got = getquotaroot(server.port, user)
        assert got is not None, f"{user}: Dovecot shows no usage"
        kib, _ = expected_usage(src, user, virtual=backend == "count")
        assert got == (kib, limits[user] * 1024), user
    # the late message counts; NS7's stale maildirsize (a 50 MB usage for alice) does not
    assert expected_usage(src, "alice", virtual=False)[0] < 50 * 1024


def test_finish_reports_what_it_did_about_quota(migrated):
    backend, _, src, settings, out = migrated
    for user in USERS:
        _, messages = expected_usage(src, user, virtual=False)
        assert settings["quota_usage"][user]["messages"] == messages
    if backend == "count":
        assert settings["pending"] == []
        assert "quota of" not in out  # no user's quota disagreed
    else:
        assert settings["pending"] == ["doveadm quota recalc -A"]
