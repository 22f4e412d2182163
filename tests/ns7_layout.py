"""A NethServer 7 mail server laid out as NethServer's own packages lay it out, for the tests.

Written by hand from the vendor's public files, not from mailmigrate's sample generator; each shape says
where it comes from:

* [mail-api] NethServer/nethserver-mail ``api/mailbox/create``: a public folder NAME gets the pseudonym
  ``NAME@`` (any domain) with ``Account=vmail+NAME``, ``Access=public`` and the description "Created
  automatically for public folder NAME"; ``api/mailbox/update``: ``MailQuotaCustom`` is ``unlimited`` or
  tenths of a GiB; ``api/send/create`` + ``validate``: ``smarthosts`` records keyed ``user@domain``
  (type ``sender``) or ``@domain`` (type ``recipient``) with ``Host``, ``Port``, ``TlsStatus``,
  ``Username``, ``Password``, ``status``.
* [ns8-import] NethServer/ns8-mail ``imageroot/actions/import-module/*``: user and group records keyed
  ``name@domain`` with ``MailStatus``, ``MailAccess``, ``MailQuotaType``/``MailQuotaCustom``,
  ``MailForward*``, ``MailSpamRetentionStatus``/``MailSpamRetentionTime`` (``30d``); pseudonyms with
  ``Account`` (comma list; ``root`` is a destination), ``Access``, ``Description``; ``domains`` records with
  ``TransportType`` and ``Description``; the props of ``postfix`` (``SmartHost*``, ``AccessBypassList``,
  ``AccessPolicies``, ``SenderValidation``, ``DynamicGroupAlias``, ``AlwaysBcc*``), ``dovecot``
  (``QuotaStatus``, ``QuotaDefaultSize``, ``SpamFolder``, ``SpamRetentionTime``, ``SharedSeen``), ``rspamd``
  (``SpamTag2Level``, ``SpamKillLevel``, ``SpamGreyLevel``, ``SpamSubjectPrefix*``, ``SenderWhiteList``,
  ``RecipientWhiteList``, ``SpamCheckStatus``, ``VirusCheckStatus``) and ``clamd``.
* [ns8-migration] NethServer/nethserver-ns8-migration ``apps/nethserver-mail/migrate``: the vmail tree
  ``/var/lib/nethserver/vmail/`` (one home per ``user@domain``, ``vmail`` for public folders, ``root``),
  the DKIM pair ``/etc/opendkim/keys/default.{private,txt}``, rspamd's Redis dump
  ``/var/lib/redis/rspamd/dump.rdb``.
* [dovecot-conf] nethserver-mail ``templates/etc/dovecot/dovecot.conf/40namespaces``: ``Shared/%n@DOMAIN/``
  with ``INDEXPVT=~/Maildir/shared/%u`` (per-user read state of another user's folders, unless
  ``SharedSeen``), ``Public/`` over ``vmail/vmail/Maildir`` with ``INDEXPVT=~/Maildir/public``; the
  shared-mailbox dictionary ``vmail/shared-mailboxes.db``; listescape.
* [dovecot-maildir] Dovecot's documentation of Maildir (wiki "MailboxFormat/Maildir"): ``dovecot-uidlist``
  version 3, header ``3 V<uidvalidity> N<nextuid> G<guid>``, one line per message ``<uid> [ext...]
  :<file name>`` (ext ``P`` = POP3 UIDL, ``W`` = virtual size); ``dovecot-keywords`` lines ``<index>
  <keyword>``, keyword ``index`` as letter ``a``+index in the file name's flags.
"""

from __future__ import annotations

from pathlib import Path

DOMAIN = "example.com"

# [ns8-import] the records each import-module script reads
ACCOUNTS = """\
alice@example.com=user|MailForwardStatus|disabled|MailQuotaCustom|unlimited|MailQuotaType|custom|MailSpamRetentionStatus|enabled|MailSpamRetentionTime|60d|MailStatus|enabled
bob@example.com=user|MailQuotaType|default|MailStatus|disabled
carol@example.com=user|MailAccess|private|MailQuotaCustom|20|MailQuotaType|custom|MailStatus|enabled
sales@example.com=group|MailAccess|public|MailStatus|enabled
board@example.com=group|MailAccess|private|MailStatus|enabled
oldteam@example.com=group|MailStatus|disabled
support@=pseudonym|Access|public|Account|vmail+support|Description|Created automatically for public folder support
orders@example.com=pseudonym|Access|public|Account|sales@example.com
abuse@example.com=pseudonym|Access|public|Account|root
team@example.com=pseudonym|Access|private|Account|alice@example.com,partner@partner.example
info@example.com=pseudonym|Access|public|Account|team@example.com,vmail+support
"""

CONFIGURATION = """\
DomainName=example.com
SystemName=mail
clamd=service|OfficialSignatures|enabled|UnofficialSignaturesRating|low|status|enabled
dovecot=service|QuotaDefaultSize|20|QuotaStatus|enabled|SharedMailboxesStatus|enabled|SharedSeen|disabled|SpamFolder|Spam|SpamRetentionTime|30d|status|enabled
postfix=service|AccessBypassList|192.0.2.10,198.51.100.0/24|AccessPolicies|smtpauth|AlwaysBccStatus|disabled|DynamicGroupAlias|enabled|SenderValidation|enabled|SmartHostName|relay.isp.example|SmartHostPassword|relay-secret|SmartHostPort|587|SmartHostStatus|enabled|SmartHostTlsStatus|enabled|SmartHostUsername|relayuser|status|enabled
rspamd=service|RecipientWhiteList|ceo@example.com|SenderBlackList|spammer.example|SenderWhiteList|friend@partner.example,partner.example|SpamCheckStatus|enabled|SpamGreyLevel|4|SpamKillLevel|12|SpamSubjectPrefixStatus|enabled|SpamSubjectPrefixString|[SPAM]|SpamTag2Level|5.5|VirusCheckStatus|enabled|status|enabled
"""

DOMAINS = """\
example.com=domain|Description|Main domain|TransportType|LocalDelivery
relay.example=domain|Description|Relayed elsewhere|RelayHost|10.0.0.5|RelayPort|25|TransportType|Relay
"""

# [mail-api] api/send/create
SMARTHOSTS = """\
ceo@example.com=sender|Host|smtp.ceo-relay.example|Password|ceo-secret|Port|465|TlsStatus|enabled|Username|ceo|status|enabled
@partner.example=recipient|Host|mx.partner.example|Password||Port|25|TlsStatus|disabled|Username||status|enabled
"""

# [getmail-migrate] NethServer/nethserver-mail getmail/.../nethserver-getmail-migrate: getmail records keyed by
# the remote address, Retriever (Simple{POP3,IMAP}[SSL]Retriever), Server, Username, Password, Account
# (user@domain), Delete, Time (minutes), status
GETMAIL = """\
alice@isp.example=getmail|Account|alice@example.com|Delete|-1|Password|imap-secret|Retriever|SimpleIMAPSSLRetriever|Server|imap.isp.example|SpamCheck|enabled|Time|15|Username|alice.isp|VirusCheck|enabled|status|enabled
carol@old.example=getmail|Account|carol@example.com|Delete|7|Password|pop-secret|Retriever|SimplePOP3Retriever|Server|pop.old.example|SpamCheck|enabled|Time|30|Username|carol|VirusCheck|enabled|status|enabled
"""

DKIM_PRIVATE = b"-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAtest\n-----END PRIVATE KEY-----\n"
DKIM_TXT = b'default._domainkey\tIN\tTXT\t( "v=DKIM1; k=rsa; "\n\t  "p=MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBALtest" )\n'
BAYES = b"REDIS0009\xfa\tredis-ver\x055.0.3\xfe\x00\xfb\x01\x00\x00\x03BAYES_SPAM\x01\xff" + bytes(range(256))


def message(n: int, sender: str, to: str, subject: str) -> bytes:
    return (f"Return-Path: <{sender}>\r\nFrom: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <ns7-{n}@{DOMAIN}>\r\nDate: Tue, 14 Nov 2023 10:{n % 60:02d}:00 +0000\r\n\r\n"
            f"Body of message {n}.\r\n").encode()


# (home, folder dir, uidvalidity, nextuid, [(uid, file name, extensions, body)], keywords, mail in new/)
# [dovecot-maildir] UIDs with gaps (deleted messages), NEXTUID above the last, a POP3 UIDL kept by an earlier
# migration (P), a keyword, and mail in new/ that no Dovecot has seen yet (it gets NEXTUID on either side)
FOLDERS = [
    ("alice@example.com", "", 1600000000, 41,
     [(7, "1600000007.M1P7Q1.ns7:2,S", "P00a1b2c3", message(1, "x@partner.example", "alice@example.com", "Seven")),
      (12, "1600000012.M2P12Q1.ns7:2,Sa", "", message(2, "y@partner.example", "alice@example.com", "Twelve")),
      (40, "1600000040.M3P40Q1.ns7:2,", "", message(3, "z@partner.example", "alice@example.com", "Forty"))],
     ["$Label1"], [("1600000050.M5P50Q1.ns7", message(5, "n@partner.example", "alice@example.com", "Fresh"))]),
    ("alice@example.com", ".Work", 1600000100, 5,
     [(1, "1600000101.M1P101Q1.ns7:2,", "", message(11, "w@partner.example", "alice@example.com", "Work one")),
      (4, "1600000104.M4P101Q1.ns7:2,F", "", message(14, "w@partner.example", "alice@example.com", "Work four"))],
     [], []),
    ("bob@example.com", "", 1600000200, 3,
     [(2, "1600000202.M2P200Q1.ns7:2,S", "", message(21, "b@partner.example", "bob@example.com", "Bob's"))], [], []),
    ("carol@example.com", "", 1600000300, 2,
     [(1, "1600000301.M1P300Q1.ns7:2,", "", message(31, "c@partner.example", "carol@example.com", "Carol's"))],
     [], []),
    ("root", "", 1600000400, 9,
     [(8, "1600000408.M8P400Q1.ns7:2,", "", message(41, "cron@mail.example.com", "root", "Cron"))], [], []),
    ("vmail", ".support", 1600000500, 6,
     [(3, "1600000503.M3P500Q1.ns7:2,", "", message(53, "cust@partner.example", "support@example.com", "Help")),
      (5, "1600000505.M5P500Q1.ns7:2,", "", message(55, "cust@partner.example", "support@example.com", "More"))],
     [], []),
]

# [dovecot-conf] alice shares Work with carol; support is public, carol may read it
ACLS = {
    ("alice@example.com", ".Work"): "user=carol@example.com lrws\n",
    ("vmail", ".support"): "user=carol@example.com lrws\nuser=alice@example.com akeilprwts\n",
}
SHARED_INDEX = b"shared/shared-boxes/user/carol@example.com/alice@example.com\n1\nshared/shared-boxes/anyone/vmail\n1\n"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "root": "root-pw", "vmail": "vmail-pw"}


def uidlist(validity: int, nextuid: int, records) -> bytes:
    lines = [f"3 V{validity} N{nextuid} G{validity:08x}0000000000000000{nextuid:08x}"]
    for uid, name, ext, _body in records:
        base = name.split(":", 1)[0]
        lines.append(f"{uid} {ext + ' ' if ext else ''}:{base}")
    return ("\n".join(lines) + "\n").encode()


def write_esmith(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def build(root: Path) -> Path:
    """Write the NS7 tree under ``root`` (its ``/``); returns root."""
    db = root / "var/lib/nethserver/db"
    write_esmith(db / "accounts", ACCOUNTS)
    write_esmith(db / "configuration", CONFIGURATION)
    write_esmith(db / "domains", DOMAINS)
    write_esmith(db / "smarthosts", SMARTHOSTS)
    write_esmith(db / "getmail", GETMAIL)
    vmail = root / "var/lib/nethserver/vmail"
    for home, folder, validity, nextuid, records, keywords, fresh in FOLDERS:
        d = vmail / home / "Maildir" / folder
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder:
            (d / "maildirfolder").write_bytes(b"")
        for _uid, name, _ext, body in records:
            (d / "cur" / name).write_bytes(body)
        for name, body in fresh:
            (d / "new" / name).write_bytes(body)
        (d / "dovecot-uidlist").write_bytes(uidlist(validity, nextuid, records))
        if keywords:
            (d / "dovecot-keywords").write_bytes("".join(f"{i} {k}\n" for i, k in enumerate(keywords)).encode())
    for (home, folder), text in ACLS.items():
        (vmail / home / "Maildir" / folder / "dovecot-acl").write_text(text)
    (vmail / "alice@example.com/Maildir/subscriptions").write_bytes(b"Work\n")
    (vmail / "shared-mailboxes.db").write_bytes(SHARED_INDEX)
    keys = root / "etc/opendkim/keys"
    keys.mkdir(parents=True)
    (keys / "default.private").write_bytes(DKIM_PRIVATE)
    (keys / "default.txt").write_bytes(DKIM_TXT)
    (root / "var/lib/redis/rspamd").mkdir(parents=True)
    (root / "var/lib/redis/rspamd/dump.rdb").write_bytes(BAYES)
    return root
