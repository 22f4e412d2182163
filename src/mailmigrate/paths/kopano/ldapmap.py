"""How a Zarafa-schema directory entry becomes a Kopano-schema one; shared by the offline and online paths.

The two schemas differ by prefix only (``zarafaQuotaHard`` -> ``kopanoQuotaHard``, ``zarafa-user`` ->
``kopano-user``): the shipped files (Zarafa 7.2's and Kopano's installer/ldap/*.schema) have the same
attributes, MUST and MAY lists — both company classes MUST ``ou`` — so an entry valid under one is valid
under the other once renamed.  (An earlier version "fixed" companies for a ``cn`` that Zarafa's real schema
never required; it changed nothing on a real directory and is gone.)  Server objects carry kopano-server's
socket; a Zarafa socket there becomes /var/run/kopano/server.sock.
"""

from __future__ import annotations

import re

SERVER_SOCK = "/var/run/kopano/server.sock"
_OLD_SOCKET = re.compile(r"^(file://)?(/var/run/zarafa|/var/run/zarafad/server\.sock|/var/run/zarafa-server\.sock)$")

#: Zarafa object classes that are STRUCTURAL: an entry cannot switch them by a modify operation.
STRUCTURAL = frozenset({"zarafa-addresslist", "zarafa-dynamicgroup"})

def is_zarafa(name: str) -> bool:
    return name.lower().startswith("zarafa")


def kopano_name(name: str) -> str:
    """``zarafaX`` -> ``kopanoX`` and ``zarafa-x`` -> ``kopano-x``; other names unchanged."""
    return "kopano" + name[6:] if is_zarafa(name) else name


def new_socket(value: str) -> str | None:
    """The Kopano socket for a Zarafa server socket value, or None when the value is something else."""
    m = _OLD_SOCKET.match(value.strip())
    if not m:
        return None
    return (m.group(1) or "") + SERVER_SOCK


_FILTER_NAME = re.compile(rb"(?i)\bzarafa(?=[a-z-])")


def translate_value(name: str, value: bytes) -> bytes:
    """Address lists and dynamic groups hold LDAP filters naming Zarafa classes and attributes; after the
    migration those match nothing, so the names inside a filter move to Kopano's as well."""
    if name.lower() in ("zarafafilter", "kopanofilter"):
        return _FILTER_NAME.sub(b"kopano", value)
    return value


def _decode(values: list[bytes]) -> list[str]:
    return [v.decode("utf-8", "replace") for v in values]


def transform(dn: str, attributes: dict[str, list[bytes]]) -> tuple[dict[str, list[bytes]], list[str]]:
    """The Kopano-schema attributes of an entry, and notes on what changed beyond renaming."""
    notes: list[str] = []
    out: dict[str, list[bytes]] = {}
    lower: dict[str, str] = {}

    def put(name: str, values: list[bytes]) -> None:
        key = lower.setdefault(name.lower(), name)
        have = out.setdefault(key, [])
        seen = {v.lower() if key.lower() in ("objectclass", "structuralobjectclass") else v for v in have}
        for v in values:
            k = v.lower() if key.lower() in ("objectclass", "structuralobjectclass") else v
            if k not in seen:
                seen.add(k)
                have.append(v)

    for name, values in attributes.items():
        if name.lower() in ("objectclass", "structuralobjectclass"):
            put(name, [kopano_name(v.decode("utf-8", "replace")).encode() for v in values])
        else:
            new = [translate_value(name, v) for v in values]
            if new != list(values):
                notes.append(f"{dn}: {name} filter now names the Kopano schema")
            put(kopano_name(name), new)

    classes = _decode(out.get(lower.get("objectclass", "objectClass"), []))
    low = {c.lower() for c in classes}
    if "kopano-server" in low:
        key = lower.get("kopanofilepath")
        if key is not None:
            new = []
            for v in out[key]:
                s = new_socket(v.decode("utf-8", "replace"))
                if s is not None:
                    notes.append(f"{dn}: server socket {v.decode('utf-8', 'replace')} -> {s}")
                new.append(s.encode() if s is not None else v)
            out[key] = new
    return out, notes
