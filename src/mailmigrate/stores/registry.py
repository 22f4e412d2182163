"""From a store URL on the command line to an open-able Store, for one account.

URLs (the `sync` command's contract):
    imap://[USER@]HOST[:PORT][?tls=none|starttls][&master=plain|star|kerio][&cafile=PATH][&compress=auto|yes|no]
    imaps://[USER@]HOST[:PORT]
    imap://[USER@][HOST][:PORT]?preset=gmail|m365[&max_message_size=BYTES]   (stores/presets.py: provider defaults)
    maildir:PATH        mbox:PATH[?variant=mboxo]        communigate:PATH[?primary_domain=DOMAIN]

``imap://`` means STARTTLS, required: a server that does not offer it is refused, never used in plain
text.  ``?tls=none`` sends the password in clear and is accepted only towards a loopback address unless
the user says ``--allow-plaintext``.

For many accounts, file paths may hold ``%u`` (the whole user name), ``%n`` (its local part) and ``%d``
(its domain), e.g. ``maildir:/var/vmail/%d/%n/Maildir``.
"""

from __future__ import annotations

import importlib
import ipaddress
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..errors import ConfigError
from ..model import Secret
from . import presets
from .base import Store

FILE_KINDS = ("maildir", "mbox", "communigate")
DEFAULT_PORTS = {"imap": 143, "imaps": 993}
#: the store class behind each URL kind, imported when first asked: what a URL's store can do (be a target,
#: search on its server) is what that class declares (stores/base.py), not a list kept here or in the CLI
_CLASSES = {"imap": (".imap", "ImapStore"), "maildir": (".maildir", "MaildirStore"), "mbox": (".mbox", "MboxStore"),
            "communigate": (".communigate", "CommuniGateStore")}


def store_class(kind: str) -> type[Store]:
    module, name = _CLASSES[kind]
    return getattr(importlib.import_module(module, __package__), name)


@dataclass(frozen=True)
class StoreSpec:
    """A store URL as parsed, for any account: :func:`build_store` makes one account's store from it."""

    kind: str  # imap | maildir | mbox | communigate
    text: str  # as the user wrote it (never holds a password)
    host: str | None = None
    port: int | None = None
    user: str | None = None
    path: str | None = None
    tls: str = "starttls"  # implicit | starttls | none
    params: dict = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.kind in FILE_KINDS

    @property
    def writable(self) -> bool:
        """Whether this URL's store can be a target (its class's declaration)."""
        return store_class(self.kind).writable

    @property
    def searches(self) -> bool:
        """Whether this URL's store searches on its server for ``--search``."""
        return store_class(self.kind).searches

    @property
    def server_id(self) -> str | None:
        """The name the user pinned for this server (``?id=`` or ``--source-id``/``--target-id``)."""
        return self.params.get("id") or None

    def with_id(self, server_id: str | None) -> "StoreSpec":
        """The same store with a pinned server identity; the URL text carries it too, because that text is
        what fleet workers are sent and parse again."""
        if not server_id or server_id == self.server_id:
            return self
        if any(c in server_id for c in "&?#/ \t\r\n"):
            raise ConfigError(f"server id {server_id!r}: use letters, digits, '.', '-', '_' or '@'")
        text = self.text + ("&" if "?" in self.text else "?") + "id=" + quote(server_id, safe="@.-_")
        return replace(self, text=text, params={**self.params, "id": server_id})

    def identity(self, user: str | None = None) -> str:
        """Who this mailbox is, for the state: the user and the server, not how the server was reached.

        An IMAP server is its host name, lower-cased, whatever the scheme and port (``imap://`` on 143 and
        ``imaps://`` on 993 reach the same mailboxes); a host reached by two names (``mail.example.org`` and
        its address) is one server only when the user pins an id for it.  A file store is its resolved path,
        or the pinned id.
        """
        if self.kind == "imap":
            u = user if user is not None else (self.user or "")
            return f"imap://{u + '@' if u else ''}{self.server_id or (self.host or '').lower()}"
        if self.server_id:
            u = user if user is not None else ""
            return f"{self.kind}://{u + '@' if u else ''}{self.server_id}"
        return self.describe(user)

    def describe(self, user: str | None = None) -> str:
        """A stable, password-free name for logs (and the state's account names before identities)."""
        if self.kind == "imap":
            u = user if user is not None else (self.user or "")
            scheme = "imaps" if self.tls == "implicit" else "imap"
            return f"{scheme}://{u + '@' if u else ''}{self.host}:{self.port}"
        return f"{self.kind}:{self.resolved_path(user)}"

    def resolved_path(self, user: str | None = None) -> str:
        assert self.path is not None
        p = self.path
        if "%" in p:
            if not user:
                raise ConfigError(f"{self.text}: the path has %u/%n/%d but no user is known for this account")
            local, _, domain = user.partition("@")
            p = p.replace("%u", user).replace("%n", local).replace("%d", domain)
        return str(Path(p).expanduser().resolve())


def parse_spec(text: str) -> StoreSpec:
    if not text:
        raise ConfigError("empty store URL")
    low = text.lower()
    for kind in FILE_KINDS:
        if low.startswith(kind + ":"):
            rest = text[len(kind) + 1:]
            if rest.startswith("//"):
                rest = rest[2:]
            path, _, query = rest.partition("?")
            if not path:
                raise ConfigError(f"{text}: no path given")
            params = {k: v[-1] for k, v in parse_qs(query).items()} if query else {}
            return StoreSpec(kind=kind, text=text, path=path, params=params)
    if low.startswith(("imap://", "imaps://")):
        u = urlsplit(text)
        if u.password is not None:
            raise ConfigError(
                f"{u.scheme}:// URL holds a password: give it in MAILMIGRATE_SOURCE_PASSWORD/"
                "MAILMIGRATE_TARGET_PASSWORD or a --*-password-file, never on the command line"
            )
        netloc = u.netloc
        user = None
        if "@" in netloc:
            user_part, _, netloc = netloc.rpartition("@")
            user = unquote(user_part)
        params = {k: v[-1] for k, v in parse_qs(u.query).items()} if u.query else {}
        unknown = set(params) - {"tls", "master", "cafile", "timeout", "compress", "id", "preset", "max_message_size"}
        if unknown:
            raise ConfigError(f"{text}: unknown option(s) {', '.join(sorted(unknown))}")
        preset = presets.get(params.get("preset"))
        host, port = _host_port(netloc, text, host_optional=preset is not None)
        preset_tls = None
        if preset is not None:
            host, port, preset_tls = presets.merge_url(preset, u.scheme, host, port, params)
        presets.max_message_size(params)  # checked here, where the URL is read
        if u.scheme == "imaps":
            tls = "implicit"
            if params.get("tls") not in (None, "implicit", "ssl"):
                raise ConfigError(f"{text}: imaps:// is always TLS; use imap://…?tls=starttls|none instead")
        elif preset_tls is not None:
            tls = preset_tls
        else:
            tls = params.get("tls", "starttls")
            if tls not in ("starttls", "none"):
                raise ConfigError(f"{text}: tls must be starttls or none (or use imaps://)")
        master_mode = params.get("master", "plain")
        if master_mode not in ("plain", "star", "kerio"):
            raise ConfigError(f"{text}: master must be plain, star or kerio")
        if params.get("compress", "auto") not in ("auto", "yes", "no"):
            raise ConfigError(f"{text}: compress must be auto, yes or no")
        return StoreSpec(kind="imap", text=text, host=host, port=port or DEFAULT_PORTS[u.scheme], user=user,
                         tls=tls, params=params)
    raise ConfigError(
        f"{text}: not a store URL (imap://, imaps://, maildir:PATH, mbox:PATH, communigate:PATH)"
    )


def _host_port(netloc: str, text: str, host_optional: bool = False) -> tuple[str, int | None]:
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    else:
        host, _, port = netloc.partition(":")
    if not host and not host_optional:
        raise ConfigError(f"{text}: no host")
    if port:
        try:
            p = int(port)
        except ValueError:
            raise ConfigError(f"{text}: port {port!r} is not a number") from None
        return host, p
    return host, None


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


@dataclass
class StoreOptions:
    """What the command line says about one side beyond its URL: TLS checks, master user, OAuth."""

    insecure: bool = False
    allow_plaintext: bool = False
    create: bool = False  # may create a Maildir target
    master_user: str | None = None
    timeout: float = 60.0
    #: an OAuth 2.0 token source (stores/oauth.py): IMAP logins use XOAUTH2/OAUTHBEARER instead of a password
    oauth: object | None = None


def build_store(spec: StoreSpec, *, user: str | None, password: Secret | None, options: StoreOptions,
                side: str) -> Store:
    """A Store for one account (not yet opened)."""
    if side == "target" and not spec.writable:
        raise ConfigError(f"{spec.kind} is a source only; write to maildir: or an IMAP server")
    if spec.kind == "imap":
        if spec.tls == "none" and not options.allow_plaintext and not is_loopback(spec.host):
            raise ConfigError(
                f"{side} {spec.text}: ?tls=none would send the password unencrypted to {spec.host}; "
                "use STARTTLS or imaps://, or pass --allow-plaintext if the network is trusted"
            )
        login_user = user if user is not None else spec.user
        if not login_user:
            raise ConfigError(f"{side} {spec.text}: no user (give USER@ in the URL or an --accounts file)")
        preset = presets.get(spec.params.get("preset"))
        if options.oauth is not None:
            password = options.oauth  # the connection logs in with a fresh token (imap/connection.py)
            if preset is not None and preset.sasl and getattr(options.oauth, "mechanism", "") is None:
                options.oauth.mechanism = preset.sasl  # the provider's mechanism unless --*-sasl chose one
        elif password is None or not password:
            raise ConfigError(
                f"{side} password for {login_user} missing: set MAILMIGRATE_{side.upper()}_PASSWORD, "
                f"--{side}-password-file, or the --accounts file's password column"
            )
        from .imap import ImapStore

        cafile = spec.params.get("cafile")
        store = ImapStore(
            spec.host,
            spec.port,
            user=login_user,
            password=password,
            tls=spec.tls,
            insecure=options.insecure,
            cafile=cafile,
            master_user=options.master_user,
            master_mode=spec.params.get("master", "plain"),
            timeout=float(spec.params.get("timeout", options.timeout)),
            compress=spec.params.get("compress", "auto"),
        )
        store.preset = preset.name if preset else None
        store.max_message_size = presets.max_message_size(spec.params)
        return store
    path = spec.resolved_path(user)
    if spec.kind == "maildir":
        from .maildir import MaildirStore

        if side == "source" and not os.path.isdir(path):
            raise ConfigError(f"{side} Maildir {path} does not exist")
        return MaildirStore(path, create=options.create, must_exist=side == "source")
    if spec.kind == "mbox":
        from .mbox import MboxStore

        if not os.path.exists(path):
            raise ConfigError(f"{side} mbox {path} does not exist")
        return MboxStore(path, variant=spec.params.get("variant", "mboxrd"))
    if spec.kind == "communigate":
        from .communigate import CommuniGateStore

        login = user or spec.params.get("user")
        if not login:
            raise ConfigError(f"{spec.text}: which account? give it in --accounts (user@domain)")
        name, _, domain = login.partition("@")
        return CommuniGateStore(path, name, domain or None, primary_domain=spec.params.get("primary_domain"))
    raise ConfigError(f"unknown store kind {spec.kind}")  # pragma: no cover
