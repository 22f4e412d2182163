"""NethServer 7 -> 8 as a project path: the units are NS7 applications (``mail``, ``sogo``, ``webtop``,
``account-provider``), each action one step of :mod:`.ns8_steps`.

The workflow holds each application's state, lock and history; the steps keep only their progress data (what
start created, the NS8 module and import endpoint, the provider's copied entries) in the unit's metadata under
``steps``.  ``mailmigrate ns7`` drives the same plug-in with settings from its command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ..base import MigrationPath, Outcome, Recorder, UnitInfo, UnitsView
from ..registry import register
from . import ns8_steps as steps

#: the unit's metadata key holding the steps' progress data
STEPS_KEY = "steps"
#: the path's own state file of earlier versions, in the NS8 tree's state directory
FORMER_STATE = "ns7-migration.json"
_DAV_KEYS = {"dav_source", "dav_target", "dav_source_user", "dav_target_user", "dav_source_password_file",
             "dav_target_password_file", "dav_insecure"}


@dataclass
class DavSettings:
    """[nethserver.sogo] / [nethserver.webtop]: the application's DAV sides."""

    dav_source: str
    dav_target: str
    dav_source_user: str | None = None
    dav_target_user: str | None = None
    dav_source_password_file: str | None = None
    dav_target_password_file: str | None = None
    dav_insecure: bool = False


@dataclass
class NethServerSettings:
    """[nethserver]: the NS7 tree, the NS8 staging tree, the applications, and how to reach NS8."""

    source_root: str
    root: str
    applications: list[str] = field(default_factory=lambda: ["mail"])
    keep_source: bool = False
    #: the NS8 Dovecot, for the quota recalculation at finish
    dovecot_config: str | None = None
    doveadm: str | None = None
    source_ldap: str | None = None
    target_ldap: str | None = None
    source_ldap_password_file: str | None = None
    target_ldap_password_file: str | None = None
    ns8_url: str | None = None
    ns8_user: str | None = None
    ns8_password_file: str | None = None
    ns8_cafile: str | None = None
    ns8_insecure: bool = False
    ns8_node: int | None = None
    dav: dict[str, DavSettings] = field(default_factory=dict)


@register
class NethServerPath(MigrationPath):
    name = "nethserver7"
    section = "nethserver"
    uses_stores = False

    def __init__(self, project, settings: NethServerSettings, tree: steps.Project | None = None, *,
                 dovecot=None):
        """``tree``: the steps' project as the ``ns7`` command builds it from its options (default: from the
        settings); ``dovecot``: the NS8 Dovecot for finish's quota check (default: from the settings)."""
        super().__init__(project, settings)
        self._tree = tree
        self._dovecot = dovecot

    @classmethod
    def parse_settings(cls, project_name: str, data: dict, rel) -> NethServerSettings:
        name = project_name
        ns = dict(data.get("nethserver") or {})
        if "source_root" not in ns or "root" not in ns:
            raise ConfigError(f"project {name}: path nethserver7 needs [nethserver] source_root and root")
        ns["source_root"] = str(rel(ns["source_root"]))
        ns["root"] = str(rel(ns["root"]))
        ns.setdefault("applications", ["mail"])
        ns["keep_source"] = bool(ns.get("keep_source", False))
        if ns.get("dovecot_config"):
            ns["dovecot_config"] = str(rel(ns["dovecot_config"]))
        for k in ("source_ldap_password_file", "target_ldap_password_file", "ns8_password_file", "ns8_cafile"):
            if ns.get(k):
                ns[k] = str(rel(ns[k]))
        dav = {}
        for app in ("sogo", "webtop"):
            if app not in ns:
                continue
            sec = ns.pop(app)
            if not isinstance(sec, dict) or not sec.get("dav_source") or not sec.get("dav_target"):
                raise ConfigError(f"project {name}: [nethserver.{app}] needs dav_source and dav_target")
            unknown = set(sec) - _DAV_KEYS
            if unknown:
                raise ConfigError(f"project {name}: [nethserver.{app}] does not know {', '.join(sorted(unknown))}")
            sec = {**sec, **{k: str(rel(sec[k])) for k in ("dav_source_password_file",
                                                           "dav_target_password_file") if sec.get(k)}}
            sec["dav_insecure"] = bool(sec.get("dav_insecure"))
            dav[app] = DavSettings(**sec)
        known = set(NethServerSettings.__dataclass_fields__) - {"dav"}
        unknown = sorted(set(ns) - known)
        if unknown:
            raise ConfigError(f"project {name}: [nethserver] does not know {', '.join(unknown)}")
        return NethServerSettings(**ns, dav=dav)

    # --- the steps' view of the settings ---------------------------------------------------------
    def tree(self) -> steps.Project:
        if self._tree is None:
            self._tree = self._build_tree()
        return self._tree

    def _build_tree(self) -> steps.Project:
        return steps_project(self.settings)

    def dovecot(self):
        if self._dovecot is None and self.settings.dovecot_config:
            from .quota import Doveadm

            self._dovecot = Doveadm(self.settings.dovecot_config, self.settings.doveadm or "doveadm")
        return self._dovecot

    # --- the interface ----------------------------------------------------------------------------
    def units(self) -> list[UnitInfo]:
        return [UnitInfo(app, "application") for app in self.settings.applications]

    def refusal(self, unit: str, action: str, others: UnitsView) -> str | None:
        """NethServer 7's account provider finishes only after every other application."""
        if unit not in steps.APPS:
            return f"application {unit!r}: mailmigrate migrates {', '.join(steps.APPS)} (others: use NS8's tool)"
        if action != "finish":
            return None
        blockers = steps.finish_blockers(others, unit, self.settings.applications)
        return (f"cannot finish: {unit} is migrated last; {'; '.join(blockers)} (finish or skip it first)"
                if blockers else None)

    def record_for(self, unit: str, record: Recorder) -> steps.AppRecord:
        """The steps' progress data of ``unit``, saved into its metadata; the first time, what an earlier
        version kept of it in its own state file (so that abort still knows what start created)."""
        meta = record.meta()
        data = meta.get(STEPS_KEY)
        if data is None:
            data = former_steps_data(self.tree().state_dir).get(unit, {})
        rec = steps.AppRecord(unit, dict(data), others=record.others)
        rec.save = lambda: record.update_meta({STEPS_KEY: rec.data})
        return rec

    def act(self, unit: str, action: str, record: Recorder) -> Outcome:
        p = self.tree()
        rec = self.record_for(unit, record)
        if action == "finish":
            res = steps.finish(p, rec, disable_source=not self.settings.keep_source, dovecot=self.dovecot(),
                               apps=self.settings.applications)
        elif action in ("start", "sync", "abort", "skip"):
            res = getattr(steps, action)(p, rec)
        else:
            raise ConfigError(f"unknown action {action}")
        for e in res.log.errors:
            record.log("ERROR", e.line())
        for w in res.log.warnings:
            record.log("WARNING", w.line())
        # A step can do its work with per-item errors (a broken address is reported, not fatal): whether it
        # did decides success; the errors stay in the log and the report.
        ok = res.done
        record.update_meta({"last_result": {
            "counters": {"copied": res.details.get("copied", 0), "skipped": 0, "failed": res.details.get("failed", 0)},
            "error": None if ok else f"{action} did not complete",
            "problems": [{"kind": "message", "folder": None, "message": None, "reason": e.line(), "account": unit}
                         for e in res.log.errors]}})
        msg = (f"{action} {'done' if ok else 'not done'}: {len(res.log.errors)} error(s), "
               f"{len(res.log.warnings)} warning(s)"
               + (f"; {', '.join(f'{k} {v}' for k, v in res.details.items())}" if res.details else ""))
        bound = None if not ok or action == "skip" else action != "abort"
        return Outcome(ok, msg, bound, res)


def former_state(state_dir: Path) -> dict[str, dict]:
    """Each application's record in an earlier version's state file (also once renamed ``.adopted``), by
    application; {} without one."""
    import json

    for f in (state_dir / FORMER_STATE, state_dir / (FORMER_STATE + ".adopted")):
        if f.is_file():
            try:
                return json.loads(f.read_text()).get("apps", {})
            except (ValueError, OSError) as e:
                raise ConfigError(f"{f}: cannot read the former migration state ({e}); it was left as it is") \
                    from None
    return {}


def former_steps_data(state_dir: Path) -> dict[str, dict]:
    """The steps' data of each application in an earlier version's state file (its states, lock and history
    are the workflow's now)."""
    return {app: {k: v for k, v in a.items() if k not in ("state", "lock", "resume", "history")}
            for app, a in former_state(state_dir).items()}


def steps_project(cfg: NethServerSettings) -> steps.Project:
    """The steps' project for these settings, with each secret read from its named source: one construction
    for a project's [nethserver] section and for the ``ns7`` command's options."""
    from ... import credentials
    from .layout import NethServerTree, NS8MailTree
    from .ns7_groupware import DavLink
    from .ns8_provider import ProviderLink

    link = None
    if cfg.source_ldap and cfg.target_ldap:
        link = ProviderLink(cfg.source_ldap, cfg.target_ldap, credentials.NS7_LDAP.read(cfg.source_ldap_password_file),
                            credentials.NS8_LDAP.read(cfg.target_ldap_password_file))
    ns8 = None
    if cfg.ns8_url:  # NethServer 8's cluster API: finish applies the settings there
        from .ns8_api import link_from

        ns8 = link_from(cfg.ns8_url, cfg.ns8_user or "admin", credentials.NS8_ADMIN.read(cfg.ns8_password_file),
                        insecure=cfg.ns8_insecure, cafile=cfg.ns8_cafile, node=int(cfg.ns8_node or 1))
    p = steps.Project(NethServerTree(Path(cfg.source_root)), NS8MailTree(Path(cfg.root)), link, ns8)
    for app, sec in cfg.dav.items():
        p.dav[app] = DavLink(sec.dav_source, sec.dav_target, sec.dav_source_user, sec.dav_target_user,
                             credentials.NS7_DAV.read(sec.dav_source_password_file),
                             credentials.NS8_DAV.read(sec.dav_target_password_file), insecure=sec.dav_insecure)
    return p
