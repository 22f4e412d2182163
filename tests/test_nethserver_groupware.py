"""NethServer 7 -> 8 for SOGo and WebTop: each mail user's calendars, task lists and contacts through the two
servers' DAV endpoints, with `mailmigrate ns7 start|sync|finish|abort sogo|webtop`.

No SOGo or WebTop runs here.  Their DAV sides are played by two real Radicale servers (PyPI) laid out as
the applications lay them out, from their public files: SOGo's DAV under the user's name with a super user
(``SOGoSuperUsernames`` from the ``sogod`` record's ``AdminUsers``, NethServer/nethserver-sogo
``templates/etc/sogo/sogo.conf/60general``), which Radicale's rights file reproduces as an admin with rights
on every home; the ``sogod`` record with ``Dav`` and ``status`` (nethserver-sogo ``sogo.conf/75dav`` and
``httpd/conf.d/zzz_SOGo.conf/10base``).  The NS7 tree is tests/ns7_layout.py's (its users alice, bob, carol
at example.com)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import ns7_layout
from groupware_items import calendar_items, contact_items
from mailmigrate.formats.esmith import read_esmith
from mailmigrate.formats.ical import item_info
from mailmigrate.model import Secret
from mailmigrate.stores.dav import parse_dav_url
from mailmigrate.stores.groupware import Collection
from servers.dav import Radicale

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
SOGOD = "sogod=service|ActiveSync|disabled|AdminUsers|admin|Dav|enabled|status|enabled\n"


def dav(server, user: str, kind: str):
    s = parse_dav_url(f"{'caldav' if kind == 'calendar' else 'carddav'}://127.0.0.1:{server.port}/{user}/?tls=none",
                      "admin", Secret("admin-pw"), home_from_path=True)
    s.open()
    return s


def uids(server, user: str) -> dict[str, set[str]]:
    out = {}
    for kind in ("calendar", "addressbook"):
        s = dav(server, user, kind)
        for c in s.collections():
            out[c.name] = {item_info(s.get(c, n).data).uid for n in s.list_items(c)}
    return out


@pytest.fixture
def ns7(tmp_path):
    root = ns7_layout.build(tmp_path / "ns7")
    cfg = root / "var/lib/nethserver/db/configuration"
    cfg.write_text(cfg.read_text() + SOGOD)
    servers = []
    for name in ("sogo7", "sogo8"):
        r = Radicale(tmp_path / name, admin="admin")
        r.add_user("admin", "admin-pw")
        servers.append(r.start())
    src, dst = servers
    for user, cal, cards in (("alice", ("work", "tasks"), True), ("bob", ("private",), False)):
        c = dav(src, user, "calendar")
        for coll in cal:
            made = c.create_collection(Collection(coll, "calendar", coll.title(), None, None,
                                                  ("VTODO",) if coll == "tasks" else ("VEVENT",)))
            for n, data in calendar_items()[coll].items():
                c.put(made, n, data, "text/calendar")
        if cards:
            a = dav(src, user, "addressbook")
            made = a.create_collection(Collection("contacts", "addressbook", "Contacts"))
            for n, data in contact_items()["contacts"].items():
                a.put(made, n, data, "text/vcard")
    (tmp_path / "dav.pw").write_text("admin-pw")
    os.chmod(tmp_path / "dav.pw", 0o600)
    yield root, src, dst, tmp_path
    for s in servers:
        s.stop()


def run_ns7(root, tmp_path, src, dst, action, *extra):
    p = subprocess.run([*MM, "ns7", action, "sogo", "--source-root", root, "--root", tmp_path / "ns8", "--json",
                        "--dav-source", f"caldav://127.0.0.1:{src.port}/%n/?tls=none",
                        "--dav-target", f"caldav://127.0.0.1:{dst.port}/%n/?tls=none",
                        "--dav-source-user", "admin", "--dav-target-user", "admin",
                        "--dav-source-password-file", tmp_path / "dav.pw",
                        "--dav-target-password-file", tmp_path / "dav.pw", *extra],
                       capture_output=True, text=True, timeout=300)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        raise AssertionError(p.stdout + p.stderr) from None


def sogod(root) -> dict:
    return read_esmith(root / "var/lib/nethserver/db/configuration").get("sogod").props


def test_sogo_start_sync_finish_carries_every_calendar_and_contact_then_retires_sogo(ns7):
    root, src, dst, tmp_path = ns7
    rc, out = run_ns7(root, tmp_path, src, dst, "start")
    assert rc == 0 and out["state"] == "migrating", out
    for user in ("alice", "bob"):
        assert uids(dst, user) == uids(src, user), user
    assert out["details"]["failed"] == 0 and out["details"]["copied"] == sum(
        len(v) for u in ("alice", "bob") for v in uids(src, u).values())
    # a user keeps working on NS7: sync carries the change
    s = dav(src, "alice", "calendar")
    work = next(c for c in s.collections() if c.name == "work")
    event = calendar_items()["work"]["allday.ics"].replace(b"UID:allday@", b"UID:late@")
    s.put(work, "late.ics", event, "text/calendar")
    rc, out = run_ns7(root, tmp_path, src, dst, "sync")
    assert rc == 0 and out["details"]["copied"] == 1, out
    assert "late@example.org" in uids(dst, "alice")["work"]
    # finish while NS8's server is down: an error, SOGo stays enabled on NS7, the application migrating
    dst.stop()
    rc, out = run_ns7(root, tmp_path, src, dst, "finish")
    assert rc == 1 and out["state"] == "migrating", out
    assert sogod(root)["status"] == "enabled"
    assert any("left running" in e for e in out["errors"])
    dst.start()
    rc, out = run_ns7(root, tmp_path, src, dst, "finish")
    assert rc == 0 and out["state"] == "migrated", out
    assert sogod(root)["status"] == "disabled"
    for user in ("alice", "bob"):
        assert uids(dst, user) == uids(src, user), user
    # what DAV does not carry is said, not silently lost
    assert any("not carried over DAV: calendar and address book sharing rights" in w for w in out["warnings"])


def test_sogo_finish_names_an_item_missing_on_ns8_and_keeps_sogo_running(ns7):
    root, src, dst, tmp_path = ns7
    assert run_ns7(root, tmp_path, src, dst, "start")[0] == 0
    # someone deletes a copy on NS8 after it was made: the final copy does not redo it (its state says
    # copied), the verification finds it missing
    t = dav(dst, "alice", "calendar")
    work = next(c for c in t.collections() if c.name == "work")
    victim, etag = next(iter(t.list_items(work).items()))
    gone_uid = item_info(t.get(work, victim).data).uid
    t.delete(work, victim, etag)
    rc, out = run_ns7(root, tmp_path, src, dst, "finish")
    assert rc == 1 and out["state"] == "migrating"
    assert any(gone_uid in e and "alice" in e for e in out["errors"]), out["errors"]
    assert sogod(root)["status"] == "enabled"


def test_sogo_abort_takes_back_only_our_copies(ns7):
    root, src, dst, tmp_path = ns7
    assert run_ns7(root, tmp_path, src, dst, "start")[0] == 0
    # a collection the target already had (not ours) and an item a user put into one of ours
    t = dav(dst, "bob", "calendar")
    mine = t.create_collection(Collection("bobs-own", "calendar"))
    own = calendar_items()["private"][next(iter(calendar_items()["private"]))].replace(b"UID:", b"UID:own-", 1)
    t.put(mine, "own.ics", own, "text/calendar")
    a = dav(dst, "alice", "calendar")
    tasks = next(c for c in a.collections() if c.name == "tasks")
    extra = calendar_items()["tasks"][next(iter(calendar_items()["tasks"]))].replace(b"UID:", b"UID:extra-", 1)
    a.put(tasks, "extra.ics", extra, "text/calendar")
    before = uids(src, "alice"), uids(src, "bob")
    rc, out = run_ns7(root, tmp_path, src, dst, "abort")
    assert rc == 0 and out["state"] == "not_migrated", out
    assert uids(dst, "bob") == {"bobs-own": {item_info(own).uid}}
    assert uids(dst, "alice") == {"tasks": {item_info(extra).uid}}  # kept, with the collection holding it
    assert any("tasks" in w and "kept" in w for w in out["warnings"])
    assert (uids(src, "alice"), uids(src, "bob")) == before  # NS7 untouched
    assert sogod(root)["status"] == "enabled"


def test_sogo_with_dav_switched_off_on_ns7_is_refused_before_anything_moves(ns7):
    root, src, dst, tmp_path = ns7
    cfg = root / "var/lib/nethserver/db/configuration"
    cfg.write_text(cfg.read_text().replace("|Dav|enabled|", "|Dav|disabled|"))
    rc, out = run_ns7(root, tmp_path, src, dst, "start")
    assert rc == 1 and out["state"] == "not_migrated"
    assert any("config setprop sogod Dav enabled" in e for e in out["errors"])
    assert uids(dst, "alice") == {}


def test_sogo_as_a_project_unit(ns7):
    """The same application as a unit of a nethserver7 project ([nethserver.sogo] names the two DAV sides):
    start, then finish, with the states and logs of the workflow."""
    root, src, dst, tmp_path = ns7
    proj = tmp_path / "ns.toml"
    proj.write_text(f'''[project]
name = "ns"
path = "nethserver7"
[nethserver]
source_root = "{root}"
root = "ns8"
applications = ["sogo"]
[nethserver.sogo]
dav_source = "caldav://127.0.0.1:{src.port}/%n/?tls=none"
dav_target = "caldav://127.0.0.1:{dst.port}/%n/?tls=none"
dav_source_user = "admin"
dav_target_user = "admin"
dav_source_password_file = "dav.pw"
dav_target_password_file = "dav.pw"
''')

    def project(*args):
        p = subprocess.run([*MM, "project", *args, proj], capture_output=True, text=True, timeout=300)
        assert p.returncode in (0, 1), p.stderr[-2000:]
        return p

    project("init")
    out = json.loads(project("start", "--json").stdout)[0]
    assert out["ok"] and out["state"] == "migrating", out
    assert uids(dst, "alice") == uids(src, "alice")
    out = json.loads(project("finish", "--json").stdout)[0]
    assert out["ok"] and out["state"] == "migrated", out
    assert sogod(root)["status"] == "disabled"
    assert "not carried over DAV" in project("logs").stdout


def test_webtop_logs_in_as_each_user_through_its_administrators_impersonation(tmp_path):
    """WebTop's administrator acts as any user by logging in as ``admin!<user>`` (NethServer's WebTop manual):
    the default login of the webtop application.  Each login is then the user, whose own principal leads to
    its home (no user in the URL).  Played by Radicale servers whose users are those logins."""
    root = ns7_layout.build(tmp_path / "ns7")
    cfg = root / "var/lib/nethserver/db/configuration"
    cfg.write_text(cfg.read_text() + "webtop=configuration|ActiveSync|enabled|status|enabled\n")
    users = ("alice@example.com", "bob@example.com", "carol@example.com")
    servers = []
    for name in ("webtop7", "webtop8"):
        r = Radicale(tmp_path / name)
        for u in users:
            r.add_user(f"admin!{u}", "wt-admin")
        servers.append(r.start())
    src, dst = servers
    try:
        def as_user(server, u, kind="calendar"):
            s = parse_dav_url(f"{'caldav' if kind == 'calendar' else 'carddav'}://127.0.0.1:{server.port}/?tls=none",
                              f"admin!{u}", Secret("wt-admin"))
            s.open()
            return s

        s = as_user(src, "alice@example.com")
        work = s.create_collection(Collection("work", "calendar", "Work"))
        for n, data in calendar_items()["work"].items():
            s.put(work, n, data, "text/calendar")
        (tmp_path / "wt.pw").write_text("wt-admin")
        os.chmod(tmp_path / "wt.pw", 0o600)
        p = subprocess.run([*MM, "ns7", "start", "webtop", "--source-root", root, "--root", tmp_path / "ns8", "--json",
                            "--dav-source", f"caldav://127.0.0.1:{src.port}/?tls=none",
                            "--dav-target", f"caldav://127.0.0.1:{dst.port}/?tls=none",
                            "--dav-target-user", "admin!%u",
                            "--dav-source-password-file", tmp_path / "wt.pw",
                            "--dav-target-password-file", tmp_path / "wt.pw"],
                           capture_output=True, text=True, timeout=300)
        out = json.loads(p.stdout)
        assert p.returncode == 0 and out["state"] == "migrating", p.stdout + p.stderr
        t = as_user(dst, "alice@example.com")
        got = {item_info(t.get(c, n).data).uid for c in t.collections() for n in t.list_items(c)}
        assert got == {item_info(d).uid for d in calendar_items()["work"].values()}
        assert not [c for c in as_user(dst, "bob@example.com").collections()]  # bob had nothing
    finally:
        for s in servers:
            s.stop()
