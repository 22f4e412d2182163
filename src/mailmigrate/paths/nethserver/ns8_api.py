"""NethServer 8 itself, through its cluster API: the migrated mail settings applied to the mail module and
read back for the verification.

The API (ns8-core ``core/api-server``, docs ``docs/core/api_server.md``): ``POST /api/login`` with
``{"username", "password"}`` answers ``{"code": 200, "token": JWT}``; later calls carry ``Authorization:
Bearer JWT``.  A task is queued with ``POST /api/cluster/tasks`` or ``POST /api/module/<id>/tasks`` and
``{"action", "data", "extra", "parent"}``; the answer (201) holds ``data.id``.  ``GET
/api/<queue>/task/<id>/status`` answers 400 while the task runs (its result keys do not exist yet) and then
200 with ``data: {output, error, exit_code}``.  Actions and their JSON come from ns8-core
(``list-installed-modules``, ``add-module``) and ns8-mail (``add-domain``, ``add-address``,
``alter-address``, ``alter-user-mailbox``, ``set-mailbox-enabled``, ``add-relay-rule``,
``set-filter-configuration``, ``add-bypass-rule``, ``set-mailbox-settings``, ``set-always-bcc``, and the
``list-*`` actions read back).

No NethServer 8 runs here: this is proven against ``tests/servers/ns8.py``, a stand-in built from the same
public sources.  The password is read from a file or the environment, never the command line; it and the
token never reach a log.  TLS is verified unless the user says otherwise.
"""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from ...errors import ConfigError, MailmigrateError
from ...model import Secret
from ..journal import EventLog

MAIL_IMAGE = "mail"
IMAPSYNC_IMAGE = "imapsync"
_LOCAL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")  # ns8-mail mail-address-strict


class NS8Error(MailmigrateError):
    """The cluster refused a login or a task (the message names the action and NS8's answer)."""


@dataclass
class ClusterLink:
    url: str  # https://leader.example.com/cluster-admin (or http://127.0.0.1:9311)
    username: str
    password: Secret
    verify_tls: bool = True
    cafile: str | None = None
    node: int = 1
    timeout: float = 30
    task_timeout: float = 1800


class ClusterAPI:
    def __init__(self, link: ClusterLink):
        self.link = link
        self.base = link.url.rstrip("/") + "/api"
        self.token: str | None = None
        if link.url.startswith("https:"):
            self.ctx = ssl.create_default_context(cafile=link.cafile)
            if not link.verify_tls:
                self.ctx.check_hostname = False
                self.ctx.verify_mode = ssl.CERT_NONE
        else:
            self.ctx = None

    def _call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.link.timeout, context=self.ctx) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise NS8Error(f"NS8 cluster API {self.link.url}: {getattr(e, 'reason', e)}") from None

    def login(self) -> None:
        code, ans = self._call("POST", "/login", {"username": self.link.username,
                                                    "password": self.link.password.reveal()})
        if code != 200 or not ans.get("token"):
            raise NS8Error(f"NS8 login as {self.link.username} refused (HTTP {code})")
        self.token = ans["token"]

    def task(self, queue: str, action: str, data) -> object:
        """Run one task and return its output; a non-zero exit code is an error naming the action."""
        return self.wait(queue, self.submit(queue, action, data), action)

    def submit(self, queue: str, action: str, data) -> str:
        """Queue one task and return its id without waiting (``ns8-action -d``)."""
        if self.token is None:
            self.login()
        code, ans = self._call("POST", f"/{queue}/tasks", {"action": action, "data": data, "extra": {},
                                                           "parent": ""})
        if code != 201:
            raise NS8Error(f"NS8 {queue} {action}: not queued (HTTP {code}: {ans.get('message', '')})")
        return ans["data"]["id"]

    def ended(self, queue: str, tid: str) -> dict | None:
        """``{output, error, exit_code}`` of a task that has ended, None while it runs."""
        if self.token is None:
            self.login()
        code, ans = self._call("GET", f"/{queue}/task/{tid}/status")
        return ans.get("data") if code == 200 else None

    def wait(self, queue: str, tid: str, action: str) -> object:
        """The output of a queued task once it has ended (``ns8-action --attach wait``)."""
        deadline, pause = time.monotonic() + self.link.task_timeout, 0.05
        while (res := self.ended(queue, tid)) is None:
            if time.monotonic() > deadline:
                raise NS8Error(f"NS8 {queue} {action}: no result after {self.link.task_timeout:.0f}s")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        if res.get("exit_code") != 0:
            raise NS8Error(f"NS8 {queue} {action} failed (exit {res.get('exit_code')}): {_why(res)}")
        return res.get("output")


def _why(res: dict) -> str:
    """NS8's reason without the values it echoes: a validation error names field and error and repeats the
    value sent, which may be a relay or fetch password."""
    out = res.get("output")
    if isinstance(out, list) and all(isinstance(x, dict) for x in out):
        return "; ".join(f"{x.get('field') or x.get('parameter')}: {x.get('error')}" for x in out)[:300]
    return str(res.get("error") or "")[:300] or "no reason given"


# -- what the mail module must hold ------------------------------------------------------------------------


def destination(dest: str, users: set[str], groups: set[str]) -> dict:
    if dest.startswith("vmail+"):
        return {"dtype": "public", "name": dest.removeprefix("vmail+")}
    if dest in groups:
        return {"dtype": "group", "name": dest}
    if "@" not in dest:
        return {"dtype": "user", "name": dest}
    return {"dtype": "external", "name": dest}


def _dest_key(d: dict) -> tuple[str, str]:
    return d["dtype"], d.get("name") or d.get(d["dtype"], "")


def _addr_key(a: dict) -> tuple[str, str, str]:
    return a["atype"], a["local"], a.get("domain", "")


def wanted_addresses(settings: dict) -> tuple[list[dict], list[str]]:
    users, groups = set(settings["users"]), set(settings.get("groups", {}))
    out, refused = [], []
    for a in settings["addresses"]:
        if not _LOCAL.match(a["local"]) or not a["destinations"]:
            refused.append(a["address"])
            continue
        item = {"atype": "wildcard" if a["domain"] == "*" else "domain", "local": a["local"],
                "destinations": [destination(d, users, groups) for d in a["destinations"]],
                "internal": bool(a.get("internal")), "description": "migrated from NethServer 7"}
        if a["domain"] != "*":
            item["domain"] = a["domain"]
        out.append(item)
    return out, refused


# NS7's bypass lists -> NS8's add-bypass-rule (type, direction), as ns8-mail's import-module maps them
_BYPASS = (("sender", "email", "from"), ("sender_domain", "domain", "from"),
           ("recipient", "email", "to"), ("recipient_domain", "domain", "to"))


def plan(settings: dict) -> list[tuple[str, str]]:
    """(queue, action) of every task :func:`apply` would run, for ``finish --dry-run``."""
    addrs, _ = wanted_addresses(settings)
    steps = [("cluster", "import-module (when start opened no import endpoint; the mail module the mail is "
                          "imported into)"), ("module", "list-domains")]
    steps += [("module", f"add-domain {d['domain']}") for d in settings.get("domains", [])]
    steps += [("module", "list-addresses")]
    steps += [("module", f"add-address {a['local']}@{a.get('domain', '*')}") for a in addrs]
    steps += [("module", "list-user-mailboxes")]
    steps += [("module", f"alter-user-mailbox {u}") for u in settings["users"]]
    steps += [("module", f"set-mailbox-enabled {u} false") for u in settings.get("disabled_users", []) if u != "root"]
    steps += [("module", f"alter-address adduser {u} internal") for u, e in settings["users"].items()
              if e.get("internal")]
    steps += [("module", f"alter-address addgroup {g} internal") for g, e in settings.get("groups", {}).items()
              if e.get("internal")]
    steps += [("module", "list-relay-rules")]
    steps += [("module", f"add-relay-rule {r['rule_type']} {r['rule_subject']}") for r in settings["relay_rules"]]
    f = settings.get("filter") or {}
    if f:
        steps += [("module", "set-filter-configuration"), ("module", "list-bypass-rules")]
        steps += [("module", f"add-bypass-rule {typ} {direction} {v}") for kind, typ, direction in _BYPASS
                  for v in f["bypass"].get(kind, [])]
    if settings.get("mailbox"):
        steps.append(("module", "set-mailbox-settings"))
    if settings.get("always_bcc"):
        steps.append(("module", "set-always-bcc"))
    if f.get("sender_validation"):  # apply() warns of these two; the dry run names them as well
        steps.append(("by hand:", "SenderValidation (not applied through the API)"))
    if f.get("relay_networks"):
        steps.append(("by hand:", f"trusted networks {', '.join(f['relay_networks'])} (not applied through the API)"))
    steps += [("module", "list-addresses / list-user-mailboxes / list-relay-rules (verification)")]
    steps += [("cluster", "list-installed-modules, add-module imapsync (when none)"),
              ("imapsync module", "create-task for each fetch task not there yet")]
    return steps


def ensure_module(api: ClusterAPI, image: str, log: EventLog, action: str) -> tuple[str, bool]:
    """(module id, True when this call created it): the first installed instance of ``image``, or a new one
    on the link's node (the seed's start: "install the application into the NethServer 8 cluster")."""
    mods = api.task("cluster", "list-installed-modules", {}) or {}
    ids = [m["id"] for name, ms in mods.items() if name.rsplit("/", 1)[-1] == image for m in ms]
    if ids:
        log.info(action, f"NS8 {image} module {ids[0]} found")
        return ids[0], False
    mid = api.task("cluster", "add-module", {"image": image, "node": api.link.node})["module_id"]
    log.info(action, f"NS8 {image} module {mid} created on node {api.link.node}")
    return mid, True


def _module(api: ClusterAPI, image: str, log: EventLog, action: str) -> str:
    return ensure_module(api, image, log, action)[0]


def remove_module(api: ClusterAPI, mid: str, log: EventLog, action: str = "abort") -> None:
    """The seed's abort: "remove the NS8 application instance" (only one this migration created)."""
    api.task("cluster", "remove-module", {"module_id": mid, "preserve_data": False})
    log.info(action, f"NS8 module {mid} removed")


def apply_fetch_tasks(api: ClusterAPI, tasks: list[dict], log: EventLog, action: str = "finish") -> int:
    """NS7's POP3 connector accounts as tasks of NS8's imapsync module (ns8-imapsync ``create-task``), as
    its own ``import-module`` maps them: IMAP ones scheduled every N minutes, POP3 ones created without a
    schedule for review; an account already there (same local user, remote user and host) is left."""
    if not tasks:
        return 0
    q = f"module/{_module(api, IMAPSYNC_IMAGE, log, action)}"
    have = {(t["props"]["localuser"], t["props"]["remoteusername"], t["props"]["remotehostname"])
            for t in (api.task(q, "list-tasks", {}) or {}).get("user_properties", [])}
    n = 0
    for t in tasks:
        if not t.get("enabled", True) and not t.get("server"):
            continue
        if (t["deliver_to"], t["username"], t["server"]) in have:
            continue
        api.task(q, "create-task", {
            "task_id": "", "localuser": t["deliver_to"], "remoteusername": t["username"],
            "remotehostname": t["server"], "remotepassword": t.get("password", ""),
            "remoteport": 993 if t["tls"] else 143, "security": "ssl" if t["tls"] else "tls",
            "delete_local": False, "exclude": "", "delete_remote": t["delete_on_remote"],
            "delete_remote_older": t.get("delete_after_days") or 0,
            "cron": f"{t['interval_minutes']}m" if t["scheduled"] and t["enabled"] else "",
            "foldersynchronization": "all"})
        n += 1
    log.info(action, f"{n} fetch task(s) created in NS8's imapsync module (POP3 ones unscheduled, for review)")
    return n


def apply(api: ClusterAPI, settings: dict, log: EventLog, action: str = "finish", module_id: str | None = None) -> dict:
    """Create or find the mail module (``module_id``: the one the mail was imported into), apply
    ``settings`` (``mail-settings.json``), read it back; every difference is an ERROR naming the object."""
    mid = module_id or _module(api, MAIL_IMAGE, log, action)
    q = f"module/{mid}"
    have_domains = {d["domain"] for d in api.task(q, "list-domains", {}) or []}
    for d in settings.get("domains", []):
        if d["domain"] not in have_domains:
            api.task(q, "add-domain", {"domain": d["domain"], "addusers": d["add_users"],
                                        "addgroups": d["add_groups"], "description": d["description"]})
    addrs, refused = wanted_addresses(settings)
    for a in refused:
        log.error(action, f"address {a}: NS8 accepts no such local part or destination; not applied")
    have = {_addr_key(a): a for a in (api.task(q, "list-addresses", {}) or {}).get("addresses", [])
            if a.get("atype") in ("domain", "wildcard")}
    for a in addrs:
        cur = have.get(_addr_key(a))
        if cur is None:
            api.task(q, "add-address", a)
        elif sorted(map(_dest_key, cur.get("destinations", []))) != sorted(map(_dest_key, a["destinations"])):
            api.task(q, "alter-address", a)
    known = {b["user"] for b in (api.task(q, "list-user-mailboxes", {}) or {}).get("user_mailboxes", [])}
    for user in settings["users"]:
        if user not in known:
            log.error(action, f"mailbox {user}: NS8 does not know this user; its settings are not applied (is "
                              "NS7's account provider reachable from NS8, as the migration needs?)")
    for user, e in settings["users"].items():
        if user not in known:
            continue
        data: dict = {"user": user}
        if "quota_mb" in e:
            data["quota"] = {"limit": e["quota_mb"]}
        if "spam_retention_days" in e:
            data["spam_retention"] = {"value": e["spam_retention_days"]}
        if e.get("forward"):
            data["forward"] = {"destinations": [{"dtype": "external", "name": x} for x in e["forward"]["addresses"]],
                               "keepcopy": e["forward"]["keep_copy"]}
        if len(data) > 1:
            api.task(q, "alter-user-mailbox", data)
    for user in settings.get("disabled_users", []):
        if user != "root" and user in known:  # root: no NS8 user; NS8's import keeps it on DOVECOT_DISABLED_USERS
            api.task(q, "set-mailbox-enabled", {"user": user, "enabled": False})
    # internal-only users and groups: ns8-mail's alter-address with atype adduser/addgroup (userattrs,
    # groupattrs), as its import-module sets them
    for kind, names in (("adduser", [u for u, e in settings["users"].items() if e.get("internal") and u in known]),
                        ("addgroup", [g for g, e in settings.get("groups", {}).items() if e.get("internal")])):
        for name in names:
            api.task(q, "alter-address", {"atype": kind, "local": name, "internal": True})
    if (settings.get("filter") or {}).get("sender_validation"):
        log.warning(action, "SenderValidation (senders must be local users): not applied through the API (NS8's "
                            "import sets POSTFIX_RESTRICTED_SENDER); enable it in NS8 by hand")
    have_rules = {(r.get("sender") or r.get("recipient") or "*") for r in api.task(q, "list-relay-rules", {}) or []}
    for r in settings["relay_rules"]:
        if r["rule_subject"] not in have_rules:
            api.task(q, "add-relay-rule", {"rule_type": r["rule_type"], "rule_subject": r["rule_subject"],
                                           "host": r["host"], "port": r["port"], "mandatory_tls": r["tls"],
                                           "username": r["username"], "password": r["password"],
                                           "enabled": r["enabled"]})
    f = settings.get("filter") or {}
    if f:
        api.task(q, "set-filter-configuration", {"antispam": f["antispam"], "antivirus": f["antivirus"]})
        have_bypass = {(b["value"], b["type"], b["direction"])
                       for b in (api.task(q, "list-bypass-rules", {}) or {}).get("bypass_rules", [])}
        for kind, typ, direction in _BYPASS:
            for v in f["bypass"].get(kind, []):
                if (v, typ, direction) not in have_bypass:  # a repeated finish adds nothing twice
                    api.task(q, "add-bypass-rule", {"value": v, "type": typ, "direction": direction})
        if f.get("relay_networks"):
            log.warning(action, f"trusted networks {', '.join(f['relay_networks'])}: not applied through the "
                                "API (NS8 keeps them in its relay settings); enter them in NS8 by hand")
    m = settings.get("mailbox") or {}
    if m:
        api.task(q, "set-mailbox-settings", {
            "spam_retention": {"value": m["spam_retention_days"]},
            "spam_folder": {"enabled": bool(m["spam_folder"]), "name": m["spam_folder"] or "Junk"},
            "sharedseen": {"enabled": m["shared_seen"]},
            "spam_prefix": {"enabled": bool(m["spam_subject_prefix"]), "prefix": m["spam_subject_prefix"]},
            **({"quota": {"limit": settings["default_quota_mb"]}} if settings.get("default_quota_mb") else {})})
    if settings.get("always_bcc"):
        api.task(q, "set-always-bcc", {"bcc": settings["always_bcc"]})
    mismatches = verify(api, q, settings, addrs)
    for m_ in mismatches:
        log.error(action, f"NS8 does not hold what was applied: {m_}")
    if not mismatches:
        log.info(action, f"NS8 mail module {mid}: {len(addrs)} address(es), {len(settings['users'])} mailbox "
                         f"setting(s), {len(settings['relay_rules'])} relay rule(s) applied and read back")
    return {"module_id": mid, "addresses": len(addrs), "mismatches": len(mismatches)}


def verify(api: ClusterAPI, q: str, settings: dict, addrs: list[dict]) -> list[str]:
    """What NS8 holds, read back, against what was applied: one sentence per difference."""
    out = []
    listed = (api.task(q, "list-addresses", {}) or {}).get("addresses", [])
    got = {_addr_key(a): sorted(map(_dest_key, a.get("destinations", []))) for a in listed
           if a.get("atype") in ("domain", "wildcard")}
    for a in addrs:
        if got.get(_addr_key(a)) != sorted(map(_dest_key, a["destinations"])):
            out.append(f"address {a['local']}@{a.get('domain', '*')}: {got.get(_addr_key(a))}")
    boxes = {b["user"]: b for b in (api.task(q, "list-user-mailboxes", {}) or {}).get("user_mailboxes", [])}
    for user, e in settings["users"].items():
        quota = boxes.get(user, {}).get("quota", {})
        if user in boxes and "quota_mb" in e and quota.get("limit") != e["quota_mb"]:
            out.append(f"mailbox {user}: quota {quota}, wanted {e['quota_mb']} MB")
    internal = {(a["atype"], a["local"]) for a in listed if a.get("atype") in ("adduser", "addgroup")
                and a.get("internal")}
    for kind, items in (("adduser", settings["users"]), ("addgroup", settings.get("groups", {}))):
        for name, e in items.items():
            if e.get("internal") and (kind, name) not in internal and (kind == "addgroup" or name in boxes):
                out.append(f"{'user' if kind == 'adduser' else 'group'} {name}: not internal-only")
    rules = {(r.get("sender") or r.get("recipient") or "*") for r in api.task(q, "list-relay-rules", {}) or []}
    out += [f"relay rule {r['rule_subject']}: missing" for r in settings["relay_rules"] if r["rule_subject"] not in rules]
    return out


def link_from(url: str, username: str, password: Secret | None, *, insecure: bool = False,
              cafile: str | None = None, node: int = 1) -> ClusterLink:
    if not password:
        raise ConfigError("NS8 cluster API: no password (give --ns8-password-file or MAILMIGRATE_NS8_PASSWORD)")
    return ClusterLink(url, username, password, verify_tls=not insecure, cafile=cafile, node=node)
