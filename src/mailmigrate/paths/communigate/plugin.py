"""CommuniGate Pro as a project path: the accounts found in a CommuniGate tree are the units; start first
makes each one's user in the target directory by cg2kms's rules (:func:`.migrate.prepare_users`), then the
mail copy is the mailbox path's.

Only the public functions of :mod:`.migrate` are called here (``select_accounts``, ``source_login``,
``prepare_users``, ``open_directory_for``, ``PassFile``), so that a project and ``mailmigrate communigate
migrate`` create users alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...errors import ConfigError
from ...model import Account
from ...sync.state_pg import is_pg_url
from ..base import Outcome, Recorder, UnitInfo
from ..locations import beside_project
from ..mailbox import MailboxPath
from ..registry import register


@dataclass
class CommuniGateSettings:
    """[communigate]: where the CommuniGate tree is, which of its accounts, and how their users are made on
    the target (cg2kms's rules)."""

    base: str
    primary_domain: str | None = None
    domains: list[str] | None = None
    users: list[str] | None = None
    directory: str | None = None
    directory_password_file: str | None = None
    set_password_file: str | None = None
    force_set_password_file: str | None = None
    force: bool = False
    output_dir: str = "."
    overview: bool = True

    @property
    def source_url(self) -> str:
        """The same source URL as cg2kms's migration, so both name an account alike in a shared state file."""
        return f"communigate:{self.base}"


_KNOWN = {"base", "primary_domain", "domains", "users", "directory", "directory_password_file",
          "set_password_file", "force_set_password_file", "force", "output_dir", "overview"}


@register
class CommuniGatePath(MailboxPath):
    name = "communigate"
    section = "communigate"

    def __init__(self, project, settings: CommuniGateSettings):
        super().__init__(project, settings)
        #: address -> (CGAccount, in the main domain), read from the tree when an action needs it
        self.found: dict | None = None
        self._accounts: list[Account] = []
        self._pass_file = None  # one cg2kms_<datetime>.pass per path object, made on the first password

    finds_accounts = True
    #: start makes the user before the copy, which a fleet job (a copy alone) would skip
    copies_on_fleet = False

    # --- settings ---------------------------------------------------------------------------------
    @classmethod
    def parse_settings(cls, project_name: str, data: dict, rel) -> CommuniGateSettings:
        """The source is the tree, so a [source] or [accounts] section would only contradict it and is
        refused."""
        name = project_name
        for other in ("source", "accounts"):
            if other in data:
                raise ConfigError(f"project {name}: path communigate reads its source and accounts from "
                                  f"[communigate]; remove [{other}]")
        sec = dict(data.get("communigate") or {})
        unknown = sorted(set(sec) - _KNOWN)
        if unknown:
            raise ConfigError(f"project {name}: [communigate] does not know {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(_KNOWN))})")
        if not sec.get("base"):
            raise ConfigError(f"project {name}: path communigate needs [communigate] base (the CommuniGate base "
                              f"directory, e.g. /var/CommuniGate)")
        for k in ("domains", "users"):
            v = sec.get(k)
            if isinstance(v, str):
                sec[k] = [v]
            elif v is not None and not (isinstance(v, list) and all(isinstance(x, str) for x in v)):
                raise ConfigError(f"project {name}: [communigate] {k} must be a list of names")
        sec["base"] = str(rel(sec["base"]))
        for k in ("directory_password_file", "set_password_file", "force_set_password_file"):
            if sec.get(k):
                sec[k] = str(rel(sec[k]))
        if sec.get("directory"):
            sec["directory"] = beside_project(sec["directory"], rel)
        sec["output_dir"] = str(rel(sec.get("output_dir", ".")))
        sec["force"] = bool(sec.get("force", False))
        sec["overview"] = bool(sec.get("overview", True))
        return CommuniGateSettings(**sec)

    @classmethod
    def source_section(cls, settings: CommuniGateSettings) -> dict:
        return {"url": settings.source_url}

    @classmethod
    def check_sides(cls, project_name: str, sides: dict) -> None:
        if not sides["target"].master:
            raise ConfigError(f"project {project_name}: path communigate writes into each user's mailbox as the "
                              f"target's master user: give [target] master (and its password_file)")

    @classmethod
    def default_groupware_source(cls, settings: CommuniGateSettings):
        """A [groupware] pair without a source reads the tree's calendar, task and contact boxes."""
        pd = f"&primary_domain={settings.primary_domain}" if settings.primary_domain else ""
        return lambda what: f"communigate:{settings.base}?groupware={what}{pd}"

    # --- units ------------------------------------------------------------------------------------
    def accounts(self) -> list[Account]:
        """Read from the CommuniGate tree, and only when an action needs them: status, logs and the dashboard
        keep working once the old server is gone."""
        if self.found is None:
            from .migrate import select_accounts, source_login

            cg = self.settings
            chosen = select_accounts(cg.base, domains=cg.domains, users=cg.users, primary_domain=cg.primary_domain)
            self.found = {a.address.lower(): (a, in_main) for a, in_main in chosen}
            self._accounts = [Account(source_login(a, in_main), a.address) for a, in_main in chosen]
        return self._accounts

    def unit_name(self, acc: Account) -> str:
        return acc.target_user  # main-domain accounts have a bare source name; the address is the name

    def units(self) -> list[UnitInfo]:
        units = super().units()
        found = self._overview()
        for u in units:
            overview = found.get(u.meta["target_user"].lower())
            if overview is not None:
                u.meta["overview"] = overview
                u.refresh = ("overview",)  # init again: what the store holds now
        return units

    def _overview(self) -> dict[str, dict]:
        """What the CommuniGate overview finds per account, kept with the units at init (reading every
        mailbox once, as ``mailmigrate communigate overview`` does; ``overview = false`` leaves it out)."""
        cg = self.settings
        if not cg.overview:
            return {}
        from .overview import summaries

        self.accounts()
        domains = {a.domain for a, _ in self.found.values()}
        return summaries(cg.base, domains, primary_domain=cg.primary_domain)

    # --- actions ----------------------------------------------------------------------------------
    def act(self, unit: str, action: str, record: Recorder) -> Outcome:
        if action != "start":
            return super().act(unit, action, record)
        ok, note = self._user(unit, record)
        if not ok:
            return Outcome(False, note, None)
        out = super().act(unit, action, record)
        out.message = f"{note}; {out.message}"
        return out

    def _user(self, unit: str, record: Recorder) -> tuple[bool, str]:
        """start's first step: the account's user in the target directory, by the CommuniGate path's own
        code (cg2kms's password rules, the 0600 pass file, the list of users this migration created).

        A user this project created earlier (say, before an abort) is used as it is, so start works again
        after abort; abort never deletes users.  A user that existed before is not touched and its mail is
        not copied unless ``force = true``: mail must not land in someone else's mailbox by a name clash."""
        from ...credentials import password_from, read_password_file
        from .migrate import open_directory_for, prepare_users

        cg = self.settings
        self.accounts()
        account, in_main = self.found[self.account(unit).target_user.lower()]

        def secret(path: str | None, what: str):
            return read_password_file(path, what) if path else None

        directory = None
        if cg.directory:
            directory = open_directory_for(
                "imap", directory_url=cg.directory,
                admin_password=password_from("MAILMIGRATE_ADMIN_PASSWORD", cg.directory_password_file,
                                             "target directory"))
        passes = self._passes()
        screen: list[str] = []
        try:
            planned = prepare_users([(account, in_main)], directory=directory, force=cg.force,
                                    set_password=secret(cg.set_password_file, "set_password_file"),
                                    force_set_password=secret(cg.force_set_password_file, "force_set_password_file"),
                                    passes=passes, state_path=self._created_users_anchor(), out=screen.append)
        finally:
            if directory is not None:
                directory.close()
        o = planned[0].outcome
        for p in o.problems:
            record.log("WARNING", p.describe())
        # Kept apart from the sync's result, which each sync replaces: these stay true until the cutover.
        record.update_meta({"user": {"action": o.action, "password": o.password, "note": o.note, "error": o.error,
                                     "pass_file": str(passes.path) if o.password else None,
                                     "warnings": [p.__dict__ for p in o.problems if p.kind == "warning"]}})
        left = "".join(f"; {x.kind} not carried over: {', '.join(x.addresses)}" for x in o.left_behind)
        if o.action == "created":
            return True, (f"user created in {directory.describe()}, password {o.password} "
                          f"(written to {passes.path}, mode 0600){left}")
        if o.action == "existing":
            return True, f"user {o.note.replace('--force', 'force = true')}{left}"
        if o.action == "skipped":
            return False, f"user {o.note.replace('--force', 'force = true in [communigate]')}"
        return False, o.error or "the user could not be created"

    def _passes(self):
        if self._pass_file is None:
            from .migrate import PassFile

            out = Path(self.settings.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            self._pass_file = PassFile(out, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
        return self._pass_file

    def _created_users_anchor(self) -> Path:
        """Where the list of users this migration created lives: beside a SQLite state, as cg2kms keeps it
        (so a project can take over from a cg2kms run on the same state file), else beside the project."""
        if is_pg_url(self.project.state):
            return self.project.base / f"{self.project.name}-communigate"
        return Path(self.project.state)

    def close(self) -> None:
        if self._pass_file is not None:
            self._pass_file.close()
