"""An OAuth 2.0 authorisation server of our own on loopback, for Dovecot's oauth2 passdb and our client.

* ``POST /token`` — the refresh-token grant (RFC 6749 section 6): form ``grant_type=refresh_token``,
  ``refresh_token``, ``client_id``, ``client_secret``; answers ``{"access_token", "token_type": "Bearer",
  "expires_in"}``, or 400 ``{"error": "invalid_grant"}`` for an unknown refresh token.  ``rotate`` makes it hand
  out a new refresh token each time and forget the old one, as providers that rotate do.
* ``POST /introspect`` — RFC 7662: form ``token``; answers ``{"active": true, "username": …}`` for a token it
  issued and that has not expired, else ``{"active": false}``.  Dovecot asks it at each login.

Tokens expire by the server's clock after ``lifetime`` seconds, so a test can have one run out mid-run.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OAuthServer:
    def __init__(self, *, lifetime: float = 3600.0, rotate: bool = False, client_id: str = "mm-test",
                 client_secret: str = "s3cret-client"):
        self.lifetime, self.rotate = lifetime, rotate
        self.client_id, self.client_secret = client_id, client_secret
        self.refresh: dict[str, str] = {}  # refresh token -> user
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (user, expiry)
        self.grants = 0
        self.introspections: list[tuple[str, bool]] = []  # (user or "", active) per Dovecot question
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in urllib.parse.parse_qs(self.rfile.read(n).decode()).items()}
                if self.path == "/token":
                    code, body = server._grant(form)
                elif self.path == "/introspect":
                    code, body = 200, server._introspect(form.get("token", ""))
                else:
                    code, body = 404, {"error": "not_found"}
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add_user(self, user: str) -> str:
        """A refresh token for ``user``."""
        rt = "rt-" + secrets.token_urlsafe(16)
        self.refresh[rt] = user
        return rt

    def issue(self, user: str, lifetime: float | None = None) -> str:
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self.tokens[token] = (user, time.time() + (self.lifetime if lifetime is None else lifetime))
        return token

    def _grant(self, form: dict) -> tuple[int, dict]:
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        with self._lock:
            user = self.refresh.get(form.get("refresh_token", ""))
            if user is None:
                return 400, {"error": "invalid_grant", "error_description": "unknown or used refresh token"}
            self.grants += 1
            out = {"token_type": "Bearer", "expires_in": self.lifetime}
            if self.rotate:
                del self.refresh[form["refresh_token"]]
                new = "rt-" + secrets.token_urlsafe(16)
                self.refresh[new] = user
                out["refresh_token"] = new
        out["access_token"] = self.issue(user)
        return 200, out

    def _introspect(self, token: str) -> dict:
        with self._lock:
            user, expiry = self.tokens.get(token, ("", 0.0))
            active = bool(user) and time.time() < expiry
            self.introspections.append((user, active))
        return {"active": True, "username": user} if active else {"active": False}

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
