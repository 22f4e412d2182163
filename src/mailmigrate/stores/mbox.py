"""mbox files as a source: one file, or a directory tree of them (Thunderbird ``X.sbd/`` or plain ``X/``).

Keys must survive appends to the file (new mail arrives while the migration runs) and must tell twins
apart, so a key is the SHA-256 of the message's bytes plus the occurrence number of that hash in the
folder ("<sha>:0", "<sha>:1").  The folder is indexed in one streaming pass (offsets only) and messages are
re-read by offset, so a 1 GB mbox costs about a hundred bytes of memory per message and is read once to
list it.  Offsets stay right while mail is appended; a rewrite of the file (a client compacting it) changes
the offsets, and ``fetch`` then re-lists the folder once before it gives up on a key.

Inside a tree, a file or directory that is a symbolic link is never followed (stores/nofollow.py): it is
listed as a folder holding one ``symlink:`` stand-in that ``fetch`` reports as not copied, naming it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import ConfigError, FolderFailed
from ..formats import mbox as fmt
from ..formats.specialuse import guess_special_use
from ..model import Body, FolderInfo, FolderPath, FolderStatus, MessageMeta, intern_flags
from .base import Store
from .nofollow import is_link_key, link_key, link_meta, link_reason, open_nofollow

log = logging.getLogger("mailmigrate.stores.mbox")

IGNORED_SUFFIXES = (".msf", ".lock", ".dat", ".json", ".sqlite", ".html")


class MboxStore(Store):
    kind = "mbox"
    writable = False
    ordered_keys = False

    def __init__(self, path: str | os.PathLike, *, variant: str = "mboxrd"):
        if variant not in fmt.VARIANTS:
            raise ConfigError(f"mbox variant must be mboxrd or mboxo, not {variant!r}")
        self.path = Path(path)
        self.variant = variant
        self._index: dict[FolderPath, dict[str, fmt.MboxEntry | Path]] = {}
        self._problems: list[tuple[str, str]] = []

    def describe(self) -> str:
        return f"mbox:{self.path}"

    def clone(self) -> "MboxStore":
        return MboxStore(self.path, variant=self.variant)

    def open(self) -> None:
        if not self.path.exists():
            raise ConfigError(f"mbox {self.path} does not exist")

    def close(self) -> None:
        self._index.clear()

    # --- folders ----------------------------------------------------------------------------------
    def _folders(self) -> dict[FolderPath, Path]:
        if self.path.is_file():
            return {("INBOX",): self.path}
        out: dict[FolderPath, Path] = {}

        def walk(d: Path, prefix: tuple[str, ...]):
            for e in sorted(d.iterdir()):
                if e.name.startswith(".") or e.name.endswith(IGNORED_SUFFIXES):
                    continue
                if e.is_symlink():
                    name = e.name[:-4] if e.name.endswith(".sbd") else e.name
                    path = prefix + (name,)
                    out.setdefault(("INBOX",) if not prefix and name.lower() == "inbox" else path, e)
                elif e.is_dir():
                    name = e.name[:-4] if e.name.endswith(".sbd") else e.name
                    name = name[:-10] if name.endswith(".directory") else name
                    walk(e, prefix + (name,))
                elif e.is_file():
                    path = prefix + (e.name,)
                    if not prefix and e.name.lower() == "inbox":
                        path = ("INBOX",)
                    out[path] = e

        walk(self.path, ())
        return out

    def list_folders(self) -> list[FolderInfo]:
        folders = self._folders()
        out = [FolderInfo(p, guess_special_use(p), True, True) for p in folders]
        # Hierarchy-only levels ("Archive" when only Archive.sbd/2020 exists) are not selectable.
        known = set(folders)
        for p in list(folders):
            for i in range(1, len(p)):
                if p[:i] not in known:
                    known.add(p[:i])
                    out.append(FolderInfo(p[:i], None, False, False))
        return out

    def _file(self, path: FolderPath) -> Path:
        f = self._folders().get(path)
        if f is None:
            raise FolderFailed(f"mbox folder {'/'.join(path)} does not exist under {self.path}")
        return f

    def folder_status(self, path: FolderPath) -> FolderStatus:
        f = self._file(path)
        st = f.lstat() if f != self.path else f.stat()
        # The file's size and modification time are its change marker.
        return FolderStatus(validity=1, uidnext=st.st_size, highestmodseq=st.st_mtime_ns, count=None)

    # --- reading ----------------------------------------------------------------------------------
    def list_messages(self, path: FolderPath, *, min_uid: int | None = None) -> tuple[FolderStatus, list[MessageMeta]]:
        f = self._file(path)
        status = self.folder_status(path)
        if f != self.path and f.is_symlink():
            key = link_key(f.relative_to(self.path))
            log.warning("mbox %s: %s", self.path, link_reason(f))
            self._index[path] = {key: f}
            return FolderStatus(status.validity, status.uidnext, status.highestmodseq, 1), [link_meta(key)]
        seen: Counter = Counter()
        index: dict[str, fmt.MboxEntry] = {}
        metas = []
        try:
            fh = open_nofollow(f) if f != self.path else open(f, "rb")
        except OSError as e:
            raise FolderFailed(f"cannot read {f}: {e.strerror or e}") from None
        with fh:
            for e in fmt.scan(fh, self.variant):
                key = f"{e.sha256}:{seen[e.sha256]}"
                seen[e.sha256] += 1
                index[key] = e
                for p in e.problems:
                    # A damaged From line costs the date, not the message: a warning, not a failure.
                    log.warning("mbox %s, message %s: %s", f, key[:12], p)
                metas.append(MessageMeta(key=key, flags=intern_flags(e.flags), internaldate=e.date, size=e.size))
        self._index[path] = index
        return FolderStatus(status.validity, status.uidnext, status.highestmodseq, len(metas)), metas

    def fetch(self, path: FolderPath, keys: Sequence[str]) -> Iterator[tuple[MessageMeta, Body]]:
        if path not in self._index:
            self.list_messages(path)
        relisted = False
        for key in keys:
            if is_link_key(key):
                link = self._index[path].get(key)
                self._problems.append((key, link_reason(link) if isinstance(link, Path) else
                                       f"{key}: a symbolic link, not followed, not copied"))
                continue
            body = self._read(path, key)
            if body is None and not relisted:
                # The file was rewritten (a client compacted it): offsets moved, content keys did not.
                relisted = True
                self.list_messages(path)
                body = self._read(path, key)
            if body is None:
                continue
            e = self._index[path][key]
            yield MessageMeta(key=key, flags=e.flags, internaldate=e.date, size=body.size), body

    def _read(self, path: FolderPath, key: str) -> Body | None:
        """The message under ``key`` if the bytes at its offset still are that message, else None."""
        e = self._index[path].get(key)
        if not isinstance(e, fmt.MboxEntry):
            return None
        f = self._file(path)
        try:
            fh = open_nofollow(f) if f != self.path else open(f, "rb")
        except OSError as err:  # replaced by a link (ELOOP) or removed since the listing
            self._problems.append((key, f"cannot read {f}: {err.strerror or err}"))
            return None
        with fh:
            body = fmt.read_message(fh, e, self.variant).finish()
        if body.size != e.size or body.fingerprint() != e.sha256:
            body.close()
            return None
        return body

    def fetch_problems(self) -> list[tuple[str, str]]:
        out, self._problems = self._problems, []
        return out
