"""The mail data sent to NethServer 8 as NethServer's own migration sends it: through the mail module's
import endpoint, an rsync daemon, with the real ``rsync``.

The protocol, from the public sources:

* nethserver-ns8-migration ``ns8-bind-app``: the cluster task ``import-module`` with ``{image, node,
  volumes}`` (volumes from ``apps/nethserver-mail/bind.env``: dovecot-data, rspamd-redis, rspamd-data) answers
  ``{credentials: [module id, password], address, port, task}``; ns8-core's ``cluster/actions/import-module/
  50import`` creates the module, allocates the port and starts the module's own ``import-module`` task
  without waiting for it (``task`` is its ``module/<id>/task/<uuid>``).  That task runs an rsync daemon
  (ns8-core ``core/rsync/entrypoint.sh``: module ``data`` = the module's ``state/`` and ``volumes/<name>/``;
  module ``terminate``, whose transfer stops the daemon) and, once it has stopped, the module's import steps
  (ns8-mail ``imageroot/actions/import-module/*``).
* nethserver-ns8-migration ``apps/nethserver-mail/migrate``, at every start, sync and finish: the
  configuration files ``user_domain.txt``, ``mail_domain.txt``, ``{users,groups,domains,accounts,postfix,
  dovecot,rspamd,clamd,smarthosts}.json`` (``db ... printjson``) to ``data/state/`` (sent with
  ``--remove-source-files``); the mail homes with ``--archive --usermap --groupmap --exclude lucene-indexes/
  --delete`` to ``data/volumes/dovecot-data/``; rspamd's Redis dump to ``data/volumes/rspamd-redis/
  persistent.rdb``; the DKIM pair ``default.{txt,private}`` to ``data/state/dkim.migration/``.  Only finish
  then reads ``terminate`` (the "commit") and waits for the import task.
* ``ns8-check-import``, before each sync and finish: when the daemon does not answer (NS8 restarted), the
  module's ``import-module`` is queued again with the same credentials and port.

What is sent as the mail homes is the staging tree under ``--root`` (:mod:`.ns8_steps` writes it, converted,
with NS7's file names, ``dovecot-uidlist`` and keywords), so clients keep their caches; ns8-mail's
``35migrate_maildirs`` finds nothing left to rename in it.  The password reaches ``rsync`` only through
``RSYNC_PASSWORD`` in its environment, never its command line; between runs it is kept in one 0600 file
(as NethServer's ``bind.env``), removed once NS8 has imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ...formats.atomic import replace_file
from ...formats.esmith import EsmithDb, read_esmith
from ...model import Secret
from ..journal import EventLog
from .layout import NethServerTree
from .ns8_api import MAIL_IMAGE, ClusterAPI, NS8Error, _why

#: nethserver-ns8-migration ``apps/nethserver-mail/bind.env`` MODULE_VOLUMES
VOLUMES = ("dovecot-data", "rspamd-redis", "rspamd-data")
#: the configuration databases the mail ``migrate`` script sends (``db NAME printjson``, ``config printjson KEY``)
_DBS = ("domains", "accounts", "smarthosts")
_KEYS = ("postfix", "dovecot", "rspamd", "clamd")
_DKIM = ("etc/opendkim/keys/default.txt", "etc/opendkim/keys/default.private")
_BAYES = "var/lib/redis/rspamd/dump.rdb"
#: the migrate script maps NS7's vmail owner to the container's (``--usermap=1-1000:100``); the staging
#: tree belongs to whoever runs mailmigrate (root too), so the range starts at 0
_IDMAP = ("--usermap=0-65535:100", "--groupmap=0-65535:101")


class PushError(NS8Error):
    """rsync could not send to NS8's import endpoint, or NS8's import failed (the message says which)."""


@dataclass
class Endpoint:
    module_id: str
    address: str
    port: int
    user: str
    task: str  # module/<id>/task/<uuid>: the import-module task that applies what was sent

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"rsync://{self.user}@{host}:{self.port}"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Endpoint":
        return cls(d["module_id"], d["address"], int(d["port"]), d["user"], d["task"])


def open_endpoint(api: ClusterAPI, log: EventLog, action: str) -> tuple[Endpoint, Secret]:
    """A new mail module with its import endpoint (the cluster's ``import-module``, as ``ns8-bind-app``)."""
    out = api.task("cluster", "import-module", {"image": MAIL_IMAGE, "node": api.link.node, "volumes": list(VOLUMES)})
    try:
        user, password = out["credentials"]
        ep = Endpoint(user, out["address"], int(out["port"]), user, out["task"])
    except (KeyError, TypeError, ValueError):
        raise NS8Error("NS8 cluster import-module: the answer holds no endpoint (credentials, address, port, "
                       "task)") from None
    log.info(action, f"NS8 mail module {ep.module_id} created on node {api.link.node}, import endpoint "
                     f"{ep.address}:{ep.port}")
    return ep, Secret(password)


def save_secret(path: Path, secret: Secret) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, secret.reveal().encode(), 0o600, suffix=".tmp")


def load_secret(path: Path) -> Secret:
    try:
        return Secret(path.read_text().strip())
    except FileNotFoundError:
        raise PushError(f"{path}: the NS8 import endpoint's password is gone; abort and start again") from None


# -- what is sent ----------------------------------------------------------------------------------------


def _printjson(db: EsmithDb) -> list[dict]:
    return [{"name": k, "type": r.type, "props": dict(r.props)} for k, r in db.items()]


def _db(src: NethServerTree, name: str) -> EsmithDb:
    return read_esmith(src.db(name)) if src.db(name).exists() else EsmithDb()


def write_state_files(src: NethServerTree, out: Path) -> list[Path]:
    """The files ns8-mail's import steps read (``20import_environment``, ``50import_domains``,
    ``55import_addresses``, ...), as the migrate script writes them on NS7: ``db NAME printjson`` is a list
    of ``{name, type, props}``, ``config printjson KEY`` one of them; ``users.json``/``groups.json`` the
    account names (``list-users | jq keys``).  They hold NS7's relay passwords: 0600, sent and removed."""
    cfg = _db(src, "configuration")
    domain = (cfg.get("DomainName").type if cfg.get("DomainName") is not None else "localdomain").lower()
    realm = ((cfg.get("sssd").props.get("Realm") if cfg.get("sssd") is not None else None) or domain).lower()
    accounts = _db(src, "accounts")
    files: dict[str, object] = {
        **{f"{n}.json": _printjson(_db(src, n)) for n in _DBS},
        **{f"{k}.json": {"name": k, "type": cfg[k].type if k in cfg else "service",
                         "props": dict(cfg[k].props) if k in cfg else {}} for k in _KEYS},
        "users.json": sorted(k if "@" in k else f"{k}@{realm}" for k, _ in accounts.of_type("user")),
        "groups.json": sorted(k if "@" in k else f"{k}@{realm}" for k, _ in accounts.of_type("group")),
    }
    paths = []
    for name, data in [("user_domain.txt", realm + "\n"), ("mail_domain.txt", domain + "\n"), *files.items()]:
        path = out / name
        text = data if isinstance(data, str) else json.dumps(data, indent=1) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        paths.append(path)
    return paths


def transfers(src: NethServerTree, staging_vmail: Path, state_files: list[Path]) -> list[tuple[str, list[str]]]:
    """(what, rsync arguments without the endpoint prefix resolved) of one push, in the migrate script's
    order; ``{EP}`` stands for the endpoint URL."""
    out = [("configuration", ["-i", "--remove-source-files", *map(str, state_files), "{EP}/data/state/"]),
           ("mailboxes", ["-i", "--archive", *_IDMAP, "--exclude", "lucene-indexes/", "--delete",
                          f"{staging_vmail}/", "{EP}/data/volumes/dovecot-data/"])]
    bayes = src.root / _BAYES
    if bayes.is_file() and not bayes.is_symlink():
        out.append(("bayes volume", ["-i", "--archive", *_IDMAP, "--delete", "--exclude", "*", f"{bayes.parent}/",
                                     "{EP}/data/volumes/rspamd-redis/"]))
        out.append(("bayes", ["-i", "--archive", *_IDMAP, str(bayes), "{EP}/data/volumes/rspamd-redis/persistent.rdb"]))
    keys = [src.root / k for k in _DKIM]
    out.append(("DKIM", ["-i", "--recursive", "--perms", *map(str, keys), "{EP}/data/state/dkim.migration/"]))
    return out


class Rsync:
    """The ``rsync`` client against one endpoint; the password only in its environment."""

    def __init__(self, ep: Endpoint, secret: Secret, program: str | None = None, timeout: float = 6 * 3600):
        self.ep, self.secret, self.timeout = ep, secret, timeout
        self.program = program or shutil.which("rsync") or "rsync"

    def command(self, args: list[str], *, dry_run: bool = False) -> list[str]:
        return [self.program, *(["--dry-run"] if dry_run else []), *(a.replace("{EP}", self.ep.url) for a in args)]

    def run(self, what: str, args: list[str], *, dry_run: bool = False, check: bool = True) -> list[str]:
        """The itemized lines rsync printed (what it sent, or with ``dry_run`` would send)."""
        env = dict(os.environ, RSYNC_PASSWORD=self.secret.reveal())
        try:
            r = subprocess.run(self.command(args, dry_run=dry_run), env=env, capture_output=True, text=True,
                               errors="surrogateescape", timeout=self.timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PushError(f"rsync to NS8 ({what}): {e}") from None
        if check and r.returncode != 0:
            why = (r.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise PushError(f"rsync to NS8 ({what}) failed (exit {r.returncode}): {why}")
        return [ln for ln in r.stdout.splitlines() if ln.strip()] if r.returncode == 0 else []

    def alive(self) -> bool:
        return bool(self.run("probe", ["--contimeout=5", "{EP}/data/"], check=False))


def ensure_listening(rs: Rsync, api: ClusterAPI, log: EventLog, action: str, wait_s: float = 30) -> str | None:
    """``ns8-check-import``: a daemon that does not answer (NS8 restarted) is started again with the same
    credentials and port.  Returns the new import task path, or None when the old one still listens."""
    if rs.alive():
        return None
    tid = api.submit(f"module/{rs.ep.module_id}", "import-module",
                     {"credentials": [rs.ep.user, rs.secret.reveal()], "port": rs.ep.port, "volumes": list(VOLUMES)})
    queue = f"module/{rs.ep.module_id}"
    wait_listening(rs, wait_s, lambda: api.ended(queue, tid))
    log.info(action, f"NS8 import endpoint of {rs.ep.module_id} restarted")
    return f"{queue}/task/{tid}"


class AlreadyImported(PushError):
    """NS8 refuses a new import endpoint because the module has imported already (``00validate_import``)."""


def wait_listening(rs: Rsync, wait_s: float, ended=None) -> None:
    """The daemon starts after the task that announced it (``ns8-bind-app`` polls it every 2 s): nothing is
    sent, and no second daemon asked for, before it answers.  ``ended``: the task that starts it, which
    may end at once when NS8 refuses (then its reason is the error)."""
    deadline = time.monotonic() + wait_s
    while not rs.alive():
        res = ended() if ended else None
        if res is not None:
            reason = _why(res)
            cls = AlreadyImported if "module_already_imported" in reason else PushError
            raise cls(f"NS8 did not restart the import endpoint of {rs.ep.module_id} (exit "
                      f"{res.get('exit_code')}): {reason}")
        if time.monotonic() > deadline:
            raise PushError(f"NS8 import endpoint {rs.ep.address}:{rs.ep.port} does not answer")
        time.sleep(1)


def push(src: NethServerTree, staging_vmail: Path, rs: Rsync, log: EventLog, action: str, *,
         dry_run: bool = False, scratch: Path | None = None) -> dict[str, list[str]]:
    """One push of everything the migrate script sends; returns each transfer's itemized lines."""
    missing = [k for k in _DKIM if not (src.root / k).is_file() or (src.root / k).is_symlink()]
    if missing:
        raise PushError(f"NS7 has no {', '.join(missing)}: NS8's import (50import_dkim) needs the DKIM pair")
    done: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="ns8-state-", dir=scratch) as tmp:
        files = write_state_files(src, Path(tmp))
        for what, args in transfers(src, staging_vmail, files):
            done[what] = rs.run(what, args, dry_run=dry_run)
    if not dry_run:
        n = sum(1 for ln in done["mailboxes"] if ln[:2] in ("<f", ">f"))
        log.info(action, f"pushed to NS8 module {rs.ep.module_id}: {n} mailbox file(s) sent, configuration, "
                         "DKIM key" + (", bayes data" if "bayes" in done else ""))
    return done


def pending(src: NethServerTree, staging_vmail: Path, rs: Rsync) -> list[str]:
    """What of the mail homes rsync would still send or delete (empty: NS8 holds the staging tree)."""
    args = dict(transfers(src, staging_vmail, []))["mailboxes"]
    return [ln for ln in rs.run("check", args, dry_run=True) if not ln.startswith(".d")]


def commit(rs: Rsync, log: EventLog, action: str) -> None:
    """The migrate script's ``rsync ENDPOINT/terminate``: the daemon stops and the module's import steps
    run; then wait for that task (``ns8-action --attach wait``)."""
    rs.run("terminate", ["{EP}/terminate"])
    log.info(action, f"NS8 import endpoint closed; module {rs.ep.module_id} imports the mail")


def wait_import(api: ClusterAPI, ep: Endpoint, log: EventLog, action: str) -> None:
    queue, _, tid = ep.task.rpartition("/task/")
    try:
        api.wait(queue, tid, "import-module")
    except NS8Error as e:
        raise PushError(f"{e} (NS8's import of the mail did not complete: abort removes the module, then "
                        "start again)") from None
    log.info(action, f"NS8 module {ep.module_id} imported the mail")
