"""The seeds' whole procedure as one plan: ``kopano migrate`` (Zarafa -> Kopano) and ``kopano upgrade``.

Order, from the two seed documents (000: drop-in migration from Zarafa; 001: upgrading Kopano):

1. the MTA is stopped first (mail queues instead of being lost), then the spooler and the server, then the
   optional daemons that are installed (dagent, gateway, ical, search, monitor);
2. backups: database (``--single-transaction``), then attachments, then configuration (backup.py);
3. packages: remove ZCP and install Kopano (migrate) or upgrade Kopano's packages (upgrade).  Printed
   as a plan for the distribution; run only with ``run_packages``, and then through the same runner;
4. migrate: configuration takeover, attachment move (or database attachments to files), permissions,
   LDAP (offline: slapcat, transform, kopano.schema, slapadd, slapindex; online: the three passes);
   upgrade: the new options of the example configuration, database attachments to files;
5. ``attachment_storage = files`` when attachments left the database, and then the one-off start with
   ``--ignore-attachment-storage-conflict``; safe mode on for that first start (with a log file and the
   info level at which safe mode reports), ``kopano-admin -l`` so that the server reads its users, and the
   log read for errors and refused user changes (they stop the runbook, naming the lines, and stop that
   server again);
6. the first start is stopped, safe mode turned off, and the services started in the reverse order of
   step 1 (server, spooler, optional daemons, the MTA last);
7. coming from ZCP 7.1 the old search index is moved aside before kopano-search starts (its index format
   changed; kopano-search builds a new index from scratch when it finds no sync state — kopano_search's
   ``initial_sync``), and kopano-search is started even if it was not running before;
8. ``optimize-imap.py`` where the IMAP gateway is used, and the post-upgrade checklist.

Every external command goes through one :class:`~.services.Runner` and every service action through one
:class:`~.services.Services`, so a recorder proves the order.  A step is done when the system shows it
(configuration content, a dump file, an LDAP schema file, attachments in place); the steps whose result
the system does not show — service stops and starts, package commands, the clean log, the one-off start —
are recorded in ``run-state.json`` under the work directory (runstate.py).
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import ConfigError
from ...model import Secret
from ..plan import Plan, Step, backup_file, write_atomic
from . import cfgfile
from .first_start import DEFAULT_LOG, FirstStartSteps, LogHasErrors  # noqa: F401 (LogHasErrors: the API)
from .lob import DbParams
from .runbook_ldap import SCHEMA_DIR, LdapSteps  # noqa: F401
from .runbook_packages import PackageSteps, WaitingForAdministrator  # noqa: F401
from .runstate import RunState
from .services import Runner, Services

# seed 001, 4.1: spooler and server first, then the optional daemons "if they were started"
CORE = ("spooler", "server")
OPTIONAL = ("dagent", "gateway", "ical", "search", "monitor")

# the seed's post-upgrade checklist (001, end of 4.5)
CHECKLIST = ("all users are there", "all groups are there", "companies are correct (multi-company)",
             "multi-server works (multi-server setups)", "group memberships are correct",
             "send-as permissions are correct", "contacts are there", "address lists work",
             "dynamic groups work")


def _version(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        raise ConfigError(f"version {v!r}: expected numbers like 7.2 or 8.1") from None


@dataclass
class RunbookSettings:
    kind: str  # "migrate" (Zarafa -> Kopano) or "upgrade" (Kopano -> newer Kopano)
    work_dir: Path
    root: Path = Path("/")  # prefix of the system's own paths (a copy of a system, in tests)
    from_version: str = "7.2"  # ZCP version for migrate, Kopano version for upgrade
    zarafa_dir: Path | None = None
    kopano_dir: Path | None = None
    config_mode: str = "changed"
    zarafa_defaults: Path | None = None
    kopano_defaults: Path | None = None
    example_dir: Path | None = None  # Kopano's example-config, for the upgrade's new-options step
    db_user: str = "root"
    db_password: Secret | None = None
    db_host: str = "127.0.0.1"
    db_port: int = 3306
    db_socket: str | None = None
    database: str | None = None  # default: mysql_database of server.cfg
    ldap: str = "none"  # none, offline, online
    ldap_config_dir: Path = Path("/etc/ldap/slapd.d")
    ldap_data_dir: Path = Path("/var/lib/ldap")
    ldap_db: int = 1
    ldap_service: str = "slapd"
    ldap_url: str | None = None
    ldap_base: str | None = None
    ldap_bind_dn: str | None = None
    ldap_password: Secret | None = None
    mta: str = "postfix"
    imap_gateway: str = "auto"  # auto, yes, no
    distro: str = "debian"  # debian, rhel, suse
    run_packages: bool = False
    package_dir: Path | None = None  # upgrade: the unpacked release's packages
    web_service: str | None = None  # apache2 / httpd, restarted for the new php-mapi
    max_backup_age: float = 12.0

    def __post_init__(self):
        if self.kind not in ("migrate", "upgrade"):
            raise ConfigError(f"unknown runbook {self.kind!r}")
        if self.ldap not in ("none", "offline", "online"):
            raise ConfigError(f"--ldap {self.ldap!r}: none, offline or online")
        if self.distro not in ("debian", "rhel", "suse"):
            raise ConfigError(f"--distro {self.distro!r}: debian, rhel or suse")
        _version(self.from_version)
        self.work_dir, self.root = Path(self.work_dir), Path(self.root)
        if self.zarafa_dir is None:
            self.zarafa_dir = self.sys("/etc/zarafa")
        if self.kopano_dir is None:
            self.kopano_dir = self.sys("/etc/kopano")

    def sys(self, path: str) -> Path:
        return self.root / str(path).lstrip("/")


class Runbook(PackageSteps, LdapSteps, FirstStartSteps):
    def __init__(self, settings: RunbookSettings, runner: Runner, services: Services):
        self.s = settings
        self.runner = runner
        self.services = services
        self.state = RunState(settings.work_dir)
        self._closers: list[Callable[[], None]] = []
        self.old = "zarafa" if settings.kind == "migrate" else "kopano"
        self._check_ldap_choice()

    # -- what the configuration says ------------------------------------------------------------------

    def _cfg(self, d: Path, name: str) -> dict[str, str]:
        p = Path(d) / name
        return cfgfile.active(p.read_text(errors="replace")) if p.is_file() else {}

    def source_server_cfg(self) -> dict[str, str]:
        return self._cfg(self.s.zarafa_dir if self.s.kind == "migrate" else self.s.kopano_dir, "server.cfg")

    def kopano_server_cfg(self) -> dict[str, str]:
        return self._cfg(self.s.kopano_dir, "server.cfg")

    @property
    def server_cfg_path(self) -> Path:
        return Path(self.s.kopano_dir) / "server.cfg"

    def _check_ldap_choice(self) -> None:
        src = self.source_server_cfg()
        if self.s.kind == "migrate" and src.get("user_plugin") == "ldap" and self.s.ldap == "none":
            raise ConfigError("Zarafa uses the LDAP user plugin: choose --ldap offline or --ldap online (the "
                              "directory moves to the Kopano schema with the configuration)")
        if self.s.ldap == "online" and not (self.s.ldap_url and self.s.ldap_base):
            raise ConfigError("--ldap online needs --ldap-url and --ldap-base")

    def storage(self) -> str:
        """Where the attachments were when the runbook began (kept in the run state by its first step, since
        the runbook itself changes server.cfg's value on an upgrade)."""
        kept = self.state.get("source storage")
        if kept:
            return kept
        value = self.source_server_cfg().get("attachment_storage")
        if value:
            return value
        # not set: files when the attachment directory holds any, else database (converting an empty lob
        # table changes nothing, while taking database attachments for files would lose them)
        att = self.source_attachments()
        return "files" if att.is_dir() and any(att.iterdir()) else "database"

    def database(self) -> str:
        return self.s.database or self.source_server_cfg().get("mysql_database") or self.old

    def db(self) -> DbParams:
        return DbParams(self.database(), user=self.s.db_user, password=self.s.db_password, host=self.s.db_host,
                        port=self.s.db_port, unix_socket=self.s.db_socket)

    def source_attachments(self) -> Path:
        return self.s.sys(self.source_server_cfg().get("attachment_path", f"/var/lib/{self.old}/attachments"))

    def target_attachments(self) -> Path:
        if self.s.kind == "migrate":
            return self.s.sys("/var/lib/kopano/attachments")
        return self.source_attachments()

    def index_path(self) -> Path:
        search = self._cfg(self.s.kopano_dir, "search.cfg") or self._cfg(self.s.zarafa_dir, "search.cfg")
        return self.s.sys(search.get("index_path", "/var/lib/kopano/search/"))

    def service(self, short: str) -> str:
        return f"{self.old}-{short}"

    def installed(self, name: str) -> bool:
        r = self.s.root
        return any(p.exists() for p in (r / "etc/init.d" / name, r / "lib/systemd/system" / f"{name}.service",
                                         r / "usr/lib/systemd/system" / f"{name}.service",
                                         r / "etc/systemd/system" / f"{name}.service"))

    def from_71(self) -> bool:
        return self.s.kind == "migrate" and _version(self.s.from_version) < (7, 2)

    def uses_imap_gateway(self) -> bool:
        if self.s.imap_gateway != "auto":
            return self.s.imap_gateway == "yes"
        if not (self.installed("kopano-gateway") or self.installed(self.service("gateway"))):
            return False
        gw = self._cfg(self.s.kopano_dir, "gateway.cfg") or self._cfg(self.s.zarafa_dir, "gateway.cfg")
        if "imap_listen" in gw or "imaps_listen" in gw:  # Kopano >= 8.5: an empty value disables it
            return bool(gw.get("imap_listen") or gw.get("imaps_listen"))
        return gw.get("imap_enable", "yes").lower() in ("yes", "true", "1") or \
            gw.get("imaps_enable", "no").lower() in ("yes", "true", "1")

    # -- step helpers ---------------------------------------------------------------------------------

    def _recorded(self, name: str, description: str, lines: Callable[[], list[str]],
                  action: Callable[[], list[str] | None]) -> Step:
        """A step whose completion the system cannot show: done once recorded in the run state."""
        return Step(name, description + " (completion recorded in run-state.json)", changes=lines, apply=action,
                    record=True)

    def _service_step(self, name: str, action: str, services: Callable[[], list[str]]) -> Step:
        """Stop or start several services, each recorded once done so that a rerun skips the ones done."""
        def lines():
            return [" ".join(self.services.argv(action, n)) for n in services()
                    if not self.state.done(f"{name}/{n}")]

        def apply():
            for n in services():
                k = f"{name}/{n}"
                if not self.state.done(k):
                    getattr(self.services, action)(n)
                    self.state.mark(k)
            return []

        return self._recorded(name, f"{action} in this order", lines, apply)

    def _stop_order(self) -> list[str]:
        # ZCP 7.1's indexer (zarafa-indexer, an init.d daemon; 7.2 replaced it by zarafa-search) has no
        # Kopano successor of that name: stopped when installed, never started again
        optional = OPTIONAL + (("indexer",) if self.s.kind == "migrate" else ())
        return [self.service(x) for x in CORE] + [self.service(x) for x in optional if self.installed(self.service(x))]

    def _start_order(self) -> list[str]:
        names = ["kopano-" + x for x in reversed(CORE)]
        for x in OPTIONAL:
            n = "kopano-" + x
            if self.installed(n) or self.installed(self.service(x)) or (x == "search" and self.from_71()):
                names.append(n)
        return names

    def _embed(self, plan: Plan, prefix: str, sub: Plan, recorded: tuple[str, ...] = ()) -> None:
        """Another plan's steps under ``prefix``; those named in ``recorded`` are also done once recorded
        (a check that always runs on its own, such as lob's verification, runs once in the runbook)."""
        for st in sub.steps:
            name = f"{prefix}: {st.name}"
            if st.name in recorded:
                plan.add(Step(name, st.description + " (once: recorded in run-state.json)", st.changes, st.apply,
                              st.is_done, record=True))
            else:
                plan.add(Step(name, st.description, st.changes, st.apply, st.done))

    # -- attachments ----------------------------------------------------------------------------------

    def _attachments(self, plan: Plan) -> None:
        database = self.storage() == "database"
        if database:
            from .lob import LobToFiles

            job = LobToFiles(self.db(), self.target_attachments(),
                             compression=self.kopano_server_cfg().get("attachment_compression", "0") not in ("", "0"))
            self._closers.append(job.close)
            self._embed(plan, "attachments from the database", job.plan(),
                        recorded=("verify files against the database",))
        elif self.s.kind == "migrate":
            from .attachments_move import AttachmentMove

            self._embed(plan, "attachments", AttachmentMove(self.source_attachments(),
                                                            self.target_attachments()).plan())
        else:
            return
        # server.cfg names the system's path (not the copy's under --root)
        want = {"attachment_path": "/" + self.target_attachments().relative_to(self.s.root).as_posix()}
        if database:
            want["attachment_storage"] = "files"

        def changes():
            have = self.kopano_server_cfg()
            return [f"{self.server_cfg_path}: {k} = {v}" for k, v in want.items() if have.get(k) != v]

        def apply():
            text = self.server_cfg_path.read_text() if self.server_cfg_path.exists() else ""
            for k, v in want.items():
                text = cfgfile.set_directive(text, k, v, "set by mailmigrate: where the attachments are now")
            backup_file(self.server_cfg_path)
            write_atomic(self.server_cfg_path, text.encode(), mode=0o640)
            if database:
                self.state.set("storage converted", True)
            return []

        plan.add(Step("attachment_storage = files" if database else "attachment_path",
                      "server.cfg points at the attachment files", changes=changes, apply=apply))

    # -- the plan -------------------------------------------------------------------------------------

    def plan(self) -> Plan:
        s = self.s
        title = ("Zarafa -> Kopano migration" if s.kind == "migrate" else "Kopano upgrade") + f" (from {s.from_version})"
        plan = Plan(title, state=self.state)
        stop_mta = self._service_step("stop MTA", "stop", lambda: [s.mta])
        first_apply = stop_mta.apply

        def begin():
            self.state.set("source storage", self.storage())
            return first_apply()

        stop_mta.apply = begin
        plan.add(stop_mta)
        plan.add(self._service_step("stop services", "stop", self._stop_order))

        from .backup import KopanoBackup

        config = s.zarafa_dir if s.kind == "migrate" else s.kopano_dir
        # attachments in files are copied after the dump; in the database the dump holds them
        attachments = None if self.storage() == "database" else self.source_attachments()
        self._embed(plan, "backup", KopanoBackup(self.db(), s.work_dir / "backup", attachments=attachments,
                                                 config=config, max_age=s.max_backup_age,
                                                 runner=self.runner).plan())
        plan.add(self._packages_step())
        if s.kind == "migrate":
            from .config import ConfigMigration

            cm = ConfigMigration(s.zarafa_dir, s.kopano_dir, mode=s.config_mode, zarafa_defaults=s.zarafa_defaults,
                                 kopano_defaults=s.kopano_defaults,
                                 ldap_schema="zarafa" if s.ldap == "none" else "kopano", include_root=s.root)
            self._embed(plan, "configuration", cm.plan())
        else:
            plan.add(self._recorded("new options", "options of the example configuration new to yours",
                                    lambda: [f"compare {s.kopano_dir} with {self._example_dir()}"],
                                    self._new_options))
        self._attachments(plan)
        if s.kind == "migrate":
            from .permissions import Permissions

            extra = ["/" + self.target_attachments().relative_to(s.root).as_posix(),
                     "/" + self.index_path().relative_to(s.root).as_posix()]
            self._embed(plan, "permissions", Permissions(s.root, extra_dirs=extra).plan())
            if s.ldap == "offline":
                self._ldap_offline(plan)
            elif s.ldap == "online":
                self._ldap_online(plan)
        if self.from_71():
            plan.add(self._index_aside_step())
        # recorded, not read from server.cfg: "safe mode off" sets the values back later
        plan.add(self._recorded("safe mode on", "user_safe_mode = yes (and a readable log) for the first start",
                                lambda: [f"{self.server_cfg_path}: {k} = {v}"
                                         for k, v in self.first_start_settings().items()],
                                self._safe_mode_on))
        plan.add(self._recorded("first start", "kopano-server once, in safe mode",
                                lambda: [shlex.join(self.first_start_argv())], self._first_start))
        plan.add(self._recorded("server log", "errors or user changes in the log since the first start",
                                lambda: ["kopano-admin -l (the server reads its users)",
                                         f"read {self.log_file() or DEFAULT_LOG} for errors and safe-mode user "
                                         "changes"],
                                self._check_log))
        plan.add(self._recorded("safe mode off", "stop the first start, user_safe_mode = no, logging as before",
                                lambda: ["stop the first start of kopano-server",
                                         f"{self.server_cfg_path}: user_safe_mode = no, log settings as before"],
                                self._safe_mode_off))
        plan.add(self._service_step("start services", "start", self._start_order))
        plan.add(self._service_step("start MTA", "start", lambda: [s.mta]))
        if s.web_service:
            plan.add(self._service_step("restart web server", "restart", lambda: [s.web_service]))
        if self.uses_imap_gateway():
            script = "/usr/share/doc/kopano-gateway/optimize-imap.py"
            plan.add(self._recorded("optimize-imap", "IMAP data for the users with IMAP or POP3 enabled",
                                    lambda: [f"python {script}"],
                                    lambda: self.runner.run(["python", script]) and []))
        plan.add(self._recorded("checklist", "the seed's post-upgrade checklist", self.checklist,
                                self.checklist))
        return plan

    def _example_dir(self) -> Path:
        return Path(self.s.example_dir) if self.s.example_dir else self.s.sys("/usr/share/doc/kopano/example-config")

    def _new_options(self) -> list[str]:
        from .upgrade import check_config_dir

        ex = self._example_dir()
        if not ex.is_dir():
            return [f"{ex}: no example configuration here; compare your files with the release's by hand"]
        return [ln for c in check_config_dir(self.s.kopano_dir, ex) for ln in c.render().splitlines()]

    def _index_aside_step(self) -> Step:
        def entries():
            p = self.index_path()
            return sorted(p.iterdir()) if p.is_dir() else []

        def apply():
            p = self.index_path()
            aside = p.with_name(p.name.rstrip("/") + ".zcp71-" + time.strftime("%Y%m%d-%H%M%S"))
            aside.mkdir(mode=0o700)
            for e in entries():
                os.replace(e, aside / e.name)
            return [f"ZCP 7.1's index moved to {aside} (kept); kopano-search builds a new one when it starts"]

        return Step("search index (7.1)", "ZCP 7.1's index format is not Kopano's: rebuilt from scratch",
                    changes=lambda: [f"move {len(entries())} entries of {self.index_path()} aside"] if entries() else [],
                    apply=apply)

    def checklist(self) -> list[str]:
        out = [f"check: {c}" for c in CHECKLIST]
        if self.s.kind == "migrate" or _version(self.s.from_version) < (8, 2):
            out.append("run kopano-search-upgrade-findroots.py (coming from below Kopano 8.2: else no search in "
                       "shared stores)")
        if not self.s.web_service:
            out.append("restart the web server (apache2 / httpd) for the new php-mapi")
        out.append("Outlook clients: upgrade them to a version Kopano supports")
        return out

    def run(self, *, dry_run: bool, log_path=None):
        """The plan, applied (one run at a time per work directory) or shown; connections closed after."""
        try:
            if dry_run:
                return self.plan().run(dry_run=True)
            return self.plan().run(dry_run=False, log_path=log_path or self.s.work_dir / "runbook.log")
        finally:
            self.close()

    def close(self) -> None:
        for c in self._closers:
            c()
