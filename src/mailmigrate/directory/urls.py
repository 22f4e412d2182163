"""Directory URLs, as the command line and project files write them.

* ``ldap://HOST[:PORT]/BASEDN[?bind=DN][&flavor=auto|openldap|ad][&starttls=1][&cafile=PEM][&insecure=1]``
  ``[&group_style=groupOfNames|posix]`` and ``ldaps://...``; BASEDN and DN percent-encoded where needed
  (``,`` and ``=`` may stay).
* ``passwd-file:PATH[?uid=N&gid=N&home=/srv/mail/{login}]`` - a Dovecot passwd-file.
* ``esmith:ACCOUNTS_DB[?shadow=PATH][&domain=example.com]`` - an e-smith accounts db, with the shadow file.
* ``kerio://ADMIN@HOST[:PORT][/DOMAIN]`` - Kerio Connect's administration API (see :mod:`.kerio`).

Passwords are never part of a URL: a command line is visible to every user of the machine.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigError
from ..model import Secret
from .base import DirectoryReader

_TRUE = ("1", "yes", "true", "on")


def _params(text: str, query: str, allowed: set[str]) -> dict[str, str]:
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()} if query else {}
    unknown = set(params) - allowed
    if unknown:
        raise ConfigError(f"{text}: unknown option(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(allowed))})")
    return params


def open_directory(text: str, password: Secret | None = None, *,
                   group_style: str | None = None, must_exist: bool = False) -> DirectoryReader:
    """``group_style``: the shape of new LDAP groups when the URL does not say (a path knows what its
    target's tools expect; the URL still wins, for a target set up otherwise).  ``must_exist``: for a
    directory that is read, not created — a file-based one whose file is missing is an error, not empty."""
    scheme = text.split(":", 1)[0].lower()
    if scheme in ("ldap", "ldaps"):
        u = urlsplit(text)
        if u.username or u.password:
            raise ConfigError(f"{text}: put the bind DN in ?bind=, and the password in the environment or a file")
        if not u.hostname:
            raise ConfigError(f"{text}: write {scheme}://HOST[:PORT]/BASEDN")
        base = unquote(u.path.lstrip("/"))
        if not base:
            raise ConfigError(f"{text}: the base DN is missing ({scheme}://HOST/dc=example,dc=com)")
        p = _params(text, u.query, {"bind", "flavor", "starttls", "insecure", "timeout", "group_style", "cafile"})
        cafile = p.get("cafile") or None
        if cafile and not os.path.isfile(cafile):
            raise ConfigError(f"{text}: cafile {cafile} is not a readable file")
        try:
            port = u.port
        except ValueError:
            raise ConfigError(f"{text}: bad port") from None
        from .ldap import LdapDirectory
        server = f"{scheme}://{u.hostname}" + (f":{port}" if port else "")
        if p.get("bind") and password is None:
            raise ConfigError(f"{text}: bind DN given but no password (MAILMIGRATE_*_PASSWORD or a password file)")
        return LdapDirectory(server, base, bind_dn=p.get("bind") or None, password=password,
                             flavor=p.get("flavor", "auto"), starttls=p.get("starttls", "0").lower() in _TRUE,
                             insecure=p.get("insecure", "0").lower() in _TRUE, timeout=int(p.get("timeout", 30)),
                             group_style=p.get("group_style") or group_style or "groupOfNames", cafile=cafile)
    if scheme == "passwd-file":
        rest = text.split(":", 1)[1]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigError(f"{text}: write passwd-file:PATH")
        p = _params(text, query, {"uid", "gid", "home"})
        from .passwdfile import PasswdFileDirectory
        return PasswdFileDirectory(unquote(path), uid=p.get("uid", ""), gid=p.get("gid", ""),
                                   home_template=p.get("home", ""), must_exist=must_exist)
    if scheme == "esmith":
        rest = text.split(":", 1)[1]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigError(f"{text}: write esmith:ACCOUNTS_DB[?shadow=PATH]")
        p = _params(text, query, {"shadow", "domain"})
        from .esmith import EsmithDirectory
        return EsmithDirectory(unquote(path), shadow=p.get("shadow") or None, domain=p.get("domain") or None)
    if scheme == "kerio":
        if password is None:
            raise ConfigError(f"{text}: Kerio needs the admin password (MAILMIGRATE_*_PASSWORD or a password file)")
        from .kerio import KerioDirectory
        return KerioDirectory.from_url(text, password)
    if scheme == "communigate":
        rest = text.split(":", 1)[1]
        path, _, query = rest.partition("?")
        if not path:
            raise ConfigError(f"{text}: write communigate:BASE_DIRECTORY")
        p = _params(text, query, {"primary_domain"})
        from .communigate import CommuniGateDirectory
        return CommuniGateDirectory(unquote(path), primary_domain=p.get("primary_domain") or None)
    raise ConfigError(f"{text}: unknown directory kind (ldap://, ldaps://, passwd-file:, esmith:, kerio://, "
                      "communigate:)")
