"""formats/slapd_schema: a ``.schema`` file as slapd's cn=config entry.  The inputs are the vendors' files as
shipped: Zarafa 7.2's and Kopano's ``installer/ldap/*.schema`` (shipped in the package, see
test_kopano_schemas.py for their provenance) and Debian slapd's /etc/ldap/schema/*.schema when installed.
That the output is what slapd itself makes is shown by test_directory_slapd.py (against ``slaptest``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from mailmigrate.errors import FormatError
from mailmigrate.formats.slapd_schema import schema_config_entry


def _shipped(name: str) -> str:
    return resources.files("mailmigrate.paths.kopano").joinpath("schema", name).read_text()


@pytest.mark.parametrize("name", ["zarafa", "kopano"])
def test_the_vendor_schema_becomes_39_types_then_7_classes_numbered_in_file_order(name):
    e = schema_config_entry(_shipped(f"{name}.schema"), name)
    assert e.dn == f"cn={name},cn=schema,cn=config"
    types, classes = e.get("olcAttributeTypes"), e.get("olcObjectClasses")
    assert (len(types), len(classes)) == (39, 7)
    assert [v.split(b"}", 1)[0] for v in types] == [b"{%d" % i for i in range(39)]
    assert all(b"\n" not in v and b"  " not in v for v in types + classes)  # continuations joined, spaces folded
    assert classes[0].startswith(b"{0}( 1.3.6.1.4.1.")


@pytest.mark.skipif(not Path("/etc/ldap/schema").is_dir(), reason="Debian's slapd schemas not installed")
def test_every_schema_debian_ships_converts_and_the_one_with_a_typo_is_named():
    """OpenLDAP's contrib ``dsee.schema`` (as Debian ships it) spells one directive ``attributeype``; slapd
    refuses that file too, so the converter must say which statement, not skip it."""
    for p in sorted(Path("/etc/ldap/schema").glob("*.schema")):
        if p.stem == "dsee":
            with pytest.raises(FormatError, match="'attributeype'"):
                schema_config_entry(p.read_text(), p.stem)
            continue
        assert schema_config_entry(p.read_text(), p.stem).get("cn") == [p.stem.encode()]


def test_an_unknown_statement_and_a_leading_continuation_name_the_file():
    with pytest.raises(FormatError, match=r"kopano\.schema.*'include'"):
        schema_config_entry("include other.schema\n", "kopano")
    with pytest.raises(FormatError, match=r"x\.schema, line 2"):
        schema_config_entry("# c\n  ( 1.2 NAME 'a' )\n", "x")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_any_text_is_an_entry_or_a_format_error(text):
    try:
        schema_config_entry(text, "fuzz")
    except FormatError:
        pass
