"""e-smith databases (SME Server, NethService, NethServer 6/7): ``/home/e-smith/db/*``, ``/var/lib/nethserver/db/*``.

One record per line, ``key=type|prop|value|prop|value``.  The line splits at the first ``=``; the value
splits on ``|`` not preceded by a backslash (an escaped ``\\|`` stays in the value as it was written, which
is what e-smith's own reader does); a newline inside a value is stored as the two characters ``\\n``.
A value without ``|`` is a record with a type and no props (the configuration db's plain values such as
``SystemName=mail``).  Lines that are blank or start with ``#`` (after blanks) are comments.

The writers of e-smith sort the props, drop ``|`` from values (they have no escape for it on write) and
replace the file through a temporary file and rename, under an exclusive ``flock`` on ``<file>.lock``;
readers take a shared lock on the same file.  We do the same, so a running e-smith system and mailmigrate
never see each other's half-written file.

Bytes that are not UTF-8 (old SME installs wrote Latin-1) are kept as they were via surrogateescape, so a
read-modify-write never changes what it did not touch.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..errors import FormatError
from .atomic import replace_file

_SPLIT = _UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_ENC = "utf-8"
_ERRORS = "surrogateescape"


@dataclass
class Record:
    """One record: its type (``user``, ``group``, ``pseudonym``, ``service``, a plain value...) and props."""

    type: str
    props: dict[str, str] = field(default_factory=dict)

    def get(self, prop: str, default: str | None = None) -> str | None:
        return self.props.get(prop, default)


class EsmithDb(dict):
    """key -> :class:`Record`, in file order (a plain dict keeps insertion order)."""

    def of_type(self, type_: str) -> Iterator[tuple[str, Record]]:
        """The (key, record) pairs of one type, in file order."""
        for k, r in self.items():
            if r.type == type_:
                yield k, r

    def prop(self, key: str, prop: str, default: str | None = None) -> str | None:
        rec = self.get(key)
        return default if rec is None else rec.props.get(prop, default)


def parse_esmith(data: bytes, path: str | os.PathLike | None = None) -> EsmithDb:
    """Parse the bytes of one e-smith database file.

    A later line for the same key replaces the earlier one, and a later prop of the same name replaces
    the earlier one: that is what e-smith itself ends up with (its records are Perl hashes).
    """
    where = None if path is None else str(path)
    try:
        text = data.decode(_ENC, _ERRORS)
    except Exception as e:  # pragma: no cover - surrogateescape cannot fail on bytes
        raise FormatError(f"cannot decode: {e}", path=where) from None
    db = EsmithDb()
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, raw = line.partition("=")
        if not sep:
            raise FormatError(f"record without '=': {_preview(line)}", path=where, line=lineno)
        if not key:
            raise FormatError("record with an empty key", path=where, line=lineno)
        raw = raw.replace("\\n", "\n")
        fields = _SPLIT.split(raw)
        props: dict[str, str] = {}
        rest = fields[1:]
        for i in range(0, len(rest), 2):
            # An odd field count leaves the last prop without a value; Perl gives it undef, we give "".
            props[rest[i]] = rest[i + 1] if i + 1 < len(rest) else ""
        db[key] = Record(fields[0], props)
    return db


def dump_esmith(db: dict) -> bytes:
    """The file for ``db``: keys and props sorted, as e-smith writes them.

    ``|`` is dropped from types, prop names and values (e-smith has no way to write one), except an
    already escaped ``\\|`` that was read from a file, which is written back as it was.  A field ending
    in a backslash would escape the separator after it, so trailing backslashes are dropped too.
    Keys that cannot be written (``=`` or a newline in them, empty, or looking like a comment) raise
    ValueError: that is a caller's mistake, not data to lose silently.
    """
    out = ["# DO NOT MODIFY THIS FILE.\n# Written by mailmigrate in the e-smith database format.\n"]
    for key in sorted(db):
        rec = db[key]
        if not key or "=" in key or "\n" in key or key.lstrip().startswith("#"):
            raise ValueError(f"key cannot be stored in an e-smith database: {key!r}")
        parts = [rec.type]
        for name in sorted(rec.props):
            parts.append(name)
            parts.append(rec.props[name])
        last = len(parts) - 1
        out.append(key + "=" + "|".join(_clean(v, i < last) for i, v in enumerate(parts)) + "\n")
    return "".join(out).encode(_ENC, _ERRORS)


def _clean(value: str, separator_follows: bool) -> str:
    value = _UNESCAPED_PIPE.sub("", str(value))
    if separator_follows:
        value = value.rstrip("\\")
    return value.replace("\n", "\\n")


def _preview(line: str) -> str:
    return repr(line[:60] + ("..." if len(line) > 60 else ""))


# -- files ---------------------------------------------------------------------------------------------


def _lock(path: Path, mode: int):
    fd = os.open(str(path) + ".lock", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_esmith(path: str | os.PathLike) -> EsmithDb:
    """Read a database under a shared lock on ``<path>.lock`` (a missing file is an empty database, as in e-smith).

    When the directory is read-only (an unpacked backup on a read-only mount) there is nobody to lock
    against, so the file is read without a lock.
    """
    p = Path(path)
    try:
        fd = _lock(p, fcntl.LOCK_SH)
    except (PermissionError, OSError) as e:
        if isinstance(e, PermissionError) or getattr(e, "errno", None) == 30:  # EROFS
            fd = None
        else:
            raise
    try:
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return EsmithDb()
        return parse_esmith(data, p)
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def write_esmith(path: str | os.PathLike, db: dict) -> None:
    """Replace the database atomically: exclusive lock, temporary file in the same directory, fsync, rename.

    The file keeps its permissions (0640 when new); a crash at any point leaves either the old or the
    new file, never a mix.
    """
    p = Path(path)
    data = dump_esmith(db)
    fd = _lock(p, fcntl.LOCK_EX)
    try:
        try:
            mode = p.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o640
        replace_file(p, data, mode, sync_dir=True)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
