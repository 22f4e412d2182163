"""Kerio Connect's administration API (JSON-RPC 2.0 over HTTPS), and the directory adapter built on it.

Kerio has no LDAP-style write access to its own user database: the only supported way to create users,
set their passwords or list them is the administration API the web console uses, on port 4040.  A session
is a token (sent back as ``X-Token``) *and* the cookies of the login answer; Kerio refuses a call that
lacks either, and it ends idle sessions on its own, which a long migration will hit - so an expired
session (code -32001) is answered by logging in again once and repeating that one call.

List methods (``Users.create``, ``Users.set``) succeed as a call and report failures per item in
``result.errors[]``; those are turned into per-item outcomes, never silently dropped.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import socket
import ssl
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from .. import __version__
from ..errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectionLost,
    ProtocolError,
    ServerRefused,
    TemporaryFailure,
)
from ..model import Secret
from .base import DEFAULT_FIELDS, Directory, DirectoryError, DirectoryWriter, UnsupportedByDirectory, User, fold

log = logging.getLogger(__name__)

API_PATH = "/admin/api/jsonrpc/"
DEFAULT_PORT = 4040
CONTENT_TYPE = "application/json-rpc; charset=UTF-8"

# Error codes Kerio's own client libraries document.
SESSION_EXPIRED = -32001
INVALID_PARAMS = -32602
ALREADY_EXISTS = 1001
DOES_NOT_EXIST = 1002

#: Methods whose params carry a password; their params are never logged, even at debug level.
_SECRET_METHODS = frozenset({"Session.login", "Users.create", "Users.set"})


class KerioApiError(ServerRefused):
    """A JSON-RPC error answer; ``code`` is Kerio's numeric code as text, ``number`` the integer."""

    def __init__(self, message: str, *, number: int | None, method: str):
        super().__init__(message, code=None if number is None else str(number), command=method)
        self.number = number


@dataclass(frozen=True)
class ItemError:
    """One refused item of a list method: which input, Kerio's code and message."""

    input_index: int
    code: int | None
    message: str

    @property
    def already_exists(self) -> bool:
        return self.code == ALREADY_EXISTS


@dataclass
class BatchResult:
    """Outcome of a list method: ids of the items that were done and errors of those that were not."""

    created: dict[int, str] = field(default_factory=dict)  # input index -> new id
    errors: list[ItemError] = field(default_factory=list)

    def error_for(self, index: int) -> ItemError | None:
        return next((e for e in self.errors if e.input_index == index), None)


class KerioClient:
    """One administration session with a Kerio Connect server.

    TLS is verified against the system's CAs (or ``cafile``) unless ``insecure`` is set: Kerio installs
    ship a self-signed certificate, so the user has to choose, knowingly, between giving its CA and
    switching verification off.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        user: str,
        password: Secret,
        insecure: bool = False,
        cafile: str | None = None,
        timeout: float = 60.0,
    ):
        if not isinstance(password, Secret):
            raise TypeError("password must be a model.Secret")
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self._timeout = timeout
        self._ssl = self._make_context(insecure, cafile)
        self._conn: http.client.HTTPSConnection | None = None
        self._token: str | None = None
        self._cookies: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._domain_ids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<KerioClient {self.user}@{self.host}:{self.port}>"

    def describe(self) -> str:
        return f"kerio://{self.user}@{self.host}:{self.port}"

    @staticmethod
    def _make_context(insecure: bool, cafile: str | None) -> ssl.SSLContext:
        if insecure:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        try:
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"cannot load CA file {cafile}: {e}") from None

    # --- session -----------------------------------------------------------------------------------
    @property
    def logged_in(self) -> bool:
        return self._token is not None

    def login(self) -> None:
        self._token = None
        self._cookies = {}
        params = {
            "userName": self.user,
            "password": self._password.reveal(),
            "application": {"name": "mailmigrate", "vendor": "mailmigrate", "version": __version__},
        }
        try:
            result = self._call_once("Session.login", params)
        except KerioApiError as e:
            # Kerio answers a wrong name or password with an error object; which code it uses is not
            # something to rely on, so any refusal of the login is a refused login.
            raise AuthenticationFailed(
                f"Kerio administration login refused for {self.user} at {self.host}:{self.port}: {e}"
            ) from None
        token = result.get("token") if isinstance(result, dict) else None
        if not isinstance(token, str) or not token:
            raise ProtocolError("Kerio Session.login answered without a token")
        self._token = token
        log.debug("kerio: logged in as %s at %s:%s", self.user, self.host, self.port)

    def logout(self) -> None:
        """End the session on the server; never raises, since it runs on the way out."""
        if self._token is None:
            self._close_conn()
            return
        try:
            self._call_once("Session.logout", {})
        except Exception as e:  # noqa: BLE001 - a failed logout must not hide the real outcome
            log.debug("kerio: logout failed: %s", e)
        self._token = None
        self._cookies = {}
        self._close_conn()

    close = logout

    def __enter__(self) -> "KerioClient":
        self.login()
        return self

    def __exit__(self, *exc) -> None:
        self.logout()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Call ``method``; an expired session is renewed by one new login and the call repeated once."""
        if self._token is None:
            self.login()
        try:
            return self._call_once(method, params or {})
        except KerioApiError as e:
            if e.number != SESSION_EXPIRED:
                raise
        log.info("kerio: session expired, logging in again")
        self.login()
        return self._call_once(method, params or {})

    # --- transport ---------------------------------------------------------------------------------
    def _close_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _call_once(self, method: str, params: dict[str, Any]) -> Any:
        req_id = next(self._ids)
        payload = json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}).encode()
        if method in _SECRET_METHODS:
            log.debug("kerio: -> %s (params withheld)", method)
        else:
            log.debug("kerio: -> %s %s", method, json.dumps(params)[:500])
        headers = {"Content-Type": CONTENT_TYPE, "Accept": "application/json-rpc"}
        if self._token is not None:
            headers["X-Token"] = self._token
        if self._cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        status, resp_headers, body = self._post(payload, headers)
        for value in resp_headers.get_all("Set-Cookie") or []:
            self._take_cookie(value)
        if status >= 500:
            raise TemporaryFailure(f"Kerio answered HTTP {status} to {method}")
        if status != 200:
            raise ServerRefused(f"Kerio answered HTTP {status} to {method}", code=f"HTTP {status}", command=method)
        try:
            answer = json.loads(body)
        except ValueError:
            raise ProtocolError(f"Kerio's answer to {method} is not JSON") from None
        if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
            raise ProtocolError(f"Kerio's answer to {method} is not a JSON-RPC 2.0 response")
        if answer.get("id") != req_id:
            raise ProtocolError(f"Kerio's answer to {method} carries id {answer.get('id')!r}, not {req_id}")
        err = answer.get("error")
        if err is not None:
            if not isinstance(err, dict):
                raise ProtocolError(f"Kerio's error answer to {method} is malformed")
            number = err.get("code") if isinstance(err.get("code"), int) else None
            message = str(err.get("message") or "error")
            raise KerioApiError(f"{method}: {message} (code {number})", number=number, method=method)
        if "result" not in answer:
            raise ProtocolError(f"Kerio's answer to {method} has neither result nor error")
        return answer["result"]

    def _post(self, payload: bytes, headers: dict[str, str]):
        """POST once; a kept-alive connection the server closed meanwhile is reopened once."""
        for attempt in (1, 2):
            fresh = self._conn is None
            if fresh:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self._timeout, context=self._ssl
                )
            try:
                self._conn.request("POST", API_PATH, body=payload, headers=headers)
                resp = self._conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    self._close_conn()
                return resp.status, resp.headers, body
            except ssl.SSLCertVerificationError as e:
                self._close_conn()
                raise ConfigError(
                    f"the TLS certificate of {self.host}:{self.port} is not trusted ({e.verify_message}); "
                    "give its CA with cafile, or switch verification off knowingly with insecure"
                ) from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    ssl.SSLEOFError, ssl.SSLZeroReturnError) as e:
                self._close_conn()
                if fresh or attempt == 2:
                    raise ConnectionLost(f"Kerio {self.host}:{self.port}: {e}") from None
            except (OSError, http.client.HTTPException) as e:
                self._close_conn()
                raise ConnectionLost(f"Kerio {self.host}:{self.port}: {e}") from None
        raise AssertionError("unreachable")

    def _take_cookie(self, header: str) -> None:
        name, sep, value = header.split(";", 1)[0].partition("=")
        name = name.strip()
        if sep and name:
            self._cookies[name] = value.strip()

    # --- API methods -------------------------------------------------------------------------------
    def domains(self) -> list[dict]:
        result = self.call(
            "Domains.get",
            {"query": {"fields": ["id", "name"], "orderBy": [{"columnName": "name", "direction": "Asc"}],
                       "start": 0, "limit": -1}},
        )
        return _list_of(result, "Domains.get")

    def domain_id(self, name: str) -> str:
        """The id of the domain called ``name``; a domain Kerio does not have is a configuration error."""
        key = name.lower()
        if key not in self._domain_ids:
            for d in self.domains():
                if isinstance(d.get("name"), str):
                    self._domain_ids[d["name"].lower()] = str(d.get("id"))
        if key not in self._domain_ids:
            raise ConfigError(f"Kerio at {self.host} has no domain {name}")
        return self._domain_ids[key]

    def users(self, domain_id: str, login_names: Sequence[str] | None = None,
              fields: Sequence[str] = ("id", "loginName", "fullName", "description", "isEnabled",
                                       "emailAddresses")) -> list[dict]:
        """Users of a domain, all of them or those with the given login names (exact, case-insensitive)."""
        query: dict[str, Any] = {"fields": list(fields), "start": 0, "limit": -1,
                                 "orderBy": [{"columnName": "loginName", "direction": "Asc"}]}
        if login_names:
            query["conditions"] = [{"fieldName": "loginName", "comparator": "Like", "value": n}
                                   for n in login_names]
            query["combining"] = "Or"
        result = self.call("Users.get", {"query": query, "domainId": domain_id})
        users = _list_of(result, "Users.get")
        if login_names:
            # "Like" is a pattern match on Kerio: keep only the exact names asked for.
            wanted = {n.lower() for n in login_names}
            users = [u for u in users if str(u.get("loginName", "")).lower() in wanted]
        return users

    def create_users(self, users: Sequence[dict]) -> BatchResult:
        """Create users (each needs loginName and domainId); items Kerio refuses come back as errors."""
        for u in users:
            if not u.get("loginName") or not u.get("domainId"):
                raise ValueError("Users.create needs loginName and domainId for every user")
        result = self.call("Users.create", {"users": [_plain(u) for u in users]})
        return _batch(result, "Users.create")

    def set_users(self, user_ids: Iterable[str], pattern: dict) -> BatchResult:
        result = self.call("Users.set", {"userIds": list(user_ids), "pattern": _plain(pattern)})
        return _batch(result, "Users.set")


def _plain(item: dict) -> dict:
    """A copy where Secret values are revealed: only ever done for the request body itself."""
    return {k: (v.reveal() if isinstance(v, Secret) else v) for k, v in item.items()}


def _list_of(result: Any, method: str) -> list[dict]:
    if not isinstance(result, dict) or not isinstance(result.get("list"), list):
        raise ProtocolError(f"Kerio's answer to {method} has no list")
    return [x for x in result["list"] if isinstance(x, dict)]


def _batch(result: Any, method: str) -> BatchResult:
    if not isinstance(result, dict):
        raise ProtocolError(f"Kerio's answer to {method} is not an object")
    out = BatchResult()
    for e in result.get("errors") or []:
        if not isinstance(e, dict):
            continue
        code = e.get("code") if isinstance(e.get("code"), int) else None
        out.errors.append(ItemError(int(e.get("inputIndex", -1)), code, str(e.get("message") or "")))
    for r in result.get("result") or []:
        if isinstance(r, dict) and "inputIndex" in r:
            out.created[int(r["inputIndex"])] = str(r.get("id"))
    return out


# --- directory adapter ------------------------------------------------------------------------------

def parse_kerio_url(text: str) -> dict:
    """``kerio://ADMIN@HOST[:PORT][/DOMAIN][?cafile=PATH][&insecure=1]`` -> KerioDirectory keyword arguments.

    The password is never part of the URL: the command line is visible to every user of the machine.
    """
    u = urlsplit(text)
    if u.scheme.lower() != "kerio":
        raise ConfigError(f"{text}: not a kerio:// URL")
    if u.password is not None:
        raise ConfigError(f"{text}: the URL holds a password; give it in the environment or a password file")
    if not u.username or not u.hostname:
        raise ConfigError(f"{text}: write kerio://ADMIN@HOST[:PORT][/DOMAIN]")
    params = {k: v[-1] for k, v in parse_qs(u.query).items()} if u.query else {}
    unknown = set(params) - {"cafile", "insecure", "timeout"}
    if unknown:
        raise ConfigError(f"{text}: unknown option(s) {', '.join(sorted(unknown))}")
    try:
        port = u.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{text}: bad port") from None
    domain = unquote(u.path.strip("/")) or None
    if domain and "/" in domain:
        raise ConfigError(f"{text}: the path names one mail domain, e.g. kerio://admin@host/example.com")
    insecure = params.get("insecure", "0").lower() in ("1", "yes", "true", "on")
    return {"host": u.hostname, "port": port, "user": unquote(u.username), "domain": domain,
            "cafile": params.get("cafile"), "insecure": insecure,
            "timeout": float(params.get("timeout", 60))}


class KerioDirectory(DirectoryWriter):
    """Kerio Connect's users, read and written through the administration API.

    With one domain named (``kerio://admin@host/example.com``) logins are bare (``alice``), as Kerio
    shows them in that domain; without one, every domain is read and logins are ``alice@example.com``.
    On writing, a login with ``@domain`` or a user's ``domain`` picks the Kerio domain; a domain Kerio
    does not have is an error for that user only.

    Kerio stores clear-text passwords it is given and has no way to take a hash, so hashed passwords
    are left to ``copy`` to report (``password_schemes`` is empty).  Groups and aliases are not written
    yet: ``kinds`` says so, and copy reports them as not migrated.
    """

    kinds = frozenset({"users"})
    # Aliases are read (emailAddresses) but never written: a copy must neither expect them to arrive nor
    # see a difference for ever, and a migration must tell that they did not arrive.
    fields = {**DEFAULT_FIELDS, "users": DEFAULT_FIELDS["users"] - {"aliases"}}
    password_schemes = frozenset()
    accepts_clear = True

    def disabled_form(self, user) -> str:
        return "isEnabled false"

    def __init__(self, host: str, port: int = DEFAULT_PORT, *, user: str, password: Secret,
                 domain: str | None = None, cafile: str | None = None, insecure: bool = False,
                 timeout: float = 60.0, client: KerioClient | None = None):
        self.domain = domain
        self.client = client or KerioClient(host, port, user=user, password=password, cafile=cafile,
                                            insecure=insecure, timeout=timeout)
        self._ids: dict[str, str] = {}  # fold("login@domain") -> Kerio user id

    @classmethod
    def from_url(cls, text: str, password: Secret) -> "KerioDirectory":
        return cls(password=password, **parse_kerio_url(text))

    def describe(self) -> str:
        return self.client.describe() + (f"/{self.domain}" if self.domain else "")

    def close(self) -> None:
        self.client.logout()

    # --- reading -------------------------------------------------------------------------------------
    def _domains(self) -> list[str]:
        if self.domain:
            self.client.domain_id(self.domain)  # a missing domain is a ConfigError, said up front
            return [self.domain]
        return [d["name"] for d in self.client.domains() if isinstance(d.get("name"), str)]

    def read(self) -> Directory:
        out = Directory(name=self.describe())
        for domain in self._domains():
            out.domains.append(domain)
            for k in self.client.users(self.client.domain_id(domain)):
                login_name = str(k.get("loginName") or "")
                if not login_name:
                    out.notes.append(f"Kerio user {k.get('id')} in {domain} has no login name; skipped")
                    continue
                self._ids[fold(f"{login_name}@{domain}")] = str(k.get("id"))
                addresses = [a for a in (k.get("emailAddresses") or []) if isinstance(a, str)]
                out.add(User(
                    login=login_name if self.domain else f"{login_name}@{domain}",
                    real_name=str(k.get("fullName") or ""),
                    mail=f"{login_name}@{domain}",
                    aliases=[a for a in addresses if fold(a) != fold(f"{login_name}@{domain}")],
                    enabled=bool(k.get("isEnabled", True)),
                    disabled_by=None if k.get("isEnabled", True) else "isEnabled false",
                    domain=domain,
                    password_note="Kerio does not reveal passwords",
                ))
        return out

    # --- writing -------------------------------------------------------------------------------------
    def _place(self, user: User) -> tuple[str, str]:
        """(Kerio login name, domain) for a user from any directory."""
        local, at, login_domain = user.login.partition("@")
        domain = login_domain if at else (user.domain or self.domain)
        if not domain and user.mail and "@" in user.mail:
            domain = user.mail.rpartition("@")[2]
        if not domain:
            raise DirectoryError(f"user {user.login}: no mail domain known; name one in the kerio:// URL")
        if self.domain and fold(domain) != fold(self.domain):
            raise DirectoryError(f"user {user.login}: domain {domain} is not {self.domain}, the domain written to")
        return local, domain

    @staticmethod
    def _full_name(user: User) -> str:
        return user.real_name or " ".join(p for p in (user.first_name, user.last_name) if p)

    def _password_field(self, user: User) -> dict:
        if user.password is None:
            return {}
        if not isinstance(user.password, Secret):
            raise UnsupportedByDirectory(
                f"user {user.login}: Kerio cannot take a {user.password.scheme} password hash"
            )
        return {"password": user.password}

    def add(self, obj) -> None:
        if not isinstance(obj, User):
            raise UnsupportedByDirectory(f"{type(obj).__name__} {getattr(obj, 'key', '')}: "
                                         "not written to Kerio by mailmigrate")
        login, domain = self._place(obj)
        try:
            domain_id = self.client.domain_id(domain)
        except ConfigError as e:
            raise DirectoryError(f"user {obj.login}: {e}") from None
        item = {"loginName": login, "domainId": domain_id, "fullName": self._full_name(obj),
                "isEnabled": obj.enabled, **self._password_field(obj)}
        try:
            result = self.client.create_users([item])
        except KerioApiError as e:
            raise DirectoryError(f"user {obj.login}: Kerio refused to create it: {e}") from None
        err = result.error_for(0)
        if err is not None or 0 not in result.created:
            why = "already exists" if err and err.already_exists else (err.message if err else "no id returned")
            raise DirectoryError(f"user {obj.login}: Kerio did not create it: {why} (code {err and err.code})")
        self._ids[fold(f"{login}@{domain}")] = result.created[0]
        log.info("kerio: created user %s@%s", login, domain)

    def _user_id(self, login: str, domain: str, shown: str) -> str:
        key = fold(f"{login}@{domain}")
        if key not in self._ids:
            try:
                domain_id = self.client.domain_id(domain)
            except ConfigError as e:
                raise DirectoryError(f"user {shown}: {e}") from None
            found = self.client.users(domain_id, [login])
            if not found:
                raise DirectoryError(f"user {shown}: Kerio has no such user in {domain}")
            self._ids[key] = str(found[0].get("id"))
        return self._ids[key]

    def update(self, old, new) -> None:
        if not isinstance(new, User):
            raise UnsupportedByDirectory(f"{type(new).__name__} {getattr(new, 'key', '')}: "
                                         "not written to Kerio by mailmigrate")
        login, domain = self._place(new)
        pattern: dict[str, Any] = {}
        if old is None or self._full_name(new) != self._full_name(old):
            pattern["fullName"] = self._full_name(new)
        if old is None or new.enabled != old.enabled:
            pattern["isEnabled"] = new.enabled
        # Kerio never shows a password, so a clear one from the source is always (re)set.
        pattern.update(self._password_field(new))
        if not pattern:
            return
        uid = self._user_id(login, domain, new.login)
        try:
            result = self.client.set_users([uid], pattern)
        except KerioApiError as e:
            raise DirectoryError(f"user {new.login}: Kerio refused the change: {e}") from None
        err = result.error_for(0)
        if err is not None:
            raise DirectoryError(f"user {new.login}: Kerio refused the change: {err.message} (code {err.code})")
        log.info("kerio: updated user %s@%s (%s)", login, domain, ", ".join(sorted(pattern)))
