"""NethServer 7 -> 8, per application: the work of start, sync, finish, abort, skip — each a function the
NethServer path plug-in (:mod:`.plugin`) calls.

The seed's procedure: *start* installs the application on NS8 and makes the first copy, *sync* repeats the
copy as often as wanted, *finish* makes the final copy, runs the conversions and only then stops the NS7
application, *abort* removes what start and sync created on NS8 (never anything on NS7), *skip* leaves the
application on NS7.

These functions hold no state machine: which action may run when, the lock, the history and the resulting
state are the workflow's (``workflow/states.py``), for a project and for the ``mailmigrate ns7`` command
alike.  A step gets its application's :class:`AppRecord` — the progress data it keeps between actions (what
start created, the NS8 import endpoint), saved as the unit's metadata — and says whether it did its work
(:attr:`StepResult.done`); errors of single items are in its log either way.

Applications: ``mail`` (NS7 Email: Dovecot + Postfix + POP3 connector), ``sogo`` and ``webtop`` (their
calendars and contacts through DAV, :mod:`.ns7_groupware`) and ``account-provider`` (NS7's local OpenLDAP,
:mod:`.ns8_provider`), which the seed migrates last: its finish is refused while any other application is
neither migrated nor skipped.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...directory.provider import PROVIDER_APP
from ...errors import ConfigError, MailmigrateError
from ...formats.atomic import replace_file
from ...formats.dovecot_acl import ACL_FILE
from ...formats.esmith import EsmithDb, read_esmith, write_esmith
from ...model import Secret
from ...sync import maildir_clone
from . import ns7_groupware as groupware
from . import ns8, ns8_api, ns8_push
from . import ns8_provider as provider
from . import ns8_settings as ns8s
from . import quota as quota_mod
from ..base import UnitsView
from .eventlog import EventLog
from .layout import NethServerTree, NS8MailTree
from .mailboxes import folder_dirs
from .rules import ERROR, Note

APPS = ("mail", *groupware.DAV_APPS, PROVIDER_APP)


class IllegalStep(ConfigError):
    """The action is not allowed in the application's current state (the message says why)."""


@dataclass
class Project:
    source: NethServerTree
    target: NS8MailTree
    #: the two account providers, for the ``account-provider`` application
    provider: provider.ProviderLink | None = None
    #: NethServer 8's cluster API: finish applies the mail settings there (without it: files only)
    ns8: ns8_api.ClusterLink | None = None
    #: the DAV sides of the groupware applications (``sogo``, ``webtop``), by application
    dav: dict[str, groupware.DavLink] = field(default_factory=dict)

    @property
    def state_dir(self) -> Path:
        return self.target.root / ".mailmigrate"

    def files_manifest(self, app: str) -> Path:
        """The target files the copy wrote (:class:`mailmigrate.sync.maildir_clone.Manifest`)."""
        return self.state_dir / f"ns7-{app}-files.sqlite"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "ns8-migration.log"

    @property
    def push_secret(self) -> Path:
        """The NS8 import endpoint's password between runs (0600; NethServer keeps it in ``bind.env``)."""
        return self.state_dir / "ns8-mail-import.secret"


@dataclass
class StepResult:
    app: str
    action: str
    #: whether the step did its work (the application may move on); errors of single items may still be in
    #: the log (a broken address is reported, not fatal)
    done: bool
    log: EventLog
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.log.errors


# -- what a step keeps between actions ------------------------------------------------------------------


@dataclass
class AppRecord:
    """What a step reads and keeps of its application between actions, given by the one who runs it (the
    workflow, which holds the application's state, lock and history):

    * ``data`` – the step's own progress: the directories start created (so that abort removes only those),
      the NS8 module and import endpoint it opened, the account provider's copied entries;
    * ``save`` – keeps ``data`` now (a step saves before it writes where abort must look);
    * ``others`` – the other applications' migration, for the account provider's rule that it goes last.
    """

    app: str
    data: dict
    save: Callable[[], None] = lambda: None
    others: UnitsView | None = None


# -- mail application: who moves where -----------------------------------------------------------------


def mail_users(p: Project) -> tuple[dict[str, str], list[Note]]:
    """NS7 mail directory name (``u@domain``) -> NS8 user (``u``); two NS7 users with one local part
    cannot both become ``u``: the second is an error and is not migrated."""
    out: dict[str, str] = {}
    notes = []
    taken: dict[str, str] = {}
    vmail = p.source.vmail
    if not vmail.is_dir():
        raise ConfigError(f"{vmail}: no NethServer 7 mail directory under the source root")
    for d in sorted(vmail.iterdir()):
        if not (d / "Maildir").is_dir():
            continue
        new = ns8.ns8_user(d.name)
        if new in taken:
            notes.append(Note(ERROR, f"{d.name} and {taken[new]} both become {new} on NS8; {d.name} not migrated"))
            continue
        taken[new] = d.name
        out[d.name] = new
    return out, notes


def _ns8_rel(rel: tuple[str, ...]) -> tuple[str, ...]:
    """Paths inside a mail home on NS8: a reader's private index of another user's folders,
    ``Maildir/shared/<owner>@<domain>``, loses the domain as the owner's name does (ns8-mail
    ``35migrate_maildirs``), or the reader's read state of that user's folders would be lost."""
    if len(rel) >= 3 and rel[:2] == ("Maildir", "shared"):
        return rel[:2] + (ns8.ns8_user(rel[2]),) + rel[3:]
    return rel


def _sync_all(p: Project, log: EventLog, action: str, rec: "AppRecord") -> dict:
    """Every NS7 mail home copied file by file (:mod:`mailmigrate.sync.maildir_clone`): UIDs, UIDVALIDITY, keywords, POP3
    UIDLs and each reader's private flags of shared and public folders stay what clients cached."""
    users, notes = mail_users(p)
    log.notes(action, notes)
    created = rec.data.setdefault("created", [])
    totals = {"copied": 0, "failed": 0, "users": 0}
    with maildir_clone.Manifest(p.files_manifest(rec.app)) as manifest:
        for old, new in users.items():
            home = p.target.mail_home(new)
            if not home.exists():
                rel = str(home.relative_to(p.target.root))
                if rel not in created:
                    created.append(rel)
                    rec.save()  # before anything is written there, so abort knows
            # ACL files and sieve scripts: written converted by finish, never as NS7 had them; subscriptions
            # converted at every copy (small, and what a client lists at once)
            try:
                res = maildir_clone.copy_home(p.source.vmail / old, home, manifest, home=old, rel_map=_ns8_rel,
                                              exclude=("sieve",), skip_files=(ACL_FILE, SUBSCRIPTIONS))
                _copy_subscriptions(p.source.vmail / old / "Maildir", home / "Maildir")
            except OSError as e:  # this mailbox's error; the others still move
                log.error(action, f"{old}: mailbox not copied: {e}")
                totals["failed"] += 1
                continue
            totals["copied"] += res.copied
            totals["failed"] += len(res.problems)
            totals["users"] += 1
            for link in res.links:
                log.warning(action, f"{old}: symlink {link} not followed, not copied")
            for pr in res.problems:
                log.error(action, f"{old}: {pr}")
    log.info(action, f"{totals['users']} mailbox(es), {totals['copied']} message(s) copied with their UIDs, "
                     f"{totals['failed']} failed")
    return totals


SUBSCRIPTIONS = "subscriptions"


def _copy_subscriptions(src_md: Path, dst_md: Path) -> None:
    src = src_md / SUBSCRIPTIONS
    if src.is_symlink() or not src.is_file() or not dst_md.is_dir():
        return
    data = ns8.convert_subscriptions(src.read_bytes())
    dst = dst_md / SUBSCRIPTIONS
    if not dst.is_file() or dst.read_bytes() != data:
        _write_converted(dst, data)


def _run(p: Project, rec: AppRecord, action: str, body) -> StepResult:
    """``body(rec, log)`` -> (done, details); an error it raises is logged and ends the step not done.  The
    step's data is saved whatever happened, as far as it got."""
    log = EventLog(f"ns7-{rec.app}-{action}", p.log_path)
    try:
        done, details = body(rec, log)
    except BaseException as e:
        log.error(action, f"stopped: {e}")
        rec.save()
        if isinstance(e, (MailmigrateError, OSError)):
            return StepResult(rec.app, action, False, log)
        raise
    rec.save()
    return StepResult(rec.app, action, done, log, details)


# -- the steps -------------------------------------------------------------------------------------------


def _dav(p: Project, app: str) -> tuple[groupware.DavApp, groupware.DavLink]:
    link = p.dav.get(app)
    if link is None:
        raise ConfigError(f"{app}: give NS7's and NS8's DAV URLs (--dav-source and --dav-target, or dav_source "
                          f"and dav_target in the project's [nethserver.{app}])")
    return groupware.DAV_APPS[app], link


def _dav_users(p: Project, log: EventLog, action: str) -> list[str]:
    """The NS7 users whose groupware moves: every mail user (SOGo and WebTop serve the mail users)."""
    users, notes = mail_users(p)
    log.notes(action, notes)
    return [u for u in users if "@" in u]


def _link(p: Project) -> provider.ProviderLink:
    if p.provider is None:
        raise ConfigError("account-provider: give the NS7 and NS8 directories (--source-ldap and --target-ldap, "
                          "or source_ldap and target_ldap in the project)")
    return p.provider


def start(p: Project, rec: AppRecord) -> StepResult:
    app = rec.app

    def body(rec, log):
        if app == PROVIDER_APP:
            provider.check_source(_db(p, "configuration"))
            return True, provider.start(_link(p), rec.data, p.state_dir, log)
        if app in groupware.DAV_APPS:
            spec, link = _dav(p, app)
            groupware.check_source(p.source.db("configuration"), spec)
            p.state_dir.mkdir(parents=True, exist_ok=True)
            return True, groupware.copy_all(p.state_dir, spec, link, _dav_users(p, log, "start"), log, "start")
        api = ns8_api.ClusterAPI(p.ns8) if p.ns8 is not None else None
        if api is not None:  # the seed's start installs the application on NS8 first
            _endpoint(p, rec, api, log, "start")
        p.target.vmail.mkdir(parents=True, exist_ok=True)
        totals = _sync_all(p, log, "start", rec)
        _push_step(p, rec, api, log, "start")
        return True, totals

    return _run(p, rec, "start", body)


def sync(p: Project, rec: AppRecord) -> StepResult:
    app = rec.app

    def body(rec, log):
        if app == PROVIDER_APP:
            return True, provider.sync(_link(p), rec.data, rec.save, log, "sync")
        if app in groupware.DAV_APPS:
            spec, link = _dav(p, app)
            return True, groupware.copy_all(p.state_dir, spec, link, _dav_users(p, log, "sync"), log, "sync")
        totals = _sync_all(p, log, "sync", rec)
        _push_step(p, rec, ns8_api.ClusterAPI(p.ns8) if p.ns8 is not None else None, log, "sync")
        return True, totals

    return _run(p, rec, "sync", body)


# -- NS8's import endpoint (:mod:`.ns8_push`) --------------------------------------------------------------


def _endpoint(p: Project, rec: "AppRecord", api: ns8_api.ClusterAPI, log: EventLog,
              action: str) -> tuple[ns8_push.Endpoint, ns8_push.Rsync]:
    """The mail module the mail is imported into and its endpoint: the one this migration opened, or a new
    one (the cluster's ``import-module`` always creates a module, as NethServer's own migration does)."""
    a = rec.data
    imp = a.get("ns8_import")
    if imp is None:
        ep, secret = ns8_push.open_endpoint(api, log, action)
        ns8_push.save_secret(p.push_secret, secret)
        a["ns8_module"] = ep.module_id  # abort removes only a module this migration created
        a["ns8_import"] = {"endpoint": ep.as_dict(), "terminated": False, "imported": False}
        rec.save()
        rs = ns8_push.Rsync(ep, secret)
        ns8_push.wait_listening(rs, 120)
        return ep, rs
    ep = ns8_push.Endpoint.from_dict(imp["endpoint"])
    return ep, ns8_push.Rsync(ep, ns8_push.load_secret(p.push_secret) if not imp["imported"] else Secret(""))


def _push_step(p: Project, rec: "AppRecord", api: ns8_api.ClusterAPI | None, log: EventLog, action: str) -> None:
    """start and sync: the staging tree and the files NS8's import reads, sent to the endpoint; an error is
    this run's (the next sync sends again)."""
    imp = rec.data.get("ns8_import")
    if api is None:
        if imp is not None and not imp["imported"]:
            log.error(action, "start opened NS8's import endpoint: give --ns8-url (and its password) to send "
                              "the mail there")
        return
    try:
        ep, rs = _endpoint(p, rec, api, log, action)
        if rec.data["ns8_import"]["imported"]:
            log.warning(action, f"NS8 module {ep.module_id} has imported the mail already; nothing sent")
            return
        _relisten(p, rec, rs, api, log, action)
        ns8_push.push(p.source, p.target.vmail, rs, log, action, scratch=p.state_dir)
    except MailmigrateError as e:
        log.error(action, str(e))


def _relisten(p: Project, rec: "AppRecord", rs: ns8_push.Rsync, api: ns8_api.ClusterAPI, log: EventLog,
              action: str) -> None:
    task = ns8_push.ensure_listening(rs, api, log, action)
    if task:
        rec.data["ns8_import"]["endpoint"]["task"] = rs.ep.task = task
        rec.save()


def _finish_push(p: Project, rec: "AppRecord", api: ns8_api.ClusterAPI, log: EventLog, copied: int) -> str:
    """The final push, NS8 told to import (``terminate``) and waited for; returns the mail module's id.
    A finish repeated after NS8 imported sends nothing (the endpoint is closed): mail the final copy
    still found on NS7 then is an ERROR, at this finish and every later one (the count is kept in the
    state), as NS8 does not have it."""
    ep, rs = _endpoint(p, rec, api, log, "finish")
    imp = rec.data["ns8_import"]
    if imp["imported"]:
        if copied:
            imp["late"] = imp.get("late", 0) + copied
            rec.save()
        if imp.get("late"):
            log.error("finish", f"{imp['late']} message file(s) copied from NS7 after NS8 module {ep.module_id} "
                                "imported the mail: NS8's import endpoint is closed, they are only in the "
                                "staging tree (stop NS7's mail services; abort and start again)")
        return ep.module_id
    if not imp["terminated"]:
        try:
            _relisten(p, rec, rs, api, log, "finish")
        except ns8_push.AlreadyImported:
            # the endpoint was closed and NS8 imported, but the run that closed it stopped before noting it
            log.warning("finish", f"NS8 module {ep.module_id} has imported the mail already (a finish stopped "
                                  "after telling it to)")
            imp.update(terminated=True, imported=True)
            rec.save()
            p.push_secret.unlink(missing_ok=True)
            return _finish_push(p, rec, api, log, copied)
        ns8_push.push(p.source, p.target.vmail, rs, log, "finish", scratch=p.state_dir)
        left = ns8_push.pending(p.source, p.target.vmail, rs)
        if left:
            raise ns8_push.PushError(f"after the final push NS8 still lacks {len(left)} item(s) of the staging "
                                     f"tree: {'; '.join(left[:5])}")
        log.info("finish", "NS8's dovecot-data volume holds the staging tree (rsync has nothing left to send)")
        ns8_push.commit(rs, log, "finish")
        imp["terminated"] = True
        rec.save()
    ns8_push.wait_import(api, ep, log, "finish")
    imp["imported"] = True
    rec.save()
    p.push_secret.unlink(missing_ok=True)
    return ep.module_id


def finish_blockers(others: UnitsView, app: str, apps: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Why ``app`` may not finish yet, one sentence per application in the way: the account provider goes
    last, after every other application (``apps``: the migration's applications, default all) is migrated
    or skipped."""
    if app != PROVIDER_APP:
        return []
    return [f"{other} is {others.state(other)}" for other in apps or APPS
            if other != PROVIDER_APP and not others.settled(other)]


def skip(p: Project, rec: AppRecord) -> StepResult:
    log = EventLog(f"ns7-{rec.app}-skip", p.log_path)
    log.info("skip", f"{rec.app} stays on NethServer 7")
    return StepResult(rec.app, "skip", True, log)


def abort(p: Project, rec: AppRecord) -> StepResult:
    """Remove what start/sync made on NS8: the messages and folders the engine created, then the mail
    directories start created when nothing else is left in them.  NS7 is not touched."""

    app = rec.app

    def body(rec, log):
        if app == PROVIDER_APP:
            n = provider.abort(_link(p), rec.data, rec.save, log)
            return True, {"removed": n}
        if app in groupware.DAV_APPS:
            spec, link = _dav(p, app)
            n = groupware.abort_all(p.state_dir, spec, link, _dav_users(p, log, "abort"), log)
            if log.errors:
                return False, {"removed": n}  # what could not be reached is still there: abort again
            groupware.state_path(p.state_dir, app).unlink(missing_ok=True)
            log.info("abort", f"{app}: {n} item(s) removed from NS8; NS7 unchanged")
            return True, {"removed": n}
        users, _ = mail_users(p)
        removed = 0
        with maildir_clone.Manifest(p.files_manifest(app)) as manifest:
            for old, new in users.items():
                removed += maildir_clone.remove_copied(p.target.mail_home(new), manifest, home=old)
        a = rec.data
        for rel in list(a.get("created", [])):
            d = p.target.root / rel
            if d.exists() and _holds_mail(d):
                log.warning("abort", f"{rel} holds mail mailmigrate did not copy; kept")
                continue
            shutil.rmtree(d, ignore_errors=True)
            a["created"].remove(rel)
        p.files_manifest(app).unlink(missing_ok=True)
        # what a finish that stopped on an error wrote: the settings, the fetch tasks, the converted shared
        # index, DKIM and bayes files
        for f in [p.target.settings, p.target.fetch_tasks, p.target.shared_index,
                  *(p.target.root / d for d in _CARRIED_FILES.values())]:
            f.unlink(missing_ok=True)
        mid = a.get("ns8_module")
        if mid:
            if p.ns8 is None:
                log.warning("abort", f"NS8 module {mid} was created by start: remove it on NS8 (no --ns8-url given)")
            else:
                ns8_api.remove_module(ns8_api.ClusterAPI(p.ns8), mid, log)
                a.pop("ns8_module")
                a.pop("ns8_import", None)  # its endpoint went with the module
                p.push_secret.unlink(missing_ok=True)
        log.info("abort", f"{removed} file(s) removed from NS8; NS7 unchanged")
        return True, {"removed": removed}

    return _run(p, rec, "abort", body)


def _holds_mail(d: Path) -> bool:
    return any(f.is_file() for sub in ("cur", "new") for f in d.rglob(f"{sub}/*"))


def finish(p: Project, rec: AppRecord, *, disable_source: bool = True,
           dovecot: quota_mod.Doveadm | None = None, apps: list[str] | tuple[str, ...] | None = None) -> StepResult:
    """Final sync, verification of every mailbox, conversions, quota recalculation, and only then the NS7
    application stopped.  ``dovecot``: the target Dovecot, to recalculate and check its quota with doveadm.
    The account provider: refused (IllegalStep) while :func:`finish_blockers` names anything; then a final
    copy, the checklist, and only then NS7's provider disabled."""
    app = rec.app
    blockers = finish_blockers(rec.others, app, apps) if rec.others is not None else []
    if blockers:
        raise IllegalStep(f"{app} is migrated last: {'; '.join(blockers)} (finish or skip it first)")
    if app == PROVIDER_APP:
        return _run(p, rec, "finish", lambda rec, log: _finish_provider(p, rec, log, disable_source, apps))
    if app in groupware.DAV_APPS:
        return _run(p, rec, "finish", lambda rec, log: _finish_groupware(p, app, log, disable_source))

    def body(rec, log):
        totals = _sync_all(p, log, "finish", rec)
        users, _ = mail_users(p)
        bad = []
        for old, new in users.items():
            problems = maildir_clone.verify_home(p.source.vmail / old, p.target.mail_home(new), rel_map=_ns8_rel)
            if problems:
                bad.append(old)
                log.error("finish", f"{old}: verification failed: {'; '.join(problems)}")
        if bad or log.errors:
            log.error("finish", "final sync not verified: conversions not run, NS7 left running; run finish again")
            return False, totals
        log.info("finish", f"final sync verified for {len(users)} mailbox(es): every message file, UID, "
                           "UIDVALIDITY, UIDNEXT, POP3 UIDL and keyword as on NS7")
        details = convert_mail(p, users, log, dovecot=dovecot)
        if p.ns8 is None and rec.data.get("ns8_import", {}).get("imported") is False:
            log.error("finish", "start opened NS8's import endpoint: give --ns8-url (and its password) so that "
                                "finish sends the mail there and has NS8 import it")
        if p.ns8 is not None and not log.errors:
            try:
                api = ns8_api.ClusterAPI(p.ns8)
                mid = _finish_push(p, rec, api, log, totals["copied"])
                details["ns8"] = ns8_api.apply(api, json.loads(p.target.settings.read_text()), log, module_id=mid)
                tasks = json.loads(p.target.fetch_tasks.read_text()) if p.target.fetch_tasks.is_file() else []
                details["ns8"]["fetch_tasks"] = ns8_api.apply_fetch_tasks(api, tasks, log)
            except MailmigrateError as e:
                log.error("finish", str(e))
        if log.errors:
            # an error raised or reported during the conversions: NS8 is not what NS7 was, so NS7 keeps
            # serving and the unit stays migrating; the conversions read NS7 afresh, so finish can be rerun
            log.error("finish", "conversions reported errors: NS7 left running, mail stays migrating; "
                                "fix and run finish again")
            return False, {**totals, **details}
        if disable_source:
            _disable_source(p, log)
        else:
            log.warning("finish", "NS7 mail application left running (--keep-source)")
        return True, {**totals, **details}

    return _run(p, rec, "finish", body)


def _finish_groupware(p: Project, app: str, log: EventLog, disable_source: bool) -> tuple[bool, dict]:
    """Final copy, every item verified by UID, what DAV does not carry listed, and only then NS7's
    application disabled; any error leaves it running and the application migrating."""
    spec, link = _dav(p, app)
    users = _dav_users(p, log, "finish")
    totals = groupware.copy_all(p.state_dir, spec, link, users, log, "finish")
    if log.errors or not groupware.verify_all(p.state_dir, spec, link, users, log):
        log.error("finish", f"{app}: final copy not verified: NS7's {app} left running; run finish again")
        return False, totals
    log.info("finish", f"{app}: every calendar, task and contact of {len(users)} user(s) verified on NS8 by UID")
    groupware.not_carried(spec, log)
    if disable_source:
        groupware.disable_source(p.source.db("configuration"), spec, log)
    else:
        log.warning("finish", f"NS7 {app} left running (--keep-source)")
    return True, totals


def _finish_provider(p: Project, rec: AppRecord, log: EventLog, disable_source: bool, apps) -> tuple[bool, dict]:
    link = _link(p)
    details = provider.sync(link, rec.data, rec.save, log, "finish")
    if log.errors or not provider.verify(link, p.state_dir, log):
        log.error("finish", "NS8's directory not verified: NS7's provider left running; fix and run finish again")
        return False, details
    skipped = [a for a in (apps or APPS) if a != PROVIDER_APP and rec.others is not None
               and rec.others.state(a) == "skipped"]
    if skipped:
        log.warning("finish", f"skipped on NS7: {', '.join(skipped)}; they lose NS7's provider: point them at "
                              "NS8's as a remote provider")
    if disable_source:
        provider.disable_source(p.source.db("configuration"), log)
    else:
        log.warning("finish", "NS7 account provider left running (--keep-source)")
    return True, details


# -- conversions at finish -------------------------------------------------------------------------------


def convert_mail(p: Project, users: dict[str, str], log: EventLog, *,
                 dovecot: quota_mod.Doveadm | None = None) -> dict:
    acl_files = _convert_acls(p, users, log)
    _convert_shared_index(p, log)
    sieve = _convert_sieve(p, users, log)
    quota_on = _props(_db(p, "configuration"), "dovecot").get("QuotaStatus") == "enabled"
    usage, recalculated = _recalc_quota(p, users, log, dovecot) if quota_on else ({}, False)
    settings = _settings(p, users, log, usage=usage, recalculated=recalculated)
    tasks = _fetch_tasks(p, log)
    cfg = _db(p, "configuration")
    custom = sorted(str(f.relative_to(p.source.custom_templates)) for f in p.source.custom_templates.rglob("*")
                    if f.is_file()) if p.source.custom_templates.is_dir() else []
    log.notes("finish", ns8.excluded_configurations(_props(cfg, "postfix"), custom))
    if quota_on and not recalculated:
        log.info("finish", "after import: run 'doveadm quota recalc -A' on NS8 (or give --dovecot-config)")
    log.info("finish", "after import: let the full-text index rebuild")
    return {"acl_files": acl_files, "sieve_files": sieve, "fetch_tasks": len(tasks),
            "relay_rules": len(settings["relay_rules"]), "quota_recalculated": recalculated}


def _db(p: Project, name: str) -> EsmithDb:
    return read_esmith(p.source.db(name)) if p.source.db(name).exists() else EsmithDb()


def _props(db: EsmithDb, key: str) -> dict[str, str]:
    r = db.get(key)
    return dict(r.props) if r is not None else {}


def _convert_acls(p: Project, users: dict[str, str], log: EventLog) -> int:
    n = 0
    for old, new in users.items():
        src_md, dst_md = p.source.vmail / old / "Maildir", p.target.mail_home(new) / "Maildir"
        for _, d in folder_dirs(src_md):
            acl = d / "dovecot-acl"
            if not acl.is_file():
                continue
            text = acl.read_text("utf-8", "surrogateescape")
            out = dst_md / d.relative_to(src_md) / "dovecot-acl"
            out.parent.mkdir(parents=True, exist_ok=True)
            _write_converted(out, ns8.convert_acl(text).encode("utf-8", "surrogateescape"), prefix=out.name + ".")
            dropped = [ln for ln in text.splitlines() if ns8.convert_acl_line(ln) is None]
            if dropped:
                log.info("finish", f"{out.relative_to(p.target.root)}: {len(dropped)} line(s) for user=root dropped")
            n += 1
    log.info("finish", f"{n} IMAP ACL file(s) converted (identifiers without @domain, full rights gain x)")
    return n


def _convert_shared_index(p: Project, log: EventLog) -> None:
    src = p.source.shared_index
    if not src.is_file():
        return
    data, notes = ns8.convert_shared_dict(src.read_bytes())
    log.notes("finish", notes)
    p.target.shared_index.parent.mkdir(parents=True, exist_ok=True)
    _write_converted(p.target.shared_index, data)
    log.info("finish", "shared-mailbox index converted")


def _convert_sieve(p: Project, users: dict[str, str], log: EventLog) -> int:
    n = 0
    for old, new in users.items():
        src_home, dst_home = p.source.vmail / old, p.target.mail_home(new)
        sieve = src_home / "sieve"
        if sieve.is_dir():
            for f in sorted(sieve.rglob("*")):
                if f.is_file() and not f.is_symlink():
                    out = dst_home / f.relative_to(src_home)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    text = ns8.convert_shared_path(f.read_text("utf-8", "surrogateescape"))
                    _write_converted(out, text.encode("utf-8", "surrogateescape"))
                    n += 1
        bad = maildir_clone.link_active_script(src_home, dst_home)
        if bad:
            log.warning("finish", f"{old}: symlink {bad} points out of the home's sieve/; not linked")
    log.info("finish", f"{n} sieve script(s) copied with Shared/<user>/ paths")
    return n


def _write_converted(path: Path, data: bytes, *, prefix: str | None = None) -> None:
    """Dovecot on NS8 may already serve the mailboxes: it reads an ACL, the shared index or a script whole
    or not at all, never half, and after a crash the file is the one finish reported converted.  Mode and
    owner are the messages': private (0600), ours (vmail's when run as vmail)."""
    replace_file(path, data, maildir_clone.FILE_MODE, prefix=prefix, suffix=".tmp", sync_dir=True)
    maildir_clone.take_owner(path, path.parent)


def _private_json(path: Path, obj) -> None:
    """Settings holding connector and relay passwords: 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), 0o600, suffix=".tmp")


def _recalc_quota(p: Project, users: dict[str, str], log: EventLog,
                  dovecot: quota_mod.Doveadm | None) -> tuple[dict[str, quota_mod.Usage], bool]:
    """Per NS8 user: the usage its Maildir holds; stale ``maildirsize`` files removed; with a Dovecot at hand,
    its quota recounted and compared with that usage.  (usage per user, True when Dovecot was recounted and
    agrees for every user)."""
    usage: dict[str, quota_mod.Usage] = {}
    removed = []
    for new in users.values():
        md = p.target.mail_home(new) / "Maildir"
        if quota_mod.remove_maildirsize(md):
            removed.append(new)
        usage[new] = quota_mod.maildir_usage(md)
    if removed:
        log.info("finish", f"stale Maildir++ quota files (maildirsize) removed for {', '.join(removed)}: "
                           "written before the final sync, they no longer match the mail")
    if dovecot is None:
        return usage, False
    try:
        virtual = dovecot.vsizes()
    except MailmigrateError as e:
        log.error("finish", f"quota not recalculated: {e}")
        return usage, False
    agreed, checked = True, 0
    for user, u in usage.items():
        rc, err = dovecot.recalc(user)
        if rc == quota_mod.EX_NOUSER:
            log.warning("finish", f"quota of {user}: not a user of the target Dovecot; not recalculated")
            continue
        rc, got = dovecot.get(user)
        note = f" (recalc: {err})" if err else ""
        if rc != 0:
            agreed = False
            log.error("finish", f"quota of {user}: doveadm quota get failed: {got}{note}")
            continue
        want_kib = u.kib(virtual=virtual)
        if got.storage_kib != want_kib or (got.messages is not None and got.messages != u.messages):
            agreed = False
            log.error("finish", f"quota of {user}: Dovecot counts {got.storage_kib} KiB in {got.messages} "
                                f"message(s), the Maildir holds {want_kib} KiB in {u.messages}{note}")
            continue
        checked += 1
    if agreed:
        log.info("finish", f"quota recalculated by the target Dovecot and checked for {checked} user(s)")
    return usage, agreed


def _settings(p: Project, users: dict[str, str], log: EventLog, *, usage: dict | None = None,
              recalculated: bool = False) -> dict:
    """Everything NS8's mail module must hold, as NethServer's own import would set it
    (:mod:`.ns8_settings`), in one 0600 file: the offline result, and what the verification reads back."""
    settings = settings_data(p, users, log, usage=usage, recalculated=recalculated)
    settings["files"] = _carry_files(p, log)
    _private_json(p.target.settings, settings)
    return settings


def settings_data(p: Project, users: dict[str, str], log: EventLog, *, usage: dict | None = None,
                  recalculated: bool = False) -> dict:
    accounts, cfg = _db(p, "accounts"), _db(p, "configuration")
    dovecot, postfix, rspamd = _props(cfg, "dovecot"), _props(cfg, "postfix"), _props(cfg, "rspamd")
    quota_on = dovecot.get("QuotaStatus") == "enabled"
    acc = ns8s.Accounts.read(accounts, _domain(cfg), users)
    addresses, notes = ns8s.addresses(acc)
    log.notes("finish", notes)
    out_users, disabled, notes = ns8s.user_settings(accounts, acc)
    log.notes("finish", notes)
    groups, notes = ns8s.group_settings(accounts, acc)
    log.notes("finish", notes)
    rules, notes = ns8s.relay_rules(_db(p, "smarthosts"), postfix)
    log.notes("finish", notes)
    doms, notes = ns8s.domains(_db(p, "domains"), postfix, _domain(cfg))
    log.notes("finish", notes)
    filt, notes = ns8s.filter_settings(rspamd, postfix, _props(cfg, "clamd"))
    log.notes("finish", notes)
    settings = {
        "quota_enabled": quota_on,
        "default_quota_mb": ns8.quota_mb(dovecot["QuotaDefaultSize"]) if quota_on and
        dovecot.get("QuotaDefaultSize", "").isdigit() else None,
        "users": out_users,
        "disabled_users": disabled,
        "groups": groups,
        "addresses": addresses,
        "domains": doms,
        "relay_rules": rules,
        "filter": filt,
        "mailbox": ns8s.mailbox_settings(dovecot, rspamd),
        "always_bcc": postfix.get("AlwaysBccAddress") if postfix.get("AlwaysBccStatus") == "enabled" else None,
        # what each NS8 user's quota must show (Maildir contents after the final sync), public folders too
        "quota_usage": {u: v.as_dict() for u, v in (usage or {}).items()},
        "pending": ["doveadm quota recalc -A"] if quota_on and not recalculated else [],
    }
    return settings


# -- finish --dry-run ------------------------------------------------------------------------------------


def finish_plan(p: Project, rec: AppRecord, state: str, allowed: bool, *, disable_source: bool = True) -> dict:
    """Everything ``finish`` would do, computed from NS7 and the NS8 tree as they are, changing nothing:
    the final copy per mailbox, the conversions, the settings (passwords left out), the NS8 API tasks or
    the files of the offline mode, and what is disabled on NS7.  Its notes are those finish would log."""
    log = EventLog("ns7-mail-finish (dry run)")
    users, notes = mail_users(p)
    log.notes("finish", notes)
    copy = {}
    for old, new in users.items():
        src, dst = p.source.vmail / old, p.target.mail_home(new)
        pending = maildir_clone.verify_home(src, dst, rel_map=_ns8_rel) if dst.is_dir() else ["not copied yet"]
        copy[old] = {"ns8_user": new, "differences": pending}
    acl = sum(1 for old in users for _, d in folder_dirs(p.source.vmail / old / "Maildir")
              if (d / "dovecot-acl").is_file())
    sieve = sum(1 for old in users if (p.source.vmail / old / "sieve").is_dir()
                for f in (p.source.vmail / old / "sieve").rglob("*") if f.is_file())
    settings = settings_data(p, users, log)
    for r in settings["relay_rules"]:
        r["password"] = "***" if r["password"] else ""
    return {
        "state": state, "allowed": allowed,
        "final_copy": copy,
        "conversions": {"acl_files": acl, "sieve_files": sieve, "shared_index": p.source.shared_index.is_file(),
                        "carried_files": [k for k in _CARRIED_FILES if (p.source.root / k).is_file()]},
        "settings": settings,
        "ns8": ([f"{q} {a}" for q, a in ns8_api.plan(settings)] if p.ns8 is not None else
                [f"offline: {p.target.settings}", f"offline: {p.target.fetch_tasks}"]),
        "push": _push_plan(p, rec.data),
        "ns7": ["before finish, on NS7: systemctl stop postfix dovecot rspamd (no mail may change during the "
                "final copy; NethServer's own migration stops them there too)"]
               + (["dovecot, postfix, getmail: status=disabled", "signal-event nethserver-mail-server-update"]
                  if disable_source else ["left running (--keep-source)"]),
        "notes": [e.line() for e in log.entries if e.level != "INFO"],
    }


def _push_plan(p: Project, a: dict) -> dict[str, list[str]]:
    """What finish would send to NS8's import endpoint (``rsync --dry-run``: each transfer's itemized
    list, as of the staging tree now; the final copy above adds its own), then the commit."""
    imp = a.get("ns8_import")
    if p.ns8 is None:
        return {"none (offline, no --ns8-url)": [] if imp is None or imp["imported"] else
                ["start opened NS8's import endpoint: finish needs --ns8-url"]}
    if imp is None:
        return {"cluster import-module": ["a new mail module and its import endpoint (rsync daemon)",
                                          f"then: configuration, every mail home of {p.target.vmail}, DKIM key, "
                                          "bayes data; terminate; wait for NS8's import"]}
    ep = ns8_push.Endpoint.from_dict(imp["endpoint"])
    if imp["imported"]:
        return {f"module {ep.module_id}": ["has imported the mail: nothing more is sent"]}
    if imp["terminated"]:
        return {f"module {ep.module_id}": [f"told to import: finish waits for {ep.task}"]}
    try:
        rs = ns8_push.Rsync(ep, ns8_push.load_secret(p.push_secret))
        out = ns8_push.push(p.source, p.target.vmail, rs, EventLog("dry run"), "finish", dry_run=True,
                            scratch=p.state_dir if p.state_dir.is_dir() else None)
    except MailmigrateError as e:
        return {f"module {ep.module_id} at {ep.address}:{ep.port}": [f"cannot list the push: {e}"]}
    out["then"] = [f"rsync {ep.address}:{ep.port}/terminate: NS8 module {ep.module_id} imports the mail",
                   f"wait for {ep.task}"]
    return out


def describe_plan(plan: dict) -> str:
    lines = [f"mail is {plan['state']}: finish {'would' if plan['allowed'] else 'may not'} run now", "final copy:"]
    for old, c in plan["final_copy"].items():
        lines.append(f"  {old} -> {c['ns8_user']}: " + ("; ".join(c["differences"]) or "up to date"))
    cv = plan["conversions"]
    lines.append(f"conversions: {cv['acl_files']} ACL file(s), {cv['sieve_files']} sieve script(s), "
                 f"shared index {'yes' if cv['shared_index'] else 'no'}, files {', '.join(cv['carried_files']) or '-'}")
    s = plan["settings"]
    lines.append(f"settings: {len(s['addresses'])} address(es), {len(s['users'])} user(s) "
                 f"({', '.join(s['disabled_users'])} disabled), {len(s['groups'])} group(s), "
                 f"{len(s['relay_rules'])} relay rule(s), {len(s['domains'])} domain(s)")
    for a in s["addresses"]:
        lines.append(f"  {a['address']} -> {', '.join(a['destinations']) or '(none)'}")
    lines.append("push to NS8's import endpoint:")
    for what, items in plan["push"].items():
        count = f": {len(items)} item(s)" if items else ": nothing"
        lines.append(f"  {what}{'' if what.startswith('none') else count}")
        lines += [f"    {x}" for x in items[:30]] + ([f"    ... {len(items) - 30} more"] if len(items) > 30 else [])
    lines.append("NS8: " + "; ".join(plan["ns8"]))
    lines.append("NS7: " + "; ".join(plan["ns7"]))
    lines += plan["notes"]
    return "\n".join(lines)


#: files NS8's migration sends besides the mailboxes (nethserver-ns8-migration ``apps/nethserver-mail/migrate``):
#: the DKIM key pair, and rspamd's Redis dump (bayes data, fuzzy hashes) renamed as NS8's volume expects it
_CARRIED_FILES = {
    "etc/opendkim/keys/default.private": "dkim/default.key",
    "etc/opendkim/keys/default.txt": "dkim/default.txt",
    "var/lib/redis/rspamd/dump.rdb": "rspamd-redis/persistent.rdb",
}


def _carry_files(p: Project, log: EventLog) -> dict[str, str]:
    done = {}
    for src_rel, dst_rel in _CARRIED_FILES.items():
        src = p.source.root / src_rel
        if src.is_symlink() or not src.is_file():
            continue
        dst = p.target.root / dst_rel
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_file(dst, src.read_bytes(), 0o600, suffix=".tmp", sync_dir=True)
        done[src_rel] = dst_rel
        log.info("finish", f"{src_rel} -> {dst_rel} (0600)")
    return done


def _domain(cfg: EsmithDb) -> str:
    r = cfg.get("DomainName")
    return r.type if r is not None else "localdomain"


def _fetch_tasks(p: Project, log: EventLog) -> list[ns8.FetchTask]:
    tasks = []
    for key, rec in _db(p, "getmail").items():
        if rec.type != "getmail":
            continue
        t, notes = ns8.getmail_to_task(key, rec.props)
        log.notes("finish", notes)
        tasks.append(t)
    if tasks:
        _private_json(p.target.fetch_tasks, [t.as_dict(with_password=True) for t in tasks])
    return tasks


def _disable_source(p: Project, log: EventLog) -> None:
    """Stop the NS7 mail application: its services disabled in the configuration db.  On a live NS7 the
    ``nethserver-mail-server-update`` event must then apply it (listed as pending)."""
    path = p.source.db("configuration")
    cfg = read_esmith(path)
    for svc in ("dovecot", "postfix", "getmail"):
        rec = cfg.get(svc)
        if rec is None:
            continue
        rec.props["status"] = "disabled"
    write_esmith(path, cfg)
    log.info("finish", "NS7 mail application disabled (dovecot, postfix, getmail status=disabled); on the NS7 "
                       "host run: signal-event nethserver-mail-server-update")
