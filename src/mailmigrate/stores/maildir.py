"""Maildir++ as Dovecot writes it, as a source and as a target.

Identity: a message's key is the unique part of its file name, which survives flag changes (a rename).
Validity only has to change when the folder itself is replaced, so it comes from ``mailmigrate-validity``
(a random number written when mailmigrate creates the folder, and gone with it), else from the folder's
``dovecot-uidlist`` header (Dovecot's UIDVALIDITY; the ``dovecot-uidvalidity`` files at the root are
Dovecot's counter for new folders, not any one folder's value), else the constant 1.  mailmigrate's own file
wins over Dovecot's so that a target folder keeps its validity when Dovecot later indexes it.  A rerun can skip an unchanged folder without listing it:
the change marker is the newest modification time of ``cur/`` and ``new/``, which every delivery,
rename (flag change) and deletion moves.

Symbolic links inside the tree are never followed (stores/nofollow.py): a message file, a ``cur``/``new``
directory or a folder directory that is a link is listed as a ``symlink:`` stand-in that ``fetch`` reports
as not copied, naming it; the small files (keywords, subscriptions, validity) are read with ``O_NOFOLLOW``.

Writes go through ``tmp/``: a message is written and fsynced there, then renamed into ``cur/``, so that
neither a crash nor a full disk can leave a partial message where a mail client would see it.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, FolderFailed, FormatError, MessageRejected, QuotaExceeded, StoreError
from ..formats import maildir as fmt
from ..formats.atomic import fsync_path, replace_file
from ..formats.specialuse import guess_special_use
from ..model import (SYSTEM_FLAGS, AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta,
                     PermanentFlags, intern_flags)
from .base import Store
from .nofollow import is_link, is_link_key, link_key, link_meta, link_reason, open_nofollow, read_nofollow

log = logging.getLogger("mailmigrate.stores.maildir")
MAX_KEYWORDS = 26  # letters a-z
DEFAULT_VALIDITY = 1

_counter = itertools.count()
_counter_lock = threading.Lock()


def _unique() -> str:
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "_")
    return f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{n}R{secrets.token_hex(4)}.{host}"


def _folder_errors(method):
    """A file-system error in one folder (a name too long for the file system, a directory the migration
    may not write, an I/O error) fails that folder, named, instead of escaping as an OSError that stops the
    account and every account after it (issue 19); running out of space is QuotaExceeded, raised inside."""

    @functools.wraps(method)
    def wrapped(self, path, *a, **kw):
        try:
            return method(self, path, *a, **kw)
        except OSError as e:
            what = "/".join(path) if path else "INBOX"
            raise FolderFailed(f"Maildir folder {what}: {e.strerror or e}"
                               f"{f' ({e.filename})' if e.filename else ''}") from None

    return wrapped


class MaildirStore(Store):
    kind = "maildir"
    writable = True
    ordered_keys = False

    def __init__(self, path: str | os.PathLike, *, create: bool = False, must_exist: bool = True):
        self.root = Path(path)
        self.create = create
        self.must_exist = must_exist  # False: a target a dry run looks at before it exists
        self._files: dict[FolderPath, dict[str, Path]] = {}
        self._problems: list[tuple[str, str]] = []
        self._links: dict[FolderPath, dict[str, Path]] = {}
        self._mode_cache: tuple[int, int] | None = None
        self._odd: dict[str, FolderPath] | None = None

    def describe(self) -> str:
        return f"maildir:{self.root}"

    def clone(self) -> "MaildirStore":
        return MaildirStore(self.root, create=self.create, must_exist=self.must_exist)

    # --- life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if not self.root.is_dir():
            if self.create:
                self._make_maildir(self.root)
                _write_validity(self.root, self._modes()[1])
            elif self.must_exist:
                raise ConfigError(f"Maildir {self.root} does not exist")
        elif not (self.root / "cur").is_dir():
            if not self.create and not any(p.name.startswith(".") for p in self.root.iterdir()):
                raise ConfigError(f"{self.root} is not a Maildir (no cur/)")
            if self.create:
                self._make_maildir(self.root)

    def close(self) -> None:
        self._files.clear()
        self._odd = None

    # --- paths ------------------------------------------------------------------------------------
    def _dir(self, path: FolderPath) -> Path:
        odd = self._odd_paths()
        if path in odd:
            return self.root / odd[path]
        name = fmt.folder_to_dirname(path)
        return self.root / name if name else self.root

    def _odd_dirs(self) -> dict[str, FolderPath]:
        """Directories whose names Dovecot would not write (raw UTF-8, a bare ``&``, ``.Trash..bak``), with
        the folder each is read as (:func:`formats.maildir.dirname_to_folder_lenient`); one that would land
        on an existing folder's name gets `` (DIRNAME)`` appended, so no two directories merge."""
        if self._odd is None:
            self._odd = {}
            try:
                names = sorted(e.name for e in os.scandir(self.root) if e.name.startswith("."))
            except OSError:
                names = []
            regular = set()
            for n in names:
                try:
                    regular.add(fmt.dirname_to_folder(n))
                except FormatError:
                    pass
            taken = set(regular)
            for n in names:
                try:
                    fmt.dirname_to_folder(n)
                    continue
                except FormatError:
                    pass
                try:
                    path = fmt.dirname_to_folder_lenient(n)
                except FormatError:
                    continue
                if path in taken:
                    path = path[:-1] + (f"{path[-1]} ({n})",)
                taken.add(path)
                self._odd[n] = path
        return self._odd

    def _odd_paths(self) -> dict[FolderPath, str]:
        return {p: n for n, p in self._odd_dirs().items()}

    def _modes(self) -> tuple[int, int]:
        """(directory mode, file mode) for what this store writes: Dovecot's rule, the mailbox root's own
        permissions for the group (a root 0770 gives 0770 folders and 0660 files), so a shared mailbox keeps
        its convention; never anything for others, and private (0700/0600) when the root is new.  Never
        the umask's 0644: mail is readable by its owner only unless the mailbox says otherwise."""
        if self._mode_cache is None:
            try:
                dmode = self.root.stat().st_mode & 0o070 | 0o700  # the group's share, never others'

            except OSError:
                dmode = 0o700
            self._mode_cache = (dmode, dmode & 0o666)
        return self._mode_cache

    def _make_maildir(self, d: Path, folder: bool = False) -> None:
        dmode, fmode = self._modes()
        for p in [d] + [d / sub for sub in ("cur", "new", "tmp")]:
            try:
                p.mkdir(mode=dmode, parents=False)
                os.chmod(p, dmode)  # mkdir's mode passes through the umask
            except FileExistsError:
                pass
            except FileNotFoundError:
                p.mkdir(mode=dmode, parents=True, exist_ok=True)
                os.chmod(p, dmode)
        if folder:
            fd = os.open(d / "maildirfolder", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, fmode)
            try:
                os.fchmod(fd, fmode)  # through the umask, os.open's mode only narrows
            finally:
                os.close(fd)

    # --- folders ----------------------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        subscribed = set(self._read_subscriptions())
        out = [FolderInfo(("INBOX",), None, ("INBOX",) in subscribed, True)]
        if not self.root.is_dir():
            return out
        found = set()
        for entry in sorted(self.root.iterdir()):
            if not entry.name.startswith(".") or entry.name in (".", ".."):
                continue
            link = entry.is_symlink()  # listed, so that its listing reports it; never entered
            if not link and not entry.is_dir():
                continue
            if not link and not any(os.path.lexists(entry / x) for x in ("cur", "new", "tmp", "maildirfolder")):
                # Not a mail folder (Dovecot puts cur/new/tmp and an empty "maildirfolder" file in each; the
                # empty file survives copies that drop empty directories).
                continue
            try:
                path = fmt.dirname_to_folder(entry.name)
            except FormatError:
                path = self._odd_dirs().get(entry.name)
                if path is None:
                    log.warning("Maildir %s: directory %s names no folder: skipped", self.root, entry.name)
                    continue
                log.warning("Maildir %s: directory %s is not a name Dovecot writes (modified UTF-7, "
                            "Maildir++); copied as folder %s", self.root, entry.name, "/".join(path))
            found.add(path)
            out.append(FolderInfo(path, guess_special_use(path), path in subscribed, True))
        # ".A.B" without ".A": A exists only as a level of the hierarchy, as Dovecot lists it.
        for path in sorted(found):
            for i in range(1, len(path)):
                parent = path[:i]
                if parent not in found and parent != ("INBOX",):
                    found.add(parent)
                    out.append(FolderInfo(parent, None, parent in subscribed, False))
        return out

    def _read_subscriptions(self) -> list[FolderPath]:
        p = self.root / "subscriptions"
        try:
            return fmt.parse_subscriptions(read_nofollow(p), str(p))
        except FileNotFoundError:
            return []
        except OSError as e:  # a link (ELOOP) or unreadable: subscriptions are lost, not read from elsewhere
            log.warning("Maildir %s: subscriptions not read: %s", self.root, e)
            return []

    @_folder_errors
    def folder_status(self, path: FolderPath) -> FolderStatus:
        d = self._dir(path)
        if d != self.root and is_link(d):
            # A folder directory that is a link: one stand-in to report, its target never looked at.
            return FolderStatus(validity=DEFAULT_VALIDITY, uidnext=0, highestmodseq=d.lstat().st_mtime_ns, count=1)
        if not d.is_dir():
            raise FolderFailed(f"Maildir folder {'/'.join(path)} does not exist ({d})")
        # Empty cur/ or new/ directories do not survive every copy (git, some backup tools): a missing one
        # holds no messages, as Dovecot, which creates them lazily, sees it too.
        marks, count = [], 0
        for sub in ("cur", "new"):
            try:
                st = os.lstat(d / sub)
                marks.append(st.st_mtime_ns)
                if is_link(d / sub):
                    count += 1
                    continue
                count += sum(1 for e in os.scandir(d / sub) if not e.name.startswith("."))
            except FileNotFoundError:
                continue
        return FolderStatus(validity=self._validity(d), uidnext=0, highestmodseq=max(marks, default=0), count=count)

    @staticmethod
    def _validity(d: Path) -> int:
        try:
            return int(read_nofollow(d / "mailmigrate-validity").decode("ascii").strip())
        except (OSError, ValueError):
            pass
        try:
            first = read_nofollow(d / "dovecot-uidlist").decode("utf-8", "replace").split("\n", 1)[0].split()
            if first and first[0] == "3":
                for f in first[1:]:
                    if f.startswith("V"):
                        return int(f[1:])
            elif len(first) >= 2 and first[0] == "1":
                return int(first[1])
        except (OSError, ValueError):
            pass
        return DEFAULT_VALIDITY

    # --- reading ----------------------------------------------------------------------------------
    def _keywords(self, d: Path, *, strict: bool = False) -> dict[int, str]:
        """The folder's keyword letters; a damaged file costs keywords when reading (warned), but stops
        writing (``strict``), since rewriting it would re-letter every message's keywords."""
        p = d / "dovecot-keywords"
        try:
            return fmt.parse_keywords(read_nofollow(p), str(p))
        except FileNotFoundError:
            return {}
        except OSError as e:  # a link (ELOOP): its target's lines must not become keywords
            if strict:
                raise FolderFailed(f"cannot add keywords: {p}: {e.strerror or e}") from None
            log.warning("keywords ignored: %s: %s", p, e.strerror or e)
            return {}
        except FormatError as e:
            if strict:
                raise FolderFailed(f"cannot add keywords: {e}") from None
            log.warning("keywords ignored: %s", e)
            return {}

    def _scan(self, path: FolderPath) -> dict[str, tuple[Path, fmt.MaildirName]]:
        d = self._dir(path)
        found: dict[str, tuple[Path, fmt.MaildirName]] = {}
        links: dict[str, Path] = {}
        self._links[path] = links
        if d != self.root and is_link(d):
            links[link_key(d.name)] = d
            self._files[path] = {}
            return found
        for sub in ("new", "cur"):
            if is_link(d / sub):
                links[link_key(f"{d.name}/{sub}" if d != self.root else sub)] = d / sub
                continue
            try:
                entries = list(os.scandir(d / sub))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                if e.is_symlink():
                    links[link_key(f"{sub}/{e.name}" if d == self.root else f"{d.name}/{sub}/{e.name}")] = Path(e.path)
                    continue
                try:
                    n = fmt.parse_name(e.name)
                except FormatError:
                    continue
                found.setdefault(n.unique, (Path(e.path), n))
        self._files[path] = {k: v[0] for k, v in found.items()}
        return found

    @_folder_errors
    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        status = self.folder_status(path)
        d = self._dir(path)
        kw = self._keywords(d)
        metas = []
        unknown_letters: set[str] = set()
        for key, (p, n) in self._scan(path).items():
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue  # renamed or removed by a mail client since the scan
            flags, unknown = fmt.info_to_flags(n.info, kw)
            unknown_letters.update(unknown)
            flags = intern_flags(flags)
            metas.append((st.st_mtime, key, MessageMeta(
                key=key, flags=flags, internaldate=datetime.fromtimestamp(int(st.st_mtime), timezone.utc),
                size=n.size if n.size is not None else st.st_size)))
        if unknown_letters:
            # Kept in the file names (a flag change preserves them), but they mean nothing to copy.
            log.warning("Maildir folder %s: flag letters %s have no meaning here (no dovecot-keywords entry); "
                        "kept in the file names, not copied", "/".join(path), "".join(sorted(unknown_letters)))
        metas.sort(key=lambda t: (t[0], t[1]))
        out = [m for _, _, m in metas]
        for key, link in self._links.get(path, {}).items():
            log.warning("Maildir %s: %s", self.root, link_reason(link))
            out.append(link_meta(key))
        return status, out

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        files = self._files.get(path)
        if files is None:
            self._scan(path)
            files = self._files[path]
        rescanned = False
        for key in keys:
            if is_link_key(key):
                link = self._links.get(path, {}).get(key)
                self._problems.append((key, link_reason(link) if link is not None
                                       else f"{key[len('symlink:'):]}: a symbolic link, not followed, not copied"))
                continue
            p = files.get(key)
            f = None
            for attempt in range(2):
                if p is not None:
                    try:
                        f = open_nofollow(p)
                        break
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        if e.errno == errno.ELOOP:  # replaced by a link since the listing
                            self._problems.append((key, link_reason(p)))
                            break
                        self._problems.append((key, f"{p}: {e.strerror}"))
                        break
                if rescanned:
                    break
                self._scan(path)  # a mail client renamed it (flag change): look again once
                files = self._files[path]
                rescanned = True
                p = files.get(key)
            if f is None:
                continue
            st = os.fstat(f.fileno())
            n = fmt.parse_name(p.name)
            meta = MessageMeta(key=key, flags=fmt.info_to_flags(n.info, self._keywords(self._dir(path)))[0],
                               internaldate=datetime.fromtimestamp(int(st.st_mtime), timezone.utc), size=st.st_size)
            yield meta, Body(file=f, size=st.st_size)

    def fetch_problems(self) -> list[tuple[str, str]]:
        p, self._problems = self._problems, []
        return p

    # --- writing ----------------------------------------------------------------------------------
    @_folder_errors
    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        if not path or path == ("INBOX",):
            self._make_maildir(self.root)
            return
        for i in range(1, len(path) + 1):
            sub = path[:i]
            if sub == ("INBOX",):
                continue
            d = self._dir(sub)
            if not (d / "cur").is_dir():
                self._make_maildir(d, folder=True)
                _write_validity(d, self._modes()[1])

    @_folder_errors
    def subscribe(self, path: FolderPath) -> None:
        p = self.root / "subscriptions"
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            data = b""
        subs = fmt.parse_subscriptions(data, str(p))
        if path in subs:
            return
        if data.startswith(fmt.SUBSCRIPTIONS_V2_HEADER):
            # Appended, not rewritten: a line this store does not read as one of its folders (a subscription
            # to another user's shared folder, "Shared/bob/Team") must reach Dovecot as Dovecot wrote it.
            line = fmt.dump_subscriptions([path])[len(fmt.SUBSCRIPTIONS_V2_HEADER):]
            _replace_file(p, data + (b"" if data.endswith(b"\n") else b"\n") + line, self._modes()[1])
        else:
            _replace_file(p, fmt.dump_subscriptions(subs + [path]), self._modes()[1])

    @_folder_errors
    def delete_folder(self, path: FolderPath) -> None:
        d = self._dir(path)
        if d == self.root:
            raise StoreError("INBOX cannot be deleted")
        if any(os.scandir(d / "cur")) or any(os.scandir(d / "new")):
            raise FolderFailed(f"folder {'/'.join(path)} is not empty")
        for sub in ("cur", "new", "tmp"):
            for e in os.scandir(d / sub):
                os.unlink(e.path)
            os.rmdir(d / sub)
        for e in os.scandir(d):
            os.unlink(e.path)
        os.rmdir(d)

    def permanent_flags(self, path: FolderPath) -> PermanentFlags:
        kw = self._keywords(self._dir(path))
        known = frozenset(v for k, v in kw.items() if k < MAX_KEYWORDS)
        free = MAX_KEYWORDS - len({k for k in kw if k < MAX_KEYWORDS})
        return KeywordSlots(SYSTEM_FLAGS | known | {"$Forwarded"}, any_keyword=free > 0, free=free)

    def append_batch_limit(self) -> tuple[int, int]:
        return (64, 32 << 20)

    def _keyword_map(self, d: Path, wanted: Iterable[str]) -> dict[str, int]:
        kw = self._keywords(d, strict=True)
        by_name = {v: k for k, v in kw.items()}
        changed = False
        for name in sorted(wanted):
            if name.startswith("\\") or name in fmt.FLAG_TO_LETTER or name in by_name:
                continue
            free = next((i for i in range(MAX_KEYWORDS) if i not in kw), None)
            if free is None:
                log.warning("Maildir folder %s has no keyword letter left for %s: dropped", d, name)
                continue
            kw[free] = name
            by_name[name] = free
            changed = True
        if changed:
            _replace_file(d / "dovecot-keywords", fmt.dump_keywords(kw), self._modes()[1])
        return by_name

    @_folder_errors
    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        d = self._dir(path)
        if not d.is_dir():
            raise FolderFailed(f"Maildir folder {'/'.join(path)} does not exist")
        if not (d / "cur").is_dir() or not (d / "tmp").is_dir():
            self._make_maildir(d)  # empty cur/new/tmp lost in a copy of the tree
        kwmap = self._keyword_map(d, {f for it in items for f in it.flags})
        staged = []
        try:
            for index, it in enumerate(items):
                unique = _unique()
                tmp = d / "tmp" / unique
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 self._modes()[1])
                    with os.fdopen(fd, "wb") as out:
                        if os.fstat(out.fileno()).st_mode & 0o777 != self._modes()[1]:
                            os.fchmod(out.fileno(), self._modes()[1])  # the umask narrowed or widened it
                        for chunk in it.body.chunks():
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as e:
                    _unlink(tmp)
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise QuotaExceeded(f"no space left in {d} ({e.strerror})") from None
                    raise StoreError(f"cannot write {tmp}: {e.strerror or e}") from None
                if it.internaldate is not None:
                    ts = it.internaldate.timestamp()
                    os.utime(tmp, (ts, ts))
                info, missing = fmt.flags_to_info(it.flags, kwmap)
                if missing:
                    log.warning("Maildir folder %s: keywords %s have no letter left; not stored", d, sorted(missing))
                staged.append((tmp, d / "cur" / fmt.build_name(unique, info, it.body.size), unique))
            keys = []
            for tmp, final, unique in staged:
                os.rename(tmp, final)
                keys.append(unique)
            staged = []
            fsync_path(d / "cur")
            self._files.pop(path, None)
            return keys
        finally:
            for tmp, _, _ in staged:
                _unlink(tmp)

    @_folder_errors
    def set_flags(self, path: FolderPath, changes: Iterable[tuple[str, frozenset[str], frozenset[str]]]) -> None:
        d = self._dir(path)
        changes = list(changes)
        kwmap = self._keyword_map(d, {f for _, add, _ in changes for f in add})
        kw = {v: k for k, v in kwmap.items()}
        files = self._scan(path)
        for key, add, remove in changes:
            entry = files.get(key)
            if entry is None:
                continue
            p, n = entry
            flags, unknown = fmt.info_to_flags(n.info, kw)
            new_flags = (set(flags) | set(add)) - set(remove)
            info, _ = fmt.flags_to_info(new_flags, kwmap)
            new = d / "cur" / fmt.rebuild(n, info + unknown)
            if new != p:
                try:
                    os.rename(p, new)
                except FileNotFoundError:
                    continue
        self._files.pop(path, None)

    @_folder_errors
    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        files = self._scan(path)
        for key in keys:
            entry = files.get(key)
            if entry is not None:
                _unlink(entry[0])
        self._files.pop(path, None)


class KeywordSlots(PermanentFlags):
    """A folder's flags when only ``free`` more keywords fit (Dovecot's 26 letters): the first new keywords
    the engine asks about claim the free letters, later ones are reported as dropped, so the run report
    names every keyword that could not be kept instead of the store losing it silently."""

    def __init__(self, flags: frozenset[str], any_keyword: bool, free: int):
        super().__init__(flags, any_keyword)
        object.__setattr__(self, "free", free)
        object.__setattr__(self, "claimed", set())

    def filter(self, flags: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        kept, dropped = set(), set()
        for f in flags:
            if f.lower() == "\\recent":
                continue
            if f in self.flags:
                kept.add(f)
            elif f.startswith("\\"):
                dropped.add(f)
            elif f in self.claimed or len(self.claimed) < self.free:
                self.claimed.add(f)
                kept.add(f)
            else:
                dropped.add(f)
        return frozenset(kept), frozenset(dropped)


def _write_validity(d: Path, mode: int) -> None:
    _replace_file(d / "mailmigrate-validity", str(secrets.randbelow(2**31 - 1) + 1).encode(), mode)


def _replace_file(p: Path, data: bytes, mode: int) -> None:
    """Write beside and rename, so a reader never sees half a keywords or subscriptions file.  The temporary
    name keeps its shape, without a leading dot: in a Maildir++ root a dot-name marks a folder.  The mode
    is the messages' (:meth:`MaildirStore._modes`): whoever reads the mailbox reads these too."""
    replace_file(p, data, mode, prefix=p.name + ".", suffix=".tmp")


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
