"""A directory reading saved to a file, so that "before" survives the upgrade that changes the directory.

Kopano's post-upgrade checklist (and any path's before/after proof) compares the directory as it was before
the work with the directory after it; the "before" must be taken first and kept.  The snapshot holds every
object of the model except passwords (never written to disk here) and is plain JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from ..errors import FormatError
from ..formats.atomic import replace_file
from .base import KINDS, AddressList, Alias, Company, Contact, Directory, DynamicGroup, Group, User

_TYPES = {"users": User, "groups": Group, "aliases": Alias, "contacts": Contact, "companies": Company,
          "address_lists": AddressList, "dynamic_groups": DynamicGroup}
_SECRET_FIELDS = {"password"}
FORMAT = "mailmigrate-directory-snapshot/1"


def to_dict(d: Directory) -> dict:
    out = {"format": FORMAT, "name": d.name, "base_dn": d.base_dn, "domains": list(d.domains), "notes": list(d.notes)}
    for kind in KINDS:
        out[kind] = [{k: v for k, v in dataclasses.asdict(obj).items() if k not in _SECRET_FIELDS}
                     for obj in getattr(d, kind).values()]
    return out


def from_dict(data: dict, origin: str = "snapshot") -> Directory:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise FormatError("not a mailmigrate directory snapshot", path=origin)
    d = Directory(name=data.get("name", ""), base_dn=data.get("base_dn"), domains=list(data.get("domains", [])),
                  notes=list(data.get("notes", [])))
    for kind, cls in _TYPES.items():
        names = {f.name for f in dataclasses.fields(cls)}
        for item in data.get(kind, []):
            if not isinstance(item, dict):
                raise FormatError(f"{kind}: an entry is not an object", path=origin)
            try:
                d.add(cls(**{k: v for k, v in item.items() if k in names}))
            except TypeError as e:
                raise FormatError(f"{kind}: {e}", path=origin) from None
    return d


def save(d: Directory, path: str | os.PathLike) -> None:
    """Replaced atomically, so a crash during a second snapshot never costs the "before" of the first; no
    secrets in it, so it gets the mode any new file of the user's would."""
    data = json.dumps(to_dict(d), indent=1, ensure_ascii=False, sort_keys=True).encode("utf-8")
    replace_file(Path(path), data, "umask", suffix=".tmp")


def load(path: str | os.PathLike) -> Directory:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"cannot read the snapshot: {e}", path=str(p)) from None
    return from_dict(data, str(p))
