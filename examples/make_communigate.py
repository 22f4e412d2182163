#!/usr/bin/env python3
"""Write the sample CommuniGate Pro store (examples/communigate/) that the tests and docs use.

No CommuniGate server can run here, so the sample is written from the documented layout (docs/communigate.md)
by this generator, deterministically: running it twice gives the same bytes.  It covers what a migration
meets: a main domain and two other domains, multi-mailbox (.macnt) and single-mailbox accounts, an account in
a storage sub-directory, text (.mbox) and .mdir mailboxes, nested folders, a folder name in modified UTF-7,
calendar and contacts boxes, a readable and an encrypted password, forwarding rules, aliases, messages with
and without UIDs, twins, a body line starting with "From ", CRLF line ends and a status letter we do not know.

``build(dest)`` returns the manifest: for each (domain, account) the folders and, per folder, the messages as
(bytes, IMAP flags, internal date) in file order, which the tests compare the store's output with.

Usage: python examples/make_communigate.py [DEST]   (default: examples/communigate next to this file)
"""

from __future__ import annotations

import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from mailmigrate.formats import communigate_mailbox as cgm  # noqa: E402
from mailmigrate.formats import communigate_settings as cgs  # noqa: E402
from mailmigrate.formats import mutf7  # noqa: E402

MARKER = ".generated-by-make_communigate"
MAIN_DOMAIN = "example.com"
T0 = datetime(2023, 3, 1, 9, 30, 0, tzinfo=timezone.utc)

#: Encrypted passwords start with byte 1 in CommuniGate's settings (written as "\001").
ENCRYPTED_BOB = "\x01" + "Ul7yJ3Pz0kQ2vXc9"


def message(n: int, sender: str, to: str, subject: str, body: str, *, crlf: bool = False,
            extra_headers: str = "", content_type: str = "text/plain; charset=utf-8") -> bytes:
    when = T0 + timedelta(hours=n)
    head = (f"Return-Path: <{sender}>\n"
            f"From: {sender}\n"
            f"To: {to}\n"
            f"Subject: {subject}\n"
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\n"
            f"Message-ID: <sample-{n}@{MAIN_DOMAIN}>\n"
            f"MIME-Version: 1.0\n"
            f"Content-Type: {content_type}\n"
            f"{extra_headers}")
    text = head + "\n" + body
    if not text.endswith("\n"):
        text += "\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    return text.encode("utf-8")


def vcard(n: int, name: str, email: str) -> bytes:
    card = (f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:{name}\r\nEMAIL:{email}\r\nUID:contact-{n}\r\nEND:VCARD\r\n")
    return message(n, "alice@example.com", "alice@example.com", f"Contact: {name}", card,
                   content_type="text/vcard; charset=utf-8")


def vevent(n: int, summary: str) -> bytes:
    start = (T0 + timedelta(days=n)).strftime("%Y%m%dT%H%M%SZ")
    ev = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//sample//EN\r\nBEGIN:VEVENT\r\n"
          f"UID:event-{n}\r\nDTSTAMP:{start}\r\nDTSTART:{start}\r\nSUMMARY:{summary}\r\n"
          "END:VEVENT\r\nEND:VCALENDAR\r\n")
    return message(n, "alice@example.com", "alice@example.com", summary, ev,
                   content_type="text/calendar; charset=utf-8; method=PUBLISH")


class Writer:
    def __init__(self, dest: Path):
        self.dest = dest
        self.manifest: dict[tuple[str, str], dict[tuple[str, ...], list[tuple[bytes, frozenset, datetime]]]] = {}

    def settings(self, path: Path, value) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cgs.dump(value))

    def mbox(self, account: tuple[str, str], folder: tuple[str, ...], file: Path, msgs, *, uids=True,
             first_uid: int = 1) -> None:
        file.parent.mkdir(parents=True, exist_ok=True)
        out = []
        recorded = self.manifest.setdefault(account, {}).setdefault(folder, [])
        for i, (data, flags) in enumerate(msgs):
            when = T0 + timedelta(days=i, minutes=len(recorded))
            uid = first_uid + i if uids else None
            out.append(cgm.write_message(data, "sender@example.org", flags, uid, when))
            known = frozenset(f for f in flags)
            recorded.append((data, known, when))
        file.write_bytes(b"".join(out))

    def mdir(self, account, folder, d: Path, msgs, first_id: int = 1000) -> None:
        d.mkdir(parents=True, exist_ok=True)
        recorded = self.manifest.setdefault(account, {}).setdefault(folder, [])
        for i, (data, flags) in enumerate(msgs):
            when = T0 + timedelta(days=i, hours=3)
            (d / cgm.format_mdir_name(str(first_id + i), flags, when)).write_bytes(data)
            recorded.append((data, frozenset(flags), when))

    def folder_only(self, account, folder) -> None:
        self.manifest.setdefault(account, {}).setdefault(folder, [])


SEEN, ANS, FLAG, DEL, DRAFT = "\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"


def build(dest: Path) -> dict:
    dest = Path(dest)
    if dest.exists():
        if any(dest.iterdir()) and not (dest / MARKER).exists():
            raise SystemExit(f"{dest} exists and was not written by this generator; not touching it")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / MARKER).write_text("written by examples/make_communigate.py; rerun it to regenerate\n")
    w = Writer(dest)
    w.settings(dest / "Settings" / "Main.settings", {"DomainName": MAIN_DOMAIN, "ServerName": "mail." + MAIN_DOMAIN})

    # --- main domain: example.com (Accounts/) ----------------------------------------------------------
    acc = dest / "Accounts"
    w.settings(acc / "Settings" / "Aliases.data", {"alice": ["ali", "a.archer"], "bob": "robert"})
    alice = (MAIN_DOMAIN, "alice")
    a = acc / "alice.macnt"
    w.settings(a / "account.settings", {
        "RealName": "Alice Archer",
        "Password": "Wonder land \"42\"",
        "PasswordEncryption": "clear",
        "Rules": [[5, "Keep a copy", [], [["Mirror to", "alice.archer@elsewhere.org"]]]],
        "Created": T0,
    })
    w.settings(a / "account.info", {"CalendarBox": "Calendar", "ContactsBox": "Contacts", "LastLogin": T0,
                                    "MessagesSize": 0})
    w.mbox(alice, ("INBOX",), a / "INBOX.mbox", [
        (message(1, "bob@example.com", "alice@example.com", "Lunch?", "Shall we?\n"), {SEEN}),
        (message(2, "carol@example.com", "alice@example.com", "Report",
                 "Numbers attached.\n\nFrom the desk of Carol\n>From quoted\n"), {SEEN, ANS, FLAG}),
        (message(3, "news@example.net", "alice@example.com", "Weekly", "Unread news.\n"), set()),
        (message(4, "dave@example.org", "alice@example.com", "CRLF mail", "Line one\nLine two\n", crlf=True),
         {SEEN, "$CGP_X"}),
        (message(5, "eve@example.net", "alice@example.com", "Gone", "Marked for deletion\n"), {DEL, SEEN}),
    ], first_uid=101)
    w.mbox(alice, ("Sent",), a / "Sent.mbox", [
        (message(10, "alice@example.com", "bob@example.com", "Re: Lunch?", "Yes.\n"), {SEEN, "$MDNSent"}),
    ])
    w.mbox(alice, ("Entwürfe",), a / (mutf7.encode("Entwürfe") + ".mbox"), [
        (message(11, "alice@example.com", "bob@example.com", "Entwurf", "Noch nicht fertig.\n"), {DRAFT, SEEN}),
    ])
    w.mbox(alice, ("Work",), a / "Work.mbox", [
        (message(12, "boss@example.com", "alice@example.com", "Plan", "The plan.\n"), {SEEN, FLAG}),
    ])
    w.mdir(alice, ("Work", "Projects"), a / "Work.folder" / "Projects.mdir", [
        (message(13, "carol@example.com", "alice@example.com", "Project A", "Kick-off.\n"), {SEEN}),
        (message(14, "carol@example.com", "alice@example.com", "Project B", "Budget.\n"), {SEEN, ANS}),
    ])
    w.folder_only(alice, ("Work", "Projects", "2024"))
    w.mbox(alice, ("Work", "Projects", "2024", "Q1"),
           a / "Work.folder" / "Projects.folder" / "2024.folder" / "Q1.mbox", [
        (message(15, "carol@example.com", "alice@example.com", "Q1 review", "Deep folder.\n"), set()),
    ])
    w.mbox(alice, ("Calendar",), a / "Calendar.mbox", [(vevent(16, "Team meeting"), {SEEN})])
    w.mdir(alice, ("Contacts",), a / "Contacts.mdir", [(vcard(17, "Bob Baker", "bob@example.com"), set())])

    bob = (MAIN_DOMAIN, "bob")
    w.settings(acc / "bob.settings", {"RealName": "Bob Baker", "Password": ENCRYPTED_BOB,
                                      "PasswordEncryption": "A-crpt"})
    w.settings(acc / "bob.info", {"LastLogin": T0})
    w.mbox(bob, ("INBOX",), acc / "bob.mbox", [
        (message(20, "alice@example.com", "bob@example.com", "Hello Bob", "Single-mailbox account.\n"), {SEEN}),
        (message(21, "alice@example.com", "bob@example.com", "Again", "Second.\n"), set()),
    ], first_uid=1)

    carol = (MAIN_DOMAIN, "carol")
    c = acc / "a1.sub" / "carol.macnt"
    w.settings(c / "account.settings", {"RealName": "Carol \u00c7elik", "Password": "c4rol"})
    w.mbox(carol, ("INBOX",), c / "INBOX.mbox", [
        (message(30, "bob@example.com", "carol@example.com", "In a sub-directory", "Found me.\n"), {SEEN}),
    ])

    # --- example.org: Domains/example.org/ -------------------------------------------------------------
    org = dest / "Domains" / "example.org"
    w.settings(org / "Settings" / "Domain.settings", {"DomainAliases": ["example.net", "example.info"]})
    w.settings(org / "Settings" / "Aliases.data", {"dave": ["d", "david"], "erin": ["info", "sales"]})
    dave = ("example.org", "dave")
    d = org / "dave.macnt"
    w.settings(d / "account.settings", {"RealName": "Dave Doe", "Password": "\x01X9Yhashed",
                                        "PasswordEncryption": "A-crpt"})
    w.mdir(dave, ("INBOX",), d / "INBOX.mdir", [
        (message(40, "alice@example.com", "dave@example.org", "mdir inbox", "One file per message.\n"), {SEEN}),
        (message(41, "alice@example.com", "dave@example.org", "flagged", "Two.\n"), {FLAG}),
    ])
    twin = message(42, "list@example.net", "dave@example.org", "Twin", "Same bytes twice.\n")
    w.mbox(dave, ("Archive",), d / "Archive.mbox", [
        (twin, {SEEN}),
        (twin, {SEEN}),
        (message(43, "list@example.net", "dave@example.org", "No UID", "Old mailbox without UIDs.\n"), set()),
    ], uids=False)
    w.mbox(dave, ("Trash",), d / "Trash.mbox", [])

    erin = ("example.org", "erin")
    w.settings(org / "erin.settings", {"RealName": "Erin Example", "Password": "erin-pw",
                                       "PasswordEncryption": "clear",
                                       "Rules": [[1, "Redirect", [["Human Generated", "---"]],
                                                  [["Redirect to", "erin@new.example.net"]]]]})
    w.mbox(erin, ("INBOX",), org / "erin.mbox", [
        (message(50, "alice@example.com", "erin@example.org", "Hi Erin", "Forwarded elsewhere too.\n"), {SEEN}),
    ])

    # --- shop.example.net: a domain with one account, mdir-only --------------------------------------
    shop = dest / "Domains" / "shop.example.net"
    frank = ("shop.example.net", "frank")
    f = shop / "frank.macnt"
    w.settings(f / "account.settings", {"RealName": "Frank Fisher", "Password": "fr4nk!"})
    w.mdir(frank, ("INBOX",), f / "INBOX.mdir", [
        (message(60, "orders@example.com", "frank@shop.example.net", "Order 1", "Order.\n"), {SEEN}),
    ])
    w.mdir(frank, ("Orders", "2023"), f / "Orders.folder" / "2023.mdir", [
        (message(61, "orders@example.com", "frank@shop.example.net", "Order 2", "Order.\n"), {SEEN, ANS}),
    ])
    w.folder_only(frank, ("Orders",))
    return w.manifest


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "communigate"
    manifest = build(target)
    n = sum(len(m) for folders in manifest.values() for m in folders.values())
    print(f"wrote {target}: {len(manifest)} accounts, {n} messages")
