"""The Zarafa and Kopano LDAP schemas mailmigrate ships (and loads into the tests' slapd) hold what the
vendors' own files hold (issue 17: ours required ``cn`` on zarafa-company and lacked the archive
attributes).  The facts below were read from Zarafa 7.2's ``installer/ldap/zarafa.schema``
(github.com/vorlon/zarafa-debian) and Kopano's ``installer/ldap/kopano.schema`` (github.com/Kopano-dev/
kopano-core); the object identifiers, MUST/MAY lists and syntaxes are those files'."""

from __future__ import annotations

import re
from importlib import resources

import pytest

PRINTABLE_STRING = "1.3.6.1.4.1.1466.115.121.1.44"

# zarafa-user's MAY in Zarafa 7.2 (kopano-user's is the same with the kopano prefix).
USER_MAY = {"quotaoverride", "quotawarn", "quotasoft", "sendasprivilege", "quotahard", "admin", "sharedstoreonly",
            "resourcetype", "resourcecapacity", "account", "hidden", "aliases", "userserver", "enabledfeatures",
            "disabledfeatures", "userarchiveservers", "userarchivecouplings"}


def _schema(name: str) -> dict[str, dict]:
    text = resources.files("mailmigrate.paths.kopano").joinpath("schema", name).read_text()
    text = re.sub(r"#.*", "", text)
    out = {}
    for kind, body in re.findall(r"(attributetype|objectclass)\s*(\((?:[^()]|\([^()]*\))*\))", text, re.I):
        oid = body[1:].split()[0]
        name_ = re.search(r"NAME\s+'([^']+)'", body).group(1)

        def names(key):
            m = re.search(key + r"\s+(\([^)]*\)|\S+)", body)
            return {x.lower() for x in m.group(1).strip("()").replace("$", " ").split()} if m else set()

        syntax = re.search(r"SYNTAX\s+(\S+)", body)
        out[name_.lower()] = {"kind": kind.lower(), "oid": oid, "must": names("MUST"), "may": names("MAY"),
                              "syntax": syntax.group(1) if syntax else None}
    return out


@pytest.mark.parametrize("prefix, arc", [("zarafa", "1.3.6.1.4.1.26278.1."), ("kopano", "1.3.6.1.4.1.47732.1.")])
def test_the_shipped_schema_holds_what_the_vendor_ships(prefix, arc):
    s = _schema(f"{prefix}.schema")
    assert len(s) == 46  # 39 attribute types and 7 object classes in both files
    assert sum(1 for v in s.values() if v["kind"] == "objectclass") == 7
    assert all(v["oid"].startswith(arc) for v in s.values())
    assert s[f"{prefix}-company"]["must"] == {"ou"}  # not cn
    assert s[f"{prefix}-user"]["must"] == {"cn"}
    assert s[f"{prefix}-user"]["may"] == {prefix + m for m in USER_MAY} | {"uidnumber"}
    assert s[f"{prefix}userarchiveservers"]["oid"] == arc + "1.6.1"  # archive attributes, since Zarafa 7.0
    assert s[f"{prefix}userarchivecouplings"]["oid"] == arc + "1.6.2"
    assert s[f"{prefix}proxyurl"]["oid"] == arc + "4.4.6" and f"{prefix}proxyurl" in s[f"{prefix}-server"]["may"]
    assert s[f"{prefix}enabledfeatures"]["syntax"] == s[f"{prefix}disabledfeatures"]["syntax"] == PRINTABLE_STRING


def test_each_zarafa_name_has_its_kopano_twin_under_the_same_suffix():
    z, k = _schema("zarafa.schema"), _schema("kopano.schema")
    for name, v in z.items():
        twin = k["kopano" + name[6:]]
        assert twin["oid"].split(".", 7)[-1] == v["oid"].split(".", 7)[-1], name
        assert {m.replace("zarafa", "kopano") for m in v["must"] | v["may"]} == twin["must"] | twin["may"], name
