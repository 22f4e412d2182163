"""CalDAV (RFC 4791) and CardDAV (RFC 6352) as a groupware store: our own small WebDAV client.

URLs: ``caldav://[USER@]HOST[:PORT][/PATH]`` and ``carddav://…`` (HTTPS, certificate verified unless
``insecure``; ``?cafile=PATH`` for a private CA; ``?tls=none`` for plain HTTP, towards loopback only unless
the user allows it, as for IMAP). The path may be the server's root, a principal, or a home set: the store
finds the rest as a client would — ``/.well-known/caldav`` (RFC 6764), ``current-user-principal`` (RFC 5397),
then ``calendar-home-set`` / ``addressbook-home-set``.

Items are read with GET, never from a multiget REPORT: an XML parser normalises line endings inside the
calendar data, and the bytes must arrive as the source holds them. Writes are conditional (If-None-Match:
``*`` to create, If-Match to replace or delete), so nothing another client changed meanwhile is overwritten.
"""

from __future__ import annotations

import base64
import http.client
import posixpath
import socket
import ssl
import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..errors import AuthenticationFailed, ConfigError, ConnectionLost, ServerRefused, TemporaryFailure
from ..model import Secret
from .groupware import (Changes, Collection, GroupwareStore, Item, ItemChanged, ItemExists, ItemRefused,
                        TokenInvalid)

NS = {"d": "DAV:", "c": "urn:ietf:params:xml:ns:caldav", "a": "urn:ietf:params:xml:ns:carddav",
      "cs": "http://calendarserver.org/ns/", "ic": "http://apple.com/ns/ical/"}
#: one response body may be this large at most (a hostile server cannot exhaust memory)
MAX_BODY = 64 << 20
TIMEOUT = 60.0


def _q(tag: str) -> str:
    prefix, local = tag.split(":")
    return "{" + NS[prefix] + "}" + local


def _propfind_body(props: list[str]) -> bytes:
    root = ET.Element(_q("d:propfind"))
    prop = ET.SubElement(root, _q("d:prop"))
    for p in props:
        ET.SubElement(prop, _q(p))
    return ET.tostring(root, xml_declaration=True, encoding="utf-8")


class DavStore(GroupwareStore):
    def __init__(self, kind: str, host: str, port: int, path: str, user: str | None, password: Secret | None, *,
                 tls: bool = True, cafile: str | None = None, insecure: bool = False, text: str = "",
                 home_from_path: bool = False):
        if kind not in ("calendar", "addressbook"):
            raise ConfigError(f"unknown DAV kind {kind}")
        self.kind = kind
        self.host, self.port, self.base = host, port, path or "/"
        self.user, self.password = user, password
        self.tls, self.cafile, self.insecure = tls, cafile, insecure
        self.text = text
        #: the URL's path is the home (or a principal naming it), never the logged-in user's own principal:
        #: a service account (Kerio's admin, a DAV server's) writes every user's /calendars/DOMAIN/USER/
        self.home_from_path = home_from_path
        self.home: str | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._hrefs: dict[str, str] = {}  # collection name -> its path on the server

    def describe(self) -> str:
        scheme = "caldav" if self.kind == "calendar" else "carddav"
        return f"{scheme}://{self.user + '@' if self.user else ''}{self.host}:{self.port}{self.base}"

    # --- HTTP ----------------------------------------------------------------------------------------
    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.tls:
                ctx = ssl.create_default_context(cafile=self.cafile)
                if self.insecure:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=TIMEOUT, context=ctx)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                *, redirects: int = 5) -> tuple[int, dict, bytes]:
        h = {"User-Agent": "mailmigrate", **(headers or {})}
        if self.user is not None and self.password is not None:
            token = base64.b64encode(f"{self.user}:{self.password.reveal()}".encode()).decode()
            h["Authorization"] = "Basic " + token
        for attempt in (0, 1):  # a kept-alive connection the server closed is reopened once
            conn = self._connect()
            try:
                conn.request(method, path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read(MAX_BODY + 1)
                if len(data) > MAX_BODY:
                    self.close()
                    raise ServerRefused(f"{self.describe()}: {method} {path}: response over {MAX_BODY >> 20} MiB")
                status, rh = resp.status, {k.lower(): v for k, v in resp.getheaders()}
                if rh.get("connection", "").lower() == "close":
                    self.close()
                break
            except ssl.SSLCertVerificationError as e:
                self.close()
                raise ConfigError(f"TLS certificate of {self.host}:{self.port} not trusted ({e.verify_message}); "
                                  f"give its CA with ?cafile=, or --insecure if you accept the risk") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if attempt:
                    raise ConnectionLost(f"{self.describe()}: {method} {path}: {e}") from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise ConnectionLost(f"{self.describe()}: {method} {path}: {e}") from None
        if status in (301, 302, 307, 308) and redirects and rh.get("location"):
            loc = urlsplit(urljoin(f"http://{self.host}{path}", rh["location"]))
            if loc.hostname not in (None, self.host):
                raise ServerRefused(f"{self.describe()}: {path} redirects to another host {loc.hostname}")
            return self.request(method, loc.path or "/", body, headers, redirects=redirects - 1)
        if status == 401:
            raise AuthenticationFailed(f"{self.describe()}: login as {self.user or '(nobody)'} refused")
        if status in (429, 503):
            raise TemporaryFailure(f"{self.describe()}: {method} {path}: busy ({status})")
        return status, rh, data

    def _multistatus(self, method: str, path: str, body: bytes, depth: str, *,
                     missing_ok: bool = False) -> list[tuple[str, dict]]:
        status, _, data = self.request(method, path, body, {"Depth": depth, "Content-Type":
                                                            "application/xml; charset=utf-8"})
        if status == 404 and missing_ok:
            return []  # a home that does not exist yet (its user never logged in): nothing in it
        if status != 207:
            raise ServerRefused(f"{self.describe()}: {method} {path} answered {status}")
        try:
            root = ET.fromstring(data)
        except ET.ParseError as e:
            raise ServerRefused(f"{self.describe()}: {method} {path}: unreadable XML ({e})") from None
        out = []
        for r in root.findall("d:response", NS):
            href = unquote(r.findtext("d:href", default="", namespaces=NS).strip())
            props = {}
            for ps in r.findall("d:propstat", NS):
                if "200" not in (ps.findtext("d:status", default="", namespaces=NS)):
                    continue
                for p in ps.find("d:prop", NS) or []:
                    props[p.tag] = p
            out.append((urlsplit(href).path or href, props))
        return out

    # --- discovery -----------------------------------------------------------------------------------
    def open(self) -> None:
        home_prop = "c:calendar-home-set" if self.kind == "calendar" else "a:addressbook-home-set"
        starts = [self.base]
        if self.base in ("", "/"):
            starts.insert(0, "/.well-known/" + ("caldav" if self.kind == "calendar" else "carddav"))
        principal = None
        for start in starts:
            try:
                got = self._multistatus("PROPFIND", start, _propfind_body(["d:current-user-principal", home_prop]),
                                        "0")
            except ServerRefused:
                continue
            for _, props in got:
                home = props.get(_q(home_prop))
                if home is not None and home.findtext("d:href", namespaces=NS):
                    self.home = self._dirpath(home.findtext("d:href", namespaces=NS))
                    return
                cup = props.get(_q("d:current-user-principal"))
                # a service account writing another user's home: its own principal is not that home
                if self.home_from_path:
                    cup = None
                if cup is not None and cup.findtext("d:href", namespaces=NS):
                    principal = unquote(cup.findtext("d:href", namespaces=NS).strip())
            if principal:
                break
        if principal:
            for _, props in self._multistatus("PROPFIND", principal, _propfind_body([home_prop]), "0"):
                home = props.get(_q(home_prop))
                if home is not None and home.findtext("d:href", namespaces=NS):
                    self.home = self._dirpath(home.findtext("d:href", namespaces=NS))
                    return
        # no home set offered: the URL given is the home
        self.home = self._dirpath(self.base)

    @staticmethod
    def _dirpath(href: str) -> str:
        p = urlsplit(unquote(href.strip())).path or "/"
        return p if p.endswith("/") else p + "/"

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # --- collections ---------------------------------------------------------------------------------
    def collections(self) -> list[Collection]:
        assert self.home is not None
        want = "c:calendar" if self.kind == "calendar" else "a:addressbook"
        body = _propfind_body(["d:resourcetype", "d:displayname", "ic:calendar-color", "c:calendar-description",
                               "a:addressbook-description", "c:supported-calendar-component-set", "cs:getctag",
                               "d:sync-token"])
        out = []
        for href, props in self._multistatus("PROPFIND", quote(self.home), body, "1", missing_ok=True):
            rt = props.get(_q("d:resourcetype"))
            if rt is None or rt.find(_q(want)) is None:
                continue
            path = self._dirpath(href)
            if path == self.home:
                continue
            name = posixpath.basename(path.rstrip("/"))
            comps = props.get(_q("c:supported-calendar-component-set"))
            desc = props.get(_q("c:calendar-description" if self.kind == "calendar" else "a:addressbook-description"))
            version = props.get(_q("d:sync-token"))
            ctag = props.get(_q("cs:getctag"))
            self._hrefs[name] = path
            out.append(Collection(
                name, self.kind,
                displayname=_text(props.get(_q("d:displayname"))),
                color=_text(props.get(_q("ic:calendar-color"))),
                description=_text(desc),
                components=tuple(c.get("name") for c in comps.findall("c:comp", NS)) if comps is not None else (),
                version=_text(ctag) or _text(version), sync_token=_text(version)))
        return sorted(out, key=lambda c: c.name)

    def _coll_path(self, coll: Collection) -> str:
        return self._hrefs.get(coll.name) or f"{self.home}{coll.name}/"

    def create_collection(self, coll: Collection) -> Collection:
        path = f"{self.home}{coll.name}/"
        if self.kind == "calendar":
            root = ET.Element(_q("c:mkcalendar"))
        else:
            root = ET.Element(_q("d:mkcol"))
        prop = ET.SubElement(ET.SubElement(root, _q("d:set")), _q("d:prop"))
        if self.kind == "addressbook":
            rt = ET.SubElement(prop, _q("d:resourcetype"))
            ET.SubElement(rt, _q("d:collection"))
            ET.SubElement(rt, _q("a:addressbook"))
        if coll.displayname:
            ET.SubElement(prop, _q("d:displayname")).text = coll.displayname
        if coll.color and self.kind == "calendar":
            ET.SubElement(prop, _q("ic:calendar-color")).text = coll.color
        if coll.description:
            tag = "c:calendar-description" if self.kind == "calendar" else "a:addressbook-description"
            ET.SubElement(prop, _q(tag)).text = coll.description
        if coll.components and self.kind == "calendar":
            cs = ET.SubElement(prop, _q("c:supported-calendar-component-set"))
            for c in coll.components:
                ET.SubElement(cs, _q("c:comp"), name=c)
        body = ET.tostring(root, xml_declaration=True, encoding="utf-8")
        method = "MKCALENDAR" if self.kind == "calendar" else "MKCOL"
        headers = {"Content-Type": "application/xml; charset=utf-8"}
        status, _, data = self.request(method, quote(path), body, headers)
        if status == 409:
            # RFC 4918: the parent is missing - a home of a user who never logged in, reached by a service
            # account (Kerio's /calendars/DOMAIN/USER/ is two levels deep): make it and whatever above it is
            # missing, top down (an existing level answers 405), then the collection
            parts = [x for x in self.home.split("/") if x]
            for i in range(1, len(parts) + 1):
                self.request("MKCOL", quote("/" + "/".join(parts[:i]) + "/"))
            status, _, data = self.request(method, quote(path), body, headers)
        if status not in (200, 201, 207):
            raise ServerRefused(f"{self.describe()}: cannot create {coll.kind} {coll.name} ({status}: "
                                f"{data[:200].decode('utf-8', 'replace')})")
        self._hrefs[coll.name] = path
        # Some servers (Xandikos) create the collection but drop properties given to an extended MKCOL;
        # set them again the ordinary way, which every server supports.
        update = ET.Element(_q("d:propertyupdate"))
        uprop = ET.SubElement(ET.SubElement(update, _q("d:set")), _q("d:prop"))
        for el in list(prop):
            if el.tag not in (_q("d:resourcetype"), _q("c:supported-calendar-component-set")):
                uprop.append(el)
        if len(uprop):
            self.request("PROPPATCH", quote(path), ET.tostring(update, xml_declaration=True, encoding="utf-8"),
                         {"Content-Type": "application/xml; charset=utf-8"})
        return Collection(coll.name, self.kind, coll.displayname, coll.color, coll.description, coll.components)

    # --- items ---------------------------------------------------------------------------------------
    def list_items(self, coll: Collection) -> dict[str, str]:
        base = self._coll_path(coll)
        out = {}
        for href, props in self._multistatus("PROPFIND", quote(base), _propfind_body(["d:getetag",
                                                                                      "d:resourcetype"]), "1"):
            if self._dirpath(href) == base or href.endswith("/"):
                continue
            etag = _text(props.get(_q("d:getetag")))
            if etag is None:
                continue
            out[posixpath.basename(href)] = etag
        return out

    #: rounds of a truncated sync-collection answer (RFC 6578 3.6, 507 on the collection) followed at most
    MAX_SYNC_ROUNDS = 1000

    def changes_since(self, coll: Collection, token: str) -> Changes | None:
        """RFC 6578 sync-collection at sync-level 1: only what moved since ``token``, so a rerun over a
        calendar of thousands of events with one change reads one answer, not every ETag.  None when the
        collection offers no sync-token (the engine then lists it whole)."""
        if not coll.sync_token:
            return None
        base = self._coll_path(coll)
        changed: dict[str, str] = {}
        removed: set[str] = set()
        for _ in range(self.MAX_SYNC_ROUNDS):
            root = ET.Element(_q("d:sync-collection"))
            ET.SubElement(root, _q("d:sync-token")).text = token
            ET.SubElement(root, _q("d:sync-level")).text = "1"
            ET.SubElement(ET.SubElement(root, _q("d:prop")), _q("d:getetag"))
            status, _, data = self.request("REPORT", quote(base), ET.tostring(root, xml_declaration=True,
                                                                              encoding="utf-8"),
                                           {"Depth": "0", "Content-Type": "application/xml; charset=utf-8"})
            # RFC 6578 names 403 or 409 with a DAV:valid-sync-token precondition; Radicale answers 403,
            # Xandikos 412 (tests/test_groupware.py ...sync_token)
            if status in (403, 409, 412) and b"valid-sync-token" in data:
                raise TokenInvalid(f"{self.describe()}: {coll.name}: the server no longer knows the sync-token")
            if status in (400, 403, 404, 405, 409, 415, 501):
                return None  # no sync-collection here (or not for this token): list the collection whole
            if status != 207:
                raise ServerRefused(f"{self.describe()}: REPORT sync-collection {coll.name} answered {status}")
            try:
                doc = ET.fromstring(data)
            except ET.ParseError as e:
                raise ServerRefused(f"{self.describe()}: REPORT {coll.name}: unreadable XML ({e})") from None
            truncated = False
            for r in doc.findall("d:response", NS):
                path = urlsplit(unquote(r.findtext("d:href", default="", namespaces=NS).strip())).path
                code = r.findtext("d:status", default="", namespaces=NS)
                if self._dirpath(path) == base or path.endswith("/"):
                    truncated = truncated or " 507" in code  # more changes than one answer holds
                    continue
                name = posixpath.basename(path)
                if " 404" in code:
                    removed.add(name)
                    changed.pop(name, None)
                    continue
                etag = ""
                for ps in r.findall("d:propstat", NS):
                    if "200" in ps.findtext("d:status", default="", namespaces=NS):
                        etag = ps.findtext("d:prop/d:getetag", default="", namespaces=NS).strip() or etag
                # without an ETag in the answer the item is still changed: "" never equals a recorded ETag,
                # so it is fetched
                changed[name] = etag
                removed.discard(name)
            new = (doc.findtext("d:sync-token", default="", namespaces=NS) or "").strip()
            if not new:
                raise ServerRefused(f"{self.describe()}: REPORT sync-collection {coll.name}: no sync-token in the "
                                    f"answer")
            token = new
            if not truncated:
                return Changes(token, changed, removed)
        raise ServerRefused(f"{self.describe()}: REPORT sync-collection {coll.name}: still truncated after "
                            f"{self.MAX_SYNC_ROUNDS} rounds")

    def get(self, coll: Collection, name: str) -> Item:
        path = quote(self._coll_path(coll) + name)
        status, h, data = self.request("GET", path)
        if status != 200:
            raise ServerRefused(f"{self.describe()}: GET {coll.name}/{name} answered {status}")
        return Item(name, h.get("etag", ""), data, h.get("content-type", ""))

    def put(self, coll, name, data, content_type, *, etag=None) -> str:
        path = quote(self._coll_path(coll) + name)
        cond = {"If-None-Match": "*"} if etag is None else {"If-Match": etag}
        status, h, body = self.request("PUT", path, data, {"Content-Type": content_type, **cond})
        if status in (200, 201, 204):
            return h.get("etag", "")
        text = body[:300].decode("utf-8", "replace")
        if status == 412:
            if etag is None:
                raise ItemExists(f"{coll.name}/{name} exists on the target")
            raise ItemChanged(f"{coll.name}/{name} changed on the target since it was copied")
        if status in (403, 409) and "uid-conflict" in text:
            other = None
            try:
                href = ET.fromstring(body).find(".//d:href", NS)
                other = posixpath.basename(unquote(href.text.strip())) if href is not None and href.text else None
            except ET.ParseError:
                pass
            raise ItemExists(f"{coll.name}: the target already holds this UID", name=other)
        raise ItemRefused(f"{coll.name}/{name}: the target refused it ({status}: {text.strip()[:200]})")

    def delete(self, coll, name, etag) -> None:
        status, _, _ = self.request("DELETE", quote(self._coll_path(coll) + name), headers={"If-Match": etag})
        if status == 412:
            raise ItemChanged(f"{coll.name}/{name} changed on the target since it was copied")
        if status not in (200, 204, 404):
            raise ServerRefused(f"{self.describe()}: DELETE {coll.name}/{name} answered {status}")

    def delete_collection(self, coll: Collection) -> bool:
        if self.list_items(coll):
            return False
        status, _, _ = self.request("DELETE", quote(self._coll_path(coll)))
        if status not in (200, 204, 404):
            raise ServerRefused(f"{self.describe()}: DELETE {coll.name}/ answered {status}")
        self._hrefs.pop(coll.name, None)
        return True


def _text(el) -> str | None:
    if el is None:
        return None
    t = (el.text or "").strip()
    return t or None


def parse_dav_url(text: str, user: str | None, password: Secret | None, *, insecure: bool = False,
                  allow_plaintext: bool = False, home_from_path: bool = False) -> DavStore:
    """``caldav://`` / ``carddav://`` URL -> store (HTTPS unless ``?tls=none``, which needs loopback or
    ``allow_plaintext``: a password in clear on a network is refused as for IMAP)."""
    from urllib.parse import parse_qs

    u = urlsplit(text)
    kind = {"caldav": "calendar", "carddav": "addressbook"}.get(u.scheme.lower())
    if kind is None or not u.hostname:
        raise ConfigError(f"{text}: not a caldav:// or carddav:// URL with a host")
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    unknown = set(q) - {"tls", "cafile"}
    if unknown:
        raise ConfigError(f"{text}: unknown option(s) {', '.join(sorted(unknown))}")
    tls = q.get("tls", "implicit")
    if tls not in ("implicit", "none"):
        raise ConfigError(f"{text}: tls must be none (plain HTTP) or left out (HTTPS)")
    if tls == "none" and not allow_plaintext and not _is_loopback(u.hostname):
        raise ConfigError(f"{text}: plain HTTP would send the password in clear; use HTTPS, or "
                          f"--allow-plaintext if you accept that")
    port = u.port or (443 if tls == "implicit" else 80)
    return DavStore(kind, u.hostname, port, u.path or "/", user if user is not None else (unquote(u.username)
                    if u.username else None), password, tls=tls == "implicit", cafile=q.get("cafile"),
                    insecure=insecure, text=text, home_from_path=home_from_path)


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(host, None))
        except OSError:
            return False
