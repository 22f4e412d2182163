"""Calendars and address books as local files: the vdir layout (one directory per collection, one file per
item, as vdirsyncer, khal and khard keep them), source and target.

    ROOT/<collection>/<name>.ics | .vcf
    ROOT/<collection>/displayname, color, description    (optional one-line metadata files)

A collection is a calendar when it holds .ics files (or says ``kind`` in a metadata file we wrote), an
address book when it holds .vcf files. An item's ETag is the SHA-256 of its bytes: a file touched without a
change is not copied again, and nothing else is needed to notice an edit. Files are written through
formats.atomic (never half), private (0600/0700), and a symlink is never followed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from ..errors import ConfigError
from ..formats.atomic import replace_file
from ..formats.ical import item_info
from .groupware import Collection, GroupwareStore, Item, ItemChanged, ItemExists

_META = ("displayname", "color", "description")
_EXT = {".ics": "calendar", ".vcf": "addressbook"}


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    finally:
        os.close(fd)


class VdirStore(GroupwareStore):
    def __init__(self, root: str | os.PathLike, *, create: bool = False):
        self.root = Path(root)
        self.create = create
        #: symlinks met and not followed, for the report
        self.skipped: list[str] = []

    def describe(self) -> str:
        return f"vdir:{self.root}"

    def open(self) -> None:
        if not self.root.is_dir():
            if not self.create:
                raise ConfigError(f"vdir {self.root} does not exist")
            self.root.mkdir(parents=True, mode=0o700)

    def _dir(self, coll: Collection) -> Path:
        if "/" in coll.name or coll.name in ("", ".", ".."):
            raise ValueError(f"bad collection name {coll.name!r}")
        return self.root / coll.name

    def collections(self) -> list[Collection]:
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_symlink():
                self.skipped.append(str(d))
                continue
            if not d.is_dir() or d.name.startswith("."):
                continue
            meta = {}
            for key in _META + ("kind",):
                f = d / key
                if f.is_file() and not f.is_symlink():
                    meta[key] = f.read_text(encoding="utf-8").strip() or None
            kind = meta.get("kind")
            if kind not in ("calendar", "addressbook"):
                kinds = {_EXT[p.suffix] for p in d.iterdir() if p.suffix in _EXT}
                kind = kinds.pop() if len(kinds) == 1 else "calendar"
            out.append(Collection(d.name, kind, meta.get("displayname"), meta.get("color"),
                                  meta.get("description")))
        return out

    def list_items(self, coll: Collection) -> dict[str, str]:
        out = {}
        for p in sorted(self._dir(coll).iterdir()):
            if p.suffix not in _EXT:
                continue
            if p.is_symlink():
                self.skipped.append(str(p))
                continue
            out[p.name] = _etag(_read_nofollow(p))
        return out

    def get(self, coll: Collection, name: str) -> Item:
        data = _read_nofollow(self._dir(coll) / name)
        return Item(name, _etag(data), data, item_info(data).content_type)

    def create_collection(self, coll: Collection) -> Collection:
        d = self._dir(coll)
        d.mkdir(mode=0o700, exist_ok=True)
        for key, value in (("displayname", coll.displayname), ("color", coll.color),
                           ("description", coll.description), ("kind", coll.kind)):
            if value:
                replace_file(d / key, (value + "\n").encode("utf-8"), 0o600)
        return Collection(coll.name, coll.kind, coll.displayname, coll.color, coll.description, coll.components)

    def put(self, coll, name, data, content_type, *, etag=None) -> str:
        p = self._dir(coll) / name
        if etag is None:
            if os.path.lexists(p):
                raise ItemExists(f"{p} exists")
        else:
            current = _etag(_read_nofollow(p)) if p.exists() else None
            if current != etag:
                raise ItemChanged(f"{p} changed since it was copied")
        replace_file(p, data, 0o600, sync_dir=True)
        return _etag(data)

    def delete(self, coll, name, etag) -> None:
        p = self._dir(coll) / name
        if _etag(_read_nofollow(p)) != etag:
            raise ItemChanged(f"{p} changed since it was copied")
        p.unlink()

    def delete_collection(self, coll: Collection) -> bool:
        d = self._dir(coll)
        if self.list_items(coll):
            return False
        for key in ("displayname", "color", "description", "kind"):
            (d / key).unlink(missing_ok=True)
        try:
            d.rmdir()
        except OSError:  # something else lives there: kept
            return False
        return True
