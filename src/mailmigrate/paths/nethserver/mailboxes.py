"""Mailboxes through the sync engine, for both NethServer paths.

NethServer's Dovecot runs the listescape plugin with ``\\`` as escape character, so a folder whose name holds
a backslash lives on disk as ``\\5c``.  :class:`ListescapeStore` presents such a Maildir with the names the
user sees (the escaped form undone) so the engine maps ``foo\\bar`` on SME to ``foo\\bar`` on NethServer while
the directory is written as ``.foo\\5cbar``: the seed's rename, done at write time.

Ownership: Dovecot on NethServer reads mail as ``vmail``.  :func:`apply_ownership` gives the tree to that user
only when it exists on this machine; otherwise it reports that it did not (a test root, a staging copy).
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from ...model import AccountResult, AppendItem, Body, FolderInfo, FolderPath, FolderStatus, MessageMeta
from ...stores.base import Store
from ...stores.maildir import MaildirStore
from ...sync.engine import SyncOptions, sync_account
from ...sync.state import StateDB
from ...formats import maildir as mdfmt
from ...formats.atomic import fsync_path
from .rules import listescape, unlistescape


def _down(path: FolderPath) -> FolderPath:
    return tuple(listescape(c) for c in path)


def _up(path: FolderPath) -> FolderPath:
    return tuple(unlistescape(c) for c in path)


class ListescapeStore(Store):
    """A store whose folder names are stored listescaped by the store underneath."""

    def __init__(self, inner: Store):
        self.inner = inner
        self.kind = inner.kind
        self.writable = inner.writable
        self.ordered_keys = inner.ordered_keys

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def clone(self):
        c = self.inner.clone()
        return ListescapeStore(c) if c is not None else None

    def describe(self) -> str:
        return self.inner.describe() + " (listescape)"

    def list_folders(self) -> list[FolderInfo]:
        return [FolderInfo(_up(f.path), f.special_use, f.subscribed, f.selectable) for f in self.inner.list_folders()]

    def folder_status(self, path: FolderPath) -> FolderStatus:
        return self.inner.folder_status(_down(path))

    def folder_statuses(self, paths: Sequence[FolderPath]) -> dict[FolderPath, FolderStatus]:
        got = self.inner.folder_statuses([_down(p) for p in paths])
        return {p: got[_down(p)] for p in paths if _down(p) in got}

    def list_messages(self, path: FolderPath, *, min_uid: int | None = None):
        return self.inner.list_messages(_down(path), min_uid=min_uid)

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        return self.inner.fetch(_down(path), keys)

    def fetch_problems(self):
        return self.inner.fetch_problems()

    def create_folder(self, path: FolderPath, special_use: str | None = None) -> None:
        self.inner.create_folder(_down(path), special_use)

    def subscribe(self, path: FolderPath) -> None:
        self.inner.subscribe(_down(path))

    def permanent_flags(self, path: FolderPath):
        return self.inner.permanent_flags(_down(path))

    def append(self, path: FolderPath, items: Sequence[AppendItem]):
        return self.inner.append(_down(path), items)

    def append_batch_limit(self):
        return self.inner.append_batch_limit()

    def set_flags(self, path: FolderPath, changes: Iterable):
        return self.inner.set_flags(_down(path), changes)

    def delete_folder(self, path: FolderPath) -> None:
        self.inner.delete_folder(_down(path))

    def delete_messages(self, path: FolderPath, keys: Sequence[str]) -> None:
        self.inner.delete_messages(_down(path), keys)


def sync_maildir(source_dir: Path, target_dir: Path, *, account: str, state: StateDB, dry_run: bool = False,
                 listescaped_target: bool = False) -> AccountResult:
    """One Maildir to another through the engine: incremental, byte-exact, safe to repeat."""
    src = MaildirStore(source_dir)
    tgt: Store = MaildirStore(target_dir, create=not dry_run, must_exist=not dry_run)
    if listescaped_target:
        tgt = ListescapeStore(tgt)
    return sync_account(src, tgt, account_name=account, state=state,
                        options=SyncOptions(dry_run=dry_run, connections=1))


def folder_dirs(maildir: Path) -> Iterator[tuple[FolderPath, Path]]:
    """(folder, directory) for INBOX and every Maildir++ folder below ``maildir``."""
    if not maildir.is_dir():
        return
    yield ("INBOX",), maildir
    for entry in sorted(maildir.iterdir()):
        if entry.is_dir() and entry.name.startswith(".") and entry.name not in (".", ".."):
            try:
                yield mdfmt.dirname_to_folder(entry.name), entry
            except Exception:
                continue


def target_folder_dir(maildir: Path, folder: FolderPath, *, listescaped: bool) -> Path:
    name = mdfmt.folder_to_dirname(_down(folder) if listescaped else folder)
    return maildir / name if name else maildir


#: compare in pieces this big: an unchanged 50 MB file must not cost 100 MB of memory
_CHUNK = 1 << 20


def copy_file(src: Path, dst: Path, *, dirty: set[Path] | None = None) -> bool:
    """Copy when the target is missing or differs; True when a copy was made.

    The copy is fsynced before it replaces the target, so a step that reported "done" has not lost the file
    to a power loss.  The rename is only durable once the directory is synced too: done here at once, or,
    when ``dirty`` is given, left to the caller, which collects the directories and syncs each once
    (:func:`copy_tree`), since one directory sync per file would cost more than the copies.
    """
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and _same_content(src, dst):
        return False
    _mkdirs(dst.parent, dirty)
    tmp = dst.with_name("." + dst.name + ".mailmigrate-tmp")
    try:
        tmp.unlink()  # a leftover of a crash; copy2 could not open it if it kept a read-only source's mode
    except FileNotFoundError:
        pass
    try:
        shutil.copy2(src, tmp)
        fsync_path(tmp)
        os.replace(tmp, dst)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _mark(dst.parent, dirty)
    return True


def copy_tree(src: Path, dst: Path, *, exclude: Iterable[str] = ()) -> int:
    """Copy ``src`` into ``dst`` (files that differ only); top-level names in ``exclude`` are left out.

    Every directory that got a new entry is synced once at the end, so the whole tree is on disk when this
    returns."""
    excluded = set(exclude)
    n = 0
    if not src.is_dir():
        return 0
    dirty: set[Path] = set()
    try:
        for dirpath, dirnames, filenames in os.walk(src):
            rel = Path(dirpath).relative_to(src)
            if rel == Path("."):
                dirnames[:] = [d for d in dirnames if d not in excluded]
                filenames = [f for f in filenames if f not in excluded]
            _mkdirs(dst / rel, dirty)
            for d in dirnames:
                sp = Path(dirpath) / d
                if sp.is_symlink():
                    _copy_link(sp, dst / rel / d, dirty)
            for f in filenames:
                sp = Path(dirpath) / f
                if sp.is_symlink():
                    _copy_link(sp, dst / rel / f, dirty)
                elif sp.is_file():
                    n += copy_file(sp, dst / rel / f, dirty=dirty)
    finally:
        for d in sorted(dirty, key=lambda p: len(p.parts), reverse=True):
            fsync_path(d)
    return n


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x = fa.read(_CHUNK)
            if x != fb.read(_CHUNK):
                return False
            if not x:
                return True


def _mkdirs(d: Path, dirty: set[Path] | None) -> None:
    """mkdir -p that records each directory it creates as a new entry of its parent."""
    if d.is_dir():
        return
    created = []
    p = d
    while not p.exists() and not p.is_symlink() and p != p.parent:
        created.append(p)
        p = p.parent
    d.mkdir(parents=True, exist_ok=True)
    for c in created:
        _mark(c.parent, dirty)


def _mark(d: Path, dirty: set[Path] | None) -> None:
    if dirty is None:
        fsync_path(d)
    else:
        dirty.add(d)


def _copy_link(src: Path, dst: Path, dirty: set[Path] | None = None) -> None:
    target = os.readlink(src)
    if dst.is_symlink() and os.readlink(dst) == target:
        return
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    os.symlink(target, dst)
    _mark(dst.parent, dirty)


def apply_ownership(path: Path, user: str = "vmail") -> bool:
    """chown -R to ``user`` and drop group/other access, as NethServer's Dovecot expects; False when the
    user does not exist here: then the tree is only made private (mail is nobody else's business until
    someone runs the chown)."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        pw = None
    for name in [path] if path.is_file() else _tree(path):
        if pw is not None:
            os.chown(name, pw.pw_uid, pw.pw_gid)
        mode = os.stat(name).st_mode & 0o7777
        if mode & 0o077:
            os.chmod(name, mode & 0o700)
    return pw is not None


def _tree(path: Path) -> Iterator[str]:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [dirpath] + [os.path.join(dirpath, x) for x in dirnames + filenames]:
            if not os.path.islink(name):
                yield name
