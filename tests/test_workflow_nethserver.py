"""NethServer 7 -> 8 through the workflow layer: the seed's per-application buttons as project actions,
with states, refusals, history and logs, on the shipped NS7 sample."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nethserver7"
MM = [sys.executable, "-m", "mailmigrate.cli.main"]


def mm(*args, check=True):
    p = subprocess.run(MM + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode in (0, 1), p.stderr[-2000:]
    return p


def test_ns7_mail_application_through_the_project(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "ns7", symlinks=True)
    proj = tmp_path / "ns.toml"
    proj.write_text('[project]\nname = "ns"\npath = "nethserver7"\n'
                    '[nethserver]\nsource_root = "ns7"\nroot = "ns8"\napplications = ["mail"]\n')
    mm("project", "init", proj)
    status = lambda: {u["unit"]: u for u in json.loads(mm("project", "status", proj, "--json").stdout)}  # noqa: E731
    assert status()["mail"]["state"] == "not_started"
    r = mm("project", "finish", proj)
    assert r.returncode == 1 and "not been started" in r.stdout  # refused, nothing done
    assert not (tmp_path / "ns8" / "vmail").exists()
    out = json.loads(mm("project", "start", proj, "--json").stdout)[0]
    assert out["ok"] and out["state"] == "migrating"
    assert (tmp_path / "ns8" / "vmail" / "alice" / "Maildir").is_dir()
    late = tmp_path / "ns7/var/lib/nethserver/vmail/alice@example.com/Maildir/new/1800000000.M9.late"
    late.parent.mkdir(exist_ok=True)
    late.write_bytes(b"Subject: late\r\n\r\narrived between syncs\r\n")
    out = json.loads(mm("project", "sync", proj, "--json").stdout)[0]
    assert out["ok"] and "copied 1" in out["message"]
    out = json.loads(mm("project", "finish", proj, "--json").stdout)[0]
    assert out["state"] == "migrated" and out["ok"]
    assert (tmp_path / "ns8" / "vmail" / "alice" / "Maildir" / "dovecot-acl").exists()  # ACLs converted
    st = status()["mail"]
    assert st["state"] == "migrated" and st["actions"] == []
    logs = mm("project", "logs", proj).stdout
    assert "finish" in logs and "start" in logs
