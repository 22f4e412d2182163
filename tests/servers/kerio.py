"""A protocol-faithful stand-in for Kerio Connect, for tests only.

No Kerio server can run here, so the tests talk to this instead.  It keeps to what Kerio's own client
libraries show of the wire: JSON-RPC 2.0 over HTTPS at /admin/api/jsonrpc/, a login that answers a token
and sets session cookies, later calls refused unless they carry both (``X-Token`` header and cookie),
list results with ``totalItems``, list methods reporting per-item ``errors[]`` with ``inputIndex``, and
Kerio's error codes (-32001 session expired, -32602 invalid params, 1001 already exists, 1002 does not
exist).  Its users live in memory; ``on_user_created`` lets a test make the user real elsewhere (e.g. in
a Dovecot passwd-file) the way Kerio would create a mailbox.

The IMAP part (``KerioImapFrontEnd``) speaks Kerio's master authentication (X-MASTERAUTH, X-SETUSER) and
then relays the session byte for byte to a real Dovecot, logged in there as the chosen user through
Dovecot's master user, so every IMAP command after X-SETUSER meets a real server.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

API_PATH = "/admin/api/jsonrpc/"
SESSION_COOKIE = "SESSION_CONNECT_WEBADMIN"
TOKEN_COOKIE = "TOKEN_CONNECT_WEBADMIN"

SESSION_EXPIRED = -32001
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INVALID_REQUEST = -32600
PARSE_ERROR = -32700
LOGIN_FAILED = -32000  # which code real Kerio uses for a bad password is not known; clients must not care
ALREADY_EXISTS = 1001
DOES_NOT_EXIST = 1002


def make_certificate(directory: Path, name: str = "kerio") -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1/localhost: (cert, key)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


class _Running:
    """Started on entering a ``with`` block and stopped on leaving it, however the block ends: a test that
    fails must not leave a listener behind for the next one."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _shut_down(socks) -> None:
    """Both directions of every socket shut, so that whoever is blocked reading one wakes at once; a socket
    the peer already closed is not an error here."""
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _RpcError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KerioAdminServer(_Running):
    """The administration API over an in-memory domain and user list."""

    def __init__(
        self,
        workdir: Path | str,
        *,
        admin: tuple[str, str] = ("Admin", "adminpw"),
        domains: tuple[str, ...] = ("example.com",),
        on_user_created: Callable[[str, str], None] | None = None,
        on_password_set: Callable[[str, str], None] | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.admin = admin
        self.on_user_created = on_user_created
        self.on_password_set = on_password_set
        self.domains: list[dict] = [
            {"id": f"keriodb://domain/{i:08x}-0000-0000-0000-{i:012x}", "name": d, "isPrimary": i == 1}
            for i, d in enumerate(domains, start=1)
        ]
        self.users: dict[str, dict] = {}  # id -> user record, password included
        self.sessions: dict[str, str] = {}  # token -> session cookie value
        self.calls: list[str] = []  # method names in arrival order, for tests to inspect
        self.logins = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.certfile, self.keyfile = make_certificate(self.workdir)
        self._httpd: ThreadingHTTPServer | None = None
        self._open: set = set()
        self._thread: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------------------
    def start(self) -> "KerioAdminServer":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        owner = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client that goes away (refused certificate, dropped connection) is part of the tests;
                # anything else is a bug in this server and is printed.
                if not isinstance(sys.exc_info()[1], OSError):
                    super().handle_error(request, client_address)

            def finish_request(self, request, client_address):
                # The TLS handshake runs in the request's own thread, so a client that stalls or refuses
                # the certificate never blocks the accept loop.
                try:
                    request.settimeout(10)
                    tls = ctx.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                with owner._lock:
                    owner._open.add(tls)
                try:
                    super().finish_request(tls, client_address)
                finally:
                    with owner._lock:
                        owner._open.discard(tls)
                    try:
                        tls.close()
                    except OSError:
                        pass

        class Handler(_Handler):
            server_owner = owner

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="kerio-admin",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    # --- test helpers ------------------------------------------------------------------------------
    def expire_sessions(self) -> None:
        """Forget every session, as Kerio does after its idle timeout."""
        with self._lock:
            self.sessions.clear()

    def drop_connections(self) -> None:
        """Close every open client connection, as a server does when its keep-alive timeout ends."""
        with self._lock:
            socks = list(self._open)
        _shut_down(socks)

    def add_user(self, login: str, domain: str, password: str = "", **extra) -> str:
        """Put a user in place before a test, without going through the API."""
        result = self._create([{"loginName": login, "domainId": self.domain_id(domain), "password": password,
                                **extra}])
        assert not result["errors"], result["errors"]
        return result["result"][0]["id"]

    def domain_id(self, name: str) -> str:
        return next(d["id"] for d in self.domains if d["name"] == name)

    def has_user(self, email: str) -> bool:
        """For KerioImapFrontEnd(user_exists=...): does this directory hold user@domain?"""
        login, _, domain = email.partition("@")
        if not any(d["name"] == domain for d in self.domains):
            return False
        return self.find_user(login, domain) is not None

    def find_user(self, login: str, domain: str) -> dict | None:
        did = self.domain_id(domain)
        return next((u for u in self.users.values()
                     if u["domainId"] == did and u["loginName"].lower() == login.lower()), None)

    # --- the methods -------------------------------------------------------------------------------
    def dispatch(self, method: str, params, headers, cookies) -> tuple[object, list[str]]:
        """Run one call: (result, Set-Cookie values) or raise _RpcError."""
        self.calls.append(method)
        if not isinstance(params, dict):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        if method == "Session.login":
            return self._login(params)
        self._check_session(headers, cookies)
        if method == "Session.logout":
            return self._logout(headers), []
        handler = {
            "Domains.get": self._domains_get,
            "Users.get": self._users_get,
            "Users.create": lambda p: self._create(p.get("users")),
            "Users.set": self._users_set,
        }.get(method)
        if handler is None:
            raise _RpcError(METHOD_NOT_FOUND, "Method not found.")
        return handler(params), []

    def _login(self, params):
        name, pw = params.get("userName"), params.get("password")
        if not isinstance(name, str) or not isinstance(pw, str) or not isinstance(params.get("application"), dict):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        if name.lower() != self.admin[0].lower() or pw != self.admin[1]:
            raise _RpcError(LOGIN_FAILED, "User name or password is incorrect.")
        token, cookie = secrets.token_hex(16), secrets.token_hex(16)
        with self._lock:
            self.sessions[token] = cookie
            self.logins += 1
        return {"token": token}, [
            f"{SESSION_COOKIE}={cookie}; Path=/admin/; Secure; HttpOnly",
            f"{TOKEN_COOKIE}={token}; Path=/admin/; Secure",
        ]

    def _check_session(self, headers, cookies) -> None:
        token = headers.get("X-Token")
        with self._lock:
            expected_cookie = self.sessions.get(token or "")
        if expected_cookie is None or cookies.get(SESSION_COOKIE) != expected_cookie:
            raise _RpcError(SESSION_EXPIRED, "Session expired.")

    def _logout(self, headers):
        with self._lock:
            self.sessions.pop(headers.get("X-Token") or "", None)
        return {}

    @staticmethod
    def _query(params) -> dict:
        query = params.get("query", {})
        if not isinstance(query, dict):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        return query

    @staticmethod
    def _select(rows: list[dict], query: dict) -> dict:
        conditions = query.get("conditions") or []
        combining = query.get("combining", "And")
        if combining not in ("And", "Or") or not isinstance(conditions, list):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")

        def matches(row, cond) -> bool:
            if not isinstance(cond, dict) or "fieldName" not in cond:
                raise _RpcError(INVALID_PARAMS, "Invalid params.")
            have = str(row.get(cond["fieldName"], "")).lower()
            want = str(cond.get("value", "")).lower()
            comp = cond.get("comparator", "Eq")
            if comp == "Eq":
                return have == want
            if comp == "NotEq":
                return have != want
            if comp == "Like":
                return want in have
            raise _RpcError(INVALID_PARAMS, "Invalid params.")

        if conditions:
            join = any if combining == "Or" else all
            rows = [r for r in rows if join(matches(r, c) for c in conditions)]
        for order in reversed(query.get("orderBy") or []):
            col = order.get("columnName")
            rows = sorted(rows, key=lambda r: str(r.get(col, "")).lower(),
                          reverse=order.get("direction") == "Desc")
        total = len(rows)
        start = int(query.get("start", 0) or 0)
        limit = int(query.get("limit", -1))
        rows = rows[start:] if limit < 0 else rows[start:start + limit]
        fields = query.get("fields")
        out = []
        for r in rows:
            shown = {k: v for k, v in r.items() if k != "password"}
            if fields:
                shown = {k: shown.get(k) for k in fields if k != "password"} | {"id": r["id"]}
            out.append(shown)
        return {"list": out, "totalItems": total}

    def _domains_get(self, params):
        return self._select([dict(d) for d in self.domains], self._query(params))

    def _users_get(self, params):
        did = params.get("domainId")
        if not isinstance(did, str):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        if not any(d["id"] == did for d in self.domains):
            raise _RpcError(DOES_NOT_EXIST, "Domain does not exist.")
        with self._lock:
            rows = [dict(u) for u in self.users.values() if u["domainId"] == did]
        return self._select(rows, self._query(params))

    def _create(self, users):
        if not isinstance(users, list):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        errors, done, hooks = [], [], []
        with self._lock:
            for i, u in enumerate(users):
                def refuse(code, message):
                    errors.append({"inputIndex": i, "code": code, "message": message,
                                   "messageParameters": {"positionalParameters": [], "plurality": 1}})
                if not isinstance(u, dict) or not u.get("loginName") or not u.get("domainId"):
                    refuse(INVALID_PARAMS, "Invalid params.")
                    continue
                domain = next((d for d in self.domains if d["id"] == u["domainId"]), None)
                if domain is None:
                    refuse(DOES_NOT_EXIST, "Domain does not exist.")
                    continue
                login = u["loginName"]
                if any(x["domainId"] == domain["id"] and x["loginName"].lower() == login.lower()
                       for x in self.users.values()):
                    refuse(ALREADY_EXISTS, f"User {login} already exists.")
                    continue
                uid = f"keriodb://user/{domain['id'].rsplit('/', 1)[-1]}/{next(self._ids):08x}"
                record = {"id": uid, "domainId": domain["id"], "loginName": login,
                          "fullName": u.get("fullName", ""), "description": u.get("description", ""),
                          "isEnabled": bool(u.get("isEnabled", True)),
                          "emailAddresses": list(u.get("emailAddresses") or []),
                          "password": u.get("password", "")}
                self.users[uid] = record
                done.append({"inputIndex": i, "id": uid})
                hooks.append((f"{login}@{domain['name']}", record["password"]))
        if self.on_user_created:
            for email, pw in hooks:
                self.on_user_created(email, pw)
        return {"errors": errors, "result": done}

    def _users_set(self, params):
        ids, pattern = params.get("userIds"), params.get("pattern")
        if not isinstance(ids, list) or not isinstance(pattern, dict):
            raise _RpcError(INVALID_PARAMS, "Invalid params.")
        errors, hooks = [], []
        with self._lock:
            for i, uid in enumerate(ids):
                u = self.users.get(uid)
                if u is None:
                    errors.append({"inputIndex": i, "code": DOES_NOT_EXIST, "message": "User does not exist.",
                                   "messageParameters": {"positionalParameters": [], "plurality": 1}})
                    continue
                for k, v in pattern.items():
                    if k not in ("id", "domainId", "loginName"):
                        u[k] = v
                if "password" in pattern:
                    domain = next(d for d in self.domains if d["id"] == u["domainId"])
                    hooks.append((f"{u['loginName']}@{domain['name']}", pattern["password"]))
        if self.on_password_set:
            for email, pw in hooks:
                self.on_password_set(email, pw)
        return {"errors": errors}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One buffered write per answer, without Nagle: otherwise each call waits on a delayed ACK.
    wbufsize = -1
    disable_nagle_algorithm = True
    server_owner: KerioAdminServer

    def log_message(self, format, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str, cookies: list[str] = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for c in cookies:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(405, b"Method Not Allowed", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.split("?")[0] != API_PATH:
            self._send(404, b"Not Found", "text/plain")
            return
        if not (self.headers.get("Content-Type") or "").lower().startswith(("application/json-rpc",
                                                                          "application/json")):
            self._send(415, b"Unsupported Media Type", "text/plain")
            return
        cookies = {}
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k:
                cookies[k] = v
        req_id = None
        set_cookies: list[str] = []
        try:
            try:
                req = json.loads(raw)
            except ValueError:
                raise _RpcError(PARSE_ERROR, "Parse error.") from None
            if not isinstance(req, dict) or req.get("jsonrpc") != "2.0" or not isinstance(req.get("method"), str):
                raise _RpcError(INVALID_REQUEST, "Invalid Request.")
            req_id = req.get("id")
            result, set_cookies = self.server_owner.dispatch(req["method"], req.get("params", {}),
                                                             self.headers, cookies)
            answer = {"jsonrpc": "2.0", "id": req_id, "result": result}
        except _RpcError as e:
            answer = {"jsonrpc": "2.0", "id": req_id,
                      "error": {"code": e.code, "message": e.message,
                                "data": {"messageParameters": {"positionalParameters": [], "plurality": 1}}}}
        self._send(200, json.dumps(answer).encode(), "application/json-rpc; charset=UTF-8", set_cookies)


# --- IMAP ---------------------------------------------------------------------------------------------

#: What Dovecot 2.3 offers before login, plus Kerio's master authentication.
PRELOGIN_CAPABILITIES = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN X-MASTERAUTH"


def masterauth_response(challenge: str, master_password: str) -> str:
    """What Kerio expects back: lower-case hex MD5 of the challenge followed by the master password."""
    return hashlib.md5((challenge + master_password).encode()).hexdigest()


class KerioImapFrontEnd(_Running):
    """Kerio's IMAP master authentication in front of a real Dovecot.

    Before X-SETUSER the front end answers itself (CAPABILITY, NOOP, LOGOUT, X-MASTERAUTH, X-SETUSER);
    after it, every byte goes to a Dovecot session opened as that user through Dovecot's master user, and
    every byte back, untouched: what the client sees from then on is Dovecot's own protocol.  Plain LOGIN
    and AUTHENTICATE are refused here; this front end exists to test the master path only.
    """

    def __init__(self, backend_port: int, *, master_password: str = "kerio-master",
                 backend_master: tuple[str, str] = ("master", "masterpw"), backend_host: str = "127.0.0.1",
                 user_exists: Callable[[str], bool] | None = None):
        self.backend = (backend_host, backend_port)
        # Kerio refuses X-SETUSER for a user its directory does not hold; Dovecot behind a master passdb
        # without ``pass = yes`` would not, so the test says who exists (e.g. KerioAdminServer.has_user).
        self.user_exists = user_exists
        self.master_password = master_password
        self.backend_master = backend_master
        self.setusers: list[str] = []  # users selected by X-SETUSER, in order
        self.masterauth_failures = 0
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> "KerioImapFrontEnd":
        self._sock = socket.create_server(("127.0.0.1", 0))
        t = threading.Thread(target=self._accept_loop, name="kerio-imap", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            conns = list(self._conns)
        _shut_down(conns)
        for c in conns:
            c.close()

    @property
    def port(self) -> int:
        assert self._sock is not None
        return self._sock.getsockname()[1]

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._conns.add(s)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._track(conn)
            threading.Thread(target=self._serve, args=(conn,), name="kerio-imap-conn", daemon=True).start()

    # --- one client -------------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")

        def send(line: str) -> None:
            conn.sendall(line.encode() + b"\r\n")

        try:
            send("* OK Kerio Connect IMAP test front end ready")
            master_ok = False
            while True:
                raw = reader.readline(65536)
                if not raw:
                    return
                line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
                tag, _, rest = line.partition(" ")
                command, _, arg = rest.partition(" ")
                command = command.upper()
                if not tag or not command:
                    send(f"{tag or '*'} BAD Error in IMAP command received by server.")
                elif line.endswith("}"):
                    send(f"{tag} BAD Literals are not accepted before X-SETUSER.")
                elif command == "CAPABILITY":
                    send(f"* CAPABILITY {PRELOGIN_CAPABILITIES}")
                    send(f"{tag} OK Capability completed.")
                elif command == "NOOP":
                    send(f"{tag} OK NOOP completed.")
                elif command == "LOGOUT":
                    send("* BYE Logging out")
                    send(f"{tag} OK Logout completed.")
                    return
                elif command == "X-MASTERAUTH":
                    challenge = f"<{secrets.token_hex(8)}.{os.getpid()}@kerio.test>"
                    send(f"+ {challenge}")
                    answer = reader.readline(1024)
                    if not answer:
                        return
                    answer_s = answer.rstrip(b"\r\n").decode("ascii", "replace")
                    if answer_s == "*":
                        send(f"{tag} BAD X-MASTERAUTH canceled.")
                    elif answer_s == masterauth_response(challenge, self.master_password):
                        master_ok = True
                        send(f"{tag} OK X-MASTERAUTH completed.")
                    else:
                        self.masterauth_failures += 1
                        send(f"{tag} NO X-MASTERAUTH failed.")
                elif command == "X-SETUSER":
                    user = arg.strip()
                    if len(user) >= 2 and user[0] == user[-1] == '"':
                        user = user[1:-1].replace('\\"', '"').replace("\\\\", "\\")
                    if not master_ok:
                        send(f"{tag} NO X-SETUSER is permitted only after X-MASTERAUTH.")
                    elif not user:
                        send(f"{tag} BAD X-SETUSER needs a user name.")
                    elif self.user_exists is not None and not self.user_exists(user):
                        send(f"{tag} NO X-SETUSER failed: user {user} does not exist.")
                    else:
                        backend, refusal = self._open_backend(user)
                        if backend is None:
                            send(f"{tag} NO X-SETUSER failed: {refusal}")
                            continue
                        self.setusers.append(user)
                        send(f"{tag} OK X-SETUSER completed.")
                        self._relay(conn, reader, backend)
                        return
                elif command in ("LOGIN", "AUTHENTICATE", "STARTTLS"):
                    send(f"{tag} NO This test front end accepts only X-MASTERAUTH.")
                else:
                    send(f"{tag} BAD Unknown command or not allowed before X-SETUSER.")
        except OSError:
            return
        finally:
            reader.close()
            try:
                conn.close()
            except OSError:
                pass

    def _open_backend(self, user: str) -> tuple[socket.socket | None, str]:
        """A Dovecot session logged in as ``user`` via the master user, or (None, why Dovecot refused)."""
        import base64

        b = socket.create_connection(self.backend, timeout=30)
        self._track(b)
        reader = b.makefile("rb")
        if not reader.readline().startswith(b"* OK"):
            reader.close()
            b.close()
            return None, "the mail store did not greet"
        master, master_pw = self.backend_master
        token = base64.b64encode(f"{user}\0{master}\0{master_pw}".encode()).decode()
        b.sendall(f"k1 AUTHENTICATE PLAIN {token}\r\n".encode())
        while True:
            line = reader.readline()
            if not line:
                reader.close()
                b.close()
                return None, "the mail store closed the connection"
            if line.startswith(b"k1 "):
                break
        reader.close()  # the socket stays open; the relay reads it directly
        if not line.startswith(b"k1 OK"):
            b.close()
            return None, line[3:].decode("utf-8", "replace").strip()
        # Nothing can be buffered in ``reader`` past the tagged line: Dovecot sends nothing unasked.
        return b, ""

    def _relay(self, client: socket.socket, client_reader, backend: socket.socket) -> None:
        """Pass bytes both ways until either side closes."""
        client.settimeout(None)
        backend.settimeout(None)
        # Bytes the client pipelined right after X-SETUSER may sit in client_reader's buffer: read1 hands
        # them on first, then reads the socket.
        def pump(src, dst, first_reader=None):
            try:
                while True:
                    data = first_reader.read1(65536) if first_reader is not None else src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except (OSError, ValueError):
                pass
            finally:
                _shut_down((dst, src))

        up = threading.Thread(target=pump, args=(client, backend, client_reader), daemon=True)
        up.start()
        pump(backend, client)
        up.join(timeout=5)
        backend.close()
