"""A CommuniGate Pro account read straight from the server's base directory (read-only source).

cg2kms runs on the CommuniGate machine with the server stopped and reads its files; so does this store,
which is why it needs no password and no running server.  Layout (docs/communigate.md):

* main domain accounts under ``Accounts/``, each other domain under ``Domains/<domain>/``; accounts may
  also sit in sub-directories of a domain directory (``*.sub`` storage buckets), which are walked;
* multi-mailbox account: ``NAME.macnt/`` with ``account.settings``, ``account.info`` and mailboxes
  ``INBOX.mbox``, ``Work.mbox``, ``Work.folder/Projects.mdir/``... (file names in modified UTF-7);
* single-mailbox account: ``NAME.mbox`` (or ``NAME.mdir``), ``NAME.settings``, ``NAME.info`` side by side.

Symbolic links are never followed (issue 19): a user who can plant files in a mailbox directory must not
be able to make a migration running as root read ``/etc/shadow`` into their mail.  Mailbox files,
``.mdir`` message files and ``.folder``/``.macnt`` directories are checked with ``lstat`` and opened with
``O_NOFOLLOW``; each link found is listed as a message of the folder it stands in (key ``symlink:<path>``)
that :meth:`CommuniGateStore.fetch` reports as not copied, naming it, so the report and the overview both
show it and the rest of the folder still migrates.

Keys: a text mailbox message's key is its CommuniGate UID (decimal) when the separator carries one, else
``<sha256>:<occurrence>`` of its bytes; an ``.mdir`` message's key is the id part of its file name.
CommuniGate keeps UIDVALIDITY inside its own index files, which we do not read, so every folder reports the
constant :data:`VALIDITY`; the keys stay stable as long as the store is not rebuilt by CommuniGate.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ConfigError, FolderFailed, FormatError
from ..formats import communigate_mailbox as fmt
from ..formats import communigate_settings as cgs
from ..formats import mutf7
from ..formats.specialuse import guess_special_use
from ..model import INBOX, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta
from .base import Store
from .nofollow import LINK_KEY_PREFIX, link_key, link_reason, open_nofollow  # noqa: F401 (re-exported)

log = logging.getLogger("mailmigrate.stores.communigate")

VALIDITY = 1
MAIN_DOMAIN_DIR = "Accounts"
OTHER_DOMAINS_DIR = "Domains"
#: The key of Settings/Main.settings naming the main domain (seen in a real file: communigate-cpanel-adaptor's
#: CGP/Settings/Main.settings has ``DomainName = cpanel.communigate.com;``).
MAIN_DOMAIN_KEY = "DomainName"
_SKIP_DIRS = {"Settings", "LISTS", "Queue", "Submitted", "SystemLogs"}


@dataclass(frozen=True)
class AccountLocation:
    """Where one account's files are."""

    name: str
    domain: str
    kind: str  # "multi" (.macnt) or "single"
    root: Path  # the .macnt directory, or the directory holding the single-mailbox files
    settings_path: Path
    info_path: Path
    inbox: Path | None  # single-mailbox accounts only: NAME.mbox or NAME.mdir

    def describe(self) -> str:
        return f"{self.name}@{self.domain}"


# --- layout ----------------------------------------------------------------------------------------------


def main_domain_name(base_path, primary_domain: str | None = None) -> str:
    """The main domain's name: Settings/Main.settings when it says, else ``primary_domain`` (cg2kms's
    -primaryDomain), else this machine's host name (cg2kms's default)."""
    main = Path(base_path) / "Settings" / "Main.settings"
    if main.is_file():
        try:
            value = cgs.parse_file(main)
        except FormatError as e:
            log.warning("%s; the main domain name comes from elsewhere", e)
            value = None
        if isinstance(value, dict):
            name = value.get(MAIN_DOMAIN_KEY)
            if isinstance(name, str) and name:
                return name.lower()
    return (primary_domain or socket.gethostname()).lower()


def domain_dirs(base_path, primary_domain: str | None = None) -> dict[str, Path]:
    """Every domain's directory, the main domain first."""
    base = Path(base_path)
    out: dict[str, Path] = {}
    if (base / MAIN_DOMAIN_DIR).is_dir():
        out[main_domain_name(base, primary_domain)] = base / MAIN_DOMAIN_DIR
    doms = base / OTHER_DOMAINS_DIR
    if doms.is_dir():
        for d in sorted(doms.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                out.setdefault(d.name.lower(), d)
    return out


def base_domain_dirs(base_path, primary_domain: str | None = None) -> dict[str, Path]:
    """:func:`domain_dirs` of a base directory a user named: a path that is missing, or that holds no
    domain (a typo, a parent directory), is refused with a reason instead of reading as an empty store."""
    base = Path(base_path)
    if not base.is_dir():
        raise ConfigError(f"CommuniGate base directory {base} does not exist")
    dirs = domain_dirs(base, primary_domain)
    if not dirs:
        raise ConfigError(f"{base} is not a CommuniGate Pro base directory (no Accounts/ or Domains/)")
    return dirs


def _accounts_in(domain: str, d: Path, out: dict[str, AccountLocation]) -> None:
    try:
        entries = sorted(d.iterdir())
    except OSError as e:
        log.warning("cannot list %s: %s", d, e)
        return
    singles: set[str] = set()
    for e in entries:
        name = e.name
        if name.startswith("."):
            continue
        link = e.is_symlink()
        if name.endswith(".macnt") and (link or e.is_dir()):
            # A linked account directory is listed (so its link is reported), never entered.
            acc = name[: -len(".macnt")]
            out.setdefault(acc.lower(), AccountLocation(acc, domain, "multi", e, e / "account.settings",
                                                        e / "account.info", None))
        elif name.endswith((".mbox", ".mdir", ".settings")) and (link or e.is_file() or name.endswith(".mdir")):
            singles.add(name.rsplit(".", 1)[0])
        elif link:
            log.warning("%s is a symbolic link: not followed, nothing under it is read", e)
        elif e.is_dir() and name not in _SKIP_DIRS and not name.endswith((".folder", ".mdir")):
            _accounts_in(domain, e, out)  # storage sub-directories
    for acc in sorted(singles):
        inbox = None
        for ext in (".mbox", ".mdir"):
            if os.path.lexists(d / (acc + ext)):
                inbox = d / (acc + ext)
                break
        out.setdefault(acc.lower(), AccountLocation(acc, domain, "single", d, d / (acc + ".settings"),
                                                    d / (acc + ".info"), inbox))


def domain_accounts(domain: str, directory: Path) -> list[AccountLocation]:
    found: dict[str, AccountLocation] = {}
    _accounts_in(domain, directory, found)
    return sorted(found.values(), key=lambda a: a.name.lower())


def discover(base_path, primary_domain: str | None = None) -> list[tuple[str, str]]:
    """(domain, account) for every account in the store, main domain first, names sorted."""
    return [(dom, a.name) for dom, d in domain_dirs(base_path, primary_domain).items()
            for a in domain_accounts(dom, d)]


def locate(base_path, account: str, domain: str | None = None, primary_domain: str | None = None) -> AccountLocation:
    dirs = domain_dirs(base_path, primary_domain)
    if not dirs:
        raise ConfigError(f"{base_path} is not a CommuniGate Pro base directory (no Accounts/ or Domains/)")
    if domain is None:
        dom = next(iter(dirs))
        if (Path(base_path) / MAIN_DOMAIN_DIR).is_dir() is False:
            raise ConfigError(f"{base_path} has no main domain (Accounts/); name the domain")
    else:
        dom = domain.lower()
        if dom not in dirs:
            raise ConfigError(f"domain {domain} is not in {base_path} (domains: {', '.join(dirs)})")
    for loc in domain_accounts(dom, dirs[dom]):
        if loc.name.lower() == account.lower():
            return loc
    raise ConfigError(f"account {account} is not in domain {dom} of {base_path}")


# --- folders of one account --------------------------------------------------------------------------


@dataclass(frozen=True)
class MailboxFile:
    path: Path | None  # None: a hierarchy-only folder (a .folder directory with no mailbox of its own)
    kind: str | None  # "mbox" | "mdir" | "link" (only symbolic links stand at this name) | None
    links: tuple[Path, ...] = ()  # symbolic links found at this folder's name: reported, never followed


def _decode_name(raw: str, where: Path) -> str:
    try:
        return mutf7.decode(raw)
    except FormatError:
        log.warning("%s: mailbox name %r is not modified UTF-7; kept as it is on disk", where, raw)
        return raw


def account_mailboxes(loc: AccountLocation) -> dict[FolderPath, MailboxFile]:
    """Every mailbox of the account, INBOX always present (CommuniGate creates it on first access)."""
    out: dict[FolderPath, MailboxFile] = {}
    links: dict[FolderPath, list[Path]] = {}
    if loc.root.is_symlink():
        return {INBOX: MailboxFile(None, "link", (loc.root,))}
    if loc.kind == "single":
        if loc.inbox is not None and loc.inbox.is_symlink():
            return {INBOX: MailboxFile(None, "link", (loc.inbox,))}
        kind = None if loc.inbox is None else loc.inbox.suffix[1:]
        out[INBOX] = MailboxFile(loc.inbox, kind)
        return out

    def walk(d: Path, prefix: tuple[str, ...]):
        try:
            entries = sorted(d.iterdir())
        except OSError as e:
            log.warning("cannot list %s: %s", d, e)
            return
        for e in entries:
            name = e.name
            if name.startswith("."):
                continue
            for ext, kind in ((".mbox", "mbox"), (".mdir", "mdir"), (".folder", None)):
                if name.endswith(ext) and len(name) > len(ext):
                    comp = _decode_name(name[: -len(ext)], e)
                    if not prefix and comp.upper() == "INBOX":
                        comp = "INBOX"
                    path = prefix + (comp,)
                    if e.is_symlink():
                        links.setdefault(path, []).append(e)
                    elif kind is None:
                        if e.is_dir():
                            out.setdefault(path, MailboxFile(None, None))
                            walk(e, path)
                    elif kind == "mdir" and e.is_dir() or kind == "mbox" and e.is_file():
                        out[path] = MailboxFile(e, kind)
                    break

    walk(loc.root, ())
    for path, found in links.items():
        mb = out.get(path)
        if mb is None or mb.kind is None:
            out[path] = MailboxFile(None, "link", tuple(found))
        else:
            out[path] = MailboxFile(mb.path, mb.kind, tuple(found))
    out.setdefault(INBOX, MailboxFile(None, "mbox"))
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != INBOX, kv[0])))


@dataclass(frozen=True)
class _Link:
    path: Path


def _link_key(loc: AccountLocation, link: Path) -> str:
    try:
        rel = link.relative_to(loc.root if loc.kind == "multi" else loc.root.parent)
    except ValueError:
        rel = link
    return link_key(rel)


class CommuniGateStore(Store):
    kind = "communigate"
    writable = False
    ordered_keys = False

    def __init__(self, base_path, account: str, domain: str | None = None, *, primary_domain: str | None = None):
        self.base = Path(base_path)
        self.account = account
        self.domain = domain
        self.primary_domain = primary_domain
        self._loc: AccountLocation | None = None
        self._index: dict[FolderPath, tuple[tuple, dict[str, object]]] = {}
        self._problems: list[tuple[str, str]] = []
        self._damaged: dict[FolderPath, list[str]] = {}

    @classmethod
    def at(cls, base_path, loc: AccountLocation) -> "CommuniGateStore":
        """A store for an account already located (by :func:`discover`/:func:`domain_accounts`), so a walk
        over many accounts does not search each domain again."""
        store = cls(base_path, loc.name, loc.domain)
        store._loc = loc
        return store

    # --- life cycle ---------------------------------------------------------------------------------
    def describe(self) -> str:
        who = self.account + (f"@{self.domain}" if self.domain else "")
        return f"communigate:{self.base} {who}"

    def open(self) -> None:
        if not self.base.is_dir():
            raise ConfigError(f"CommuniGate base directory {self.base} does not exist")
        self._loc = locate(self.base, self.account, self.domain, self.primary_domain)

    def close(self) -> None:
        self._index.clear()

    @property
    def location(self) -> AccountLocation:
        if self._loc is None:
            self.open()
        return self._loc

    # --- folders ------------------------------------------------------------------------------------
    def _mailboxes(self) -> dict[FolderPath, MailboxFile]:
        return account_mailboxes(self.location)

    def _mailbox(self, path: FolderPath) -> MailboxFile:
        mb = self._mailboxes().get(tuple(path))
        if mb is None:
            raise FolderFailed(f"{self.describe()}: no mailbox {'/'.join(path)}")
        return mb

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for path, mb in self._mailboxes().items():
            special = guess_special_use(path[0]) if len(path) == 1 and path != INBOX else None
            # CommuniGate's subscription list is not read: every folder is offered as subscribed.
            out.append(FolderInfo(path, special, subscribed=True, selectable=mb.kind is not None))
        return out

    def folder_status(self, path: FolderPath) -> FolderStatus:
        mb = self._mailbox(path)
        if mb.links:
            # No count: the engine then lists the folder on every run, and every run reports its links.
            return FolderStatus(VALIDITY, uidnext=None, highestmodseq=None, count=None)
        if mb.kind == "link" or mb.path is None or not mb.path.exists():
            return FolderStatus(VALIDITY, uidnext=0, highestmodseq=0, count=0)
        st = mb.path.stat()
        if mb.kind == "mdir":
            count = sum(1 for _ in _mdir_files(mb.path))
            return FolderStatus(VALIDITY, uidnext=count, highestmodseq=st.st_mtime_ns, count=count)
        return FolderStatus(VALIDITY, uidnext=st.st_size, highestmodseq=st.st_mtime_ns, count=None)

    # --- reading ------------------------------------------------------------------------------------
    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        path = tuple(path)
        mb = self._mailbox(path)
        status = self.folder_status(path)
        self._damaged[path] = []
        if mb.kind == "link" or mb.path is None or not mb.path.exists():
            metas, index = [], {}
        elif mb.kind == "mdir":
            metas, index = self._list_mdir(mb.path, path)
        else:
            metas, index = self._list_mbox(mb.path, path)
        for link in mb.links:
            self._add_link(path, link, metas, index)
        self._index[path] = (_signature(mb.path) if mb.path is not None else (), index)
        return FolderStatus(status.validity, status.uidnext, status.highestmodseq, len(metas)), metas

    def _add_link(self, folder: FolderPath, link: Path, metas: list, index: dict) -> None:
        key = _link_key(self.location, link)
        index[key] = _Link(link)
        metas.append(MessageMeta(key=key, flags=frozenset(), internaldate=None, size=0))
        reason = link_reason(link)
        self._damaged.setdefault(folder, []).append(reason)
        log.warning("%s: %s", self.describe(), reason)

    def _list_mbox(self, file: Path, folder: FolderPath):
        try:
            with open_nofollow(file) as fh:
                entries = list(fmt.scan(fh, path=str(file)))
                self._damaged[folder] = [f"{file}: {e.problem}" for e in entries if e.problem]
                index: dict[str, object] = {}
                metas: list[MessageMeta] = []
                seen_sha: Counter = Counter()
                unknown: Counter = Counter()
                for e in entries:
                    if e.internal:
                        log.info("%s: the message after line %d is UW-IMAP's 'Mail System Internal Data' "
                                 "folder header, not mail: skipped", file, e.line)
                        continue
                    key = str(e.uid) if e.uid is not None else None
                    if key is None or key in index:
                        h = hashlib.sha256()
                        for chunk in fmt.read_message(fh, e).finish().chunks():
                            h.update(chunk)
                        d = h.hexdigest()
                        key = f"{d}:{seen_sha[d]}"
                        seen_sha[d] += 1
                    index[key] = e
                    unknown.update(e.unknown_letters)
                    for w in e.warnings:
                        log.warning("%s: %s", file, w)
                    metas.append(MessageMeta(key=key, flags=e.flags, internaldate=e.date, size=e.length,
                                             uid=e.uid))
        except OSError as e:
            raise FolderFailed(f"cannot read {file}: {e}") from e
        except FormatError as e:
            raise FolderFailed(str(e)) from e
        if unknown:
            log.warning("%s: status letters we do not know, kept as %s<letter> keywords: %s", file,
                        fmt.UNKNOWN_PREFIX, ", ".join(f"{k!r} x{n}" for k, n in sorted(unknown.items())))
        return metas, index

    def _list_mdir(self, d: Path, folder: FolderPath):
        index: dict[str, object] = {}
        metas: list[MessageMeta] = []
        unknown: Counter = Counter()
        for f in _mdir_files(d, links=True):
            if f.is_symlink():
                self._add_link(folder, f, metas, index)
                continue
            parsed = fmt.parse_mdir_name(f.name)
            if parsed is None:
                continue
            key = parsed.id if parsed.id not in index else f.name
            flags, unk = fmt.flags_from_letters(parsed.letters)
            unknown.update(unk)
            st = f.lstat()
            when = parsed.date or datetime.fromtimestamp(st.st_mtime, timezone.utc)
            index[key] = f
            metas.append(MessageMeta(key=key, flags=flags, internaldate=when, size=st.st_size))
        if unknown:
            log.warning("%s: status letters we do not know, kept as %s<letter> keywords: %s", d,
                        fmt.UNKNOWN_PREFIX, ", ".join(f"{k!r} x{n}" for k, n in sorted(unknown.items())))
        return metas, index

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        path = tuple(path)
        mb = self._mailbox(path)
        cached = self._index.get(path)
        sig = _signature(mb.path) if mb.path is not None else ()
        if cached is None or cached[0] != sig:
            self.list_messages(path)
        index = self._index[path][1]
        for key in keys:
            if isinstance(index.get(key), _Link):
                self._problems.append((key, link_reason(index[key].path)))
        if mb.kind == "link" or mb.path is None or not mb.path.exists():
            return
        if mb.kind == "mdir":
            for key in keys:
                f = index.get(key)
                if not isinstance(f, Path):
                    continue
                try:
                    with open_nofollow(f) as fh:
                        data = fh.read()
                        mtime = os.fstat(fh.fileno()).st_mtime
                except OSError as e:
                    self._problems.append((key, f"cannot read {f}: {e}"))
                    continue
                parsed = fmt.parse_mdir_name(f.name)
                flags, _ = fmt.flags_from_letters(parsed.letters if parsed else "")
                when = parsed.date if parsed and parsed.date else datetime.fromtimestamp(mtime, timezone.utc)
                yield MessageMeta(key=key, flags=flags, internaldate=when, size=len(data)), Body.from_bytes(data)
            return
        try:
            fh = open_nofollow(mb.path)
        except OSError as e:
            for key in keys:
                if isinstance(index.get(key), fmt.Entry):
                    self._problems.append((key, f"cannot read {mb.path}: {e}"))
            return
        with fh:
            for key in keys:
                e = index.get(key)
                if not isinstance(e, fmt.Entry):
                    continue
                if e.problem:
                    self._problems.append((key, f"{mb.path}: {e.problem}"))
                    continue
                body = fmt.read_message(fh, e).finish()
                yield MessageMeta(key=key, flags=e.flags, internaldate=e.date, size=body.size, uid=e.uid), body

    def damaged(self, path: FolderPath) -> list[str]:
        """Damage the last listing of ``path`` found (truncated messages), each naming file and line."""
        return list(self._damaged.get(tuple(path), []))

    def fetch_problems(self) -> list[tuple[str, str]]:
        out, self._problems = self._problems, []
        return out


def _mdir_files(d: Path, *, links: bool = False):
    """The message files of an ``.mdir`` (regular files by ``lstat``); with ``links``, symbolic links too,
    for the caller to report."""
    try:
        for f in sorted(d.iterdir()):
            if f.name.startswith("."):
                continue
            if f.is_symlink():
                if links:
                    yield f
            elif f.is_file():
                yield f
    except OSError as e:
        log.warning("cannot list %s: %s", d, e)


def _signature(p: Path) -> tuple:
    try:
        st = p.lstat()
    except OSError:
        return ()
    return (st.st_size, st.st_mtime_ns)
