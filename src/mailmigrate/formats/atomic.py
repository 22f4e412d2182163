"""Replacing a whole file so that a reader or a crash sees the old bytes or the new, never a mix.

The files the directory writers and the paths' procedures replace (e-smith databases, ``/etc/shadow``,
configuration files, LDIF backups, state lists) are read by the system they belong to while we write them,
and some hold password hashes; each caller decides the final mode (keep the old one, never wider than 0600,
or what a plain ``open()`` would have given) and owner, this module only makes the swap atomic and durable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py
if TYPE_CHECKING:
    from typing import Literal


def replace_file(path: Path, data: bytes, mode: int | Literal["umask"] | None, *, suffix: str = "",
                 prefix: str | None = None, owner: tuple[int, int] | None = None,
                 owner_best_effort: bool = False, sync_dir: bool = False) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    The temporary file is created 0600 and gets ``mode`` (None: stays 0600; ``"umask"``: what ``open()``
    would give a new file, for files other programs read under the permissions their directory's users
    expect) only once the data is in, so a hash is never readable by more than its owner while it is being
    written.  ``owner`` (uid, gid) is given to it before the mode, so a file that must belong to someone
    else (a mailbox's user, a passwd-file's owner) is never published as ours; a refusal is an error unless
    ``owner_best_effort``, for callers that let an unprivileged administrator replace a file they may write
    but not give away.  It is fsynced before the rename so the rename never publishes an empty file after
    a power loss, and removed if anything fails.  ``sync_dir`` syncs the directory too, so the rename itself
    survives a crash, for a caller that reports the file written, or lets a later step count on it, at once
    (a caller replacing many files in one directory syncs it once itself).  ``prefix`` (default
    ``.<name>.``) and ``suffix`` let a caller's leftovers of a hard crash be told from other files, and keep
    them out of names that mean something in that directory.
    """
    if prefix is None:
        prefix = "." + path.name + "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if owner is not None and owner != (os.getuid(), os.getgid()):
                try:
                    os.fchown(f.fileno(), *owner)
                except PermissionError:
                    if not owner_best_effort:
                        raise
            if mode == "umask":
                mode = 0o666 & ~_umask()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if sync_dir:
        fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file or a directory named by its path: for a directory, the names created or renamed in it
    reach the disk, which a file's own fsync does not promise."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """Read without changing it where Linux shows it: setting it to read it back races with other threads
    creating files; the fallback sets 0077 for that instant, so a file created meanwhile is stricter, never
    wider."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old
