"""What start, sync, finish, abort and skip do for the mailbox and CommuniGate paths, on top of the sync engine.

* start  – register the unit on the target and make the first full copy (CommuniGate: first create the
           user in the target directory with cg2kms's rules, see :meth:`Workflow._communigate_user`);
* sync   – an incremental run; as often as wanted while users keep working;
* finish – the final incremental run (with --delete when the project says so), then verification message by
           message; the unit is migrated only when verification finds nothing missing;
* abort  – remove from the target only what mailmigrate put there, forget the mapping; the source is not
           touched;
* skip   – leave the unit out.

Every action goes through the workflow store (refusing illegal transitions), writes its outcome to the
project log, and keeps the account's last result for the report.  With ``[fleet] executor = "celery"`` (or
``executor="celery"`` given to :meth:`Workflow.run`) the copying of start, sync and finish goes to the fleet's
workers as one job per account (``workflow/fleet.py``); the units' states, logs and history are recorded
here all the same.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError, MailmigrateError, StateLocked
from ..model import Account
from ..stores.registry import StoreOptions, build_store
from ..sync.abort import abort_account
from ..sync.engine import Progress, SyncOptions
from ..sync.runner import SyncRequest, account_key, login_for, migrate_account_key, run_sync
from ..sync.state import RunLock, StateDB
from ..sync.state_pg import PgStateDB, is_pg_url, open_state
from ..sync.verify import verify_account
from .project import Project
from .states import IllegalTransition
from .store import WorkflowStore

log = logging.getLogger("mailmigrate.workflow")


@dataclass
class ActionOutcome:
    unit: str
    action: str
    ok: bool
    state: str
    message: str
    #: The action did its work but not all of it: messages or folders of a start or sync failed (named in
    #: the unit's log, result and the report).  The unit stays migrating, since a sync retries them and
    #: finish refuses what has no verified copy; a command still says so and exits non-zero, so a script
    #: driving a cutover notices before finish does.
    incomplete: bool = False


def incomplete(wf: WorkflowStore, unit: str, action: str, ok: bool) -> bool:
    """Whether a successful start or sync left messages or folders behind (the unit's last result)."""
    if not ok or action not in ("start", "sync"):
        return False
    u = wf.get(unit)
    meta = u.meta if u else {}
    last = meta.get("last_result") or {}
    groupware_failed = any(g.get("failed") or g.get("error") for g in meta.get("groupware") or [])
    return bool((last.get("counters") or {}).get("failed")) or groupware_failed


class _StoreProgress(Progress):
    """Feeds live numbers to the workflow store, where the dashboard reads them."""

    def __init__(self, wf: WorkflowStore, unit: str, inner: Progress | None):
        self.wf, self.unit, self.inner = wf, unit, inner or Progress()
        self.total = 0
        self.done = 0
        self.bytes = 0

    def folder_start(self, account, folder, to_copy, bytes_to_copy):
        self.total += to_copy
        self.wf.set_progress(self.unit, total=self.total, folder=folder)
        self.inner.folder_start(account, folder, to_copy, bytes_to_copy)

    def copied(self, account, folder, messages, nbytes):
        self.done += messages
        self.bytes += nbytes
        self.wf.set_progress(self.unit, done=self.done, bytes_done=self.bytes)
        self.inner.copied(account, folder, messages, nbytes)

    def account_start(self, account):
        self.wf.set_progress(self.unit, total=0, done=0, bytes_done=0, folder="")
        self.inner.account_start(account)

    def account_done(self, account, result):
        self.inner.account_done(account, result)


class Workflow:
    def __init__(self, project: Project, actor: str | None = None):
        self.project = project
        self.wf = WorkflowStore.open(project.workflow)
        self.actor = actor or getpass.getuser()
        self._pass_file = None  # CommuniGate: one cg2kms_<datetime>.pass per Workflow, made on the first password

    def close(self) -> None:
        if self._pass_file is not None:
            self._pass_file.close()
        self.wf.close()

    # --- set-up -----------------------------------------------------------------------------------
    def init(self) -> list[str]:
        added = []
        if self.project.path == "nethserver7":
            for app in self.project.unit_names():
                if self.wf.add_unit(app, "application", {}):
                    added.append(app)
            self.wf.log(None, "INFO", f"project {self.project.name}: {len(added)} application(s) added by {self.actor}")
            return added
        accounts = self.project.discover()
        found = self._communigate_overview() if self.project.path == "communigate" else {}
        for acc in accounts:
            name = self.project.unit_name(acc)
            meta = {"source_user": acc.source_user, "target_user": acc.target_user}
            overview = found.get(acc.target_user.lower()) if found else None
            if overview is not None:
                meta["overview"] = overview
            if self.wf.add_unit(name, "account", meta):
                added.append(name)
            elif overview is not None:  # init again: what the store holds now
                self._set_meta(name, {**self.wf.get(name).meta, "overview": overview})
        self.wf.log(None, "INFO", f"project {self.project.name}: {len(added)} unit(s) added by {self.actor}")
        return added

    # --- actions ----------------------------------------------------------------------------------
    def run(self, units: list[str] | None, action: str, progress: Progress | None = None, *,
            executor: str | None = None, broker: str | None = None, fleet_timeout: float | None = None,
            on_fleet: Callable[[dict], None] | None = None) -> list[ActionOutcome]:
        """``action`` on ``units`` (default: all), here or on the fleet (``executor``, ``broker`` and
        ``fleet_timeout`` override the project's ``[fleet]``); ``on_fleet`` receives the fleet-wide counts
        while the workers copy."""
        known = [u.name for u in self.wf.units()]
        unknown = [n for n in units or [] if n not in known]
        if unknown:  # a typo is a usage error, said before anything runs, not a failed unit
            raise ConfigError(f"project {self.project.name} has no unit {', '.join(map(repr, unknown))}"
                              + (f"; units are named like {', '.join(known[:3])}" if known else
                                 "; it has no units yet (project init)"))
        names = units or known
        from .fleet import COPYING, settings

        fleet = settings(self.project, executor, broker, fleet_timeout) if action in COPYING else None
        if fleet is None:
            return [self.act(n, action, progress, executor="local") for n in names]
        from .fleet import run_units

        return run_units(self, names, action, fleet, on_progress=on_fleet)

    def act(self, unit: str, action: str, progress: Progress | None = None, *,
            executor: str | None = None) -> ActionOutcome:
        if executor is None and self.project.executor != "local":
            return self.run([unit], action, progress)[0]  # the dashboard's buttons go to the fleet too
        refusal = self._refusal(unit, action)
        if refusal:
            self.wf.log(unit, "WARNING", f"{action} refused: {refusal}")
            u = self.wf.get(unit)
            return ActionOutcome(unit, action, False, u.state if u else "?", refusal)
        try:
            t = self.wf.begin(unit, action, self.actor)
        except IllegalTransition as e:
            return ActionOutcome(unit, action, False, self.wf.get(unit).state if self.wf.get(unit) else "?", str(e))
        self.wf.log(unit, "INFO", f"{action} by {self.actor}")
        try:
            ok, message, bound = self._run(unit, action, progress)
        except MailmigrateError as e:
            ok, message, bound = False, str(e), None
        except Exception as e:  # an unexpected bug must not leave the unit busy forever
            log.exception("unit %s: %s crashed", unit, action)
            ok, message, bound = False, f"internal error: {e!r}", None
        state = self.wf.end(unit, t, self.actor, ok=ok, detail=message, bound=bound)
        self.wf.log(unit, "INFO" if ok else "ERROR", f"{action}: {message}")
        return ActionOutcome(unit, action, ok, state, message, incomplete(self.wf, unit, action, ok))

    def _run(self, unit: str, action: str, progress: Progress | None) -> tuple[bool, str, bool | None]:
        if self.project.path == "nethserver7":
            return self._nethserver7(unit, action)
        if action == "skip":
            return True, "skipped", None
        acc = self.project.account(unit)
        if action == "start" and self.project.path == "communigate":
            ok, note = self._communigate_user(unit)
            if not ok:
                return False, note, None
            ok, msg, bound = self._sync(unit, acc, delete=False, progress=progress)
            return ok, f"{note}; {msg}", bound
        if action in ("start", "sync"):
            return self._sync(unit, acc, delete=False, progress=progress)
        if action == "finish":
            ok, msg, _ = self._sync(unit, acc, delete=self.project.delete_on_finish, progress=progress)
            if not ok:
                return False, f"final sync: {msg}", True
            return self._verify_unit(unit, acc)
        if action == "abort":
            req = self._request([acc])
            name = account_key(req, acc)
            with self._state(name) as state:
                name = migrate_account_key(state, req, acc)
                res = abort_account(self._store("target", acc), state, name)
            return True, (f"removed {res.messages_removed} message(s) and {len(res.folders_removed)} folder(s) "
                          f"mailmigrate had made on the target"
                          + (f"; kept non-empty folders {', '.join(res.folders_kept)}" if res.folders_kept else "")
                          + (f"; kept {res.adopted_kept} message(s) that were on the target before mailmigrate "
                             f"(adopted)" if res.adopted_kept else "")
                          + (f"; kept {len(res.messages_kept)} message(s) that are no longer mailmigrate's copies: "
                             + "; ".join(res.messages_kept[:5]) if res.messages_kept else "")), False
        raise MailmigrateError(f"unknown action {action}")

    # --- CommuniGate Pro ---------------------------------------------------------------------------
    def _communigate_overview(self) -> dict[str, dict]:
        """What the CommuniGate overview finds per account, kept with the units at init (reading every
        mailbox once, as ``mailmigrate communigate overview`` does; ``overview = false`` leaves it out)."""
        cg = self.project.communigate
        if not cg["overview"]:
            return {}
        from ..paths.communigate.overview import summaries

        domains = {a.domain for a, _ in self.project.found.values()}
        return summaries(cg["base"], domains, primary_domain=cg.get("primary_domain"))

    def _communigate_user(self, unit: str) -> tuple[bool, str]:
        """start's first step: the account's user in the target directory, by the CommuniGate path's own
        code (cg2kms's password rules, the 0600 pass file, the list of users this migration created).

        A user this project created earlier (say, before an abort) is used as it is, so start works again
        after abort; abort never deletes users.  A user that existed before is not touched and its mail is
        not copied unless ``force = true``: mail must not land in someone else's mailbox by a name clash."""
        from ..paths.communigate.migrate import open_directory_for, prepare_users
        from ..sync.accounts import password_from, read_password_file

        cg = self.project.communigate
        self.project.discover()
        account, in_main = self.project.found[self.project.account(unit).target_user.lower()]

        def secret(key: str, what: str):
            return read_password_file(cg[key], what) if cg.get(key) else None

        directory = None
        if cg.get("directory"):
            directory = open_directory_for(
                "imap", directory_url=cg["directory"],
                admin_password=password_from("MAILMIGRATE_ADMIN_PASSWORD", cg.get("directory_password_file"),
                                             "target directory"))
        passes = self._passes()
        screen: list[str] = []
        try:
            planned = prepare_users([(account, in_main)], directory=directory, force=cg["force"],
                                    set_password=secret("set_password_file", "set_password_file"),
                                    force_set_password=secret("force_set_password_file", "force_set_password_file"),
                                    passes=passes, state_path=self._created_users_anchor(), out=screen.append)
        finally:
            if directory is not None:
                directory.close()
        o = planned[0].outcome
        for p in o.problems:
            self.wf.log(unit, "WARNING", p.describe())
        meta = self.wf.get(unit).meta
        # Kept apart from the sync's result, which each sync replaces: these stay true until the cutover.
        meta["user"] = {"action": o.action, "password": o.password, "note": o.note, "error": o.error,
                        "pass_file": str(passes.path) if o.password else None,
                        "warnings": [p.__dict__ for p in o.problems if p.kind == "warning"]}
        self._set_meta(unit, meta)
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
            from datetime import datetime

            from ..paths.communigate.migrate import PassFile

            out = Path(self.project.communigate["output_dir"])
            out.mkdir(parents=True, exist_ok=True)
            self._pass_file = PassFile(out, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))
        return self._pass_file

    def _created_users_anchor(self) -> Path:
        """Where the list of users this migration created lives: beside a SQLite state, as cg2kms keeps it
        (so a project can take over from a cg2kms run on the same state file), else beside the project."""
        if is_pg_url(self.project.state):
            return self.project.base / f"{self.project.name}-communigate"
        return Path(self.project.state)

    # The states each NethServer step leaves the application in when it did its work.
    _NS7_DONE = {"start": "migrating", "sync": "migrating", "finish": "migrated", "abort": "not_migrated",
                 "skip": "skipped"}

    def _refusal(self, unit: str, action: str) -> str | None:
        """A path's own rule against an action, checked before the unit is taken, so a refusal leaves the
        unit as it was: NethServer 7's account provider finishes only after every other application."""
        if self.project.path != "nethserver7" or action != "finish":
            return None
        from ..paths.nethserver import ns8_steps as steps

        blockers = steps.finish_blockers(self._ns7_project(), unit, self.project.nethserver["applications"])
        return (f"cannot finish: {unit} is migrated last; {'; '.join(blockers)} (finish or skip it first)"
                if blockers else None)

    def _ns7_project(self):
        from ..paths.nethserver import ns8_steps as steps
        from ..paths.nethserver.layout import NethServerTree, NS8MailTree
        from ..paths.nethserver.ns8_provider import ProviderLink
        from ..sync.accounts import password_from

        cfg = self.project.nethserver
        link = None
        if cfg.get("source_ldap") and cfg.get("target_ldap"):
            link = ProviderLink(cfg["source_ldap"], cfg["target_ldap"],
                                password_from("MAILMIGRATE_SOURCE_PASSWORD", cfg.get("source_ldap_password_file"),
                                              "NS7 LDAP"),
                                password_from("MAILMIGRATE_TARGET_PASSWORD", cfg.get("target_ldap_password_file"),
                                              "NS8 LDAP"))
        ns8 = None
        if cfg.get("ns8_url"):  # NethServer 8's cluster API: finish applies the settings there
            from ..paths.nethserver.ns8_api import link_from

            ns8 = link_from(cfg["ns8_url"], cfg.get("ns8_user") or "admin",
                            password_from("MAILMIGRATE_NS8_PASSWORD", cfg.get("ns8_password_file"),
                                          "NS8 administrator"),
                            insecure=bool(cfg.get("ns8_insecure")), cafile=cfg.get("ns8_cafile"),
                            node=int(cfg.get("ns8_node") or 1))
        p = steps.Project(NethServerTree(Path(cfg["source_root"])), NS8MailTree(Path(cfg["root"])), link, ns8)
        from ..paths.nethserver.ns7_groupware import DAV_APPS, DavLink

        for app in DAV_APPS:  # SOGo's and WebTop's DAV sides, from [nethserver.sogo] / [nethserver.webtop]
            sec = cfg.get(app)
            if sec:
                p.dav[app] = DavLink(
                    sec["dav_source"], sec["dav_target"], sec.get("dav_source_user"), sec.get("dav_target_user"),
                    password_from("MAILMIGRATE_DAV_SOURCE_PASSWORD", sec.get("dav_source_password_file"), "NS7 DAV"),
                    password_from("MAILMIGRATE_DAV_TARGET_PASSWORD", sec.get("dav_target_password_file"), "NS8 DAV"),
                    insecure=bool(sec.get("dav_insecure")))
        return p

    def _nethserver7(self, app: str, action: str) -> tuple[bool, str, bool | None]:
        """NethServer 7 -> 8, one application: the path's own steps (paths/nethserver/ns8_steps.py) do the
        work; the workflow records who did what and refuses what the seed's buttons would not allow."""
        from ..paths.nethserver import ns8_steps as steps

        cfg = self.project.nethserver
        p = self._ns7_project()
        if action == "finish":
            from ..paths.nethserver.quota import Doveadm

            dovecot = Doveadm(cfg["dovecot_config"], cfg.get("doveadm") or "doveadm") \
                if cfg.get("dovecot_config") else None
            res = steps.finish(p, app, disable_source=not cfg["keep_source"], dovecot=dovecot,
                               apps=cfg["applications"])
        else:
            res = getattr(steps, action)(p, app)
        for e in res.log.errors:
            self.wf.log(app, "ERROR", e.line())
        for w in res.log.warnings:
            self.wf.log(app, "WARNING", w.line())
        # A step can reach its state with per-item errors (a broken address is reported, not fatal): the
        # state decides success; the errors stay in the log and the report.
        ok = res.state == self._NS7_DONE[action]
        meta = self.wf.get(app).meta
        meta["last_result"] = {"counters": {"copied": res.details.get("copied", 0), "skipped": 0,
                                            "failed": res.details.get("failed", 0)},
                               "error": None if ok else f"stayed {res.state}",
                               "problems": [{"kind": "message", "folder": None, "message": None,
                                             "reason": e.line(), "account": app} for e in res.log.errors]}
        self._set_meta(app, meta)
        msg = (f"{action} -> {res.state}: {len(res.log.errors)} error(s), {len(res.log.warnings)} warning(s)"
               + (f"; {', '.join(f'{k} {v}' for k, v in res.details.items())}" if res.details else ""))
        bound = None if not ok or action == "skip" else action != "abort"
        return ok, msg, bound

    def _sync(self, unit: str, acc: Account, *, delete: bool, progress: Progress | None):
        req = self._request([acc])
        req.sync = SyncOptions(delete=delete, progress=_StoreProgress(self.wf, unit, progress),
                               delete_guard=self.project.delete_guard, force_delete=self.project.force_delete,
                               selection=self.project.selection, connections=self.project.connections,
                               max_attempts=self.project.retries)
        ok, msg, bound = self._record_result(unit, run_sync(req).accounts[0])
        if ok and self.project.groupware:
            msg += "; " + self._groupware(unit, acc, delete=delete)
        return ok, msg, bound

    def _groupware_passwords(self):
        from ..sync.accounts import read_password_file

        files = self.project.groupware_password_files
        return tuple(read_password_file(files[k], k.replace("_", " ")) if files.get(k) else
                     getattr(self.project, side).password(f"MAILMIGRATE_{side.upper()}_PASSWORD", side)
                     for k, side in (("source_password_file", "source"), ("target_password_file", "target")))

    def _groupware(self, unit: str, acc: Account, *, delete: bool) -> str:
        """The unit's calendars and contacts after its mail; what failed stays in the unit's log and meta
        (and makes a start or sync INCOMPLETE), the mail's result stands."""
        from . import groupware

        name = account_key(self._request([acc]), acc)
        with self._state(name) as state:
            results = groupware.sync_unit(self.project.groupware, acc, state._conn,
                                          passwords=self._groupware_passwords(), delete=delete)
        kept, said = [], []
        for what, r in results:
            kept.append({"what": what, "error": r.error, **r.counters.as_dict(),
                         "problems": [p.__dict__ for p in r.problems]})
            for p in r.problems:
                self.wf.log(unit, "WARNING" if p.kind == "warning" else "ERROR", f"{what}: {p.describe()}")
            if r.error:
                self.wf.log(unit, "ERROR", f"{what}: {r.error}")
            c = r.counters
            said.append(f"{what}: {'FAILED ' + r.error if r.error else ''}copied {c.copied}, updated {c.updated}, "
                        f"deleted {c.deleted}, failed {c.failed}")
        self.wf.update_meta(unit, {"groupware": kept})
        return "; ".join(said)

    def _record_result(self, unit: str, result) -> tuple[bool, str, bool | None]:
        """An account's sync result into the unit's meta and log, wherever it ran."""
        meta = self.wf.get(unit).meta
        meta["last_result"] = {"counters": result.counters.as_dict(), "error": result.error,
                               "problems": [p.__dict__ for p in result.problems]}
        self._set_meta(unit, meta)
        for p in result.problems:
            self.wf.log(unit, "WARNING" if p.kind in ("warning", "flag") else "ERROR", p.describe())
        c = result.counters
        if result.error:
            return False, result.error, None
        msg = f"copied {c.copied}, flags {c.flags_updated}, deleted {c.deleted}, failed {c.failed}"
        if c.skipped_by_rule:
            msg += f"; {c.skipped_by_rule} skipped by rule"
        if c.skipped_too_large:
            msg += f"; {c.skipped_too_large} over the target's message size limit (not copied, listed)"
        if c.skipped_in_label:
            msg += f"; {c.skipped_in_label} All Mail messages already copied from a label folder"
        if c.adopted:
            msg += f"; {c.adopted} already on the target (adopted, not copied again)"
        if c.target_only:
            msg += f"; {c.target_only} message(s) of the target's own left alone"
        if c.deletes_withheld:
            # The source looks emptied: finishing now would call a unit migrated whose deletes never ran.
            return False, (f"{msg}; {c.deletes_withheld} copies NOT deleted because the source looks emptied "
                           f"(see the log); check the source, or set [options] force_delete = true"), True
        return True, msg, True

    def verify_unit(self, unit: str):
        """Verify one unit's mail message by message and keep the result with the unit, so that the report
        and the dashboard show it until the next verification."""
        acc = self.project.account(unit)
        check = self.verify(acc)
        self.wf.update_meta(unit, {"verification": check.as_dict()})
        if self.project.groupware:
            self._verify_groupware(unit, acc)
        return check

    def verifiable(self) -> list[str]:
        """The units whose mail a verification can compare: mailbox units that have been started."""
        if self.project.path not in ("mailbox", "communigate"):
            return []
        return [u.name for u in self.wf.units() if u.bound]

    def report(self) -> dict:
        """Verify every started unit now, then the report of the whole project (and its directory)."""
        from .report import build_report

        for name in self.verifiable():
            self.verify_unit(name)
        return build_report(self.project.name, self.status(), {}, self.directory_check())

    def _verify_unit(self, unit: str, acc: Account) -> tuple[bool, str, bool | None]:
        """finish after its final sync: migrated only when every source message has a verified copy."""
        check = self.verify_unit(unit)
        t = check.totals()
        if not check.ok:
            return False, (f"verification failed: {t['missing']} message(s) without a verified copy"
                           + (f"; {check.error}" if check.error else "")), True
        said = f"verified: {t['source_messages']} messages, {t['source_bytes']} bytes, all on the target"
        if self.project.groupware:
            gv = self.wf.get(unit).meta["groupware_verification"]  # verify_unit checked it too
            if not gv["ok"]:
                missing = sum(len(p["missing"]) for p in gv["pairs"])
                errors = "; ".join(p["error"] for p in gv["pairs"] if p["error"])
                return False, (f"groupware verification failed: {missing} item(s) without a copy"
                               + (f"; {errors}" if errors else "")), True
            said += "; " + ", ".join(f"{p['what']}: {p['target_items']} items in {p['collections']} collection(s)"
                                     for p in gv["pairs"])
        return True, said, True

    def _verify_groupware(self, unit: str, acc: Account) -> dict:
        from . import groupware

        name = account_key(self._request([acc]), acc)
        with self._state(name) as state:
            gv = groupware.verify_unit(self.project.groupware, acc, state._conn,
                                       passwords=self._groupware_passwords())
        self.wf.update_meta(unit, {"groupware_verification": gv})
        return gv

    @contextlib.contextmanager
    def _state(self, account: str):
        """The sync state, held for one account: the SQLite file for the run, or (PostgreSQL, shared with
        fleet workers and other runs) the account's own lock, so nothing else copies it meanwhile."""
        if not is_pg_url(self.project.state):
            lock = RunLock(self.project.state)
            lock.acquire()
            try:
                state = StateDB.open(self.project.state)
                try:
                    yield state
                finally:
                    state.close()
            finally:
                lock.release()
            return
        state = PgStateDB.open(self.project.state)
        try:
            if not state.lock_account(account, wait=30):
                raise StateLocked(f"account {account} is being synced by another process (a fleet worker?); "
                                  f"try again when it finished")
            yield state
        finally:
            state.close()  # also releases the account's lock

    def _set_meta(self, unit: str, meta: dict) -> None:
        """Record the keys of ``meta`` (read from the unit a moment before and changed) without undoing a
        key that another process set meanwhile."""
        self.wf.update_meta(unit, meta)

    def _request(self, accounts: list[Account]) -> SyncRequest:
        p = self.project
        return SyncRequest(
            source=p.source.spec, target=p.target.spec, accounts=accounts, state_path=p.state,
            source_options=StoreOptions(insecure=p.source.insecure, master_user=p.source.master,
                                        oauth=p.source.token_source("source")),
            target_options=StoreOptions(insecure=p.target.insecure, master_user=p.target.master,
                                        oauth=p.target.token_source("target")),
            source_password=p.source.password("MAILMIGRATE_SOURCE_PASSWORD", "source"),
            target_password=p.target.password("MAILMIGRATE_TARGET_PASSWORD", "target"),
            jobs=1,
            max_rate=p.max_rate,
            max_bandwidth=None if p.max_bandwidth is None else p.max_bandwidth * (1 << 20),
            state_factory=open_state if is_pg_url(p.state) else None,
        )

    def _store(self, side: str, acc: Account, create: bool = False):
        p = self.project
        s = p.source if side == "source" else p.target
        own = acc.source_password if side == "source" else acc.target_password
        pw, options = login_for(s.password(f"MAILMIGRATE_{side.upper()}_PASSWORD", side), own,
                                StoreOptions(insecure=s.insecure, master_user=s.master, create=create,
                                             oauth=s.token_source(side)))
        return build_store(s.spec, user=acc.source_user if side == "source" else acc.target_user,
                           password=pw, options=options, side=side)

    def verify(self, acc: Account):
        req = self._request([acc])
        name = account_key(req, acc)
        with self._state(name) as state:
            name = migrate_account_key(state, req, acc)
            return verify_account(self._store("source", acc), self._store("target", acc), state, name,
                                  self.project.selection.with_rules(acc.rules))

    def directory_check(self) -> dict | None:
        """The post-migration checklist (users, groups, memberships, aliases, send-as, forwards, …) between
        the project's source and target directories, or None when the project names none."""
        d = self.project.directory
        if not d:
            return None
        from ..directory.checklist import compare
        from ..directory.urls import open_directory
        from ..sync.accounts import read_password_file

        def pw(key):
            return read_password_file(d[key], key.replace("_", " ")) if d.get(key) else None

        with open_directory(d["source"], pw("source_password_file"), must_exist=True) as src, \
                open_directory(d["target"], pw("target_password_file"), must_exist=True) as tgt:
            return compare(src.read(), tgt.read()).as_dict()

    # --- reading ----------------------------------------------------------------------------------
    def status(self) -> list[dict]:
        prog = self.wf.progress()
        out = []
        for u in self.wf.units():
            from .states import allowed_actions

            out.append({"unit": u.name, "state": u.state, "bound": u.bound, "updated": u.updated,
                        "last_error": u.last_error, "actions": allowed_actions(u.state, bound=u.bound),
                        "progress": prog.get(u.name, {}), "last_result": u.meta.get("last_result"),
                        "verification": u.meta.get("verification"), "found": u.meta.get("overview"),
                        "user": u.meta.get("user"), "groupware": u.meta.get("groupware"),
                        "groupware_verification": u.meta.get("groupware_verification")})
        return out

    def for_units(self, units: list[str] | None, fn: Callable[[str], ActionOutcome]) -> list[ActionOutcome]:
        names = units or [u.name for u in self.wf.units()]
        return [fn(n) for n in names]
