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
* ns8-core cluster action ``import-module`` (``50import``, its ``validate-input.json`` /
  ``validate-output.json``): ``{image, node, volumes}`` -> a new module (``add-module``), one TCP port, a secret,
  and the module's own ``import-module`` task started without waiting; the answer is ``{credentials: [module
  id, secret], port, volumes, address, task: "module/<id>/task/<uuid>"}``.  The module action
  ``import-module`` (ns8-core ``usr/local/agent/actions/import-module``: ``00validate_import`` refuses a module
  already imported, ``05create_volumes``, ``10recvstate`` runs an rsync daemon until it is told to stop,
  ``99mark_completed``) and the daemon's configuration (ns8-core ``core/rsync/entrypoint.sh``: one auth user
  from a secrets file, module ``[data]`` = ``/srv`` holding ``state/`` (the module's state directory) and
  ``volumes/<name>/``, numeric ids, and module ``[terminate]`` whose ``post-xfer exec`` stops the daemon).
  Here the daemon is the real ``rsync --daemon --no-detach`` on loopback, ``/srv`` a directory of the
  stand-in; after it stops, ns8-mail's import steps run on what was pushed (see :class:`Importer`).
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
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_LOCAL = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9._-]*[a-zA-Z0-9])?$")
_DTYPES = {"user", "group", "public", "apo", "external"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Importer:
    """One module's ``import-module`` task: the rsync daemon NethServer 7 pushes to, then what ns8-mail's
    ``imageroot/actions/import-module/*`` steps do with the pushed files.

    Layout (ns8-core ``core/rsync/README.md``): ``srv/state`` is the module's state directory (the files
    ``nethserver-ns8-migration``'s mail ``migrate`` sends: ``user_domain.txt``, ``mail_domain.txt``,
    ``accounts.json``, ``dovecot.json``, ..., ``dkim.migration/``), ``srv/volumes/<name>`` each volume
    (``dovecot-data`` is what the module's Dovecot serves as ``/var/lib/vmail``).  ``rsyncd/`` holds the
    daemon's configuration and secrets file, outside what the daemon serves.
    """

    def __init__(self, module: "MailModule", base: Path, user: str, password: str, port: int, volumes: list[str]):
        self.module, self.base, self.user, self.password, self.port = module, base, user, password, port
        self.srv = base / "srv"
        self.volumes = volumes
        self.proc: subprocess.Popen | None = None
        self.steps: list[str] = []

    def start(self) -> None:
        (self.srv / "state").mkdir(parents=True, exist_ok=True)
        for v in self.volumes:  # 05create_volumes
            (self.srv / "volumes" / v).mkdir(parents=True, exist_ok=True)
        conf = self.base / "rsyncd"
        conf.mkdir(mode=0o700, exist_ok=True)
        (conf / "empty").mkdir(exist_ok=True)
        secrets_file = conf / "rsyncd.secrets"
        secrets_file.write_text(f"{self.user}:{self.password}\n")
        secrets_file.chmod(0o600)
        ids = "uid = 0\ngid = 0\n" if os.geteuid() == 0 else ""
        (conf / "rsyncd.conf").write_text(
            f"address = 127.0.0.1\nport = {self.port}\npid file = {conf}/rsyncd.pid\nreverse lookup = no\n"
            f"forward lookup = no\n{ids}auth users = {self.user}\nsecrets file = {secrets_file}\n"
            f"use chroot = no\n\n[data]\npath = {self.srv}\nread only = no\nnumeric ids = yes\n"
            f"munge symlinks = no\nhosts allow = 127.0.0.1\n\n[terminate]\npath = {conf}/empty\n"
            f"read only = yes\nlist = no\npost-xfer exec = kill -TERM $(cat {conf}/rsyncd.pid)\n")
        self.proc = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--config={conf}/rsyncd.conf",
                                      f"--log-file={conf}/rsyncd.log"], stdin=subprocess.DEVNULL)

    def wait(self) -> tuple[int, object]:
        """10recvstate returns when the daemon stops (a client read ``terminate``); then the mail steps."""
        rc = self.proc.wait()
        if rc != 0:
            return 1, f"rsync daemon exited with {rc}"
        state, vmail = self.srv / "state", self.srv / "volumes" / "dovecot-data"
        try:
            self._import_environment(state)
            self._migrate_maildirs(vmail, (state / "mail_domain.txt").read_text().strip().lower())
            self._migrate_bayesdb()
            self._import_dkim(state)
        except (OSError, ValueError, KeyError) as e:  # the step's script fails: the task fails
            return 1, f"import step failed: {e}"
        self.module.imported = True  # 99mark_completed: IMPORT_IMAGE_URL, flag import_completed
        return 0, None

    def stop(self) -> None:
        """The daemon gone as with a restart of NS8 (killed, not told to stop): nothing is imported."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _import_environment(self, state: Path) -> None:
        """ns8-mail ``20import_environment``: rspamd.json, dovecot.json and user_domain.txt -> the module's
        environment (the default quota, spam folder and retention, subject prefix, Postfix origin)."""
        rspamd = json.loads((state / "rspamd.json").read_text())["props"]
        dovecot = json.loads((state / "dovecot.json").read_text())["props"]
        env = self.module.env
        env["POSTFIX_ORIGIN"] = (state / "user_domain.txt").read_text().strip()
        env["DOVECOT_SPAM_SUBJECT_PREFIX"] = (rspamd.get("SpamSubjectPrefixString", "")
                                              if rspamd.get("SpamSubjectPrefixStatus") == "enabled" else "")
        env["DOVECOT_SPAM_FOLDER"] = dovecot.get("SpamFolder", "Junk")
        ret = dovecot.get("SpamRetentionTime", "")
        env["DOVECOT_SPAM_RETENTION"] = ret.rstrip("d") if ret.endswith("d") else "15"
        self.steps.append("20import_environment")

    def _migrate_maildirs(self, vmail: Path, domain: str) -> None:
        """ns8-mail ``35migrate_maildirs`` on the dovecot-data volume: ``@domain`` dropped from the shared
        dictionary, from home names (``root`` and ``vmail`` keep theirs; a name without the domain is
        skipped), from readers' ``Maildir/shared/<owner>@domain`` indexes and from ACL lines; full rights
        ``akeilprwts`` gain ``x``; ``user=root`` ACL lines removed; ``Shared/<owner>@domain`` in sieve
        ``fileinto`` lines shortened."""
        sfx = "@" + domain
        rx = re.escape(sfx)
        db = vmail / "shared-mailboxes.db"
        if db.is_file():
            lines = db.read_text().split("\n")
            db.write_text("\n".join(re.sub(rx + r"\b", "", ln) if re.search(rx + r"(/|$)", ln) else ln
                                    for ln in lines))
        for entry in sorted(vmail.iterdir()):
            if not entry.is_dir():
                continue
            if entry.name in ("root", "vmail"):
                dest = entry
            elif entry.name.endswith(sfx) and entry.name[:-len(sfx)] not in ("", "root", "vmail"):
                dest = vmail / entry.name[:-len(sfx)]
                if dest.exists():
                    dest.rename(vmail / f"{dest.name}.{secrets.randbelow(32768)}")
                entry.rename(dest)
            else:
                self.steps.append(f"35migrate_maildirs: skipped {entry.name}")
                continue
            shared = dest / "Maildir" / "shared"
            if shared.is_dir():
                for d in shared.iterdir():
                    if d.is_dir() and d.name.endswith(sfx):
                        target = shared / d.name[:-len(sfx)]
                        shutil.rmtree(target, ignore_errors=True)
                        d.rename(target)
            for acl in dest.rglob("dovecot-acl"):
                if acl.is_file() and not acl.is_symlink():
                    out = []
                    for ln in acl.read_text().splitlines(keepends=True):
                        ln = re.sub(r"\bakeilprwts\b", "akxeilprwts", re.sub(rx + r"\b", "", ln))
                        if not ln.startswith("user=root "):
                            out.append(ln)
                    acl.write_text("".join(out))
            for sieve in [*dest.glob("*.sieve"), *dest.glob("*/*.sieve")]:
                if sieve.is_file() and not sieve.is_symlink():
                    sieve.write_text(re.sub(r'(fileinto\s+"Shared/[^@"]+)' + rx + r'(/?[^"]*")', r"\1\2",
                                            sieve.read_text()))
        self.steps.append("35migrate_maildirs")

    def _migrate_bayesdb(self) -> None:
        """ns8-mail ``40migrate_bayesdb``: a ``dump.rdb`` in rspamd-redis becomes ``persistent.rdb``."""
        redis = self.srv / "volumes" / "rspamd-redis"
        if (redis / "dump.rdb").is_file():
            (redis / "dump.rdb").replace(redis / "persistent.rdb")
        self.steps.append("40migrate_bayesdb")

    def _import_dkim(self, state: Path) -> None:
        """ns8-mail ``50import_dkim``: ``dkim.migration/default.private`` renamed ``default.key`` and copied
        with ``default.txt`` into rspamd's ``/var/lib/rspamd/dkim/`` (here: ``volumes/rspamd-data/dkim``);
        ``dkim.migration`` removed.  The script runs under ``set -e``: without the key the task fails."""
        src = state / "dkim.migration"
        try:
            (src / "default.private").rename(src / "default.key")
            dst = self.srv / "volumes" / "rspamd-data" / "dkim"
            dst.mkdir(parents=True, exist_ok=True)
            for f in src.iterdir():
                shutil.copy2(f, dst / f.name)
        finally:
            shutil.rmtree(src, ignore_errors=True)
        self.steps.append("50import_dkim")


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
        self.env: dict[str, str] = {}  # what the import steps set in the module's environment
        self.imported = False
        self.importer: Importer | None = None
        self.base: Path | None = None  # its directory under the stand-in (state and volumes)

    def volume(self, name: str) -> Path:
        return self.base / "srv" / "volumes" / name

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
        self.root = Path(tempfile.mkdtemp(prefix="ns8-standin-"))  # the modules' state and volumes

    def run(self, queue: str, action: str, data, tid: str | None = None) -> tuple[int | None, object]:
        """(exit code, output); exit code None: the task runs on (its result is filled in later)."""
        self.log.append((queue, action))
        if queue == "cluster" and action == "import-module":
            return self._cluster_import(data or {})
        if queue != "cluster" and action == "import-module":
            return self._module_import(queue.split("/", 1)[1], data or {}, tid or str(uuid.uuid4()))
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
                mod = self.modules.pop(data["module_id"], None)
                if mod is None:
                    return 10, [{"field": "module_id", "value": data["module_id"], "error": "module_not_found"}]
                if getattr(mod, "importer", None) is not None:
                    mod.importer.stop()
                shutil.rmtree(self.root / data["module_id"], ignore_errors=True)  # preserve_data false
                return 0, None
            return 9, f"action {action} not found"
        mid = queue.split("/", 1)[1]
        if mid not in self.modules:
            return 9, f"module {mid} not found"
        return self.modules[mid].run(action, data)

    def _cluster_import(self, data: dict) -> tuple[int | None, object]:
        """ns8-core cluster ``import-module/50import``: add-module, a port, a secret (its pid and task id
        there), the module's import-module started without waiting, the connection details returned."""
        missing = [k for k in ("image", "node", "volumes") if k not in data]
        if missing or not isinstance(data["volumes"], list) or not isinstance(data["node"], int):
            return 10, [{"field": k, "parameter": k, "value": "", "error": "required"} for k in missing] or \
                [{"field": "volumes", "parameter": "volumes", "value": "", "error": "invalid"}]
        code, out = self.run("cluster", "add-module", {"image": data["image"], "node": data["node"]})
        if code != 0:
            return code, out
        mid = out["module_id"]
        req = {"credentials": [mid, f"{os.getpid()}{uuid.uuid4()}"], "port": _free_port(), "volumes": data["volumes"]}
        tid = str(uuid.uuid4())
        code, out = self._module_import(mid, req, tid)
        if code is not None:
            return 1, out
        return 0, {**req, "address": "127.0.0.1", "task": f"module/{mid}/task/{tid}"}

    def _module_import(self, mid: str, data: dict, tid: str) -> tuple[int | None, object]:
        mod = self.modules.get(mid)
        if not isinstance(mod, MailModule):
            return 9, f"module {mid}: no import-module here"
        cred, port, vols = data.get("credentials"), data.get("port"), data.get("volumes")
        if not (isinstance(cred, list) and len(cred) == 2 and all(isinstance(c, str) and c for c in cred)
                and isinstance(port, int) and port >= 1 and isinstance(vols, list)):
            return 10, [{"field": "credentials", "parameter": "credentials", "value": "", "error": "invalid"}]
        if mod.imported:  # 00validate_import
            return 2, [{"field": "none", "parameter": "none", "value": "", "error": "module_already_imported"}]
        mod.base = self.root / mid
        imp = Importer(mod, mod.base, cred[0], cred[1], port, vols)
        imp.start()
        mod.importer = imp
        self.tasks[tid] = {"polls": 0, "pending": True}

        def finish():
            code, out = imp.wait()
            with self.lock:
                self.tasks[tid].update(pending=False, exit_code=code, output=out,
                                       error="" if code == 0 else str(out))

        threading.Thread(target=finish, daemon=True).start()
        return None, None

    def close(self) -> None:
        for mod in self.modules.values():
            if getattr(mod, "importer", None) is not None:
                mod.importer.stop()
        shutil.rmtree(self.root, ignore_errors=True)


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
                code, out = cluster.run(queue, b["action"], b.get("data"), tid)
                if code is not None:
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
            if t is None or t["polls"] < 1 or t.get("pending"):
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
        self.cluster.close()

    @property
    def mail(self) -> MailModule:
        return next(m for m in self.cluster.modules.values() if isinstance(m, MailModule))

    @property
    def imapsync(self) -> ImapsyncModule:
        return next(m for m in self.cluster.modules.values() if isinstance(m, ImapsyncModule))
