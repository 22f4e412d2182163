"""Calendars, contacts and tasks between real CalDAV/CardDAV servers (Radicale and Xandikos, started on
loopback) and local vdirs, through `mailmigrate sync`: every collection with its properties, every item with
its UID and its bytes (or reported where a server rewrites it), reruns that copy nothing, changes and
deletions followed, kill -9 then exact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from groupware_items import calendar_items, contact_items
from mailmigrate.formats.ical import item_info, unfold
from mailmigrate.model import Secret
from mailmigrate.stores.dav import parse_dav_url
from mailmigrate.stores.groupware import Collection
from mailmigrate.stores.vdir import VdirStore
from servers.dav import Radicale, Xandikos

MM = [sys.executable, "-m", "mailmigrate.cli.main"]
PROPS = {"work": ("Work", "#3a87adff", "Meetings and the like"), "private": ("Private", "#ff0000ff", None),
         "tasks": ("Tasks", None, "things to do"), "contacts": ("Contacts", None, "people")}


@pytest.fixture
def radicale(tmp_path):
    r = Radicale(tmp_path / "radicale")
    r.add_user("ann", "ann-pw")
    r.add_user("bob", "bob-pw")
    yield r.start()
    r.stop()


@pytest.fixture
def xandikos(tmp_path):
    x = Xandikos(tmp_path / "xandikos").start()
    yield x
    x.stop()


def url(server, kind: str, user: str | None = None) -> str:
    scheme = "caldav" if kind == "calendar" else "carddav"
    return f"{scheme}://{user + '@' if user else ''}127.0.0.1:{server.port}/?tls=none"


def store(server, kind, user=None, password=None):
    s = parse_dav_url(url(server, kind, user), None, Secret(password) if password else None)
    s.open()
    return s


def populate(s, items: dict[str, dict[str, bytes]], kind: str) -> None:
    for coll, entries in items.items():
        name, color, desc = PROPS[coll]
        c = s.create_collection(Collection(coll, kind, name, color, desc, ("VTODO",) if coll == "tasks" else
                                           ("VEVENT",) if kind == "calendar" else ()))
        for n, data in entries.items():
            s.put(c, n, data, item_info(data).content_type)


def content(s) -> dict[str, dict[str, bytes]]:
    return {c.name: {n: s.get(c, n).data for n in s.list_items(c)} for c in s.collections()}


def lines(data: bytes) -> list[bytes]:
    """The content lines of an item in a canonical order: what must survive a server that reorders them."""
    return sorted(line for line in unfold(data) if line)


def mm(*args, env=None, **kw):
    return subprocess.run([*MM, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          timeout=300, **kw)


def check_copied(want: dict, got: dict, report: dict, *, added: tuple[bytes, ...] = ()) -> None:
    """Every item arrived with its UID; the bytes are equal, or the target's rewrite is reported and the
    item's content lines are the same set (apart from lines starting with one of ``added``, which a server
    adds of its own: DAViCal stamps REV on a vCard without one)."""
    assert set(got) >= set(want)
    rewritten = 0
    for coll, items in want.items():
        by_uid = {item_info(d).uid: d for d in got[coll].values()}
        assert len(by_uid) == len(items), (coll, sorted(by_uid))  # nothing twice, nothing missing
        for data in items.values():
            copy = by_uid[item_info(data).uid]
            if copy != data:
                rewritten += 1
                if added:  # the server's own additions left out (unfolded first: a line may be folded)
                    copy = b"\r\n".join(x for x in unfold(copy) if not x.upper().startswith(added) or
                                         x in lines(data)) + b"\r\n"
                assert lines(copy) == lines(data) or _same_after_unfolding(copy, data), (coll, data[:200], copy[:200])
    assert report["normalised"] == rewritten


def _same_after_unfolding(a: bytes, b: bytes) -> bool:
    """Servers that parse and re-serialise (Radicale, Xandikos) reorder properties and the parts of an RRULE
    and fold at other columns: compare what the calendar means, property by property (icalendar parses)."""
    if item_info(a).kind != "calendar":  # vCard: names are case-insensitive (RFC 6350 3.3), order is free
        import re

        def names_upper(data):
            return sorted(re.sub(rb"^[^:;]+", lambda m: m.group(0).upper(), line) for line in unfold(data) if line)

        return names_upper(a) == names_upper(b)
    import icalendar

    def meaning(data: bytes):
        out = []
        for comp in icalendar.Calendar.from_ical(data).walk():
            props = []
            for name, value in comp.property_items(recursive=False):
                if name in ("BEGIN", "END"):
                    continue
                v = sorted((k, str(x)) for k, x in value.items()) if isinstance(value, icalendar.vRecur) else \
                    value.to_ical() if hasattr(value, "to_ical") else value
                params = sorted(getattr(value, "params", {}).items())
                props.append((name, str(v), str(params)))
            out.append((comp.name, sorted(props)))
        return sorted(out)

    return meaning(a) == meaning(b)


@pytest.mark.parametrize("direction", ["radicale->xandikos", "xandikos->radicale"])
def test_calendars_and_contacts_both_ways(radicale, xandikos, tmp_path, direction):
    src_server, dst_server = (radicale, xandikos) if direction.startswith("radicale") else (xandikos, radicale)
    auth = {radicale: ("ann", "ann-pw"), xandikos: (None, None)}
    for kind, items in (("calendar", calendar_items()), ("addressbook", contact_items())):
        populate(store(src_server, kind, *auth[src_server]), items, kind)
    state = tmp_path / "state.db"
    env = {"MAILMIGRATE_SOURCE_PASSWORD": auth[src_server][1] or "x", "MAILMIGRATE_TARGET_PASSWORD":
           auth[dst_server][1] or "x"}
    for kind, items in (("calendar", calendar_items()), ("addressbook", contact_items())):
        src_url, dst_url = url(src_server, kind, auth[src_server][0]), url(dst_server, kind, auth[dst_server][0])
        p = mm("sync", src_url, dst_url, "--state", state, "--json", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
        report = json.loads(p.stdout)
        want = content(store(src_server, kind, *auth[src_server]))
        got_store = store(dst_server, kind, *auth[dst_server])
        check_copied(want, content(got_store), report)
        assert report["copied"] == sum(len(v) for v in want.values())
        # the collections keep their names and properties
        cols = {c.name: c for c in got_store.collections()}
        for name in want:
            dn, color, desc = PROPS[name]
            assert cols[name].displayname == dn and cols[name].description == desc
            if kind == "calendar" and color:
                assert (cols[name].color or "").lower().startswith(color[:7].lower())
        # a rerun copies nothing
        again = json.loads(mm("sync", src_url, dst_url, "--state", state, "--json", env=env).stdout)
        assert (again["copied"], again["updated"], again["adopted"], again["failed"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("state_kind", ["sqlite", "postgresql"])
def test_changes_and_deletions_are_followed_and_target_only_items_survive(radicale, tmp_path, state_kind, request):
    """Also on a PostgreSQL state: a fleet's or a project's shared database keeps the groupware rows too."""
    src = VdirStore(tmp_path / "src", create=True)
    src.open()
    for coll, items in calendar_items().items():
        c = src.create_collection(Collection(coll, "calendar", *PROPS[coll]))
        for n, d in items.items():
            src.put(c, n, d, "text/calendar")
    state = tmp_path / "st.db" if state_kind == "sqlite" else request.getfixturevalue("pg_url")
    dst_url = url(radicale, "calendar", "bob")
    env = {"MAILMIGRATE_TARGET_PASSWORD": "bob-pw"}
    assert mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", state, env=env).returncode == 0
    # a rerun with nothing changed writes nothing
    p = mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", state, "--json", env=env)
    assert json.loads(p.stdout)["copied"] == 0, p.stdout + p.stderr
    tgt = store(radicale, "calendar", "bob", "bob-pw")
    work = next(c for c in tgt.collections() if c.name == "work")
    mine = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bob//EN\r\nBEGIN:VEVENT\r\nUID:bobs-own@example.org\r\n" \
           b"DTSTAMP:20240101T000000Z\r\nDTSTART:20241001T100000Z\r\nSUMMARY:Bob's own\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    tgt.put(work, "bobs-own.ics", mine, "text/calendar")
    # on the source: one changed, one deleted, one new
    changed = (tmp_path / "src" / "work" / "allday.ics")
    changed.write_bytes(changed.read_bytes().replace(b"Tag der Arbeit", b"Labour Day"))
    (tmp_path / "src" / "work" / "floating.ics").unlink()
    (tmp_path / "src" / "work" / "new.ics").write_bytes(changed.read_bytes().replace(b"UID:allday@", b"UID:new@"))
    p = mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", state, "--delete", "--json", env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert (r["copied"], r["updated"], r["deleted"]) == (1, 1, 1)
    tgt = store(radicale, "calendar", "bob", "bob-pw")
    got = content(tgt)["work"]
    uids = {item_info(d).uid: d for d in got.values()}
    assert "floating@example.org" not in uids and "new@example.org" in uids
    assert b"Labour Day" in uids["allday@example.org"]
    assert "bobs-own@example.org" in uids  # not ours: never deleted
    # a source collection that suddenly lists nothing: no deletes, exit 1
    for f in (tmp_path / "src" / "work").glob("*.ics"):
        f.unlink()
    p = mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", state, "--delete", env=env)
    assert p.returncode == 1 and "lists no items" in p.stdout
    assert len(content(store(radicale, "calendar", "bob", "bob-pw"))["work"]) == len(got)


def test_state_lost_adopts_instead_of_duplicating(radicale, tmp_path):
    src = VdirStore(tmp_path / "src", create=True)
    src.open()
    c = src.create_collection(Collection("work", "calendar", "Work"))
    for n, d in calendar_items()["work"].items():
        src.put(c, n, d, "text/calendar")
    env = {"MAILMIGRATE_TARGET_PASSWORD": "ann-pw"}
    dst_url = url(radicale, "calendar", "ann")
    assert mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", tmp_path / "a.db", env=env).returncode == 0
    p = mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", tmp_path / "other.db", "--json", env=env)
    r = json.loads(p.stdout)
    assert r["copied"] == 0 and r["adopted"] == len(calendar_items()["work"])
    assert len(content(store(radicale, "calendar", "ann", "ann-pw"))["work"]) == len(calendar_items()["work"])


def test_kill_9_mid_copy_then_rerun_is_exact(xandikos, tmp_path):
    src = VdirStore(tmp_path / "src", create=True)
    src.open()
    c = src.create_collection(Collection("big", "calendar", "Big"))
    n = 300
    for i in range(n):
        src.put(c, f"e{i:03d}.ics", calendar_items()["work"]["allday.ics"].replace(
            b"UID:allday@", f"UID:e{i:03d}@".encode()), "text/calendar")
    dst_url = url(xandikos, "calendar")
    state = tmp_path / "st.db"
    for attempt in range(3):
        proc = subprocess.Popen([*MM, "sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", str(state)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        target = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                target = target or store(xandikos, "calendar")
                cols = {x.name: x for x in target.collections()}
                if "big" in cols and len(target.list_items(cols["big"])) >= (attempt + 1) * 40:
                    break
            except Exception:
                target = None
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    p = mm("sync", f"vdir:{tmp_path / 'src'}", dst_url, "--state", state, "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    got = content(store(xandikos, "calendar"))["big"]
    uids = [item_info(d).uid for d in got.values()]
    assert len(uids) == n and len(set(uids)) == n  # every item, none twice


def test_an_item_the_target_refuses_is_reported_and_the_rest_copied(radicale, tmp_path):
    src = VdirStore(tmp_path / "src", create=True)
    src.open()
    c = src.create_collection(Collection("work", "calendar", "Work"))
    src.put(c, "good.ics", calendar_items()["work"]["allday.ics"], "text/calendar")
    src.put(c, "broken.ics", b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nSUMMARY:no end, no uid\r\n", "text/calendar")
    p = mm("sync", f"vdir:{tmp_path / 'src'}", url(radicale, "calendar", "ann"), "--state", tmp_path / "s.db",
           env={"MAILMIGRATE_TARGET_PASSWORD": "ann-pw"})
    assert p.returncode == 1
    assert "work" in p.stdout and "broken.ics" in p.stdout and "refused" in p.stdout
    got = content(store(radicale, "calendar", "ann", "ann-pw"))["work"]
    assert [item_info(d).uid for d in got.values()] == ["allday@example.org"]


def test_vdir_to_vdir_is_byte_exact_and_private(tmp_path):
    src = VdirStore(tmp_path / "src", create=True)
    src.open()
    for coll, items in {**calendar_items(), **contact_items()}.items():
        c = src.create_collection(Collection(coll, "addressbook" if coll == "contacts" else "calendar",
                                             *PROPS[coll]))
        for n, d in items.items():
            src.put(c, n, d, "text/calendar")
    os.symlink("/etc/passwd", tmp_path / "src" / "work" / "evil.ics")
    p = mm("sync", f"vdir:{tmp_path / 'src'}", f"vdir:{tmp_path / 'dst'}", "--state", tmp_path / "s.db")
    assert p.returncode == 0, p.stdout + p.stderr
    for f in (tmp_path / "src").rglob("*.*"):
        if f.suffix in (".ics", ".vcf") and not f.is_symlink():
            twin = tmp_path / "dst" / f.relative_to(tmp_path / "src")
            assert twin.read_bytes() == f.read_bytes()
            assert (twin.stat().st_mode & 0o777) == 0o600
    assert not (tmp_path / "dst" / "work" / "evil.ics").exists()
    assert (tmp_path / "dst" / "work" / "displayname").read_text().strip() == "Work"


def test_a_project_unit_carries_mail_and_groupware_and_the_report_counts_them(radicale, xandikos, tmp_path):
    """A project whose units are mailboxes with calendars and contacts: start copies both, finish verifies
    both (an item missing on the target keeps the unit from migrated), the report counts collections and
    items per account."""
    sample = Path(__file__).resolve().parent.parent / "examples" / "sample-maildir"
    for kind, items in (("calendar", calendar_items()), ("addressbook", contact_items())):
        populate(store(radicale, kind, "ann", "ann-pw"), items, kind)
    (tmp_path / "src.pw").write_text("ann-pw")
    os.chmod(tmp_path / "src.pw", 0o600)
    proj = tmp_path / "p.toml"
    proj.write_text(f"""
[project]
name = "gw"
[source]
url = "maildir:{sample}"
password_file = "src.pw"
[target]
url = "maildir:{tmp_path / 'out'}"
[accounts]
list = ["ann"]
[groupware]
calendars = {{ source = "caldav://127.0.0.1:{radicale.port}/?tls=none", target = "caldav://127.0.0.1:{xandikos.port}/?tls=none" }}
contacts = {{ source = "carddav://127.0.0.1:{radicale.port}/?tls=none", target = "carddav://127.0.0.1:{xandikos.port}/?tls=none" }}
""")
    run = lambda *a: mm("project", *a, proj)  # noqa: E731
    assert run("init").returncode == 0
    p = run("start")
    assert p.returncode == 0 and "calendars: copied 9" in p.stdout and "contacts: copied 3" in p.stdout, p.stdout + p.stderr
    # an item lost on the target: finish refuses
    x = store(xandikos, "calendar")
    work = next(c for c in x.collections() if c.name == "work")
    victim = next(iter(x.list_items(work)))
    x.request("DELETE", x.home + "work/" + victim)
    p = run("finish")
    assert p.returncode == 1 and "groupware verification failed: 1 item(s)" in p.stdout, p.stdout + p.stderr
    # back from the source by a new copy: remove our record of it, then finish again
    import sqlite3
    db = sqlite3.connect(tmp_path / "gw-sync.db")
    db.execute("DELETE FROM gw_items WHERE target_name=?", (victim,))
    # else the unchanged CTag skips the calendar, and the changes since the sync-token do not name the item
    db.execute("UPDATE gw_collections SET source_version=NULL, source_sync_token=NULL")
    db.commit()
    db.close()
    p = run("finish")
    assert p.returncode == 0 and "calendars: 9 items in 3 collection(s)" in p.stdout, p.stdout + p.stderr
    p = run("report", "--json")
    report = json.loads(p.stdout)
    assert report["totals"]["groupware_source_items"] == report["totals"]["groupware_target_items"] == 12
    assert report["units"][0]["groupware"]["ok"]


def test_communigate_calendars_and_contacts_arrive_in_a_dav_target(radicale, tmp_path):
    """CommuniGate keeps calendar items and contacts as messages with a text/calendar or text/vcard part in
    boxes account.info's "#Viewer" names (FACTS.md; cgp2zarafa's cgp-migrate.sh): they arrive in CalDAV and
    CardDAV as items with their UIDs, in collections named after the boxes."""
    import base64

    from cgp_fixture import _Writer

    w = _Writer(tmp_path / "cgp")
    w.file("Settings/Main.settings", "{\n DomainName = example.com;\n}\n")
    w.file("Accounts/ann.macnt/account.settings", "{\n Password = secret;\n}\n")
    w.file("Accounts/ann.macnt/account.info",
           "{\n  \"#Viewer\" = {CalendarBox = Kalender; ContactsBox = Adressbuch; };\n}\n")
    event = calendar_items()["work"]["allday.ics"]
    weekly = calendar_items()["work"]["weekly.ics"]
    card = contact_items()["contacts"]["chloe.vcf"]
    plain = b"From: ann@example.com\nSubject: Tag der Arbeit\nMIME-Version: 1.0\n" \
            b"Content-Type: text/calendar; charset=utf-8; method=PUBLISH\n\n" + event.replace(b"\r\n", b"\n")
    multipart = (b"From: ann@example.com\nSubject: Weekly\nMIME-Version: 1.0\n"
                 b"Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nsee the event\n"
                 b"--b1\nContent-Type: text/calendar; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
                 + base64.encodebytes(weekly) + b"--b1--\n")
    vcard_msg = b"From: ann@example.com\nSubject: Chloe\nMIME-Version: 1.0\nContent-Type: text/vcard; charset=utf-8\n" \
                b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(card)
    w.mbox("Accounts/ann.macnt/Kalender.mbox", "ann@example.com", "Kalender",
           [(plain, "S", set(), 1, True), (multipart, "S", set(), 2, True)])
    w.mbox("Accounts/ann.macnt/Adressbuch.mbox", "ann@example.com", "Adressbuch", [(vcard_msg, "S", set(), 1, True)])
    w.mbox("Accounts/ann.macnt/INBOX.mbox", "ann@example.com", "INBOX", [])
    (tmp_path / "users.csv").write_text("ann@example.com,ann\n")
    env = {"MAILMIGRATE_TARGET_PASSWORD": "ann-pw"}
    for what, kind in (("calendars", "calendar"), ("contacts", "addressbook")):
        p = mm("sync", f"communigate:{tmp_path / 'cgp'}?groupware={what}", url(radicale, kind), "--accounts",
               tmp_path / "users.csv", "--state", tmp_path / "s.db", "--json", env=env)
        assert p.returncode == 0, p.stdout + p.stderr
    cal = store(radicale, "calendar", "ann", "ann-pw")
    cols = {c.name: c for c in cal.collections()}
    assert cols["kalender"].displayname == "Kalender"
    uids = {item_info(d).uid: d for d in content(cal)["kalender"].values()}
    assert set(uids) == {"allday@example.org", "weekly-1@example.org"}
    assert _same_after_unfolding(uids["weekly-1@example.org"], weekly)
    book = store(radicale, "addressbook", "ann", "ann-pw")
    (got,) = content(book)["adressbuch"].values()
    assert item_info(got).uid == "chloé-uid" and _same_after_unfolding(got, card)


def test_communigate_migrate_carries_calendars_and_contacts_to_dav(tmp_path, dovecot_factory):
    """`mailmigrate communigate migrate --caldav … --carddav …`: after each account's mail, its calendar
    and contact boxes arrive in the DAV server (logged in as a service account with rights on every home)."""
    import base64
    import pwd

    from cgp_fixture import _Writer

    srv = Radicale(tmp_path / "radicale", admin="dav-admin")
    srv.add_user("dav-admin", "dav-pw")
    srv.start()
    try:
        w = _Writer(tmp_path / "cgp")
        w.file("Settings/Main.settings", "{\n DomainName = example.com;\n}\n")
        w.file("Accounts/ann.macnt/account.settings", "{\n Password = \"ann secret\";\n PasswordEncryption = clear;\n}\n")
        w.file("Accounts/ann.macnt/account.info", "{\n  \"#Viewer\" = {CalendarBox = Kalender; ContactsBox = Adressbuch; };\n}\n")
        event = calendar_items()["work"]["allday.ics"]
        card = contact_items()["contacts"]["ann.vcf"]
        w.mbox("Accounts/ann.macnt/Kalender.mbox", "ann@example.com", "Kalender", [(
            b"Subject: e\nMIME-Version: 1.0\nContent-Type: text/calendar\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(event), "S", set(), 1, True)])
        w.mbox("Accounts/ann.macnt/Adressbuch.mbox", "ann@example.com", "Adressbuch", [(
            b"Subject: c\nMIME-Version: 1.0\nContent-Type: text/vcard\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(card), "S", set(), 1, True)])
        w.mbox("Accounts/ann.macnt/INBOX.mbox", "ann@example.com", "INBOX",
               [(b"From: x@example.org\nSubject: hi\n\nbody\n", "S", {"\\Seen"}, 1, True)])
        dov = dovecot_factory()
        passwd = tmp_path / "users.passwd"
        (tmp_path / "dav.pw").write_text("dav-pw")
        os.chmod(tmp_path / "dav.pw", 0o600)
        from servers.dovecot import MASTER

        p = mm("communigate", "migrate", tmp_path / "cgp", "--server", "127.0.0.1", "--port", dov.port,
               "--target", "imap", "--master-user", MASTER[0], "--tls", "none", "--passwd-file", dov.root / "users.passwd",
               "--output-dir", tmp_path, "--caldav", f"caldav://127.0.0.1:{srv.port}/%u/?tls=none",
               "--carddav", f"carddav://127.0.0.1:{srv.port}/%u/?tls=none", "--dav-user", "dav-admin",
               "--dav-password-file", tmp_path / "dav.pw",
               env={"MAILMIGRATE_TARGET_PASSWORD": MASTER[1]})
        assert p.returncode == 0, p.stdout + p.stderr
        assert "ann@example.com: calendars: 1 items copied" in p.stdout and "contacts: 1 items copied" in p.stdout
        s = parse_dav_url(f"caldav://127.0.0.1:{srv.port}/ann@example.com/?tls=none", "dav-admin", Secret("dav-pw"))
        s.open()
        (got,) = content(s)["kalender"].values()
        assert item_info(got).uid == "allday@example.org"
        a = parse_dav_url(f"carddav://127.0.0.1:{srv.port}/ann@example.com/?tls=none", "dav-admin", Secret("dav-pw"))
        a.open()
        (card_got,) = content(a)["adressbuch"].values()
        assert item_info(card_got).uid == "ann-uid"
        # a rerun copies nothing new
        p = mm("communigate", "migrate", tmp_path / "cgp", "--server", "127.0.0.1", "--port", dov.port,
               "--target", "imap", "--master-user", MASTER[0], "--tls", "none", "--passwd-file", dov.root / "users.passwd",
               "--output-dir", tmp_path, "--caldav", f"caldav://127.0.0.1:{srv.port}/%u/?tls=none",
               "--dav-user", "dav-admin", "--dav-password-file", tmp_path / "dav.pw", "--force",
               env={"MAILMIGRATE_TARGET_PASSWORD": MASTER[1]})
        assert "calendars: 0 items copied, 1 already there" in p.stdout, p.stdout + p.stderr
    finally:
        srv.stop()


def test_a_communigate_project_carries_calendars_and_contacts_to_a_service_accounts_dav(dovecot_factory, tmp_path):
    """A `communigate` project with [groupware]: the CommuniGate tree's calendar and contact boxes are the
    source without naming them; the DAV target is written by a service account (as Kerio's or a DAV server's
    admin) into each unit's home named by %u. start carries them after the mail, finish verifies them by UID,
    the report counts them; a second sync copies nothing."""
    import base64

    from cgp_fixture import _Writer
    from servers.dovecot import MASTER

    srv = Radicale(tmp_path / "radicale", admin="dav-admin")
    srv.add_user("dav-admin", "dav-pw")
    srv.start()
    try:
        w = _Writer(tmp_path / "CommuniGate")
        w.file("Settings/Main.settings", "{\n DomainName = example.com;\n}\n")
        w.file("Accounts/ann.macnt/account.settings", "{\n Password = \"ann secret\";\n PasswordEncryption = clear;\n}\n")
        # account.info's "#Viewer" names the boxes (FACTS.md, CommuniGate's "Account Data" page)
        w.file("Accounts/ann.macnt/account.info",
               "{\n  \"#Viewer\" = {CalendarBox = Kalender; ContactsBox = Adressbuch; };\n}\n")
        event = calendar_items()["work"]["allday.ics"]
        card = contact_items()["contacts"]["ann.vcf"]
        w.mbox("Accounts/ann.macnt/Kalender.mbox", "ann@example.com", "Kalender", [(
            b"Subject: e\nMIME-Version: 1.0\nContent-Type: text/calendar\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(event), "S", set(), 1, True)])
        w.mbox("Accounts/ann.macnt/Adressbuch.mbox", "ann@example.com", "Adressbuch", [(
            b"Subject: c\nMIME-Version: 1.0\nContent-Type: text/vcard\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(card), "S", set(), 1, True)])
        w.mbox("Accounts/ann.macnt/INBOX.mbox", "ann@example.com", "INBOX",
               [(b"From: x@example.org\nSubject: hi\n\nbody\n", "S", {"\\Seen"}, 1, True)])
        dov = dovecot_factory()
        for name, secret in (("master.pw", MASTER[1]), ("dav.pw", "dav-pw")):
            (tmp_path / name).write_text(secret)
            os.chmod(tmp_path / name, 0o600)
        proj = tmp_path / "cg.toml"
        proj.write_text(f"""[project]
name = "cg"
path = "communigate"
[communigate]
base = "CommuniGate"
directory = "passwd-file:{dov.root / 'users.passwd'}"
[target]
url = "imap://127.0.0.1:{dov.port}?master=plain&tls=none"
master = "{MASTER[0]}"
password_file = "master.pw"
[groupware]
target_user = "dav-admin"
target_password_file = "dav.pw"
calendars = {{ target = "caldav://127.0.0.1:{srv.port}/%u/?tls=none" }}
contacts = {{ target = "carddav://127.0.0.1:{srv.port}/%u/?tls=none" }}
""")
        run = lambda *a: mm("project", *a, proj)  # noqa: E731
        assert run("init").returncode == 0
        p = run("start")
        assert p.returncode == 0, p.stdout + p.stderr
        assert "calendars: copied 1" in p.stdout and "contacts: copied 1" in p.stdout, p.stdout
        cal = parse_dav_url(f"caldav://127.0.0.1:{srv.port}/ann@example.com/?tls=none", "dav-admin", Secret("dav-pw"))
        cal.open()
        (got,) = content(cal)["kalender"].values()
        assert item_info(got).uid == "allday@example.org"
        book = parse_dav_url(f"carddav://127.0.0.1:{srv.port}/ann@example.com/?tls=none", "dav-admin",
                             Secret("dav-pw"))
        book.open()
        (got,) = content(book)["adressbuch"].values()
        assert item_info(got).uid == "ann-uid"
        p = run("sync")
        assert p.returncode == 0 and "calendars: copied 0" in p.stdout, p.stdout + p.stderr
        p = run("finish")
        assert p.returncode == 0 and "calendars: 1 items in 1 collection(s)" in p.stdout, p.stdout + p.stderr
        report = json.loads(run("report", "--json").stdout)
        assert report["totals"]["groupware_source_items"] == report["totals"]["groupware_target_items"] == 2
    finally:
        srv.stop()


def test_a_service_account_target_must_name_each_users_home(tmp_path):
    """With target_user every unit would land in the one service account's home: refused at load."""
    from mailmigrate.errors import ConfigError
    from mailmigrate.paths.groupware import parse_section

    with pytest.raises(ConfigError, match="%u or %n"):
        parse_section("p", {"target_user": "admin", "calendars": {"source": "caldav://a/", "target": "caldav://b/"}},
                      Path)


@pytest.mark.parametrize("server_kind", ["radicale", "xandikos", "davical"])
def test_a_rerun_reads_only_what_changed_since_the_last_sync_token(tmp_path, server_kind):
    """RFC 6578: a rerun over a changed calendar asks for the changes since the token the last run kept
    (one REPORT), not for every item's ETag (a depth-1 PROPFIND of the whole collection); changes, additions
    and deletions all arrive; a token the server no longer knows makes the run list the collection whole,
    with the same result.  DAViCal, whose answers are not exact changes, is listed whole each time: its
    deletions are still followed."""
    if server_kind == "radicale":
        server = Radicale(tmp_path / "radicale", log_level="info")
        server.add_user("ann", "ann-pw")
        user, pw = "ann", "ann-pw"
    elif server_kind == "davical":
        from servers.davical import DAViCal

        server = DAViCal(tmp_path / "davical")
        user, pw = "admin", server.password
    else:
        server = Xandikos(tmp_path / "xandikos")
        user, pw = None, None
    server.start()

    def store(server, kind, user=None, password=None):  # DAViCal's principals live under /caldav.php/
        s = parse_dav_url(url(server, kind, user), None, Secret(password) if password else None)
        s.open()
        return s

    def url(server, kind, user=None):
        u = globals()["url"](server, kind, user)
        return u.replace("/?tls=none", "/caldav.php/?tls=none") if server_kind == "davical" else u

    try:
        src = store(server, "calendar", user, pw)
        populate(src, calendar_items(), "calendar")
        state = tmp_path / "state.db"
        env = {"MAILMIGRATE_SOURCE_PASSWORD": pw or "x"}
        src_url, dst = url(server, "calendar", user), f"vdir:{tmp_path / 'copy'}"

        def run(*extra):
            p = mm("sync", src_url, dst, "--state", state, "--json", *extra, env=env)
            assert p.returncode == 0, p.stdout + p.stderr
            return json.loads(p.stdout)

        first = run()
        assert first["copied"] == sum(len(v) for v in calendar_items().values())
        assert first["listed_by_changes"] == 0  # nothing to compare with yet: listed whole

        rounds = iter(range(3))

        def change_work(suffix: bytes):
            """One item changed, one deleted, one added, each round on items no earlier round touched."""
            s = store(server, "calendar", user, pw)
            work = next(c for c in s.collections() if c.name == "work")
            n = next(rounds)
            names = sorted(x for x in s.list_items(work) if not x.startswith("added-"))[n:]
            old = s.get(work, names[0])
            s.put(work, names[0], old.data.replace(b"END:VEVENT", b"COMMENT:changed " + suffix +
                                                   b"\r\nEND:VEVENT", 1), "text/calendar", etag=old.etag)
            gone = s.get(work, names[1])
            s.delete(work, names[1], gone.etag)
            uid = item_info(old.data).uid.encode()
            s.put(work, "added-" + suffix.decode() + ".ics",
                  old.data.replace(b"UID:" + uid, b"UID:added-" + suffix + b"@example.org"), "text/calendar")
            return names[1]

        deleted = change_work(b"one")
        log_mark = server.log.stat().st_size
        r = run("--delete")
        requests = server.log.read_bytes()[log_mark:].decode(errors="replace")  # the rerun's requests only
        assert (r["copied"], r["updated"], r["deleted"], r["failed"]) == (1, 1, 1, 0), json.dumps(r)
        # the changed calendar; the others did not move at all.  DAViCal's answers name the change their token
        # ends with again (and a token it does not know gets every item, without the removed ones): changes
        # that name an unchanged item are not trusted there, and the calendar is listed whole
        by_changes = 0 if server_kind == "davical" else 1
        assert r["listed_by_changes"] == by_changes
        want = content(store(server, "calendar", user, pw))
        got = content(VdirStore(tmp_path / "copy"))
        assert {c: sorted(v.values()) for c, v in got.items()} == {c: sorted(v.values()) for c, v in want.items()}
        assert deleted not in got["work"]
        if server_kind == "radicale":
            work_path = "'/ann/work/'"
            assert f"REPORT request for {work_path}" in requests
            assert not [line for line in requests.splitlines()
                        if f"PROPFIND request for {work_path}" in line and "depth '1'" in line], requests[-3000:]

        # the server forgets the token (here: the state holds one it never issued): listed whole, same result
        import sqlite3
        with sqlite3.connect(state) as db:
            db.execute("UPDATE gw_collections SET source_sync_token=? WHERE source='work'",
                       ({"radicale": "http://radicale.org/ns/sync/" + "0" * 64,
                         "davical": "data:,999999"}.get(server_kind, "999999"),))
        change_work(b"two")
        r = run("--delete")
        assert (r["copied"], r["updated"], r["deleted"], r["failed"]) == (1, 1, 1, 0), json.dumps(r)
        assert r["listed_by_changes"] == 0
        want = content(store(server, "calendar", user, pw))
        got = content(VdirStore(tmp_path / "copy"))
        assert {c: sorted(v.values()) for c, v in got.items()} == {c: sorted(v.values()) for c, v in want.items()}
        # and the token kept by that run is a good one again
        change_work(b"three")
        r = run("--delete")
        assert (r["copied"], r["updated"], r["deleted"], r["listed_by_changes"]) == (1, 1, 1, by_changes), r
    finally:
        server.stop()


@pytest.mark.parametrize("direction", ["radicale->davical", "davical->xandikos"])
def test_davical_as_target_and_as_source(radicale, xandikos, tmp_path, direction):
    """DAViCal (Debian's package, over its own PostgreSQL), a third server beside Radicale and Xandikos:
    every collection and item arrives with its UID (bytes equal, or the rewrite reported), and a rerun
    copies nothing."""
    from servers.davical import DAViCal

    dav = DAViCal(tmp_path / "davical").start()
    try:
        def dav_url(kind):
            return f"{'caldav' if kind == 'calendar' else 'carddav'}://admin@127.0.0.1:{dav.port}/caldav.php/?tls=none"

        sides = {"radicale": (lambda kind: url(radicale, kind, "ann"), "ann", "ann-pw"),
                 "davical": (dav_url, "admin", dav.password),
                 "xandikos": (lambda kind: url(xandikos, kind), None, None)}
        src_name, dst_name = direction.split("->")
        (src_url, src_user, src_pw), (dst_url, dst_user, dst_pw) = sides[src_name], sides[dst_name]

        def open_store(side, kind):
            u, user, pw = sides[side]
            s = parse_dav_url(u(kind), None, Secret(pw) if pw else None)
            s.open()
            return s

        for kind, items in (("calendar", calendar_items()), ("addressbook", contact_items())):
            populate(open_store(src_name, kind), items, kind)
        state = tmp_path / "state.db"
        env = {"MAILMIGRATE_SOURCE_PASSWORD": src_pw or "x", "MAILMIGRATE_TARGET_PASSWORD": dst_pw or "x"}
        for kind in ("calendar", "addressbook"):
            p = mm("sync", src_url(kind), dst_url(kind), "--state", state, "--json", env=env)
            assert p.returncode == 0, p.stdout + p.stderr
            report = json.loads(p.stdout)
            src_content = content(open_store(src_name, kind))
            # only the collections this test made (a DAViCal principal starts with its own empty defaults)
            want = {c: v for c, v in src_content.items() if c in PROPS}
            got = content(open_store(dst_name, kind))
            # DAViCal adds REV:<when it stored the card> to a vCard that has none (RFC 6350 6.7.4)
            check_copied(want, got, report, added=(b"REV:",) if dst_name == "davical" else ())
            again = json.loads(mm("sync", src_url(kind), dst_url(kind), "--state", state, "--json", env=env).stdout)
            assert (again["copied"], again["updated"], again["adopted"], again["failed"]) == (0, 0, 0, 0), again
    finally:
        dav.stop()
