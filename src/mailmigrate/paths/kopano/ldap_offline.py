"""Offline LDAP migration: a ``slapcat`` export in the Zarafa schema -> an LDIF for ``slapadd`` in the Kopano one.

For a directory that is rebuilt anyway (downtime accepted): export with slapcat, load kopano.schema
instead of zarafa.schema, transform, and slapadd the result into an empty database.  Operational
attributes of the export (entryUUID, timestamps, structuralObjectClass) are kept; the structural
address-list and dynamic-group classes are renamed in structuralObjectClass as well.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ...formats.ldif import LdifEntry, dump_ldif, parse_ldif
from ..plan import Plan, Step, backup_file, write_atomic
from .ldapmap import is_zarafa, transform


@dataclass
class OfflineResult:
    entries: list[LdifEntry]
    changed: int = 0
    notes: list[str] = field(default_factory=list)


def convert_entries(entries: list[LdifEntry]) -> OfflineResult:
    res = OfflineResult([])
    for e in entries:
        attrs, notes = transform(e.dn, e.attributes)
        res.notes += notes
        if attrs != e.attributes:
            res.changed += 1
        res.entries.append(LdifEntry(e.dn, attrs))
    return res


def convert(data: bytes, path: str | os.PathLike | None = None) -> OfflineResult:
    return convert_entries(parse_ldif(data, path))


def leftovers(entries: list[LdifEntry]) -> list[str]:
    """Zarafa names still in the output (there should be none)."""
    out = []
    for e in entries:
        for k, vals in e.attributes.items():
            if is_zarafa(k) or (k.lower() == "objectclass" and any(is_zarafa(v.decode("utf-8", "replace"))
                                                                    for v in vals)):
                out.append(f"{e.dn}: {k}")
    return out


def plan(source: Path, target: Path) -> Plan:
    """Write ``target`` from ``source``; an existing different target is kept beside it first."""
    source, target = Path(source), Path(target)

    def result() -> tuple[bytes, OfflineResult]:
        r = convert(source.read_bytes(), source)
        return dump_ldif(r.entries), r

    def changes() -> list[str]:
        data, r = result()
        if target.exists() and target.read_bytes() == data:
            return []
        return [f"write {target}: {len(r.entries)} entries, {r.changed} changed to the Kopano schema"] + r.notes

    def apply() -> list[str]:
        data, r = result()
        backup_file(target)
        write_atomic(target, data, mode=0o600)
        return [f"left over Zarafa names: {x}" for x in leftovers(r.entries)]

    return Plan(f"LDIF {source} (Zarafa schema) -> {target} (Kopano schema)",
                [Step("transform LDIF", "rename attributes and object classes, fix companies and server sockets",
                      changes=changes, apply=apply)])
