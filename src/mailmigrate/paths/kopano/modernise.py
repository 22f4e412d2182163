"""Zarafa directives that Kopano 8.5 and later no longer reads, written as the directives that replaced them.

From Kopano's RELNOTES (8.5/8.7 series): the server's ``server_bind``, ``server_tcp_enabled``,
``server_tcp_port``, ``server_ssl_enabled`` and ``server_ssl_port`` became ``server_listen`` and
``server_listen_tls``; the gateway's ``imap_enabled``/``imap_port`` (and imaps, pop3, pop3s) became
``imap_listen`` … ``pop3s_listen``; ical's ``ical_enable``/``ical_port``/``icals_*`` became ``ical_listen``/
``icals_listen``; the LDAP plugin's ``ldap_host``, ``ldap_port`` and ``ldap_protocol`` are gone in favour of
``ldap_uri`` (8.7 still reads them as obsolete, the last release not at all). Dropping such a directive loses
what it said — a port, an address, a TLS listener, the LDAP server — so each is translated; the old lines
stay in the file, commented out with a note.

The defaults a missing old directive had are Zarafa 7.2's shipped ones (installer/linux/*.cfg): the server
on 0.0.0.0, TCP 236 on, TLS 237 off; the gateway IMAP 143 and POP3 110 on, IMAPS 993 and POP3S 995 off;
ical 8080 on, 8443 off; LDAP ``ldap://localhost:389``. Pure text in, text out.
"""

from __future__ import annotations

from . import cfgfile

NOTE = "replaced in Kopano 8.5 by {new}; translated by mailmigrate"


def _yes(v: str | None, default: bool) -> bool:
    if v is None or v == "":
        return default
    return v.strip().lower() in ("yes", "true", "1", "on")


def _host(bind: str | None) -> str:
    b = (bind or "").strip()
    if b in ("", "0.0.0.0", "::", "*"):
        return "*"
    return f"[{b}]" if ":" in b and not b.startswith("[") else b


def _spec(host: str, port: str) -> str:
    return f"{host}:{port.strip()}"


# file -> list of (new directive, old directives, function(active) -> value)
def _server(a: dict) -> dict[str, str]:
    host = _host(a.get("server_bind"))
    out = {"server_listen": _spec(host, a.get("server_tcp_port") or "236")
           if _yes(a.get("server_tcp_enabled"), True) else ""}
    out["server_listen_tls"] = _spec(host, a.get("server_ssl_port") or "237") \
        if _yes(a.get("server_ssl_enabled"), False) else ""
    return out


def _gateway(a: dict) -> dict[str, str]:
    host = _host(a.get("server_bind"))
    out = {}
    for proto, port, on in (("imap", "143", True), ("imaps", "993", False), ("pop3", "110", True),
                            ("pop3s", "995", False)):
        out[f"{proto}_listen"] = _spec(host, a.get(f"{proto}_port") or port) \
            if _yes(a.get(f"{proto}_enabled"), on) else ""
    return out


def _ical(a: dict) -> dict[str, str]:
    host = _host(a.get("server_bind"))
    return {"ical_listen": _spec(host, a.get("ical_port") or "8080") if _yes(a.get("ical_enable"), True) else "",
            "icals_listen": _spec(host, a.get("icals_port") or "8443") if _yes(a.get("icals_enable"), False) else ""}


def _ldap(a: dict) -> dict[str, str]:
    if (a.get("ldap_uri") or "").strip():
        return {}
    proto = (a.get("ldap_protocol") or "ldap").strip().lower()
    scheme = "ldaps" if proto == "ldaps" else "ldap"
    port = (a.get("ldap_port") or ("636" if scheme == "ldaps" else "389")).strip()
    hosts = (a.get("ldap_host") or "localhost").split()
    return {"ldap_uri": " ".join(f"{scheme}://{h}:{port}" for h in hosts)}


REPLACED: dict[str, tuple[tuple[str, ...], object]] = {
    "server.cfg": (("server_bind", "server_tcp_enabled", "server_tcp_port", "server_ssl_enabled",
                    "server_ssl_port"), _server),
    "gateway.cfg": (("server_bind", "imap_enabled", "imap_port", "imaps_enabled", "imaps_port", "pop3_enabled",
                     "pop3_port", "pop3s_enabled", "pop3s_port"), _gateway),
    "ical.cfg": (("server_bind", "ical_enable", "ical_port", "icals_enable", "icals_port"), _ical),
    "ldap.cfg": (("ldap_host", "ldap_port", "ldap_protocol"), _ldap),
}


def replaced(rel: str) -> tuple[str, ...]:
    return REPLACED[rel][0] if rel in REPLACED else ()


def new_values(rel: str, text: str) -> dict[str, str]:
    """The directives of Kopano 8.5+ that say what ``text``'s replaced directives said."""
    if rel not in REPLACED:
        return {}
    return REPLACED[rel][1](cfgfile.active(text))


def modernise(rel: str, text: str) -> str:
    """``text`` with its replaced directives commented out and their replacements in effect."""
    if rel not in REPLACED:
        return text
    names, _ = REPLACED[rel]
    values = new_values(rel, text)
    new = ", ".join(values) or "ldap_uri"
    lines = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        m = cfgfile._ACTIVE.match(body)
        if m and m.group(1) in names:
            line = f"#{body}    # {NOTE.format(new=new)}{line[len(body):]}"
        lines.append(line)
    text = "".join(lines)
    for name, value in values.items():
        text = cfgfile.set_directive(text, name, value, NOTE.format(new=name))
    return text


def loopback_only(spec: str) -> bool:
    parts = spec.split()
    return bool(parts) and all(p.split("]")[0].lstrip("[").split(":")[0] in ("127.0.0.1", "localhost", "::1")
                                or "%lo" in p for p in parts)
