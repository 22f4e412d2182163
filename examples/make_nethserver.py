#!/usr/bin/env python3
"""Write the NethServer samples the tests and docs use: an SME Server backup archive and a NethServer 7 tree.

Neither system can run here, so both are written from the documented layouts (docs/nethserver.md, FACTS.md),
deterministically: running this twice gives the same bytes (fixed times, sorted archive members).  The e-smith
databases are written as text on purpose: the generator must not depend on the reader it helps to test.

* ``sme-backup.tgz``: home/e-smith/db/{accounts,configuration,domains,spamassassin,fetchmail}, etc/shadow,
  users' homes with Maildirs under home/e-smith/files/users/, admin's Maildir in home/e-smith/Maildir, the
  shared-mailbox index.  Pseudonyms: plain, recursive, to a group, to admin, to an ibay, dangling, a loop,
  internal-only, and the reserved postmaster/everyone.  A folder name with a backslash.  Shared folders by
  short names: ACLs for a user, for anyone and for a deleted account, a subscription to Shared/bob/Team, the
  index entries.  Filter lists with
  *@domain and other wildcards.  fetchmail accounts (keep, no-keep, to a user who does not exist).
* ``nethserver7/``: var/lib/nethserver/db/{accounts,configuration,domains,getmail}, vmail/<u>@<domain>/Maildir
  with dovecot-acl files (full rights, root lines, groups), sieve scripts with Shared/<u>@<domain>/ paths, the
  shared-mailboxes.db dictionary, a public folder under vmail/vmail, a custom template, two larger messages and
  stale Maildir++ quota files (``maildirsize``) as NS7's Dovecot leaves them; the local account provider's
  ``sssd`` and ``slapd`` records.

``MESSAGES`` (returned by ``build_*``) lists, per user and folder, the message bytes the tests compare with.

Usage: python examples/make_nethserver.py [DEST]   (default: examples/ next to this file)
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MTIME = 1_700_000_000

SHA = "$6$saltsalt$"  # sample crypt hashes: well-formed, for no real password
HASHES = {u: SHA + (u * 20)[:86] for u in ("admin", "alice", "bob", "carol", "dave")}


def message(n: int, sender: str, to: str, subject: str, lines: int = 0) -> bytes:
    """A sample message; ``lines`` adds that many 64-byte body lines (a report, an attachment's size)."""
    body = "".join(f"line {i:05d} of sample message {n}: {'x' * 26}\r\n" for i in range(lines))
    return (f"Return-Path: <{sender}>\r\nFrom: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 14 Nov 2023 22:13:{n % 60:02d} +0000\r\nMessage-ID: <sample-{n}@example.com>\r\n"
            f"\r\nSample message {n}: {subject}.\r\n{body}").encode()


def _esmith(records: list[tuple[str, str, dict[str, str]]]) -> str:
    out = ["# sample e-smith database written by examples/make_nethserver.py\n"]
    for key, typ, props in records:
        out.append(key + "=" + "|".join([typ] + [x for k in sorted(props) for x in (k, props[k])]) + "\n")
    return "".join(out)


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)


def _maildir(root: Path, folders: dict[str, list[tuple[bytes, str]]]) -> dict[str, list[bytes]]:
    """folders: Maildir++ directory name ("" = INBOX) -> [(bytes, info flags)]."""
    out = {}
    n = 0
    for dirname, msgs in folders.items():
        d = root / dirname if dirname else root
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if dirname:
            _write(d / "maildirfolder", b"")
        for body, info in msgs:
            n += 1
            _write(d / "cur" / f"{MTIME + n}.M{n}P100Q{n}.sample:2,{info}", body)
        out[dirname] = [b for b, _ in msgs]
    return out


# -- SME Server backup --------------------------------------------------------------------------------


def build_sme_tree(root: Path) -> dict[str, dict[str, list[bytes]]]:
    db = root / "home/e-smith/db"
    _write(db / "configuration", _esmith([
        ("DomainName", "example.com", {}),
        ("SystemName", "mail", {}),
        ("SMTPSmartHost", "smtp.isp.example:587", {}),
        ("SMTPAuthProxy", "service", {"Userid": "relayuser", "Passwd": "relay-secret", "status": "enabled"}),
        ("LocalIP", "192.168.1.1", {}),
        ("GatewayIP", "192.168.1.254", {}),
        ("SystemMode", "servergateway", {}),
        ("UnsavedChanges", "no", {}),
        ("bootstrap-console", "service", {"Run": "no"}),
        ("sysconfig", "configuration", {"ReleaseVersion": "8.2"}),
        ("smtpd", "service", {"TCPPort": "25", "status": "enabled"}),
        ("imap", "service", {"TCPPort": "143", "status": "enabled"}),
    ]))
    _write(db / "accounts", _esmith([
        ("admin", "user", {"FirstName": "Local", "LastName": "Administrator", "PasswordSet": "yes"}),
        ("alice", "user", {"FirstName": "Alice", "LastName": "Smith", "EmailForward": "local",
                           "PasswordSet": "yes", "Uid": "5001", "Gid": "5001", "Phone": "555-0101"}),
        ("bob", "user", {"FirstName": "Bob", "LastName": "Jones", "EmailForward": "both",
                         "ForwardAddress": "bob@elsewhere.example", "PasswordSet": "yes", "Uid": "5002",
                         "Gid": "5002"}),
        ("carol", "user", {"FirstName": "Carol", "LastName": "White", "EmailForward": "forward",
                           "ForwardAddress": "carol@else.example", "PasswordSet": "no", "Uid": "5003",
                           "Gid": "5003"}),
        ("sales", "group", {"Description": "Sales", "Members": "alice,bob", "Gid": "6001"}),
        ("staff", "group", {"Description": "Everybody", "Members": "sales,carol,ghostuser", "Gid": "6002"}),
        ("shared", "ibay", {"Name": "Shared files", "Group": "staff"}),
        ("alice.smith", "pseudonym", {"Account": "alice"}),
        ("alice_smith", "pseudonym", {"Account": "alice"}),
        ("a.smith", "pseudonym", {"Account": "alice.smith"}),
        ("as", "pseudonym", {"Account": "a.smith"}),
        ("info", "pseudonym", {"Account": "sales"}),
        ("team", "pseudonym", {"Account": "staff"}),
        ("ghost", "pseudonym", {"Account": "nobody"}),
        ("boss", "pseudonym", {"Account": "admin"}),
        ("docs", "pseudonym", {"Account": "shared"}),
        ("loop1", "pseudonym", {"Account": "loop2"}),
        ("loop2", "pseudonym", {"Account": "loop1"}),
        ("helpdesk", "pseudonym", {"Account": "bob", "Visible": "internal"}),
        ("postmaster", "pseudonym", {"Account": "admin"}),
        ("everyone", "pseudonym", {"Account": "staff"}),
        ("sales@example.org", "pseudonym", {"Account": "sales"}),
    ]))
    _write(db / "domains", _esmith([
        ("example.com", "domain", {"Content": "Primary", "Description": "Main domain", "Nameservers": "internal"}),
        ("example.org", "domain", {"Content": "Primary", "Description": "Second domain", "Nameservers": "internal"}),
    ]))
    _write(db / "spamassassin", _esmith([
        ("wbl.global", "wbl", {"*@friends.example": "White", "boss@partner.example": "White",
                               "*@spam.example": "Black", "*spam*": "Black", "bad?.example": "Black",
                               "junk.example": "Black", "x@y.example": "Grey"}),
        ("wbl.global_to", "wbl", {"alice@example.com": "White", "*@example.org": "White",
                                  "x*@example.com": "White", "bob@example.com": "Black"}),
    ]))
    _write(db / "fetchmail", _esmith([
        ("alice-isp", "fetchmail", {"account": "alice", "active": "YES", "nokeep": "NO",
                                    "password": "isp-secret", "popserver": "pop.isp.example",
                                    "username": "alice.isp"}),
        ("carol-old", "fetchmail", {"account": "carol", "active": "NO", "nokeep": "YES",
                                    "password": "old-secret", "popserver": "pop.old.example",
                                    "username": "carol"}),
        ("zed-lost", "fetchmail", {"account": "zed", "active": "YES", "nokeep": "NO",
                                   "password": "zed-secret", "popserver": "pop.zed.example",
                                   "username": "zed"}),
    ]))
    _write(root / "etc/shadow",
           "root:*:19000:0:99999:7:::\n"
           + "".join(f"{u}:{HASHES[u]}:19000:0:99999:7:::\n" for u in ("admin", "alice", "bob"))
           + "carol:!!:19000:0:99999:7:::\n", 0o600)
    users = root / "home/e-smith/files/users"
    msgs: dict[str, dict[str, list[bytes]]] = {}
    msgs["alice"] = _maildir(users / "alice/Maildir", {
        "": [(message(1, "bob@example.com", "alice@example.com", "Hello"), "S"),
             (message(2, "news@list.example", "alice@example.com", "News"), "")],
        ".Sent": [(message(3, "alice@example.com", "bob@example.com", "Re: Hello"), "S")],
        ".Work\\Projects": [(message(4, "carol@example.com", "alice@example.com", "Plan"), "FS")],
        ".Archive.2020": [(message(5, "old@example.com", "alice@example.com", "Old"), "S")],
    })
    # zed: an account deleted on SME whose grant stayed behind
    _write(users / "alice/Maildir/.Work\\Projects/dovecot-acl", "owner lrwstipekxa\nuser=bob lr\nuser=zed lr\n")
    _write(users / "alice/Maildir/subscriptions", "V\t2\n\nINBOX\nSent\nShared/bob/Team\n")
    _write(users / "alice/sieve/main.sieve", 'require "fileinto";\nif header :contains "subject" "Plan" '
                                             '{ fileinto "Work\\\\Projects"; }\n')
    os.symlink("sieve/main.sieve", users / "alice/.dovecot.sieve")
    _write(users / "alice/notes.txt", "Alice's notes\n")
    msgs["bob"] = _maildir(users / "bob/Maildir", {
        "": [(message(6, "alice@example.com", "bob@example.com", "Team"), "S")],
        ".Team": [(message(7, "alice@example.com", "bob@example.com", "Shared plan"), "")],
    })
    _write(users / "bob/Maildir/.Team/dovecot-acl", "owner lrwstipekxa\nuser=alice lrwstipe\n")
    msgs["carol"] = _maildir(users / "carol/Maildir", {
        "": [(message(8, "x@example.net", "carol@example.com", "Forwarded"), "")],
        ".Lists": [(message(10, "list@lists.example", "carol@example.com", "Weekly digest"), "S")],
    })
    _write(users / "carol/Maildir/.Lists/dovecot-acl", "owner lrwstipekxa\nanyone lr\n")
    msgs["admin"] = _maildir(root / "home/e-smith/Maildir", {
        "": [(message(9, "root@mail.example.com", "admin@example.com", "Daily report"), "")],
    })
    _write(root / "home/e-smith/.bash_profile", "# admin profile\n")
    _write(root / "etc/dovecot/sharedmailbox/dict.db", "shared/shared-boxes/user/alice/bob\n1\n"
                                                       "shared/shared-boxes/user/bob/alice\n1\n"
                                                       "shared/shared-boxes/anyone/carol\n1\n"
                                                       "shared/shared-boxes/user/zed/alice\n1\n")
    return msgs


def build_sme_archive(dest: Path) -> dict[str, dict[str, list[bytes]]]:
    work = dest.parent / (dest.name + ".work")
    if work.exists():
        shutil.rmtree(work)
    msgs = build_sme_tree(work)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(work.rglob("*"), key=lambda p: str(p.relative_to(work))):
            info = tf.gettarinfo(str(p), arcname=str(p.relative_to(work)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = MTIME, 0, 0, "root", "root"
            if info.isfile():
                with open(p, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)
    import gzip

    with open(dest, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", mtime=MTIME, filename="") as gz:
            gz.write(buf.getvalue())
    shutil.rmtree(work)
    return msgs


# -- NethServer 7 tree --------------------------------------------------------------------------------


def build_ns7_tree(root: Path) -> dict[str, dict[str, list[bytes]]]:
    if root.exists():
        shutil.rmtree(root)
    db = root / "var/lib/nethserver/db"
    _write(db / "configuration", _esmith([
        ("DomainName", "example.com", {}),
        ("SystemName", "mail", {}),
        ("postfix", "service", {"SmartHostStatus": "enabled", "SmartHostName": "relay.isp.example",
                                "SmartHostPort": "587", "SmartHostUsername": "relay",
                                "SmartHostPassword": "relay-secret", "SmartHostTlsStatus": "enabled",
                                "SmartHostAuthStatus": "enabled", "AlwaysBccStatus": "enabled",
                                "AlwaysBccAddress": "archive@example.com", "status": "enabled"}),
        ("dovecot", "service", {"QuotaStatus": "enabled", "QuotaDefaultSize": "20", "SharedMailboxesStatus":
                                "enabled", "status": "enabled"}),
        ("getmail", "service", {"status": "enabled"}),
        # the local account provider (OpenLDAP), as NS7's sssd record names it
        ("sssd", "service", {"Provider": "ldap", "LdapURI": "ldap://127.0.0.1", "BaseDN": "dc=directory,dc=nh",
                             "status": "enabled"}),
        ("slapd", "service", {"status": "enabled"}),
    ]))
    _write(db / "accounts", _esmith([
        ("alice@example.com", "user", {"MailQuotaType": "custom", "MailQuotaCustom": "15",
                                       "MailForwardStatus": "disabled", "MailStatus": "enabled"}),
        ("bob@example.com", "user", {"MailQuotaType": "custom", "MailQuotaCustom": "250",
                                     "MailForwardStatus": "enabled", "MailForwardAddress": "bob@elsewhere.example",
                                     "MailForwardKeepMessageCopy": "yes", "MailStatus": "enabled"}),
        ("carol@example.com", "user", {"MailQuotaType": "custom", "MailQuotaCustom": "201",
                                       "MailStatus": "enabled"}),
        ("dave@example.org", "user", {"MailQuotaType": "default", "MailStatus": "enabled"}),
        ("info@example.com", "pseudonym", {"Account": "alice@example.com,bob@example.com", "Access": "public"}),
        ("sales@", "pseudonym", {"Account": "info@example.com", "Access": "public"}),
        ("old@example.com", "pseudonym", {"Account": "gone@example.com", "Access": "private"}),
    ]))
    _write(db / "domains", _esmith([
        ("example.com", "domain", {"TransportType": "LocalDelivery", "Description": "Main"}),
        ("example.org", "domain", {"TransportType": "LocalDelivery", "Description": "Second"}),
    ]))
    _write(db / "getmail", _esmith([
        ("alice@isp.example", "getmail", {"Account": "alice@example.com", "Delete": "-1", "Password": "imap-secret",
                                          "Retriever": "SimpleIMAPSSLRetriever", "Server": "imap.isp.example",
                                          "Time": "15", "Username": "alice", "status": "enabled"}),
        ("bob@old.example", "getmail", {"Account": "bob@example.com", "Delete": "0", "Password": "pop-secret",
                                        "Retriever": "SimplePOP3Retriever", "Server": "pop.old.example",
                                        "Time": "30", "Username": "bob", "status": "enabled"}),
        ("carol@mail.example", "getmail", {"Account": "carol@example.com", "Delete": "7", "Password": "c-secret",
                                           "Retriever": "SimpleIMAPRetriever", "Server": "mail.example",
                                           "Time": "60", "Username": "carol", "status": "disabled"}),
    ]))
    vmail = root / "var/lib/nethserver/vmail"
    msgs: dict[str, dict[str, list[bytes]]] = {}
    msgs["alice@example.com"] = _maildir(vmail / "alice@example.com/Maildir", {
        "": [(message(11, "bob@example.com", "alice@example.com", "Hello"), "S"),
             (message(12, "news@list.example", "alice@example.com", "News"), "")],
        ".Sent": [(message(13, "alice@example.com", "bob@example.com", "Re"), "S")],
        ".Work\\5cProjects": [(message(14, "carol@example.com", "alice@example.com", "Plan"), "FS"),
                              (message(20, "reports@example.com", "alice@example.com", "Quarterly report",
                                       lines=400), "S")],
    })
    _write(vmail / "alice@example.com/Maildir/dovecot-acl", "owner lrwstipekxa\nuser=root akeilprwts\n")
    _write(vmail / "alice@example.com/Maildir/.Work\\5cProjects/dovecot-acl",
           "owner lrwstipekxa\nuser=bob@example.com akeilprwts\ngroup=sales@example.com lrs\n"
           "user=root akeilprwts\n")
    _write(vmail / "alice@example.com/sieve/main.sieve",
           'require "fileinto";\nif header :contains "subject" "Team" { fileinto "Shared/bob@example.com/Team"; }\n')
    os.symlink("sieve/main.sieve", vmail / "alice@example.com/.dovecot.sieve")
    msgs["bob@example.com"] = _maildir(vmail / "bob@example.com/Maildir", {
        "": [(message(15, "alice@example.com", "bob@example.com", "Team"), "S")],
        ".Team": [(message(16, "alice@example.com", "bob@example.com", "Shared plan"), ""),
                  (message(21, "carol@example.com", "bob@example.com", "Team budget", lines=150), "S")],
    })
    _write(vmail / "bob@example.com/Maildir/.Team/dovecot-acl",
           "owner lrwstipekxa\nuser=alice@example.com akeilprwts\nanyone lr\n")
    msgs["carol@example.com"] = _maildir(vmail / "carol@example.com/Maildir", {
        "": [(message(17, "x@example.net", "carol@example.com", "Quota"), "")],
    })
    msgs["dave@example.org"] = _maildir(vmail / "dave@example.org/Maildir", {
        "": [(message(18, "x@example.net", "dave@example.org", "Other domain"), "")],
    })
    msgs["vmail"] = _maildir(vmail / "vmail/Maildir", {
        "": [],
        ".Public": [(message(19, "alice@example.com", "all@example.com", "Announcement"), "")],
    })
    _write(vmail / "vmail/Maildir/.Public/dovecot-acl", "anyone lrs\nuser=alice@example.com akeilprwts\n")
    # NS7's Dovecot keeps Maildir++ quota: a maildirsize per Maildir, here stale (mail was removed by hand
    # after NS7 wrote it), with the limit NS7 had for the user; NS8 must not believe it
    _write(vmail / "alice@example.com/Maildir/maildirsize", "1610612736S\n52428800 120\n-1024 -1\n")
    _write(vmail / "bob@example.com/Maildir/maildirsize", "26843545600S\n7340032 35\n")
    _write(vmail / "shared-mailboxes.db", "shared/shared-boxes/user/alice@example.com/bob@example.com\n1\n"
                                          "shared/shared-boxes/user/bob@example.com/alice@example.com\n1\n"
                                          "shared/shared-boxes/anyone/vmail\n1\n")
    _write(root / "etc/e-smith/templates-custom/etc/postfix/main.cf/95custom", "# site-specific postfix tweak\n")
    return msgs


def main(argv: list[str]) -> int:
    dest = Path(argv[1]) if len(argv) > 1 else HERE
    build_sme_archive(dest / "sme-backup.tgz")
    build_ns7_tree(dest / "nethserver7")
    print(f"wrote {dest / 'sme-backup.tgz'} and {dest / 'nethserver7'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
