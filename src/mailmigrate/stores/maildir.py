"""Maildir++ as Dovecot writes it, as a source and as a target.

Identity: a message's key is the unique part of its file name, which survives flag changes (a rename);
validity comes from Dovecot's ``dovecot-uidlist`` when present, else from ``mailmigrate-validity`` written
when mailmigrate creates the folder, else 1.  A rerun can skip an unchanged folder without listing it:
the change marker is the newest modification time of ``cur/`` and ``new/``, which every delivery,
rename (flag change) and deletion moves.

Writes go through ``tmp/``: a message is written and fsynced there, then renamed into ``cur/``, so that
neither a crash nor a full disk can leave a partial message where a mail client would see it.
"""

from __future__ import annotations

import errno
import itertools
import os
import secrets
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ..errors import ConfigError, FolderFailed, FormatError, MessageRejected, QuotaExceeded, StoreError
from ..formats import maildir as fmt
from ..formats.specialuse import guess_special_use
from ..model import (SYSTEM_FLAGS, AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta,
                     PermanentFlags, intern_flags)
from .base import Store

_counter = itertools.count()
_counter_lock = threading.Lock()


def _unique() -> str:
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072").replace(",", "_")
    return f"{int(now)}.M{int((now % 1) * 1e6)}P{os.getpid()}Q{n}R{secrets.token_hex(4)}.{host}"


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

    def describe(self) -> str:
        return f"maildir:{self.root}"

    def clone(self) -> "MaildirStore":
        return MaildirStore(self.root, create=self.create, must_exist=self.must_exist)

    # --- life cycle -------------------------------------------------------------------------------
    def open(self) -> None:
        if not self.root.is_dir():
            if self.create:
                self._make_maildir(self.root)
            elif self.must_exist:
                raise ConfigError(f"Maildir {self.root} does not exist")
        elif not (self.root / "cur").is_dir():
            if not self.create and not any(p.name.startswith(".") for p in self.root.iterdir()):
                raise ConfigError(f"{self.root} is not a Maildir (no cur/)")
            if self.create:
                self._make_maildir(self.root)

    def close(self) -> None:
        self._files.clear()

    # --- paths ------------------------------------------------------------------------------------
    def _dir(self, path: FolderPath) -> Path:
        name = fmt.folder_to_dirname(path)
        return self.root / name if name else self.root

    @staticmethod
    def _make_maildir(d: Path, folder: bool = False) -> None:
        for sub in ("cur", "new", "tmp"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder:
            (d / "maildirfolder").touch()

    # --- folders ----------------------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        subscribed = set(self._read_subscriptions())
        out = [FolderInfo(("INBOX",), None, ("INBOX",) in subscribed, True)]
        if not self.root.is_dir():
            return out
        for entry in sorted(self.root.iterdir()):
            if not entry.name.startswith(".") or entry.name in (".", "..") or not entry.is_dir():
                continue
            if not (entry / "cur").is_dir():
                continue
            try:
                path = fmt.dirname_to_folder(entry.name)
            except FormatError:
                continue  # not a folder name Dovecot would write (e.g. ".Trash..bak"): leave it alone
            top = path[-1] if len(path) == 1 or (len(path) == 2 and path[0] == "INBOX") else None
            out.append(FolderInfo(path, guess_special_use(top) if top else None, path in subscribed, True))
        return out

    def _read_subscriptions(self) -> list[FolderPath]:
        p = self.root / "subscriptions"
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return []
        text = data.decode("utf-8", "replace")
        v2 = text.startswith("V\t")
        out = []
        for name in fmt.parse_subscriptions(data):
            comps = name.split("/") if v2 else name.split(".")
            out.append(tuple(fmt.unescape_component(c) for c in comps))
        return out

    def folder_status(self, path: FolderPath) -> FolderStatus:
        d = self._dir(path)
        if not (d / "cur").is_dir():
            raise FolderFailed(f"Maildir folder {'/'.join(path)} does not exist ({d})")
        try:
            marks = [os.stat(d / sub).st_mtime_ns for sub in ("cur", "new")]
            count = sum(1 for sub in ("cur", "new") for e in os.scandir(d / sub) if not e.name.startswith("."))
        except FileNotFoundError:
            marks, count = [0], 0
        return FolderStatus(validity=self._validity(d), uidnext=0, highestmodseq=max(marks), count=count)

    @staticmethod
    def _validity(d: Path) -> int:
        try:
            first = (d / "dovecot-uidlist").read_text(errors="replace").split("\n", 1)[0].split()
            if first and first[0] == "3":
                for f in first[1:]:
                    if f.startswith("V"):
                        return int(f[1:])
            elif len(first) >= 2 and first[0] == "1":
                return int(first[1])
        except (OSError, ValueError):
            pass
        try:
            return int((d / "mailmigrate-validity").read_text().strip())
        except (OSError, ValueError):
            return 1

    # --- reading ----------------------------------------------------------------------------------
    def _keywords(self, d: Path) -> dict[int, str]:
        try:
            return fmt.parse_keywords((d / "dovecot-keywords").read_bytes(), str(d / "dovecot-keywords"))
        except FileNotFoundError:
            return {}
        except FormatError:
            return {}

    def _scan(self, path: FolderPath) -> dict[str, tuple[Path, fmt.MaildirName]]:
        d = self._dir(path)
        found: dict[str, tuple[Path, fmt.MaildirName]] = {}
        for sub in ("new", "cur"):
            try:
                entries = list(os.scandir(d / sub))
            except FileNotFoundError:
                continue
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    n = fmt.parse_name(e.name)
                except FormatError:
                    continue
                found.setdefault(n.unique, (Path(e.path), n))
        self._files[path] = {k: v[0] for k, v in found.items()}
        return found

    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        status = self.folder_status(path)
        d = self._dir(path)
        kw = self._keywords(d)
        metas = []
        for key, (p, n) in self._scan(path).items():
            try:
                st = p.stat()
            except FileNotFoundError:
                continue  # renamed or removed by a mail client since the scan
            flags, _unknown = fmt.info_to_flags(n.info, kw)
            flags = intern_flags(flags)
            metas.append((st.st_mtime, key, MessageMeta(
                key=key, flags=flags, internaldate=datetime.fromtimestamp(int(st.st_mtime), timezone.utc),
                size=n.size if n.size is not None else st.st_size)))
        metas.sort(key=lambda t: (t[0], t[1]))
        return status, [m for _, _, m in metas]

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        files = self._files.get(path)
        if files is None:
            self._scan(path)
            files = self._files[path]
        rescanned = False
        for key in keys:
            p = files.get(key)
            f = None
            for attempt in range(2):
                if p is not None:
                    try:
                        f = open(p, "rb")
                        break
                    except FileNotFoundError:
                        pass
                    except OSError as e:
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
                (d / "mailmigrate-validity").write_text(str(secrets.randbelow(2**31 - 1) + 1))

    def subscribe(self, path: FolderPath) -> None:
        subs = self._read_subscriptions()
        if path in subs:
            return
        subs.append(path)
        # A "/" inside a name must not become a level: components are escaped as in directory names.
        data = fmt.dump_subscriptions(["/".join(fmt.escape_component(c) for c in s) for s in subs])
        tmp = self.root / f"subscriptions.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / "subscriptions")

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
        if len(kw) >= 26:
            return PermanentFlags(SYSTEM_FLAGS | frozenset(kw.values()) | {"$Forwarded"}, any_keyword=False)
        return PermanentFlags(SYSTEM_FLAGS | {"$Forwarded"}, any_keyword=True)

    def append_batch_limit(self) -> tuple[int, int]:
        return (64, 32 << 20)

    def _keyword_map(self, d: Path, wanted: Iterable[str]) -> dict[str, int]:
        kw = self._keywords(d)
        by_name = {v: k for k, v in kw.items()}
        changed = False
        for name in wanted:
            if name.startswith("\\") or name in fmt.FLAG_TO_LETTER or name in by_name:
                continue
            free = next((i for i in range(26) if i not in kw), None)
            if free is None:
                continue
            kw[free] = name
            by_name[name] = free
            changed = True
        if changed:
            tmp = d / f"dovecot-keywords.{os.getpid()}.tmp"
            tmp.write_bytes(fmt.dump_keywords(kw))
            os.replace(tmp, d / "dovecot-keywords")
        return by_name

    def append(self, path: FolderPath, items: Sequence[AppendItem]) -> list[str | None]:
        d = self._dir(path)
        if not (d / "cur").is_dir():
            raise FolderFailed(f"Maildir folder {'/'.join(path)} does not exist")
        kwmap = self._keyword_map(d, {f for it in items for f in it.flags})
        staged = []
        try:
            for index, it in enumerate(items):
                unique = _unique()
                tmp = d / "tmp" / unique
                try:
                    with open(tmp, "wb") as out:
                        for chunk in it.body.chunks():
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError as e:
                    _unlink(tmp)
                    if e.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise QuotaExceeded(f"no space left in {d} ({e.strerror})") from None
                    raise StoreError(f"cannot write {tmp}: {e.strerror}") from None
                if it.internaldate is not None:
                    ts = it.internaldate.timestamp()
                    os.utime(tmp, (ts, ts))
                info, _missing = fmt.flags_to_info(it.flags, kwmap)
                staged.append((tmp, d / "cur" / fmt.build_name(unique, info, it.body.size), unique))
            keys = []
            for tmp, final, unique in staged:
                os.rename(tmp, final)
                keys.append(unique)
            staged = []
            _fsync_dir(d / "cur")
            self._files.pop(path, None)
            return keys
        finally:
            for tmp, _, _ in staged:
                _unlink(tmp)

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
            new = d / "cur" / fmt.build_name(n.unique, info + unknown, n.size)
            if new != p:
                try:
                    os.rename(p, new)
                except FileNotFoundError:
                    continue
        self._files.pop(path, None)

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        files = self._scan(path)
        for key in keys:
            entry = files.get(key)
            if entry is not None:
                _unlink(entry[0])
        self._files.pop(path, None)


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
