"""A ``.schema`` file as the cn=config entry slapd keeps for it, and whether a config tree has it.

The seed's offline LDAP transplant loads the Kopano schema into a stopped slapd before ``slapadd`` of the
converted data.  On a cn=config (slapd.d) server that is ``slapadd -n0`` of one ``olcSchemaConfig`` entry
whose ``olcAttributeTypes`` / ``olcObjectClasses`` values are the schema file's statements, numbered in
file order (slapd numbers them ``{0}``, ``{1}``... and the order matters: types before the classes that
use them).  slapd stores each schema entry as ``cn=config/cn=schema/cn={N}NAME.ldif``, which is how a
rerun sees that the schema is already loaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import FormatError
from ...formats.ldif import LdifEntry

_KEYWORDS = {"attributetype": "olcAttributeTypes", "objectclass": "olcObjectClasses",
             "objectidentifier": "olcObjectIdentifier"}


def schema_entry(text: str, name: str) -> LdifEntry:
    statements: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if not statements:
                raise FormatError(f"{name}.schema: continuation before any statement")
            statements[-1] += " " + line.strip()
        else:
            statements.append(line.strip())
    entry = LdifEntry(f"cn={name},cn=schema,cn=config", {"objectClass": [b"olcSchemaConfig"], "cn": [name.encode()]})
    numbers: dict[str, int] = {}
    for st in statements:
        word, _, rest = st.partition(" ")
        attr = _KEYWORDS.get(word.lower())
        if attr is None:
            raise FormatError(f"{name}.schema: unknown statement {word!r}")
        n = numbers.get(attr, 0)
        numbers[attr] = n + 1
        entry.add(attr, ("{%d}" % n + re.sub(r"\s+", " ", rest.strip())).encode())
    return entry


def loaded(config_dir: Path, name: str) -> bool:
    """Whether slapd's config tree holds a schema entry ``name`` (any index)."""
    d = Path(config_dir) / "cn=config" / "cn=schema"
    return any(re.fullmatch(r"cn=\{\d+\}" + re.escape(name) + r"\.ldif", p.name) for p in d.glob("*.ldif")) \
        if d.is_dir() else False
