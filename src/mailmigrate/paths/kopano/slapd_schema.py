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

from ...formats.slapd_schema import schema_config_entry

#: the converter lives in formats/ (one for the product and the test fixture); the runbook's name for it
schema_entry = schema_config_entry


def loaded(config_dir: Path, name: str) -> bool:
    """Whether slapd's config tree holds a schema entry ``name`` (any index)."""
    d = Path(config_dir) / "cn=config" / "cn=schema"
    return any(re.fullmatch(r"cn=\{\d+\}" + re.escape(name) + r"\.ldif", p.name) for p in d.glob("*.ldif")) \
        if d.is_dir() else False
