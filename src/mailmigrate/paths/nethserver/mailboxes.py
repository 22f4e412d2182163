"""Files of mail homes for both NethServer paths: folder directories, file and tree copies, ownership.

NethServer's Dovecot runs the listescape plugin with ``\\`` as escape character, so a folder whose name holds
a backslash lives on disk as ``\\5c`` (:func:`target_folder_dir`).  Messages themselves are copied by
:mod:`mailmigrate.sync.maildir_clone`, which keeps their UIDs.

Ownership: Dovecot on NethServer reads mail as ``vmail``.  :func:`apply_ownership` gives the tree to that user
only when it exists on this machine; otherwise it makes the tree private and reports that it did not (a test
root, a staging copy).
"""

from __future__ import annotations

import os
import pwd
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from ...formats import maildir as mdfmt
from ...formats.atomic import fsync_path
from ...model import FolderPath
from .rules import listescape


def _down(path: FolderPath) -> FolderPath:
    return tuple(listescape(c) for c in path)


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


def copy_tree(src: Path, dst: Path, *, exclude: Iterable[str] = (), skipped: list[str] | None = None) -> int:
    """Copy ``src`` into ``dst`` (files that differ only); top-level names in ``exclude`` are left out.

    A symlink is never followed; it is made again only when it is relative and stays inside ``src`` (a
    home's own shortcuts).  One that points elsewhere is something a user of the old server could plant
    (``x -> ../../../../etc/shadow`` lands on the new server's own file): left out and appended to
    ``skipped`` as ``relative path -> target``.  Every directory that got a new entry is synced once at the
    end, so the whole tree is on disk when this returns."""
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
            for name in dirnames + filenames:
                sp = Path(dirpath) / name
                if sp.is_symlink():
                    if _inside(src, sp):
                        _copy_link(sp, dst / rel / name, dirty)
                    elif skipped is not None:
                        skipped.append(f"{sp.relative_to(src)} -> {os.readlink(sp)}")
            for f in filenames:
                sp = Path(dirpath) / f
                if sp.is_symlink():
                    continue
                elif sp.is_file():
                    n += copy_file(sp, dst / rel / f, dirty=dirty)
    finally:
        for d in sorted(dirty, key=lambda p: len(p.parts), reverse=True):
            fsync_path(d)
    return n


def _inside(root: Path, link: Path) -> bool:
    target = os.readlink(link)
    if os.path.isabs(target):
        return False
    resolved = os.path.normpath(os.path.join(os.path.dirname(link), target))
    return resolved == os.path.normpath(root) or resolved.startswith(os.path.normpath(root) + os.sep)


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
