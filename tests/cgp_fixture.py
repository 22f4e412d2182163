"""A CommuniGate Pro store written from the vendor's public descriptions and real files, not from our own
sample generator (examples/make_communigate.py) and not with our reader's writer functions: every byte is
spelled out here, so a reader bug cannot hide behind a matching writer bug.

Sources of each shape (facts only; nothing copied):

* [GUIDE-DATA] CommuniGate Pro Guide, "Data Formats": dictionaries ``{ key = value; }``, arrays, atoms,
  quoted strings with ``\\" \\\\ \\r \\n \\t \\e \\nnn`` (decimal), ``#T`` timestamps, ``[base64]`` blocks.
* [GUIDE-ACCOUNTS] Guide, "Accounts" / "Mailboxes": multi-mailbox (``.macnt``) and single-mailbox
  accounts, ``X.folder`` beside ``X.mbox`` for sub-mailboxes, a folder that has no mailbox of its own,
  ``/`` as separator, ``.sub`` storage sub-directories, domains under ``Domains/``.
* [CPANEL] communigate/communigate-cpanel-adaptor: ``CGP/Settings/Main.settings`` (``DomainName = host;``,
  one ``Key = value;`` a line, two-space indent), ``CGP/Accounts/postmaster.macnt/...`` (``Password =
  cp@nel;`` atoms with ``@``, ``PasswordEncryption = clear;``; its install.sh puts that file at
  ``Accounts/postmaster.macnt/account.settings``), ``CGP/Settings/DomainDefault.settings``
  (``AccountDefaults = { ... PasswordEncryption = A-crpt; ... }``).
* [CGON] stefjakobs/cgp2zarafa ``cgon.py``: adjacent quoted strings are one string; atoms hold ``@ . -``.
* [MIGRATE-SH] cgp2zarafa ``cgp-migrate.sh``: ``account.info`` holds ``"#Viewer" = {CalendarBox = ...;
  TasksBox = ...; ContactsBox = ...;}``; mailbox files are IMAP modified UTF-7 names ending ``.mbox``.
* [IMPORT-MBOX] cgp2zarafa ``import-mbox.py``: ``.mbox`` files are read as BSD mbox, ``.mdir`` as one file
  a message; a UW-IMAP "Mail System Internal Data" message at the head of a file is not mail.
* [RULES] cgp2zarafa ``convert_rules.py``: rules are arrays ``(priority, name, conditions, actions)`` with
  actions such as ``("Mirror to", addr)`` and ``("Redirect to", addr)``.
* [FACTS] /work/shared/FACTS.md: separator ``From <return-path> (flags-UID) <timestamp>``, ``.mdir`` names
  ``<id>-<flags>-<yyyymmddhhmmss>``; the flag letters themselves are UNVERIFIED (our table is used).

``build(base)`` writes the store and returns a :class:`Fixture` with what a correct migration must deliver:
every message's bytes, flags and date per account and folder, each account's password rule outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

MAIN = "mail.example.test"  # from Settings/Main.settings DomainName [CPANEL]


@dataclass
class Fixture:
    base: Path
    #: address -> folder ("A/B") -> list of (bytes as stored, flags, UTC date)
    mail: dict[str, dict[str, list[tuple[bytes, frozenset, datetime]]]] = field(default_factory=dict)
    #: address -> the CommuniGate password when it is readable, else None (encrypted or none)
    readable: dict[str, str | None] = field(default_factory=dict)
    aliases: dict[str, set[str]] = field(default_factory=dict)  # address -> alias addresses
    forwarding: dict[str, list[str]] = field(default_factory=dict)
    boxes: dict[str, dict[str, str]] = field(default_factory=dict)  # address -> role -> folder
    bad_aliases: list[str] = field(default_factory=list)  # Aliases.data entries that fit no shape

    @property
    def addresses(self) -> list[str]:
        return sorted(self.mail)


def _stamp(d: datetime) -> str:
    """asctime, as a BSD mbox From_ line carries it [IMPORT-MBOX]."""
    return d.strftime("%a %b ") + f"{d.day:2d}" + d.strftime(" %H:%M:%S %Y")


def _msg(n: int, subject: str, body: str, eol: bytes = b"\n", extra: str = "") -> bytes:
    head = (f"From: Sender {n} <s{n}@example.net>\nTo: someone@{MAIN}\nSubject: {subject}\n"
            f"Date: Wed, 01 Mar 2023 09:{n % 60:02d}:00 +0000\nMessage-ID: <fx-{n}@example.net>\n{extra}"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n\n")
    return (head + body).encode("utf-8").replace(b"\n", eol)


class _Writer:
    def __init__(self, base: Path):
        self.fx = Fixture(base)
        self.n = 0

    def file(self, rel: str, data: bytes | str) -> Path:
        p = self.fx.base / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        return p

    def when(self) -> datetime:
        self.n += 1
        return datetime(2023, 3, 1 + self.n % 27, 8 + self.n % 12, self.n % 60, 0, tzinfo=timezone.utc)

    def expect(self, address: str, folder: str, data: bytes, flags, when: datetime) -> None:
        self.fx.mail.setdefault(address, {}).setdefault(folder, []).append((data, frozenset(flags), when))

    def mbox(self, rel: str, address: str, folder: str, items, *, tail: bytes = b"\n") -> None:
        """A text mailbox: ``From <rp> (letters-UID) asctime`` separators [FACTS], each message followed by
        an empty line as in BSD mbox; ``items``: (bytes, letters, flags, uid, expected?)."""
        out = b""
        for i, (data, letters, flags, uid, counted) in enumerate(items):
            when = self.when()
            eol = b"\r\n" if data.endswith(b"\r\n") else b"\n"
            out += f"From <s@example.net> ({letters}-{uid}) {_stamp(when)}".encode() + eol + data
            last = i == len(items) - 1
            out += eol if not last else tail
            if counted:
                self.expect(address, folder, data, flags, when)
        self.fx.mail.setdefault(address, {}).setdefault(folder, [])
        self.file(rel, out)

    def mdir(self, rel: str, address: str, folder: str, items) -> None:
        """An ``.mdir`` directory: one file per message named ``<id>-<letters>-<yyyymmddhhmmss>`` [FACTS]."""
        (self.fx.base / rel).mkdir(parents=True, exist_ok=True)
        for msg_id, data, letters, flags in items:
            when = self.when()
            self.file(f"{rel}/{msg_id}-{letters}-{when:%Y%m%d%H%M%S}", data)
            self.expect(address, folder, data, flags, when)
        self.fx.mail.setdefault(address, {}).setdefault(folder, [])


UW_INTERNAL = (b"Date: Wed, 01 Mar 2023 08:00:00 +0000\nFrom: Mail System Internal Data <MAILER-DAEMON@old.host>\n"
               b"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nMessage-ID: <1677657600@old.host>\n"
               b"X-IMAP: 1677657600 0000000009 $Forwarded\nStatus: RO\n\n"
               b"This text is part of the internal format of your mail folder, and is not\na real message.\n")


def build(base: Path) -> Fixture:
    w = _Writer(Path(base))
    fx = w.fx
    S, A, F, D = "\\Seen", "\\Answered", "\\Flagged", "\\Deleted"

    # --- server settings [CPANEL] ------------------------------------------------------------------------
    w.file("Settings/Main.settings", "{\n AccountCacheSize = 100;\n CrashRecovery = YES;\n"
                                     f" DomainName = {MAIN};\n LicenseAccepted = #T07-11-2011_16:53:05;\n"
                                     " LogLevel = 3;\n MBOXSizeToIndex = 100M;\n}\n")
    # Server-wide account defaults: A-crpt, as in the real DomainDefault.settings.
    w.file("Settings/DomainDefault.settings", "{\n  AGradeLimit =  \"-1\";\n  AccountDefaults =  {\n"
                                              "    AccessModes =  All;\n    DefaultMailboxType =  TextMailbox;\n"
                                              "    PasswordEncryption =  A-crpt;\n    RulesAllowed =  \"Filter Only\";\n"
                                              "  };\n}\n")

    # --- main domain: Accounts/ ----------------------------------------------------------------------------
    # Its account template says clear: the domain's own setting beats the server default.
    w.file("Accounts/Settings/Template.settings", "{\n  PasswordEncryption = clear;\n  MaxAccountSize = 100M;\n}\n")
    alice = f"alice@{MAIN}"
    # Every escape of [GUIDE-DATA] and adjacent strings [CGON], CRLF line ends; \065 is decimal: "A".
    w.file("Accounts/alice.macnt/account.settings",
           "{\r\n  Password = \"Tea \\\"party\\\" \\\\ \\065t 4\";\r\n"
           "  RealName = \"Alice \"\r\n    \"Liddell\";\r\n"
           "  Notes = \"tab\\there\\ecr\\rlf\\nend\";\r\n"
           "  Created = #T01-03-2023_09:30:00;\r\n  Key = [QUJD];\r\n  Quota = #-1;\r\n"
           "  Rules = ((5, \"keep a copy\", ((Any, is, \"*\")), ((\"Mirror to\", \"alice@backup.example.org\"))),"
           " (9, out, (), ((\"Redirect to\", \"al@elsewhere.example.org\"), (\"Discard\"))));\r\n}\r\n")
    fx.readable[alice] = 'Tea "party" \\ At 4'
    fx.forwarding[alice] = ["alice@backup.example.org", "al@elsewhere.example.org"]
    # Groupware boxes renamed, named in account.info's "#Viewer" [MIGRATE-SH].
    w.file("Accounts/alice.macnt/account.info",
           "{\n  \"#Viewer\" = {CalendarBox = Kalender; ContactsBox = \"Adressbuch\"; TasksBox = Aufgaben; };\n"
           "  LastLogin = #T02-03-2023_10:00:00;\n  MailboxesSize = #12345;\n}\n")
    fx.boxes[alice] = {"CalendarBox": "Kalender", "ContactsBox": "Adressbuch", "TasksBox": "Aufgaben"}
    paris = _msg(1, "Postcard", "Dear Alice,\n\nFrom Paris (France) with love\nFrom Rome (S) with more\n\n"
                                "From here on, see you.\n")
    w.mbox("Accounts/alice.macnt/INBOX.mbox", alice, "INBOX", [
        (UW_INTERNAL, "R", (), 1, False),  # [IMPORT-MBOX]: not mail
        (paris, "S", {S}, 2, True),
        (_msg(2, "Twin A", "first with uid 7\n"), "SA", {S, A}, 7, True),
        (_msg(3, "Twin B", "second with the same uid 7\n"), "F", {F}, 7, True),  # duplicate UID
        (_msg(4, "Deleted", "marked\n"), "SD", {S, D}, 9, True),
        (_msg(5, "Last", "the file ends right after this line, without a newline"), "S", {S}, 10, True),
    ], tail=b"")
    w.mbox("Accounts/alice.macnt/Entw&APw-rfe.mbox", alice, "Entwürfe", [
        (_msg(6, "Entwurf", "Grüße aus Köln\n"), "", (), 1, True)])
    w.mbox("Accounts/alice.macnt/Q&-A.mbox", alice, "Q&A", [(_msg(7, "Q&A", "ampersand name\n"), "S", {S}, 1, True)])
    w.mbox("Accounts/alice.macnt/Work.mbox", alice, "Work", [(_msg(8, "Work", "work\n"), "S", {S}, 3, True)])
    # Work/Projects has no mailbox of its own (only Projects.folder) [GUIDE-ACCOUNTS]; 3 levels deep.
    w.mdir("Accounts/alice.macnt/Work.folder/Projects.folder/2024.mdir", alice, "Work/Projects/2024", [
        ("1001", _msg(9, "Q1 plan", "deep\n"), "SF", {S, F}),
        ("1002", _msg(10, "Q2 plan", "deep, CRLF\n", b"\r\n"), "_", set()),
    ])
    cal = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:ev-1\r\nDTSTART:20230310T090000Z\r\n"
           "SUMMARY:Tee\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    w.mbox("Accounts/alice.macnt/Kalender.mbox", alice, "Kalender", [
        (_msg(11, "Tee", cal.replace("\r\n", "\n"), b"\r\n", "X-Note: calendar item\n").replace(
            b"text/plain", b"text/calendar"), "S", {S}, 1, True)])
    w.mbox("Accounts/alice.macnt/Adressbuch.mbox", alice, "Adressbuch", [
        (_msg(12, "Hatter", "BEGIN:VCARD\nVERSION:3.0\nFN:Hatter\nEND:VCARD\n").replace(b"text/plain", b"text/vcard"),
         "S", {S}, 1, True)])
    w.mbox("Accounts/alice.macnt/Aufgaben.mbox", alice, "Aufgaben", [])

    # Single-mailbox account, CRLF text mailbox, value marked encrypted with byte 1 [FACTS].
    bob = f"bob@{MAIN}"
    w.file("Accounts/bob.settings", "{\n  Password = \"\\001c2VjcmV0LWhhc2g=\";\n  RealName = \"Bob Builder\";\n}\n")
    w.file("Accounts/bob.info", "{\n  LastLogin = #T01-02-2023_00:00:00;\n}\n")
    fx.readable[bob] = None
    w.mbox("Accounts/bob.mbox", bob, "INBOX", [
        (_msg(13, "CRLF one", "line\n", b"\r\n"), "S", {S}, 1, True),
        (_msg(14, "CRLF two", "From the start of a line\n", b"\r\n"), "", (), 2, True)])

    # An account in a storage sub-directory [GUIDE-ACCOUNTS]; a value starting with another control byte.
    carol = f"carol@{MAIN}"
    w.file("Accounts/a1.sub/carol.macnt/account.settings", "{ Password = \"\\002abc\"; RealName = Carol; }\n")
    fx.readable[carol] = None
    w.mbox("Accounts/a1.sub/carol.macnt/INBOX.mbox", carol, "INBOX", [(_msg(15, "Carol", "hi\n"), "S", {S}, 4, True)])

    # Aliases.data, account -> aliases (FACTS' shape).
    w.file("Accounts/Settings/Aliases.data", "{\n  alice = (\"a.liddell\", wonder);\n  carol = c;\n}\n")
    fx.aliases[alice] = {f"a.liddell@{MAIN}", f"wonder@{MAIN}"}
    fx.aliases[carol] = {f"c@{MAIN}"}

    # --- example.org: its account template says A-crpt ------------------------------------------------
    w.file("Domains/example.org/Settings/Template.settings", "{\n  PasswordEncryption = A-crpt;\n}\n")
    w.file("Domains/example.org/Settings/Domain.settings", "{\n  DomainAliases = (example.net);\n}\n")
    dave = "dave@example.org"
    w.file("Domains/example.org/dave.macnt/account.settings", "{\n  Password = looks-plain;\n  RealName = Dave;\n}\n")
    fx.readable[dave] = None  # inherited A-crpt: a hash, never a password
    w.mdir("Domains/example.org/dave.macnt/INBOX.mdir", dave, "INBOX", [
        ("77", _msg(16, "mdir", "one file\n"), "S", {S}),
        ("78", _msg(17, "mdir two", "no final newline"), "_", set()),
    ])
    erin = "erin@example.org"  # single-mailbox .mdir, no password at all
    w.file("Domains/example.org/erin.settings", "{ RealName = \"Erin \" \"O'Neil\"; }\n")
    fx.readable[erin] = None
    w.mdir("Domains/example.org/erin.mdir", erin, "INBOX", [("5", _msg(18, "erin", "single mdir\n"), "A", {A})])
    w.file("Domains/example.org/Settings/Aliases.data", "{ dave = (dj); }\n")
    fx.aliases[dave] = {"dj@example.org"}

    # --- shop.example.net: nothing of its own, so the server's A-crpt applies ------------------------------
    frank = "frank@shop.example.net"
    w.file("Domains/shop.example.net/frank.macnt/account.settings", "{ Password = frank-plain; }\n")
    fx.readable[frank] = None
    w.mbox("Domains/shop.example.net/frank.macnt/INBOX.mbox", frank, "INBOX",
           [(_msg(19, "frank", "hello\n"), "S", {S}, 1, True)])
    # Only a folder directory, no INBOX file: INBOX is empty (CommuniGate creates it on first access).
    w.mbox("Domains/shop.example.net/frank.macnt/Archiv.folder/2019.mbox", frank, "Archiv/2019",
           [(_msg(20, "old", "archived\n"), "S", {S}, 1, True)])
    gina = "gina@shop.example.net"  # her own setting says clear: it beats the inherited default
    w.file("Domains/shop.example.net/gina.macnt/account.settings",
           "{\n  Password = cp@nel-2;\n  PasswordEncryption = clear;\n  RealName = Gina;\n}\n")
    fx.readable[gina] = "cp@nel-2"
    w.mbox("Domains/shop.example.net/gina.macnt/INBOX.mbox", gina, "INBOX",
           [(_msg(21, "gina", "hi\n"), "", (), 1, True)])
    # Aliases.data the other way round: alias -> account; one entry fits neither shape.
    w.file("Domains/shop.example.net/Settings/Aliases.data",
           "{\n  sales = frank;\n  \"info\" = \"gina@shop.example.net\";\n  bogus = nobody;\n}\n")
    fx.aliases[frank] = {"sales@shop.example.net"}
    fx.aliases[gina] = {"info@shop.example.net"}
    fx.bad_aliases.append("bogus")
    for a in fx.mail:
        fx.mail[a].setdefault("INBOX", [])
    return fx
