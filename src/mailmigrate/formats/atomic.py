"""Replacing a whole file so that a reader or a crash sees the old bytes or the new, never a mix.

The files the directory writers and the paths' procedures replace (e-smith databases, ``/etc/shadow``,
configuration files, LDIF backups) are read by the system they belong to while we write them, and some
hold password hashes; each caller decides the final mode (keep the old one, or never wider than 0600),
this module only makes the swap atomic and durable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int | None, *, suffix: str = "") -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``.

    The temporary file is created 0600 and gets ``mode`` (None: stays 0600) only once the data is in, so
    a hash is never readable by more than its owner while it is being written; it is fsynced before the
    rename so the rename never publishes an empty file after a power loss, and removed if anything fails.
    Syncing the directory (so the rename itself survives a crash) is left to callers that need it;
    ``suffix`` lets a caller's leftovers of a hard crash be told from other files.
    """
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=suffix, dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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
