"""slapd's ``.schema`` files (slapd.conf syntax) as the ``cn=config`` entry slapd keeps for each.

An old server (slapd.conf) includes ``kopano.schema`` or ``zarafa.schema`` as text; a cn=config server holds
the same statements as one ``olcSchemaConfig`` entry loaded with ``slapadd -n0``.  The conversion is the
one ``slaptest -f slapd.conf -F slapd.d`` makes (checked against slapd itself by
tests/test_directory_slapd.py): a statement starts in the first column and continues on indented lines,
``#`` lines are comments, and each kind of statement becomes one attribute whose values are numbered
``{0}``, ``{1}``... in file order — order that matters, since attribute types must precede the object
classes that use them and object identifiers their use.
"""

from __future__ import annotations

import re

from ..errors import FormatError
from .ldif import LdifEntry

#: slapd.conf schema directives and the cn=config attribute each becomes (slapd accepts the plural forms too)
DIRECTIVES = {
    "attributetype": "olcAttributeTypes",
    "attributetypes": "olcAttributeTypes",
    "objectclass": "olcObjectClasses",
    "objectclasses": "olcObjectClasses",
    "objectidentifier": "olcObjectIdentifier",
    "ldapsyntax": "olcLdapSyntaxes",
    "ditcontentrule": "olcDitContentRules",
}

_SPACE = re.compile(r"\s+")


def statements(text: str, name: str) -> list[str]:
    """The schema file's statements, continuation lines joined with one space."""
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            if not out:
                raise FormatError("continuation line before any statement", path=f"{name}.schema", line=number)
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    return out


def schema_config_entry(text: str, name: str) -> LdifEntry:
    """The ``cn=NAME,cn=schema,cn=config`` entry for a ``.schema`` file's text."""
    entry = LdifEntry(f"cn={name},cn=schema,cn=config", {"objectClass": [b"olcSchemaConfig"], "cn": [name.encode()]})
    counters: dict[str, int] = {}
    for st in statements(text, name):
        # slapd splits on any white space: Debian's inetorgperson.schema separates with tabs
        keyword, rest = (_SPACE.split(st, 1) + [""])[:2]
        attr = DIRECTIVES.get(keyword.lower())
        if attr is None:
            raise FormatError(f"unknown schema statement {keyword!r}", path=f"{name}.schema")
        n = counters.get(attr, 0)
        counters[attr] = n + 1
        entry.add(attr, ("{%d}" % n + _SPACE.sub(" ", rest.strip())).encode())
    return entry
