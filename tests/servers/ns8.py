"""A stand-in for a NethServer 8 cluster's API on loopback, with a mail module behind it.

No NS8 can run here (it needs podman, systemd and Redis of its own), so this plays the documented protocol,
built from NethServer's public sources, never from mailmigrate's client:

* ns8-core ``core/api-server/api-server.go``: routes ``POST /api/login``, ``POST /api/cluster/tasks``,
  ``GET /api/cluster/task/<id>/status``, the same under ``/api/module/<id>/``; ``methods/tasks.go``: a task is
  ``{action, data, extra, parent}``, answered 201 with ``data`` = the queued task (its ``id``); the status is
  400 ("error getting ... status from redis") until the task wrote its result, then 200 with ``data:
  {error, output, exit_code}``; ``middleware``: JWT from login in ``Authorization: Bearer``, 401 without;
  ``response/response.go``: ``{code, message, data}``.
* ns8-core cluster actions ``list-installed-modules`` (image URL -> list of ``{id, node, module, ...}``),
  ``add-module`` (``{image, node}`` -> ``{module_id, ...}``) and ``remove-module`` (``{module_id,
  preserve_data}``).
* ns8-imapsync ``create-task`` / ``list-tasks`` (its ``validate-input.json``, ``import-module/40migration``).
* ns8-mail actions and their ``validate-input.json`` / ``validate-output.json``: ``add-domain``,
  ``list-domains``, ``add-address`` (``atype`` domain|wildcard, ``local`` matching mail-address-strict,
  ``destinations`` ``{dtype, name}``), ``alter-address``, ``list-addresses`` (``{addresses: [...]}``),
  ``alter-user-mailbox``, ``list-user-mailboxes`` (``{user_mailboxes: [{user, quota: {limit, ...}}]}``),
  ``set-mailbox-enabled``, ``add-relay-rule``/``list-relay-rules`` (``sender``/``recipient`` keyed), the
  filter, bypass, mailbox-settings and always-bcc setters.  An input that fails validation ends with exit
  code 10 and the validation errors as output, as NS8's agent does.

Each task completes on the second status poll, so a client must really poll.
"""

from __future__ import annotations

import json
import re
import secrets
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_LOCAL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
_DTYPES = {"user", "group", "public", "apo", "external"}


class MailModule:
    def __init__(self, mid: str, users: set[str], groups: set[str]):
        self.id = mid
        self.users = set(users)
        self.groups = set(groups)
        self.internal: dict[tuple[str, str], bool] = {}
        self.domains: dict[str, dict] = {}
        self.addresses: dict[tuple, dict] = {}
        self.mailboxes: dict[str, dict] = {u: {"user": u, "quota": {"limit": 0, "value": 0, "percent": 0}}
                                           for u in users}
        self.disabled: set[str] = set()
        self.relay: list[dict] = []
        self.filter: dict = {}
        self.bypass: list[dict] = []
        self.settings: dict = {}
        self.bcc = ""

    def run(self, action: str, d) -> tuple[int, object]:
        fn = getattr(self, "a_" + action.replace("-", "_"), None)
        if fn is None:
            return 9, f"action {action} not found"
        return fn(d or {})

    @staticmethod
    def _bad(field, value, error):
        return 10, [{"field": field, "parameter": field, "value": value, "error": error}]

    def a_list_domains(self, d):
        return 0, list(self.domains.values())

    def a_add_domain(self, d):
        if d.get("domain") in self.domains:
            return self._bad("domain", d.get("domain"), "domain_already_exists")
        self.domains[d["domain"]] = {"domain": d["domain"], "addusers": bool(d.get("addusers")),
                                     "addgroups": bool(d.get("addgroups")), "catchall": None, "bccaddr": None,
                                     "description": d.get("description", "")}
        return 0, None

    def _check_address(self, d):
        if d.get("atype") not in ("domain", "wildcard") or not _LOCAL.match(d.get("local", "")):
            return self._bad("local", d.get("local"), "invalid_local_part")
        if d["atype"] == "domain" and d.get("domain") not in self.domains:
            return self._bad("domain", d.get("domain"), "domain_not_found")
        for x in d.get("destinations", []):
            if x.get("dtype") not in _DTYPES or not x.get("name"):
                return self._bad("destinations", x, "invalid_destination")
            if x["dtype"] == "user" and x["name"] not in self.users:
                return self._bad("destinations", x, "user_not_found")
            if x["dtype"] == "group" and x["name"] not in self.groups:
                return self._bad("destinations", x, "group_not_found")
        return None

    def a_add_address(self, d):
        bad = self._check_address(d)
        if bad:
            return bad
        if not d.get("destinations"):
            return self._bad("destinations", [], "minItems")
        key = (d["atype"], d["local"], d.get("domain", ""))
        if key in self.addresses:
            return self._bad("local", d["local"], "address_already_exists")
        self.addresses[key] = {k: d[k] for k in ("atype", "local", "domain", "destinations", "internal",
                                                  "description") if k in d}
        return 0, None

    def a_alter_address(self, d):
        if d.get("atype") in ("adduser", "addgroup"):  # 20alter_address: userattrs / groupattrs
            known = self.users if d["atype"] == "adduser" else self.groups
            if d.get("local") not in known:
                return self._bad("local", d.get("local"), "user_not_found" if d["atype"] == "adduser"
                                 else "group_not_found")
            if "internal" in d:
                self.internal[(d["atype"], d["local"])] = bool(d["internal"])
            return 0, None
        key = (d.get("atype"), d.get("local"), d.get("domain", ""))
        if key not in self.addresses:
            return self._bad("local", d.get("local"), "address_not_found")
        bad = self._check_address(d)
        if bad:
            return bad
        self.addresses[key].update({k: d[k] for k in ("destinations", "internal", "description") if k in d})
        return 0, None

    def a_list_addresses(self, d):
        adds = [{"atype": "adduser", "local": u, **({"internal": True} if self.internal.get(("adduser", u)) else {})}
                for u in sorted(self.users)]
        adds += [{"atype": "addgroup", "local": g, **({"internal": True} if self.internal.get(("addgroup", g)) else {})}
                 for g in sorted(self.groups)]
        return 0, {"adduser_domains": [x for x, v in self.domains.items() if v["addusers"]],
                   "addresses": list(self.addresses.values()) + adds}

    def a_alter_user_mailbox(self, d):
        u = d.get("user")
        if u not in self.mailboxes:
            return self._bad("user", u, "user_not_found")
        box = self.mailboxes[u]
        if "quota" in d:
            box["quota"] = {"limit": d["quota"]["limit"], "value": 0, "percent": 0, "custom": True}
        if "spam_retention" in d:
            box["spam_retention"] = {**d["spam_retention"], "custom": True}
        if "forward" in d:
            box["forward"] = d["forward"]
        return 0, None

    def a_list_user_mailboxes(self, d):
        return 0, {"default_spam_retention": {"value": 15},
                   "user_mailboxes": [dict(b, enabled=u not in self.disabled) for u, b in self.mailboxes.items()]}

    def a_set_mailbox_enabled(self, d):
        if d.get("user") not in self.mailboxes or "enabled" not in d:
            return self._bad("user", d.get("user"), "user_not_found")
        (self.disabled.discard if d["enabled"] else self.disabled.add)(d["user"])
        return 0, None

    def a_add_relay_rule(self, d):
        t, s = d.get("rule_type"), d.get("rule_subject")
        if t not in ("sender", "recipient", "wildcard") or (s == "*") != (t == "wildcard"):
            return self._bad("rule_subject", s, "rule_type_must_be_wildcard" if s == "*" else "invalid")
        rule = {"sender" if t == "sender" else "recipient": s, "host": d["host"], "port": d["port"],
                "mandatory_tls": d.get("mandatory_tls", False), "username": d.get("username", ""),
                "has_password": bool(d.get("password")), "enabled": d.get("enabled", True)}
        if t == "wildcard":
            rule = {"recipient": "*", **{k: v for k, v in rule.items() if k != "recipient"}}
        self.relay.append(rule)
        return 0, None

    def a_list_relay_rules(self, d):
        return 0, self.relay

    def a_set_filter_configuration(self, d):
        self.filter = d
        return 0, None

    def a_add_bypass_rule(self, d):
        if d.get("type") not in ("ip", "email", "domain") or d.get("direction") not in ("from", "to"):
            return self._bad("type", d.get("type"), "invalid")
        if d in self.bypass:
            return self._bad("value", d.get("value"), "rule_already_exists")
        self.bypass.append(d)
        return 0, None

    def a_list_bypass_rules(self, d):
        return 0, {"bypass_rules": list(self.bypass)}

    def a_set_mailbox_settings(self, d):
        self.settings.update(d)
        return 0, None

    def a_set_always_bcc(self, d):
        self.bcc = d.get("bcc", "")
        return 0, None


class ImapsyncModule:
    """ns8-imapsync: ``create-task`` (every key of its validate-input.json required; ``security`` "", tls or
    ssl) and ``list-tasks`` (``user_properties: [{props, mailbox, service_running}]``)."""

    REQUIRED = ("task_id", "localuser", "remoteusername", "remotehostname", "remotepassword", "remoteport",
                "security", "delete_local", "exclude", "delete_remote", "cron", "foldersynchronization")

    def __init__(self, mid: str, users: set[str]):
        self.id, self.users = mid, users
        self.tasks: list[dict] = []

    def run(self, action: str, d) -> tuple[int, object]:
        if action == "list-tasks":
            return 0, {"enabled_mailboxes": [{"name": u, "label": u, "value": u} for u in sorted(self.users)],
                       "user_properties": [{"props": t, "mailbox": t["localuser"], "service_running": False}
                                           for t in self.tasks]}
        if action == "create-task":
            missing = [k for k in self.REQUIRED if k not in (d or {})]
            if missing or d["security"] not in ("", "tls", "ssl") or d["localuser"] not in self.users:
                return 10, [{"field": k, "error": "required"} for k in missing] or [{"field": "localuser",
                                                                                   "error": "invalid"}]
            self.tasks.append(dict(d, task_id=uuid.uuid4().hex[:6]))
            return 0, None
        return 9, f"action {action} not found"


class Cluster:
    def __init__(self, username: str, password: str, users: set[str], groups: set[str]):
        self.username, self.password = username, password
        self.users, self.groups = users, groups
        self.tokens: set[str] = set()
        self.modules: dict[str, MailModule] = {}
        self.tasks: dict[str, dict] = {}  # id -> {"polls": n, "result": ...}
        self.log: list[tuple[str, str]] = []  # (queue, action) in order
        self.lock = threading.Lock()

    def run(self, queue: str, action: str, data) -> tuple[int, object]:
        self.log.append((queue, action))
        if queue == "cluster":
            if action == "list-installed-modules":
                out: dict[str, list] = {}
                for m, mod in self.modules.items():
                    image = "mail" if isinstance(mod, MailModule) else "imapsync"
                    out.setdefault(f"ghcr.io/nethserver/{image}", []).append(
                        {"id": m, "node": "1", "module": image, "source": f"ghcr.io/nethserver/{image}",
                         "version": "1.0.0", "flags": []})
                return 0, out
            if action == "add-module":
                image = data.get("image")
                if image not in ("mail", "imapsync"):
                    return 10, [{"field": "image", "value": image, "error": "not_available_here"}]
                mid = f"{image}{sum(1 for m in self.modules if m.startswith(image)) + 1}"
                self.modules[mid] = (MailModule(mid, self.users, self.groups) if image == "mail"
                                     else ImapsyncModule(mid, self.users))
                return 0, {"module_id": mid, "image_name": "Mail", "image_url": "ghcr.io/nethserver/mail:1.5.0"}
            if action == "remove-module":
                if "module_id" not in data or "preserve_data" not in data:
                    return 10, [{"field": "module_id", "error": "required"}]
                if self.modules.pop(data["module_id"], None) is None:
                    return 10, [{"field": "module_id", "value": data["module_id"], "error": "module_not_found"}]
                return 0, None
            return 9, f"action {action} not found"
        mid = queue.split("/", 1)[1]
        if mid not in self.modules:
            return 9, f"module {mid} not found"
        return self.modules[mid].run(action, data)


def _handler(cluster: Cluster):
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self):
            n = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(n) or b"{}")

        def _authorized(self) -> bool:
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer ") and auth[7:] in cluster.tokens:
                return True
            self._send(401, {"code": 401, "message": "auth header is empty" if not auth else "invalid token"})
            return False

        def do_POST(self):
            if self.path == "/api/login":
                b = self._body()
                if b.get("username") == cluster.username and b.get("password") == cluster.password:
                    tok = secrets.token_urlsafe(24)
                    cluster.tokens.add(tok)
                    return self._send(200, {"code": 200, "expire": "2099-01-01T00:00:00Z", "token": tok})
                return self._send(401, {"code": 401, "message": "incorrect Username or Password"})
            m = re.fullmatch(r"/api/(cluster|module/[^/]+)/tasks", self.path)
            if not m:
                return self._send(404, {"code": 404, "message": "not found"})
            if not self._authorized():
                return
            b = self._body()
            if not isinstance(b.get("action"), str):
                return self._send(400, {"code": 400, "message": "request fields malformed", "data": "action"})
            queue = m.group(1)
            if queue != "cluster" and queue.split("/", 1)[1] not in cluster.modules:
                return self._send(404, {"code": 404, "message": "client idle check failed", "data": queue})
            tid = str(uuid.uuid4())
            with cluster.lock:
                code, out = cluster.run(queue, b["action"], b.get("data"))
                cluster.tasks[tid] = {"polls": 0, "exit_code": code, "output": out,
                                      "error": "" if code == 0 else "validation failed"}
            self._send(201, {"code": 201, "message": "task queued successfully",
                             "data": {"id": tid, "action": b["action"], "data": b.get("data"), "queue": queue + "/tasks"}})

        def do_GET(self):
            m = re.fullmatch(r"/api/(cluster|module/[^/]+)/task/([^/]+)/status", self.path)
            if not m:
                return self._send(404, {"code": 404, "message": "not found"})
            if not self._authorized():
                return
            t = cluster.tasks.get(m.group(2))
            if t is None or t["polls"] < 1:
                if t is not None:
                    t["polls"] += 1
                return self._send(400, {"code": 400, "message": "error getting error status from redis",
                                        "data": "redis: nil"})
            self._send(200, {"code": 200, "message": "success",
                             "data": {"error": t["error"], "output": t["output"], "exit_code": t["exit_code"],
                                      "file": f"task/{m.group(2)}"}})

    return H


class NS8StandIn:
    def __init__(self, username: str = "admin", password: str = "Nethesis,1234", users: set[str] = frozenset(),
                 groups: set[str] = frozenset(), cert: tuple[Path, Path] | None = None):
        """``users`` and ``groups``: what NS8's account provider knows (the mail module checks destinations);
        ``cert``: (key, certificate) to serve HTTPS, as NS8's leader does behind its proxy."""
        self.cluster = Cluster(username, password, set(users), set(groups))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.cluster))
        scheme = "http"
        if cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert[1]), str(cert[0]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "NS8StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def mail(self) -> MailModule:
        return next(m for m in self.cluster.modules.values() if isinstance(m, MailModule))

    @property
    def imapsync(self) -> ImapsyncModule:
        return next(m for m in self.cluster.modules.values() if isinstance(m, ImapsyncModule))
