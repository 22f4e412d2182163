"""A migration project: one TOML file naming the source, the target, the accounts and the options.

Example (``mailmigrate project init`` writes one like it)::

    [project]
    name = "acme"
    path = "mailbox"                 # the migration path: mailbox, communigate (below) or nethserver7
    state = "acme-sync.db"           # sync state (SQLite path or postgresql:// URL)
    workflow = "acme-workflow.db"    # unit states, history, logs (SQLite path or postgresql:// URL)

    [source]
    url = "imaps://old.example.org"
    master = "admin"                 # optional master/admin user
    id = "old"                       # optional: names this server in the state, however it is reached
    password_file = "source.pw"      # or env MAILMIGRATE_SOURCE_PASSWORD

    [target]
    url = "maildir:/srv/vmail/%d/%n/Maildir"

    [accounts]
    file = "users.csv"               # source_user,target_user[,passwords]  — or:  list = ["ann", "bob"]

    [directory]                      # optional: users, groups, aliases, forwards compared in the report
    source = "ldap://old.example.org/dc=example,dc=org?bind=cn=admin,dc=example,dc=org"
    source_password_file = "ldap.pw"
    target = "passwd-file:/etc/dovecot/users"

    [options]
    jobs = 4
    delete_on_finish = true          # finish = final sync with --delete, then verification
    delete_guard = 50                # finish withholds deletes where a source folder lost more than 50%
    force_delete = false             # …or lists nothing; true deletes anyway (as sync --force-delete)
    insecure = false

    [fleet]                          # optional: start/sync/finish copy on `mailmigrate worker`s (docs/fleet.md)
    executor = "celery"              # "local" (default) or "celery"; then state must be postgresql://…
    broker = "redis://mq:6379/0"     # or amqp://…; default MAILMIGRATE_BROKER (keep passwords there)
    max_connections = 20             # per server and side, over the whole fleet
    fleet_timeout = 3600             # optional: stop waiting for the workers after this many seconds
    idle_warning = 60                # warn when no worker took a queued job for this long (default 60)
    stale_after = 120                # a running job silent this long (worker killed/frozen) is sent again

A CommuniGate Pro store (docs/communigate.md) has no [source] or [accounts]: the accounts found in the tree
are the units, and start creates each one's user in the target directory before the first copy::

    [project]
    name = "cgp"
    path = "communigate"

    [communigate]
    base = "/var/CommuniGate"
    domains = ["example.com"]        # optional; users = ["alice", "dave@example.org"] likewise
    directory = "passwd-file:/etc/dovecot/users"   # or kerio://Admin@HOST/DOMAIN, ldap://…
    directory_password_file = "admin.pw"           # Kerio/LDAP; or MAILMIGRATE_ADMIN_PASSWORD
    set_password_file = "initial.pw" # optional: for passwords CommuniGate holds encrypted
    force = false                    # true: also copy into users that existed before

    [target]
    url = "imap://kerio.example.com?master=kerio"
    master = "Admin"                 # required for this path
    password_file = "master.pw"

Relative paths are relative to the project file, so a project directory can be moved as a whole and used from
anywhere - those inside URLs too: a store's or directory's file path, ``cafile=`` and ``shadow=``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import password_from
from ..errors import ConfigError
from ..model import Account, Secret
from ..paths import registry
from ..paths.groupware import parse_section
from ..paths.locations import beside_project
from ..stores.registry import StoreSpec, parse_spec
from ..sync.accounts import load_accounts_file
from ..sync.selection import Selection


@dataclass
class Side:
    spec: StoreSpec
    master: str | None = None
    password_file: str | None = None
    insecure: bool = False
    #: OAuth 2.0 instead of a password: {"token_file"|"command"|"refresh_file": …, "sasl": …} (stores/oauth.py)
    oauth: dict | None = None
    _token_source: object = field(default=None, repr=False, compare=False)

    def password(self, env_name: str, what: str) -> Secret | None:
        return password_from(env_name, self.password_file, what)

    def token_source(self, side: str):
        """One token source per side and process, so a token fetched for one unit serves the next."""
        if not self.oauth:
            return None
        if self._token_source is None:
            from ..stores.oauth import token_source

            o = self.oauth
            self._token_source = token_source(token_file=o.get("token_file"), command=o.get("command"),
                                              refresh_file=o.get("refresh_file"), mechanism=o.get("sasl"),
                                              side=side)
        return self._token_source


@dataclass
class Project:
    file: Path
    name: str
    path: str
    state: Path | str  # a SQLite file, or a postgresql:// URL (shared with fleet workers)
    workflow: str
    source: Side
    target: Side
    accounts: list[Account]
    jobs: int = 1
    delete_on_finish: bool = True
    #: the emptied-source guard of finish's deletes (share of copies; sync.deletes) and its override
    delete_guard: float = 0.5
    force_delete: bool = False
    reports: Path = field(default_factory=Path)
    dashboard_token_file: Path | None = None
    #: optional directory comparison for the report: {"source", "target", "source_password_file", …}
    directory: dict | None = None
    #: the path's own section of the project file, typed by the path (paths/registry.py): None for the
    #: mailbox path, NethServerSettings for nethserver7, CommuniGateSettings for communigate
    settings: object = None
    #: [fleet]: where start/sync/finish copy mail ("local" or "celery"), the broker, the fleet-wide cap
    executor: str = "local"
    broker: str | None = None
    max_connections: int | None = None
    fleet_timeout: float | None = None
    idle_warning: float = 60.0
    stale_after: float = 120.0
    #: [options] folder and message rules, as sync's --include, --map, --max-size, … (sync.selection)
    selection: Selection = field(default_factory=Selection)
    #: [options] as sync's --connections, --retries, --max-rate (messages/s), --max-bandwidth (MiB/s)
    connections: int = 3
    retries: int = 6
    max_rate: float | None = None
    max_bandwidth: float | None = None
    #: [groupware]: calendars/contacts pairs copied with each unit's mail (paths/groupware.py)
    groupware: list = field(default_factory=list)
    groupware_password_files: dict = field(default_factory=dict)

    @property
    def base(self) -> Path:
        return self.file.parent


def load_project(file: str | os.PathLike) -> Project:
    f = Path(file).resolve()
    try:
        data = tomllib.loads(f.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"project file {f}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"project file {f}: {e}") from None
    base = f.parent

    def rel(p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else base / q

    proj = data.get("project", {})
    name = proj.get("name") or f.stem
    path = proj.get("path", registry.DEFAULT)
    plugin = registry.get(path, name)
    state = proj.get("state", f"{name}-sync.db")
    state = state if str(state).startswith(("postgresql://", "postgres://")) else rel(state)
    fleet = _fleet(name, path, state, data.get("fleet") or {})
    settings = plugin.parse_settings(name, data, rel)
    workflow = (proj["workflow"] if str(proj.get("workflow", "")).startswith("postgres")
                else str(rel(proj.get("workflow", f"{name}-workflow.db"))))
    if not plugin.uses_stores:
        return Project(file=f, name=name, path=path, state=state, workflow=workflow,
                       source=None, target=None, accounts=[], reports=rel(proj.get("reports", "reports")),
                       dashboard_token_file=rel(proj["dashboard_token_file"]) if proj.get("dashboard_token_file") else None,
                       settings=settings)
    own_source = plugin.source_section(settings)
    if own_source is not None:
        data = {**data, "source": own_source}
    sides = {}
    for side in ("source", "target"):
        sec = data.get(side)
        if not sec or "url" not in sec:
            raise ConfigError(f"project {name}: [{side}] url is missing")
        if "password" in sec:
            raise ConfigError(f"project {name}: [{side}] holds a password; use password_file (mode 0600) or "
                              f"MAILMIGRATE_{side.upper()}_PASSWORD")
        pw = sec.get("password_file")
        url = beside_project(sec["url"], rel, store=True)
        oauth = {k: (str(rel(sec[f"oauth_{k}"])) if k.endswith("file") else sec[f"oauth_{k}"])
                 for k in ("token_file", "command", "refresh_file") if sec.get(f"oauth_{k}")}
        if sec.get("sasl"):
            oauth["sasl"] = sec["sasl"]
        sides[side] = Side(parse_spec(url).with_id(sec.get("id")), sec.get("master"), str(rel(pw)) if pw else None,
                           bool(data.get("options", {}).get("insecure", False)), oauth or None)
    acc_sec = data.get("accounts", {})
    plugin.check_sides(name, sides)
    if plugin.finds_accounts:
        accounts = []  # the path finds them when an action needs them
    elif "file" in acc_sec:
        accounts = load_accounts_file(rel(acc_sec["file"]))
    elif "list" in acc_sec:
        accounts = [Account(u, u) for u in acc_sec["list"]]
    else:
        src_user = sides["source"].spec.user
        accounts = [Account(src_user, sides["target"].spec.user or src_user)]
    opts = data.get("options", {})
    groupware, gw_files = parse_section(name, data.get("groupware"), rel,
                                        default_source=plugin.default_groupware_source(settings))
    token = proj.get("dashboard_token_file")
    directory = data.get("directory")
    if directory is not None:
        if "source" not in directory or "target" not in directory:
            raise ConfigError(f"project {name}: [directory] needs source and target")
        for k in ("source_password_file", "target_password_file"):
            if directory.get(k):
                directory[k] = str(rel(directory[k]))
        for k in ("source", "target"):
            directory[k] = beside_project(directory[k], rel)
    return Project(
        file=f,
        name=name,
        path=path,
        state=state,
        workflow=(proj["workflow"] if str(proj.get("workflow", "")).startswith("postgres")
                  else str(rel(proj.get("workflow", f"{name}-workflow.db")))),
        source=sides["source"],
        target=sides["target"],
        accounts=accounts,
        jobs=int(opts.get("jobs", 1)),
        delete_on_finish=bool(opts.get("delete_on_finish", True)),
        delete_guard=_percent(name, opts.get("delete_guard", 50)) / 100,
        force_delete=bool(opts.get("force_delete", False)),
        selection=_selection(name, opts),
        **_copying(name, opts),
        reports=rel(proj.get("reports", "reports")),
        dashboard_token_file=rel(token) if token else None,
        directory=directory,
        settings=settings,
        groupware=groupware,
        groupware_password_files=gw_files,
        **fleet,
    )


def _text_or_none(name: str, opts: dict, k: str) -> str | None:
    v = opts.get(k)
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"project {name}: [options] {k} must be text")
    return v


def _copying(name: str, opts: dict) -> dict:
    """[options] connections, retries, max_rate, max_bandwidth: the same meaning and defaults as sync's."""
    out = {}
    for key in ("connections", "retries"):
        if key in opts:
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"project {name}: [options] {key} must be a whole number of at least 1")
            out[key] = v
    for key in ("max_rate", "max_bandwidth"):
        if key in opts:
            v = opts[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"project {name}: [options] {key} must be a number above 0")
            out[key] = float(v)
    return out


def _selection(name: str, opts: dict) -> Selection:
    """[options] include/exclude/folders (lists of text), folder_recursive, map (a table OLD = "NEW"), rename
    (a list of ["REGEX", "REPLACEMENT"] pairs, applied in order), special_use, min_age/max_age (days),
    min_size/max_size (bytes), search (IMAP SEARCH keys): the same rules as sync's options of those names;
    folder_roles (a table FOLDER = "ROLE", sync's --special-use) and gmail_all_mail (sync's --gmail-all-mail)."""
    def texts(k):
        v = opts.get(k, [])
        v = [v] if isinstance(v, str) else v
        if not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
            raise ConfigError(f"project {name}: [options] {k} must be a list of text")
        return tuple(v)

    maps = opts.get("map", {})
    if not isinstance(maps, dict) or not all(isinstance(v, str) for v in maps.values()):
        raise ConfigError(f'project {name}: [options] map must be a table of "OLD" = "NEW"')
    renames = opts.get("rename", [])
    if not (isinstance(renames, list) and all(isinstance(r, list) and len(r) == 2
                                              and all(isinstance(x, str) for x in r) for r in renames)):
        raise ConfigError(f'project {name}: [options] rename must be a list of ["REGEX", "REPLACEMENT"] pairs')

    roles = opts.get("folder_roles", {})
    if not isinstance(roles, dict) or not all(isinstance(v, str) for v in roles.values()):
        raise ConfigError(f'project {name}: [options] folder_roles must be a table of "FOLDER" = "ROLE"')

    def number(k, kind):
        v = opts.get(k)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"project {name}: [options] {k} must be a number")
        return kind(v)

    try:
        return Selection(include=texts("include"), exclude=texts("exclude"), folders=texts("folders"),
                         folder_recursive=bool(opts.get("folder_recursive", False)),
                         maps=tuple(maps.items()), renames=tuple(tuple(r) for r in renames),
                         special_use=bool(opts.get("special_use", True)),
                         min_age=number("min_age", float), max_age=number("max_age", float),
                         min_size=number("min_size", int), max_size=number("max_size", int),
                         search=_text_or_none(name, opts, "search"), special_uses=tuple(roles.items()),
                         gmail_all_mail=_text_or_none(name, opts, "gmail_all_mail") or "dedupe")
    except ConfigError as e:
        raise ConfigError(f"project {name}: [options] {e}") from None


def _percent(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if not 0 <= v <= 100:
        raise ConfigError(f"project {name}: [options] delete_guard must be a percentage between 0 and 100")
    return v


def _fleet(name: str, path: str, state, sec: dict) -> dict:
    executor = sec.get("executor", "local")
    if executor not in ("local", "celery"):
        raise ConfigError(f"project {name}: [fleet] executor {executor!r} is not local or celery")
    if executor == "celery":
        check_fleet(name, path, state)
    cap = sec.get("max_connections")
    if cap is not None and (not isinstance(cap, int) or cap < 1):
        raise ConfigError(f"project {name}: [fleet] max_connections must be a whole number of at least 1")
    out = {"executor": executor, "broker": sec.get("broker"), "max_connections": cap}
    for key in ("fleet_timeout", "idle_warning", "stale_after"):  # seconds: how long start/sync/finish wait for the workers
        v = sec.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise ConfigError(f"project {name}: [fleet] {key} must be a number of seconds above 0")
        out[key] = float(v)
    return out


def check_fleet(name: str, path: str, state) -> None:
    """Why a project cannot copy on the fleet, as a ConfigError: the workers share the state, so it must be
    one they all reach, and only a path whose copying is made of per-account jobs can use them."""
    if not registry.get(path, name).copies_on_fleet:
        raise ConfigError(f"project {name}: path {path} runs on this machine; only mailbox projects copy on "
                          f"the fleet")
    if not str(state).startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"project {name}: the fleet needs the sync state on PostgreSQL "
                          f"(state = \"postgresql://…\" in [project]); {state} is a local file")


TEMPLATE = """\
[project]
name = "{name}"
path = "mailbox"
state = "{name}-sync.db"
workflow = "{name}-workflow.db"

[source]
url = "{source}"
# master = "admin"
# password_file = "source.pw"     # or env MAILMIGRATE_SOURCE_PASSWORD

[target]
url = "{target}"
# password_file = "target.pw"     # or env MAILMIGRATE_TARGET_PASSWORD

[accounts]
{accounts}

[options]
jobs = 1
delete_on_finish = true
"""
