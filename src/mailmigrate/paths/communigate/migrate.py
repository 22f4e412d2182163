"""CommuniGate Pro -> Kerio Connect (or any IMAP server): cg2kms's migration, resumable and reported.

For every account chosen (one user, one domain, or every domain of the store), in this order:

1. **The target user.**  Through a :class:`~mailmigrate.directory.base.DirectoryWriter` (Kerio's
   administration API, a Dovecot passwd-file, LDAP) the user is looked up.  A user that exists is never
   touched, and its mail is migrated only with ``force`` (cg2kms's ``-force``) - unless this tool created
   it in an earlier run against the same state file, in which case the rerun just goes on.  A missing
   user is created with cg2kms's password rules (:func:`choose_password`) and every password set is
   written to ``cg2kms_<YYYY-MM-DD_HH-MM-SS>.pass`` (created with mode 0600, never anything wider).
   Without a directory nothing can be checked or created: every user is taken to exist already, so the
   mail moves only with ``force``.
2. **The mail**, through the sync engine (:func:`mailmigrate.sync.runner.run_sync`): source
   ``communigate:BASE``, target the IMAP server with master authentication (Kerio's ``X-MASTERAUTH`` +
   ``X-SETUSER``, or the server's own master-user login), state in one state file, so a second run copies
   only new mail and an interrupted run resumes without duplicates.

The two (three, with calendars and contacts) are steps of one plan for the step runner (paths/plan.py),
each resuming by itself on a rerun.  Everything that happens goes to ``cg2kms_<datetime>.log``; the screen
(the ``out`` callback) gets one line per folder and the summary; :class:`MigrationReport` lists what was not
copied and why, naming account, folder and message.  Passwords only ever live in :class:`~mailmigrate.model.Secret` and in the
pass file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode, urlsplit

from ...credentials import SECRETS
from ...directory.base import DirectoryError, DirectoryWriter, User, fold
from ...directory.passwords import generate
from ...errors import ConfigError, MailmigrateError
from ...formats.atomic import replace_file
from ...model import Account, AccountResult, Counters, Problem, Secret
from ...stores.communigate import base_domain_dirs, domain_accounts, main_domain_name
from ...stores.registry import StoreOptions, is_loopback, parse_spec
from ...sync.engine import Progress, SyncOptions
from ...sync.runner import SyncRequest, account_key, run_sync
from ..journal import LoggerFile, exclusive_file
from ..plan import Plan, Step
from ..runstate import hold_lock
from .accounts import CGAccount, read_account, read_domain
from .carryover import LeftBehind, carries_aliases, left_behind

log = logging.getLogger("mailmigrate.paths.communigate.migrate")

#: How a password came to be set, as the pass file and the report say it.
FORCED, GIVEN, MIGRATED, GENERATED = "force-set-password", "set-password", "migrated", "generated"

Out = Callable[[str], None]


# --- the password rules --------------------------------------------------------------------------------

def choose_password(account: CGAccount, *, set_password: Secret | None = None,
                    force_set_password: Secret | None = None) -> tuple[Secret, str]:
    """cg2kms's rules for a user about to be created: ``force_set_password`` always; else the CommuniGate
    password when it is readable; else ``set_password``; else a generated strong password."""
    if force_set_password:
        return force_set_password, FORCED
    if account.password_readable and account.password:
        return account.password, MIGRATED
    if set_password:
        return set_password, GIVEN
    return generate(), GENERATED


# --- the run's files ----------------------------------------------------------------------------------

class PassFile:
    """``cg2kms_<datetime>.pass``: one ``address<TAB>password<TAB>how`` line per password set.  Created on
    the first password, with O_EXCL and mode 0600, so it is never readable by others, not even briefly."""

    def __init__(self, directory: Path, stamp: str):
        self.directory, self.stamp = directory, stamp
        self.path: Path | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self.count = 0

    def add(self, address: str, password: Secret, how: str) -> None:
        with self._lock:
            SECRETS.add(password)
            if self._fd is None:
                self.path, self._fd = exclusive_file(self.directory, f"cg2kms_{self.stamp}", ".pass")
                os.write(self._fd, b"# address\tpassword\thow it was chosen (cg2kms rules)\n")
            os.write(self._fd, f"{address}\t{password.reveal()}\t{how}\n".encode("utf-8"))
            os.fsync(self._fd)
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _created_users_path(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".created-users.json")


def load_created(state_path: Path) -> set[str]:
    p = _created_users_path(state_path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError) as e:
        raise ConfigError(f"{p}: unreadable ({e}); it lists the users this tool created; fix or remove it") from None
    return {fold(x) for x in data if isinstance(x, str)}


def record_created(state_path: Path, login: str) -> None:
    """Two processes may create users at once (a project command and its dashboard, two cg2kms runs on one
    state); each must add to the list as it is now, not write back the copy it read earlier, or one user
    drops out and a later start takes it for a user someone else made.  So the read-modify-write holds an
    exclusive lock on a file beside the list, and the new list replaces the old one by rename (0600 from
    its creation, fsynced first), so a crash leaves one list or the other, never half of one."""
    p = _created_users_path(state_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with hold_lock(p.with_name(p.name + ".lock"), wait=True):
        users = load_created(state_path)
        if login in users:
            return
        users.add(login)
        replace_file(p, json.dumps(sorted(users), indent=1).encode("utf-8"), None, prefix=p.name + ".", suffix=".tmp")


# --- options and results --------------------------------------------------------------------------------

@dataclass
class MigrateOptions:
    base: Path
    server: str
    master_password: Secret
    port: int = 143
    domain: str | None = None
    user: str | None = None
    force: bool = False
    set_password: Secret | None = None
    force_set_password: Secret | None = None
    #: cg2kms: -setPass/-forceSetPass apply to a single-user migration only (its documentation says "if a
    #: single user is migrated"); with more accounts they are ignored, on screen and in the log.
    passwords_single_user_only: bool = False
    primary_domain: str | None = None
    target: str = "kerio"  # "kerio": X-MASTERAUTH + X-SETUSER; "imap": the server's master-user login
    master_user: str | None = None  # the master's name ("imap": required; "kerio": only shown in messages)
    master_mode: str = "plain"  # "imap" only: plain (SASL PLAIN with authzid) | star (user*master)
    tls: str = "auto"  # auto (none towards loopback, else starttls) | none | starttls | imaps
    cafile: str | None = None
    insecure: bool = False
    directory: DirectoryWriter | None = None
    state_path: Path | None = None  # default: OUTPUT_DIR/cg2kms_state.db
    output_dir: Path = field(default_factory=Path.cwd)
    jobs: int = 1
    connections: int = 3
    stamp: str | None = None  # the <datetime> of the file names; default now
    #: calendars/task lists and contacts to a DAV server after the mail: URLs whose path may hold %u (the
    #: account's address), %n (its local part) or %d (its domain), logged in as ``dav_user`` (an account with rights on every
    #: user's collections) with ``dav_password``
    caldav: str | None = None
    carddav: str | None = None
    dav_user: str | None = None
    dav_password: Secret | None = None


@dataclass
class AccountOutcome:
    address: str
    action: str  # created | existing | skipped | failed
    password: str | None = None  # how the password was chosen (FORCED, ...), never the password
    note: str | None = None
    counters: Counters = field(default_factory=Counters)
    problems: list[Problem] = field(default_factory=list)
    error: str | None = None
    left_behind: list[LeftBehind] = field(default_factory=list)  # addresses the target will not deliver

    @property
    def ok(self) -> bool:
        """Everything of this account arrived (a skipped account did not)."""
        return self.action in ("created", "existing") and self.error is None and self.counters.failed == 0 \
            and not any(p.kind not in ("flag", "warning") for p in self.problems)

    def as_dict(self) -> dict:
        return {"account": self.address, "action": self.action, "password": self.password, "note": self.note,
                **self.counters.as_dict(), "error": self.error, "problems": [p.__dict__ for p in self.problems],
                "not_carried_over": [x.as_dict() for x in self.left_behind]}


@dataclass
class MigrationReport:
    base: str
    main_domain: str
    target: str
    accounts: list[AccountOutcome] = field(default_factory=list)
    log_path: str | None = None
    pass_path: str | None = None
    state_path: str | None = None
    passwords_set: int = 0

    @property
    def totals(self) -> Counters:
        return Counters.total(a.counters for a in self.accounts)

    @property
    def ok(self) -> bool:
        return all(a.ok for a in self.accounts)

    def not_copied(self) -> list[Problem]:
        """What did not arrive, and why: one entry per account, folder or message."""
        out: list[Problem] = []
        for a in self.accounts:
            if a.action in ("skipped", "failed") or a.error:
                out.append(Problem(a.address, None, None, a.error or a.note or a.action, "account"))
            out.extend(p for p in a.problems if p.kind not in ("flag", "warning"))
        return out

    def warnings(self) -> list[Problem]:
        """What cost no mail but needs a look: unreadable settings, flags a target would not keep, addresses
        the target will not deliver."""
        return [p for a in self.accounts for p in a.problems if p.kind in ("flag", "warning")]

    def as_dict(self) -> dict:
        t = self.totals.as_dict()
        return {**t, "base": self.base, "main_domain": self.main_domain, "target": self.target,
                "accounts_total": len(self.accounts),
                "accounts_created": sum(a.action == "created" for a in self.accounts),
                "accounts_skipped": sum(a.action == "skipped" for a in self.accounts),
                "accounts_failed": sum(a.action == "failed" or a.error is not None for a in self.accounts),
                "ok": self.ok, "passwords_set": self.passwords_set, "log": self.log_path, "pass_file": self.pass_path,
                "state": self.state_path, "accounts": [a.as_dict() for a in self.accounts],
                "not_copied": [p.__dict__ for p in self.not_copied()],
                "warnings": [p.__dict__ for p in self.warnings()]}

    def summary_lines(self) -> list[str]:
        t = self.totals
        lines = [
            f"Accounts: {len(self.accounts)} ({sum(a.action == 'created' for a in self.accounts)} created, "
            f"{sum(a.action == 'existing' for a in self.accounts)} existing, "
            f"{sum(a.action == 'skipped' for a in self.accounts)} skipped, "
            f"{sum(a.action == 'failed' or bool(a.error) for a in self.accounts)} failed)",
            f"Messages: {t.copied} copied ({t.bytes_copied} bytes), {t.skipped} already there, "
            f"{t.flags_updated} flag updates, {t.failed} not copied",
        ]
        if self.passwords_set:
            lines.append(f"Passwords set: {self.passwords_set}, written to {self.pass_path} (mode 0600)")
        warnings = self.warnings()
        if warnings:
            lines.append("Warnings:")
            lines.extend("  " + p.describe() for p in warnings)
        missing = self.not_copied()
        if missing:
            lines.append("Not copied:")
            lines.extend("  " + p.describe() for p in missing)
        lines.append(f"Log: {self.log_path}")
        return lines


# --- target -----------------------------------------------------------------------------------------------

def target_url(opts: MigrateOptions) -> str:
    """The sync engine's target URL (no user, no password: the master's password travels apart)."""
    if opts.target not in ("kerio", "imap"):
        raise ConfigError(f"target must be kerio or imap, not {opts.target!r}")
    if not opts.server:
        raise ConfigError("the target server is required for a migration (--server / -server)")
    tls = opts.tls
    if tls == "auto":
        tls = "none" if is_loopback(opts.server) else "starttls"
    if tls not in ("none", "starttls", "imaps"):
        raise ConfigError(f"tls must be auto, none, starttls or imaps, not {tls!r}")
    host = f"[{opts.server}]" if ":" in opts.server else opts.server
    params = {"master": "kerio" if opts.target == "kerio" else opts.master_mode}
    if tls == "none":
        params["tls"] = "none"
    if opts.cafile:
        params["cafile"] = opts.cafile
    scheme = "imaps" if tls == "imaps" else "imap"
    return f"{scheme}://{host}:{int(opts.port)}?{urlencode(params, quote_via=quote)}"


# --- the migration ----------------------------------------------------------------------------------------

@dataclass
class _Planned:
    account: CGAccount
    source_user: str  # what the communigate: store is asked for (bare name for the main domain)
    outcome: AccountOutcome


class _FolderProgress(Progress):
    """One screen line per folder (and per failed account), from the engine's events."""

    def __init__(self, names: dict[str, str], out: Out):
        self.names, self.out = names, out
        self._lock = threading.Lock()
        self._todo: dict[tuple[str, str], int] = {}
        self._done: dict[tuple[str, str], int] = {}

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        with self._lock:
            self._todo[(account, folder)] = to_copy

    def copied(self, account, folder, messages, nbytes):
        with self._lock:
            self._done[(account, folder)] = self._done.get((account, folder), 0) + messages

    def folder_done(self, account, folder):
        with self._lock:
            todo = self._todo.pop((account, folder), 0)
            done = self._done.pop((account, folder), 0)
        who = self.names.get(account, account)
        what = f"{done} of {todo} new messages copied" if todo else "nothing new"
        self.out(f"{who}  {folder}: {what}")

    def account_done(self, account, result: AccountResult):
        if result.error:
            self.out(f"{self.names.get(account, account)}: failed: {result.error}")


def _select_accounts(opts: MigrateOptions, main: str) -> list[tuple[CGAccount, bool]]:
    return select_accounts(opts.base, domains=[opts.domain] if opts.domain is not None else None,
                           users=[opts.user] if opts.user is not None else None,
                           primary_domain=opts.primary_domain)


def select_accounts(base_path, *, domains: list[str] | None = None, users: list[str] | None = None,
                    primary_domain: str | None = None) -> list[tuple[CGAccount, bool]]:
    """The accounts a migration takes, each with whether it lives in the main domain (``Accounts/``),
    whose accounts the ``communigate:`` store knows by their bare name.  ``users`` holds bare names (any
    chosen domain) or addresses; one that matches nothing is an error, so a typo never silently shrinks a
    migration."""
    base = Path(base_path)
    dirs = base_domain_dirs(base, primary_domain)
    wanted_domains = None
    if domains is not None:
        wanted_domains = {d.lower() for d in domains}
        unknown = sorted(wanted_domains - set(dirs))
        if unknown:
            raise ConfigError(f"domain {', '.join(unknown)} is not in {base} (domains: {', '.join(dirs)})")
    wanted = {u.lower(): u for u in users} if users is not None else None
    matched: set[str] = set()
    chosen: list[tuple[CGAccount, bool]] = []
    for name, d in dirs.items():
        if wanted_domains is not None and name not in wanted_domains:
            continue
        locs = domain_accounts(name, d)
        dom = read_domain(name, d, [loc.name for loc in locs])
        for e in dom.errors:
            log.warning("domain %s: %s", name, e)
        for loc in locs:
            if wanted is not None:
                keys = {loc.name.lower(), f"{loc.name}@{name}".lower()} & set(wanted)
                if not keys:
                    continue
                matched |= keys
            chosen.append((read_account(loc, dom), d.name == "Accounts" and d.parent == base))
    if wanted is not None and set(wanted) - matched:
        missing = [wanted[k] for k in wanted if k not in matched]
        where = f"domain {', '.join(domains)}" if domains else "any domain"
        raise ConfigError(f"account {', '.join(missing)} is not in {where} of {base}")
    return chosen


def source_login(account: CGAccount, in_main: bool) -> str:
    """The name the ``communigate:`` store is asked for: bare for the main domain, else the address."""
    return account.name if in_main else account.address


def _existing_logins(directory: DirectoryWriter) -> set[str]:
    d = directory.read()
    out: set[str] = set()
    for u in d.users.values():
        out.add(fold(u.login))
        if u.mail:
            out.add(fold(u.mail))
    return out


def migrate(opts: MigrateOptions, out: Out = lambda line: None) -> MigrationReport:
    """Migrate the chosen accounts; ``out`` receives the screen's lines (folders, then the summary is the
    caller's to print from the report)."""
    url = target_url(opts)
    spec = parse_spec(url)
    if not opts.master_password:
        raise ConfigError("the master password of the target is missing (MAILMIGRATE_TARGET_PASSWORD, a "
                          "password file, or cg2kms's -password)")
    if opts.target == "imap" and not opts.master_user:
        raise ConfigError("an IMAP target needs its master user's name (--master-user)")
    base = Path(opts.base).resolve()
    main = main_domain_name(base, opts.primary_domain)
    chosen = _select_accounts(opts, main)
    out_dir = Path(opts.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = opts.stamp or datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    state_path = Path(opts.state_path) if opts.state_path else out_dir / "cg2kms_state.db"
    created_before = load_created(state_path)
    report = MigrationReport(str(base), main, spec.describe(""), state_path=str(state_path))
    passes = PassFile(out_dir, stamp)
    with LoggerFile(out_dir, f"cg2kms_{stamp}") as runlog:
        report.log_path = str(runlog.path)
        for secret in (opts.master_password, opts.set_password, opts.force_set_password):
            SECRETS.add(secret)
        log.info("cg2kms migration of %s (main domain %s) to %s; %d account(s); state %s", base, main,
                 spec.describe(""), len(chosen), state_path)
        if opts.passwords_single_user_only and len(chosen) > 1 and (opts.set_password or opts.force_set_password):
            note = (f"-setPass/-forceSetPass apply to a single-user migration (-user); {len(chosen)} accounts "
                    "are migrated, so they are ignored: each created user gets its readable CommuniGate "
                    "password or a generated one (all in the pass file)")
            log.warning("%s", note)
            out(note)
            opts = dataclasses.replace(opts, set_password=None, force_set_password=None)
        planned: list[_Planned] = []
        try:
            plan = migration_plan(opts, spec, base, chosen, planned, passes, created_before, state_path, out)
            # the run log is the record: the steps write their own lines into it, the runner adds none
            plan.run(dry_run=False, journal=runlog).raise_failure()
        finally:
            passes.close()
        report.accounts = [p.outcome for p in planned]
        report.passwords_set = passes.count
        report.pass_path = str(passes.path) if passes.path else None
        for p in report.not_copied():
            log.error("not copied: %s", p.describe())
        for line in report.summary_lines():
            log.info("%s", line)
    return report


def migration_plan(opts: MigrateOptions, spec, base: Path, chosen, planned: list[_Planned], passes: PassFile,
                   created_before: set[str], state_path: Path, out: Out) -> Plan:
    """The migration's steps for the step runner.  Each runs on every rerun and resumes by itself: the
    directory shows which users exist, the created-users list records which of them this tool made (the
    directory cannot tell), and the state file holds every message already copied.  ``planned`` receives
    the accounts with their outcomes as the first step decides them."""
    steps = [
        Step("target users", "look up every chosen user on the target; create the missing ones",
             apply=lambda: planned.extend(_prepare_users(opts, chosen, passes, created_before, state_path, out))),
        Step("mail", "copy every folder and message not yet copied",
             apply=lambda: _sync_mail(opts, spec, base, planned, state_path, out)),
    ]
    if opts.caldav or opts.carddav:
        steps.append(Step("calendars and contacts", "copy every calendar, task and contact item not yet copied",
                          apply=lambda: _sync_groupware(opts, base, planned, state_path, out)))
    return Plan(f"cg2kms migration of {base}", steps)


def _prepare_users(opts: MigrateOptions, chosen, passes: PassFile, created_before: set[str], state_path: Path,
                   out: Out) -> list[_Planned]:
    return prepare_users(chosen, directory=opts.directory, force=opts.force, set_password=opts.set_password,
                         force_set_password=opts.force_set_password, passes=passes, created_before=created_before,
                         state_path=state_path, out=out)


def prepare_users(chosen: list[tuple[CGAccount, bool]], *, directory: DirectoryWriter | None, force: bool,
                  set_password: Secret | None, force_set_password: Secret | None, passes: PassFile,
                  created_before: set[str] | None = None, state_path: Path, out: Out = lambda line: None,
                  ) -> list[_Planned]:
    """Step 1 for the chosen accounts: each planned with its outcome (created, existing, skipped, failed).
    The users this tool created are remembered next to ``state_path``, so a later run (or a project's
    start after an abort) goes on with them instead of skipping them as foreign."""
    if created_before is None:
        created_before = load_created(state_path)
    existing = _existing_logins(directory) if directory is not None else None
    aliases_carried = carries_aliases(directory)  # after read(): a writer may learn its fields from the server
    target = directory.describe() if directory is not None else None
    if directory is None:
        log.warning("no target directory given: users can be neither checked nor created; they are taken "
                    "to exist already, so their mail moves only with --force")
    many = len(chosen) > 1
    for what, value in (("--force-set-password", force_set_password), ("--set-password", set_password)):
        if value and many:
            log.warning("%s applies to each of %d accounts: they share one password", what, len(chosen))
    planned: list[_Planned] = []
    for acc, in_main in chosen:
        address = acc.address
        source_user = source_login(acc, in_main)
        o = AccountOutcome(address, "existing")
        planned.append(_Planned(acc, source_user, o))
        if acc.error:
            o.problems.append(Problem(address, None, None, f"account settings damaged, mail still migrates: "
                                                           f"{acc.error}", "warning"))
            log.warning("account %s: %s", address, acc.error)
        mine = fold(address) in created_before
        exists = True if existing is None else fold(address) in existing
        if exists:
            if mine:
                o.note = "created by an earlier run of this migration; mail synced again"
            elif not force:
                o.action = "skipped"
                o.note = ("exists on the target; not touched and its mail not migrated without --force"
                          if existing is not None else
                          "no target directory to check it exists; its mail migrates only with --force")
                log.warning("account %s: skipped: %s", address, o.note)
                out(f"{address}: skipped: {o.note}")
                continue
            else:
                o.note = "exists on the target; left as it is, mail migrated (--force)"
            log.info("account %s: %s", address, o.note)
            _warn_left_behind(o, acc, aliases_carried=aliases_carried, target=target,
                              user_written=mine)
            continue
        password, how = choose_password(acc, set_password=set_password,
                                        force_set_password=force_set_password)
        SECRETS.add(password)  # before anything could log it
        user = User(login=address, real_name=acc.real_name or "", mail=address, domain=acc.domain,
                    password=password, aliases=acc.alias_addresses if aliases_carried else [])
        try:
            directory.add(user)
            directory.commit()
        except (DirectoryError, MailmigrateError) as e:
            o.action = "failed"
            o.error = f"could not create the user on the target: {e}"
            log.error("account %s: %s", address, o.error)
            out(f"{address}: failed: {o.error}")
            continue
        passes.add(address, password, how)
        o.action, o.password = "created", how
        record_created(state_path, fold(address))
        log.info("account %s: created on %s, password %s (written to the pass file)", address,
                 directory.describe(), how)
        _warn_left_behind(o, acc, aliases_carried=aliases_carried, target=target, user_written=True)
    return planned


def _warn_left_behind(o: AccountOutcome, acc: CGAccount, **kw) -> None:
    """The account's addresses the target will not deliver, as warnings: its mail did arrive, but these
    must be created by hand before the cutover or mail to them bounces."""
    o.left_behind = left_behind(acc, **kw)
    for x in o.left_behind:
        o.problems.append(Problem(o.address, None, None, x.describe(), "warning"))
        log.warning("account %s: %s", o.address, x.describe())


def _sync_mail(opts: MigrateOptions, spec, base: Path, planned: list[_Planned], state_path: Path, out: Out) -> None:
    todo = [p for p in planned if p.outcome.action in ("created", "existing")]
    if not todo:
        return
    source = parse_spec(f"communigate:{base}")
    accounts = [Account(p.source_user, p.account.address) for p in todo]
    req = SyncRequest(
        source=source, target=spec, accounts=accounts, state_path=state_path,
        target_options=StoreOptions(insecure=opts.insecure, master_user=opts.master_user or "master"),
        target_password=opts.master_password, jobs=opts.jobs,
    )
    names = {account_key(req, a): a.target_user for a in accounts}
    req.sync = SyncOptions(progress=_FolderProgress(names, out), connections=opts.connections)
    state_path.parent.mkdir(parents=True, exist_ok=True)
    result = run_sync(req)
    by_name = {r.account: r for r in result.accounts}
    for p, a in zip(todo, accounts):
        r = by_name.get(account_key(req, a))
        if r is None:  # pragma: no cover - the runner answers for every account
            continue
        o = p.outcome
        o.counters = r.counters
        for prob in r.problems:
            prob.account = o.address
            o.problems.append(prob)
        if r.error:
            o.error = r.error
            log.error("account %s: mail not migrated: %s", o.address, r.error)
        log.info("account %s: %d copied, %d already there, %d not copied", o.address, r.counters.copied,
                 r.counters.skipped, r.counters.failed)


def _sync_groupware(opts: MigrateOptions, base: Path, planned: list[_Planned], state_path: Path, out: Out) -> None:
    """Each migrated account's calendar, task and contact boxes into the DAV server, through the groupware
    engine on the same state file: incremental, crash-safe, never an item twice by UID."""
    from ...stores.communigate_groupware import CommuniGateGroupwareStore
    from ...stores.dav import parse_dav_url
    from ...sync.groupware import GroupwareState, sync_groupware
    from ...sync.state import RunLock, StateDB

    todo = [p for p in planned if p.outcome.action in ("created", "existing") and not p.outcome.error]
    if not todo:
        return
    lock = RunLock(state_path)
    lock.acquire()
    try:
        db = StateDB.open(state_path)
        try:
            state = GroupwareState(db._conn)
            for p in todo:
                o = p.outcome
                local, _, domain = o.address.partition("@")
                for url, kind in ((opts.caldav, "calendar"), (opts.carddav, "addressbook")):
                    if not url:
                        continue
                    src = CommuniGateGroupwareStore(base, p.source_user.split("@")[0],
                                                    p.account.domain if "@" in p.source_user else None,
                                                    kind=kind, primary_domain=opts.primary_domain)
                    home = url.replace("%u", o.address).replace("%n", local).replace("%d", domain)
                    tgt = parse_dav_url(home, opts.dav_user, opts.dav_password, insecure=opts.insecure,
                                        home_from_path=True)
                    key = f"{src.describe()} -> {tgt.describe()}"
                    try:
                        src.open()
                        tgt.open()
                        r = sync_groupware(src, tgt, state, key)
                    finally:
                        src.close()
                        tgt.close()
                    what = "calendars" if kind == "calendar" else "contacts"
                    c = r.counters
                    line = (f"{o.address}: {what}: {c.copied} items copied, {c.unchanged + c.adopted} already there, "
                            f"{c.failed} failed" + (f" ({r.error})" if r.error else ""))
                    log.info("%s", line)
                    out(line)
                    for prob in r.problems + [Problem(o.address, what, None, r.error, "account")] * bool(r.error):
                        prob.account = o.address
                        o.problems.append(prob)
                    o.note = ((o.note + "; ") if o.note else "") + f"{what} {c.copied} copied"
        finally:
            db.close()
    finally:
        lock.release()


def open_directory_for(target: str, *, admin_url: str | None = None, admin_user: str | None = None,
                       admin_password: Secret | None = None, passwd_file: str | None = None,
                       directory_url: str | None = None, cafile: str | None = None,
                       insecure: bool = False) -> DirectoryWriter | None:
    """The directory where missing users are created: Kerio's administration API (``admin_url``), a
    Dovecot passwd-file, or any directory URL (``ldap://…``); None when none is given."""
    given = [x for x in (admin_url, passwd_file, directory_url) if x]
    if len(given) > 1:
        raise ConfigError("give one of --admin-url, --passwd-file, --directory")
    if passwd_file:
        from ...directory.passwdfile import PasswdFileDirectory
        return PasswdFileDirectory(passwd_file)
    if directory_url:
        from ...directory.urls import open_directory
        d = open_directory(directory_url, admin_password)
        if not isinstance(d, DirectoryWriter):
            raise ConfigError(f"{directory_url}: cannot create users there")
        return d
    if admin_url:
        u = urlsplit(admin_url if "://" in admin_url else "https://" + admin_url)
        if u.scheme != "https":
            raise ConfigError(f"{admin_url}: Kerio's administration API is https://HOST:4040")
        if u.username or u.password:
            raise ConfigError(f"{admin_url}: give the user with --admin-user and the password in "
                              "MAILMIGRATE_ADMIN_PASSWORD, not in the URL")
        if not admin_user:
            raise ConfigError("--admin-url needs --admin-user")
        if not admin_password:
            raise ConfigError("Kerio's administrator password is missing: set MAILMIGRATE_ADMIN_PASSWORD "
                              "or --admin-password-file")
        from ...directory.kerio import DEFAULT_PORT, KerioDirectory
        try:
            port = u.port or DEFAULT_PORT
        except ValueError:
            raise ConfigError(f"{admin_url}: bad port") from None
        return KerioDirectory(u.hostname, port, user=admin_user, password=admin_password, cafile=cafile,
                              insecure=insecure)
    if target == "kerio" and (admin_user or admin_password) and not admin_url:
        raise ConfigError("an administrator is given but no --admin-url")
    return None
