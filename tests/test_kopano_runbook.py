"""``kopano migrate`` / ``kopano upgrade``: the seeds' whole procedure as one plan, on a copy of a system.

The system is a directory tree holding Zarafa 7.2's configuration as shipped with an administrator's edits
(tests/test_kopano_real_config.py: LDAP plugin, hosted mode, TLS listener, database password), an empty
/etc/kopano (Kopano >= 8.5 ships none), attachments in files_v1 layout and init scripts of the installed
optional daemons.  The directory is a real slapd configuration loaded with the sample Zarafa-schema data and
the database a real MariaDB database: slapcat, slapadd, slapindex and mariadb-dump run for real through
the recorder; service commands, package commands and kopano-server are only recorded (a kopano-server
"start" writes its log and pid file the way the daemon would, via a hook).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers.slapd import SlapdServer  # noqa: E402
from test_kopano_real_config import ZARAFA_LDAP, ZARAFA_SERVER  # noqa: E402

from mailmigrate.errors import ConfigError  # noqa: E402
from mailmigrate.formats.ldif import dump_ldif, parse_ldif  # noqa: E402
from mailmigrate.paths.kopano import cfgfile  # noqa: E402
from mailmigrate.paths.kopano.runbook import Runbook, RunbookSettings  # noqa: E402
from mailmigrate.paths.kopano.services import Recorder, SysV  # noqa: E402
from samples import zarafa_sample  # noqa: E402

SCHEMAS = Path(__file__).resolve().parents[1] / "src" / "mailmigrate" / "paths" / "kopano" / "schema"
BASE = "dc=example,dc=com"
REAL = frozenset({"slapcat", "slapadd", "slapindex", "mariadb-dump", "mysqldump", "kill"})
VOLATILE = {"entrycsn", "modifytimestamp", "createtimestamp", "entryuuid", "creatorsname", "modifiersname"}


def _mariadb():
    import pymysql

    try:
        return pymysql.connect(host="127.0.0.1", user="root", password="", autocommit=True)
    except pymysql.err.OperationalError as e:
        pytest.skip(f"needs MariaDB on 127.0.0.1:3306 as root: {e}")


def _content(iid: int) -> bytes:
    """The same attachment on every copy of the system, so two runs' results can be compared."""
    return bytes((iid * 7 + i * 13) % 256 for i in range(100 + iid))


class System:
    """A copy of a Zarafa (or Kopano) host under ``base``, with its directory and its database."""

    def __init__(self, base: Path, *, kind: str = "migrate", storage: str = "files", gateway: bool = True,
                 ldap: bool = True, db: bool = True):
        self.base, self.kind = base, kind
        self.root = base / "sys"
        self.work = base / "work"
        self.procs: list[subprocess.Popen] = []
        self.log_lines = ["Mon Jan  1 10:00:00 2024: [info   ] Starting kopano-server\n"]
        if kind == "migrate":
            etc = self.root / "etc" / "zarafa"
            etc.mkdir(parents=True)
            server = ZARAFA_SERVER.replace("attachment_storage\t= files", f"attachment_storage\t= {storage}")
            (etc / "server.cfg").write_text(server)
            (etc / "ldap.cfg").write_text(ZARAFA_LDAP)
            (self.root / "etc" / "kopano").mkdir(parents=True)  # Kopano >= 8.5: nothing shipped there
            att = self.root / "var/lib/zarafa/attachments"
            old = "zarafa"
        else:
            etc = self.root / "etc" / "kopano"
            etc.mkdir(parents=True)
            (etc / "server.cfg").write_text(f"mysql_database = kopano\nattachment_storage = {storage}\n"
                                            "attachment_path = /var/lib/kopano/attachments\nuser_plugin = db\n")
            att = self.root / "var/lib/kopano/attachments"
            old = "kopano"
        self.attachments = {}
        if storage == "files":
            for iid in (7, 44, 1234):
                p = att / str(iid % 10) / str((iid // 10) % 20) / str(iid)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(_content(iid))
                self.attachments[iid] = p.read_bytes()
        initd = self.root / "etc" / "init.d"
        initd.mkdir(parents=True)
        for name in ["dagent"] + (["gateway"] if gateway else []):
            for prefix in {old, "kopano"}:
                (initd / f"{prefix}-{name}").write_text("#!/bin/sh\n")
        (self.root / "var/log/kopano").mkdir(parents=True)
        (self.root / "var/log/kopano/server.log").write_text(
            "Mon Jan  1 09:00:00 2024: [error  ] an old error, before this upgrade\n")
        (self.root / "var/run/kopano").mkdir(parents=True)
        self.database = None
        if db:
            conn = _mariadb()
            self.database = "mm_rb_" + secrets.token_hex(5)
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.database}")
                cur.execute(f"CREATE TABLE {self.database}.lob (instanceid INT UNSIGNED NOT NULL, chunkid SMALLINT "
                            "UNSIGNED NOT NULL, tag INT UNSIGNED NOT NULL, val_binary LONGBLOB, "
                            "PRIMARY KEY (instanceid, tag, chunkid))")
                if storage == "database":
                    for iid in (7, 44, 1234):
                        data = _content(iid)
                        cur.execute(f"INSERT INTO {self.database}.lob VALUES (%s, 0, 0, %s)", (iid, data))
                        self.attachments[iid] = data
            conn.close()
        self.slapd = None
        if ldap:
            self.slapd = SlapdServer(base / "ldap", BASE, schemas=[SCHEMAS / "zarafa.schema"])
            self.slapd.build()
            data = [e for e in parse_ldif((zarafa_sample(base) / "slapcat.ldif").read_bytes()) if e.dn != BASE]
            (base / "load.ldif").write_bytes(dump_ldif(data))
            subprocess.run(["slapadd", "-n1", "-F", str(self.slapd.root / "slapd.d"), "-l", str(base / "load.ldif")],
                           check=True, capture_output=True)

    def settings(self, **kw) -> RunbookSettings:
        args = dict(root=self.root, database=self.database, run_packages=True, distro="debian",
                    from_version="7.2" if self.kind == "migrate" else "8.1")
        if self.slapd is not None:
            args.update(ldap="offline", ldap_config_dir=self.slapd.root / "slapd.d",
                        ldap_data_dir=self.slapd.root / "data")
        args.update(kw)
        return RunbookSettings(self.kind, self.work, **args)

    def kopano_server_hook(self, argv):
        """What kopano-server does when started: appends to its log, writes its pid file, keeps running."""
        if Path(argv[0]).name != "kopano-server":
            return
        with open(self.root / "var/log/kopano/server.log", "a") as f:
            f.writelines(self.log_lines)
        p = subprocess.Popen(["sleep", "600"], start_new_session=True)
        self.procs.append(p)
        (self.root / "var/run/kopano/server.pid").write_text(f"{p.pid}\n")

    def recorder(self, fail_on=None) -> Recorder:
        return HookedRecorder(passthrough=REAL, fail_on=fail_on, hook=self.kopano_server_hook)

    def runbook(self, rec: Recorder, **kw) -> Runbook:
        return Runbook(self.settings(**kw), rec, SysV(rec))

    def run(self, rec: Recorder | None = None, *, dry_run=False, wrap=None, **kw):
        rec = rec or self.recorder()
        book = self.runbook(rec, **kw)
        try:
            plan = book.plan()
            for st in plan.steps:  # a marker in the recorder before each step's commands
                st.apply = _marked(rec, st.name, st.apply)
            if wrap:
                wrap(plan)
            return plan.run(dry_run=dry_run, log_path=self.work / "runbook.log"), rec
        finally:
            book.close()

    def snapshot(self) -> dict[str, bytes]:
        """Everything the runbook leaves behind that a user would look at, with this system's paths removed."""
        out = {}
        for top in ("etc/kopano", "var/lib/kopano"):
            for p in sorted((self.root / top).rglob("*")):
                if p.is_file():
                    out[p.relative_to(self.root).as_posix()] = p.read_bytes().replace(str(self.root).encode(), b"")
        out["backup"] = " ".join(sorted(p.name.replace(self.database or "-", "DB")
                                        for p in (self.work / "backup").iterdir())).encode()
        if self.slapd is not None:
            dump = subprocess.run(["slapcat", "-n1", "-F", str(self.slapd.root / "slapd.d")], capture_output=True,
                                  check=True).stdout
            entries = []
            for e in parse_ldif(dump):
                entries.append((e.dn, sorted((k.lower(), sorted(v)) for k, v in e.attributes.items()
                                             if k.lower() not in VOLATILE)))
            out["ldap"] = repr(sorted(entries)).encode()
        return out

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait()
        if self.database:
            conn = _mariadb()
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.database}")
            conn.close()


class HookedRecorder(Recorder):
    def __init__(self, *, hook, **kw):
        super().__init__(**kw)
        self.hook = hook

    def spawn(self, argv, **kw):
        res = super().spawn(argv, **kw)
        self.hook([str(a) for a in argv])
        return res


def _marked(rec, name, apply):
    def run():
        rec.commands.append(["#", name])
        return apply()
    return run


def _norm(cmd: list[str]) -> str:
    s = " ".join(c for c in cmd if not c.startswith("--defaults-extra-file="))
    s = re.sub(r"kill -TERM \d+", "kill -TERM PID", s)
    s = re.sub(r"mm_rb_[0-9a-f]+", "DB", s)
    return re.sub(r"/tmp/\S*?/(sys|work|ldap)/", r"<\1>/", s)


def _commands(rec) -> list[str]:
    return [_norm(c) for c in rec.commands if c[0] != "#"]


def _by_step(rec) -> dict[str, list[str]]:
    out, cur = {}, None
    for c in rec.commands:
        if c[0] == "#":
            cur = c[1]
            out.setdefault(cur, [])
        elif cur is not None:
            out[cur].append(_norm(c))
    return out


@pytest.fixture
def system(tmp_path):
    made = []

    def make(**kw):
        s = System(tmp_path / f"s{len(made)}", **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def _needs_slapd():
    if not Path("/usr/sbin/slapd").exists():
        pytest.skip("needs Debian's slapd")


# -- order ----------------------------------------------------------------------------------------------

def _program_order(cmds: list[str]) -> list[str]:
    """Commands without their paths: what an administrator would have typed, in order."""
    out = []
    for c in cmds:
        w = c.split()
        w[0] = Path(w[0]).name
        if w[0] == "service":
            out.append(" ".join(w[:3]))
        elif w[0] == "sh":
            out.append("remove ZCP packages")
        elif w[0] in ("mariadb-dump", "mysqldump"):
            out.append("database dump")
        elif w[0] in ("slapadd", "slapcat", "slapindex"):
            out.append(f"{w[0]} {w[1]}")
        elif w[0] == "python":
            out.append("optimize-imap")
        else:
            out.append(" ".join(w[:3]))
    return out


def test_migrate_runs_every_step_of_the_seeds_in_order(system):
    _needs_slapd()
    s = system()
    if os.geteuid() == 0:  # slapd's files belong to its own user (openldap on Debian), not to root
        for p in [s.slapd.root / "slapd.d", s.slapd.root / "data", *(s.slapd.root / "slapd.d").rglob("*"),
                  *(s.slapd.root / "data").rglob("*")]:
            os.chown(p, 4711, 4711)
    res, rec = s.run()
    assert res.ok, res.render()
    assert _program_order(_commands(rec)) == [
        "service postfix stop",
        "service zarafa-spooler stop", "service zarafa-server stop",  # then the optional ones installed
        "service zarafa-dagent stop", "service zarafa-gateway stop",
        "database dump",  # database, then (no command) attachments and configuration
        "remove ZCP packages", "apt-get install -y",
        "service slapd stop", "slapcat -n1", "slapadd -n0", "slapadd -n1", "slapindex -n1", "service slapd start",
        "kopano-server",  # the first start, in safe mode
        "kopano-admin -l",  # the server reads its users: safe mode logs what it would change
        "kill -TERM PID",  # that start stopped once its log was clean
        "service kopano-server start", "service kopano-spooler start",  # reverse order
        "service kopano-dagent start", "service kopano-gateway start",
        "service postfix start",  # the MTA last
        "optimize-imap",  # the IMAP gateway is installed and Zarafa's gateway.cfg does not disable IMAP
    ]
    # what the steps left: a complete Kopano configuration, attachments moved, the directory in the new schema
    server = cfgfile.active((s.root / "etc/kopano/server.cfg").read_text())
    assert server["user_plugin"] == "ldap" and server["run_as_user"] == "kopano"
    assert server["user_safe_mode"] == "no"  # on for the first start only
    assert server["attachment_path"] == "/var/lib/kopano/attachments"
    for iid, data in s.attachments.items():
        assert (s.root / "var/lib/kopano/attachments" / str(iid % 10) / str((iid // 10) % 20) / str(iid)) \
            .read_bytes() == data
    backup = s.work / "backup"
    assert (backup / f"{s.database}.sql").read_bytes().count(b"CREATE TABLE `lob`") == 1
    assert (backup / "attachments" / "7" / "0" / "7").read_bytes() == s.attachments[7]
    assert (backup / "config" / "server.cfg").read_text() == (s.root / "etc/zarafa/server.cfg").read_text()
    assert list(s.slapd.root.glob("data.mailmigrate-*/data.mdb")), "the Zarafa-schema database is kept aside"
    if os.geteuid() == 0:  # what slapadd and slapindex wrote as root is given back to slapd's user
        written = [*(s.slapd.root / "slapd.d").rglob("*"), *(s.slapd.root / "data").rglob("*")]
        assert any(p.name.endswith("kopano.ldif") for p in written)
        assert {(p.stat().st_uid, p.stat().st_gid) for p in written} == {(4711, 4711)}
    with s.slapd.start():
        import ldap3
        conn = ldap3.Connection(s.slapd.url, s.slapd.admin_dn, s.slapd.admin_pw, auto_bind=True)
        conn.search(BASE, "(objectClass=kopano-user)", attributes=["uid", "kopanoQuotaHard"])
        users = {e["attributes"]["uid"][0]: e["attributes"]["kopanoQuotaHard"] for e in conn.response}
        assert users["ann"] == 2048
        assert not conn.search(BASE, "(objectClass=zarafa-user)") or not conn.response
        conn.unbind()
    checklist = next(o for o in res.outcomes if o.name == "checklist").lines
    assert "check: send-as permissions are correct" in checklist
    # a finished runbook run again does nothing
    again, rec2 = s.run()
    assert again.ok and all(o.status == "done" for o in again.outcomes), again.render()
    assert _commands(rec2) == []


def test_upgrade_order_with_database_attachments_on_real_mariadb(system):
    """Kopano -> Kopano with attachments in the database: lob-to-files on the real database, then
    attachment_storage = files and the one start with --ignore-attachment-storage-conflict."""
    s = system(kind="upgrade", storage="database", gateway=False, ldap=False)
    res, rec = s.run(web_service="apache2")
    assert res.ok, res.render()
    assert _program_order(_commands(rec)) == [
        "service postfix stop", "service kopano-spooler stop", "service kopano-server stop",
        "service kopano-dagent stop", "database dump", "apt-get install -y",
        "kopano-server --ignore-attachment-storage-conflict", "kopano-admin -l", "kill -TERM PID",
        "service kopano-server start", "service kopano-spooler start", "service kopano-dagent start",
        "service postfix start", "service apache2 restart"]  # no gateway installed: no optimize-imap
    server = cfgfile.active((s.root / "etc/kopano/server.cfg").read_text())
    assert server["attachment_storage"] == "files" and server["user_safe_mode"] == "no"
    for iid, data in s.attachments.items():
        assert (s.root / "var/lib/kopano/attachments" / str(iid % 10) / str((iid // 10) % 20) / str(iid)) \
            .read_bytes() == data
    assert not (s.work / "backup" / "attachments").exists()  # they are in the dump
    assert b"INSERT INTO `lob`" in (s.work / "backup" / f"{s.database}.sql").read_bytes()
    lines = next(o for o in res.outcomes if o.name == "checklist").lines
    assert any("findroots" in ln for ln in lines)  # from 8.1, below 8.2


def test_from_zcp_7_1_the_search_index_is_rebuilt(system):
    _needs_slapd()
    s = system(gateway=False)
    (s.root / "etc/init.d/zarafa-indexer").write_text("#!/bin/sh\n")  # ZCP 7.1's CLucene indexer
    index = s.root / "var/lib/kopano/search"
    index.mkdir(parents=True)
    (index / "old-71.kct").write_bytes(b"kyoto cabinet index of ZCP 7.1")
    res, rec = s.run(from_version="7.1")
    assert res.ok, res.render()
    order = _program_order(_commands(rec))
    assert order[1:5] == ["service zarafa-spooler stop", "service zarafa-server stop", "service zarafa-dagent stop",
                          "service zarafa-indexer stop"]
    # kopano-search is not installed as a Zarafa daemon here, yet it is started: it builds the new index
    assert order[-3:] == ["service kopano-dagent start", "service kopano-search start", "service postfix start"]
    assert not (index / "old-71.kct").exists()
    kept = list(s.root.glob("var/lib/kopano/search.zcp71-*/old-71.kct"))
    assert kept and kept[0].read_bytes() == b"kyoto cabinet index of ZCP 7.1"


# -- failure at every step, then a rerun -----------------------------------------------------------------

VARIANTS = {"migrate": {}, "upgrade": dict(kind="upgrade", storage="database", ldap=False)}


def _step_names(variant: str) -> list[str]:
    with tempfile.TemporaryDirectory() as d:
        s = System(Path(d), **{**VARIANTS[variant], "ldap": False, "db": False})
        book = s.runbook(Recorder(), database="x", **({"ldap": "offline"} if variant == "migrate" else {}))
        return [st.name for st in book.plan().steps]


STEPS = _step_names("migrate")
UPGRADE_STEPS = _step_names("upgrade")


def test_the_step_list_is_the_seeds():
    assert UPGRADE_STEPS[:2] == STEPS[:2] and UPGRADE_STEPS[-4:] == STEPS[-4:]
    assert UPGRADE_STEPS.index("attachments from the database: write attachment files") \
        < UPGRADE_STEPS.index("attachment_storage = files") < UPGRADE_STEPS.index("first start")
    assert STEPS[:2] == ["stop MTA", "stop services"]
    assert STEPS[-4:] == ["start services", "start MTA", "optimize-imap", "checklist"]
    assert STEPS.index("backup: database") < STEPS.index("backup: attachments") < STEPS.index("backup: configuration")
    assert STEPS.index("LDAP schema") < STEPS.index("LDAP reload") < STEPS.index("LDAP index")
    assert STEPS.index("safe mode on") < STEPS.index("first start") < STEPS.index("server log") \
        < STEPS.index("safe mode off") < STEPS.index("start services")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per variant: the commands, the result and the steps that had work to do."""
    if not Path("/usr/sbin/slapd").exists():
        pytest.skip("needs Debian's slapd")
    runs, made = {}, []

    def get(variant):
        if variant not in runs:
            s = System(tmp_path_factory.mktemp("whole-" + variant), **VARIANTS[variant])
            made.append(s)
            res, rec = s.run()
            assert res.ok, res.render()
            runs[variant] = _commands(rec), s.snapshot(), {o.name for o in res.outcomes if o.status == "applied"}
        return runs[variant]
    yield get
    for s in made:
        s.close()


@pytest.mark.parametrize("variant,step", [("migrate", n) for n in STEPS] + [("upgrade", n) for n in UPGRADE_STEPS])
def test_a_failure_at_any_step_then_a_rerun_finishes_without_redoing_finished_steps(system, uninterrupted, variant,
                                                                                    step):
    whole_cmds, whole_result, applied = uninterrupted(variant)
    if step not in applied:
        pytest.skip(f"{step}: nothing to do on this system (judged done before it runs), so it cannot fail")
    s = system(**VARIANTS[variant])

    def inject(plan):
        def boom():
            raise OSError(f"injected failure in {step}")
        next(x for x in plan.steps if x.name == step).apply = boom

    first, rec1 = s.run(wrap=inject)
    assert not first.ok and first.outcomes[-1].name == step and first.outcomes[-1].status == "failed"
    finished = [o.name for o in first.outcomes if o.status == "applied"]
    second, rec2 = s.run()
    assert second.ok, second.render()
    # every finished step is skipped, except the free-space check: it looks again while files remain to write
    assert set(finished) - {"attachments from the database: check free space"} \
        <= {o.name for o in second.outcomes if o.status == "done"}
    redone = _by_step(rec2)
    for name in finished:
        assert not redone.get(name), f"{name} was finished before the failure and ran its commands again"
    assert _commands(rec1) + _commands(rec2) == whole_cmds
    assert s.snapshot() == whole_result


def test_a_command_failing_half_way_through_a_step_is_not_repeated_for_what_was_done(system):
    """The server stop fails after the spooler stopped: the rerun does not stop the spooler again."""
    s = system(kind="upgrade", ldap=False, gateway=False)
    first, rec1 = s.run(rec=s.recorder(fail_on=("kopano-server", "stop")))
    assert not first.ok and first.outcomes[-1].name == "stop services"
    assert _commands(rec1)[-2:] == ["service kopano-spooler stop", "service kopano-server stop (failed)"]
    second, rec2 = s.run()
    assert second.ok, second.render()
    stops = [c for c in _commands(rec2) if c.endswith(" stop")]
    assert stops == ["service kopano-server stop", "service kopano-dagent stop"]


# -- the first start's log -------------------------------------------------------------------------------

def test_a_first_start_with_errors_in_its_log_stops_the_runbook(system):
    s = system(kind="upgrade", gateway=False, ldap=False)
    s.log_lines = ["Tue Jan  2 10:00:00 2024: [info   ] Starting kopano-server\n",
                   "Tue Jan  2 10:00:01 2024: [error  ] SQL [00001146] Table 'kopano.versions' doesn't exist\n"]
    res, rec = s.run()
    assert not res.ok
    failed = res.outcomes[-1]
    assert failed.name == "server log" and "Table 'kopano.versions' doesn't exist" in failed.error
    assert "an old error, before this upgrade" not in failed.error  # only what this start wrote
    cmds = _program_order(_commands(rec))
    assert cmds[-3:] == ["kopano-server", "kopano-admin -l", "kill -TERM PID"]  # the erring server is stopped
    assert not any(c.endswith(" start") for c in cmds)  # and nothing else started
    cfg = cfgfile.active((s.root / "etc/kopano/server.cfg").read_text())
    # safe mode, and a log the runbook can read at the level safe mode reports at
    assert (cfg["user_safe_mode"], cfg["log_method"], cfg["log_file"], cfg["log_level"]) == \
        ("yes", "file", "/var/log/kopano/server.log", "5")

    s.log_lines = ["Tue Jan  2 11:00:00 2024: [info   ] Starting kopano-server\n"]  # the administrator fixed it
    again, rec2 = s.run()
    assert again.ok, again.render()
    order = _program_order(_commands(rec2))
    assert order[:3] == ["kopano-server", "kopano-admin -l", "kill -TERM PID"]  # the first start is repeated
    assert "service postfix stop" not in order and "database dump" not in order
    cfg = cfgfile.active((s.root / "etc/kopano/server.cfg").read_text())
    assert cfg["user_safe_mode"] == "no"
    assert not {"log_method", "log_file", "log_level"} & set(cfg)  # as before: not set, Kopano's defaults


def test_safe_mode_user_changes_in_the_log_stop_the_runbook(system):
    """Kopano in safe mode logs the users it would delete or create (at info level) instead of doing it:
    the directory does not match the database, the upgrade must not go on."""
    s = system(kind="upgrade", gateway=False, ldap=False)
    s.log_lines = ["Tue Jan  2 10:00:00 2024: [info   ] user_safe_mode: skipping retrieve/sync users from LDAP\n",
                   "Tue Jan  2 10:00:01 2024: [info   ] user_safe_mode: would delete user 12 (ext: entry gone)\n"]
    res, rec = s.run()
    assert not res.ok and res.outcomes[-1].name == "server log"
    assert "would delete user 12" in res.outcomes[-1].error
    assert "skipping retrieve/sync" not in res.outcomes[-1].error  # a note, not a change


# -- dry run, printed packages ---------------------------------------------------------------------------

def test_dry_run_prints_every_step_and_changes_nothing(system):
    s = system(ldap=False, db=False)
    before = sorted(p.relative_to(s.base) for p in s.base.rglob("*"))
    res, rec = s.run(dry_run=True, database="zarafa_x", ldap="offline", ldap_config_dir=s.base / "no-ldap",
                     ldap_data_dir=s.base / "no-ldap-data")
    text = res.render()
    assert rec.commands == [] and not s.work.exists()
    assert sorted(p.relative_to(s.base) for p in s.base.rglob("*")) == before
    for line in ("service postfix stop", "service zarafa-spooler stop", "apt-get install -y kopano-server-packages",
                 "kopano-server", "service kopano-server start", "python /usr/share/doc/kopano-gateway/optimize-imap.py",
                 "check: all users are there"):
        assert line in text, line
    assert text.index("service postfix stop") < text.index("dump database") < text.index("kopano-server-packages")


def test_package_commands_are_printed_and_the_runbook_waits_unless_asked_to_run_them(system):
    s = system(kind="upgrade", gateway=False, ldap=False)
    res, rec = s.run(run_packages=False, distro="rhel")
    assert not res.ok and res.outcomes[-1].name == "packages"
    assert "to run by hand: yum update -y kopano-server-packages" in res.render()
    assert not any("yum" in c for c in _commands(rec))
    again, rec2 = s.run(run_packages=False, distro="rhel")
    assert again.ok, again.render()
    assert not any("yum" in c for c in _commands(rec2))


# -- LDAP online -----------------------------------------------------------------------------------------

def test_migrate_with_the_online_ldap_migration_on_a_live_slapd(system, tmp_path):
    """Both schemas loaded on a running slapd: no slapd command is issued, the directory ends in the Kopano
    schema; with only zarafa.schema loaded the runbook stops before touching the directory."""
    _needs_slapd()
    from mailmigrate.model import Secret
    from test_kopano_ldap import _load_live, _zarafa_left

    s = system(ldap=False, gateway=False)
    sample = (zarafa_sample(tmp_path) / "slapcat.ldif").read_bytes()
    with SlapdServer(tmp_path / "only-zarafa", BASE, schemas=[SCHEMAS / "zarafa.schema"]).start() as old:
        _load_live(old, sample)
        kw = dict(ldap="online", ldap_url=old.url, ldap_base=BASE, ldap_bind_dn=old.admin_dn,
                  ldap_password=Secret(old.admin_pw))
        res, rec = s.run(**kw)
        assert not res.ok and res.outcomes[-1].name == "LDAP schemas"
        assert "does not know kopano-user" in res.outcomes[-1].error
        assert _zarafa_left(old)  # untouched
    with SlapdServer(tmp_path / "both", BASE, schemas=[SCHEMAS / "zarafa.schema", SCHEMAS / "kopano.schema"]) \
            .start() as srv:
        _load_live(srv, sample)
        kw.update(ldap_url=srv.url, ldap_bind_dn=srv.admin_dn, ldap_password=Secret(srv.admin_pw))
        res, rec = s.run(**kw)
        assert res.ok, res.render()
        assert not any(c.split()[0] in ("slapcat", "slapadd", "slapindex") or "slapd" in c for c in _commands(rec))
        assert _zarafa_left(srv) == []
        assert (s.work / "ldap-online" / "ldap-backup-before-kopano.ldif").exists()


def test_run_state_is_private_and_holds_no_secret(system):
    s = system(kind="upgrade", gateway=False, ldap=False)
    res, _ = s.run()
    assert res.ok, res.render()
    st = s.work / "run-state.json"
    assert st.stat().st_mode & 0o777 == 0o600
    text = st.read_text()
    assert "stop services/kopano-server" in text and "password" not in text.lower()


# -- the command ------------------------------------------------------------------------------------------

def test_the_commands_dry_run_and_usage_errors(system, capsys):
    from mailmigrate.cli.main import main

    s = system(ldap=False, db=False)
    common = ["--root", str(s.root), "--work-dir", str(s.work), "--services", "service", "--distro", "suse"]
    # Zarafa's server.cfg says user_plugin = ldap: the directory must be dealt with, the command says how
    assert main(["kopano", "migrate", *common, "--dry-run"]) == 2
    assert "choose --ldap offline or --ldap online" in capsys.readouterr().err
    assert main(["kopano", "migrate", *common, "--dry-run", "--ldap", "offline",
                 "--ldap-config-dir", str(s.base / "none")]) == 0
    out = capsys.readouterr().out
    assert "(dry run: nothing changed)" in out and "service zarafa-spooler stop" in out
    assert "to run by hand: sh -c 'rpm -qa | egrep" in out and "zypper -n install kopano-server-packages" in out
    assert not s.work.exists()
    assert main(["kopano", "upgrade", "--root", str(s.root), "--work-dir", str(s.work), "--services", "systemctl",
                 "--distro", "rhel", "--from-version", "eight"]) == 2


def test_without_attachment_storage_the_attachment_directory_decides(system):
    """server.cfg without attachment_storage: attachments found in files are files (backed up, not taken
    for database ones); none there means the database, converted."""
    s = system(kind="upgrade", gateway=False, ldap=False)
    cfg = s.root / "etc/kopano/server.cfg"
    cfg.write_text(cfg.read_text().replace("attachment_storage = files\n", ""))
    book = s.runbook(s.recorder())
    assert book.storage() == "files"
    assert "backup: attachments" in [st.name for st in book.plan().steps]
    empty = system(kind="upgrade", storage="database", gateway=False, ldap=False)
    cfg = empty.root / "etc/kopano/server.cfg"
    cfg.write_text(cfg.read_text().replace("attachment_storage = database\n", ""))
    assert empty.runbook(empty.recorder()).storage() == "database"


def test_the_service_manager_is_chosen_by_what_the_system_runs(tmp_path):
    import shutil

    from mailmigrate.paths.kopano.services import Systemctl, detect, services_for

    booted = tmp_path / "booted"
    (booted / "run/systemd/system").mkdir(parents=True)  # what sd_booted() looks for
    if shutil.which("systemctl"):
        assert detect(booted) == "systemctl"
    if shutil.which("service"):
        assert detect(tmp_path / "sysv") == "service"
    rec = Recorder()
    services_for("systemctl", rec).stop("kopano-server")
    services_for("service", rec).start("kopano-server")
    assert rec.commands == [["systemctl", "stop", "kopano-server"], ["service", "kopano-server", "start"]]
    assert isinstance(services_for("systemctl", rec), Systemctl)


def test_packages_from_a_release_directory_in_the_seeds_order(system, tmp_path):
    """dpkg of libvmime, then python-mapi, then the rest (which may end in errors), then apt-get -f."""
    s = system(kind="upgrade", gateway=False, ldap=False, db=False)
    rel = tmp_path / "core-8.7"
    rel.mkdir()
    for n in ("kopano-server_8.7_amd64.deb", "libvmime0_0.9_amd64.deb", "python-mapi_8.7_amd64.deb"):
        (rel / n).write_bytes(b"")
    book = s.runbook(Recorder(), package_dir=rel, database="x")
    names = [[Path(a).name if "/" in a else a for a in c] for c in book.package_commands()]
    assert names == [["dpkg", "-B", "-i", "libvmime0_0.9_amd64.deb"], ["dpkg", "-i", "python-mapi_8.7_amd64.deb"],
                     ["dpkg", "-B", "-i", "kopano-server_8.7_amd64.deb"], ["apt-get", "install", "-f", "-y"]]
    with pytest.raises(ConfigError, match="no .rpm packages"):
        s.runbook(Recorder(), package_dir=rel, database="x", distro="rhel").package_commands()
    # run: the last dpkg failing (the seed's renamed packages) is left to apt-get install -f
    rec = Recorder()
    rec.run = _failing_dpkg_of(rec, "kopano-server_8.7_amd64.deb")
    res, _ = s.run(rec, package_dir=rel, database=None)
    assert next(o for o in res.outcomes if o.name == "packages").status == "applied", res.render()
    assert ["apt-get", "install", "-f", "-y"] in rec.commands
    assert "ended with status 1; apt-get install -f follows" in res.render()


def _failing_dpkg_of(rec, name):
    plain = Recorder.run.__get__(rec)

    def run(argv, **kw):
        if argv[0] == "dpkg" and Path(argv[-1]).name == name:
            rec.commands.append(list(argv))
            if kw.get("check", True):
                raise AssertionError("a dpkg the seed expects to fail was run with check")
            from mailmigrate.paths.kopano.services import Completed
            return Completed(list(argv), 1, "dependency problems")
        return plain(argv, **kw)
    return run


def test_a_foreground_kopano_server_is_started_in_the_background_and_stopped(system, tmp_path, monkeypatch):
    """Kopano >= 8.7.81 has no pid file and never forks (RELNOTES: -F removed, always foreground): the first
    start runs beside the runbook and is stopped by the pid it was started with."""
    s = system(kind="upgrade", gateway=False, ldap=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = s.root / "var/log/kopano/server.log"
    (bin_dir / "kopano-server").write_text(f"#!/bin/sh\necho \"x: [notice ] Starting kopano-server $*\" >> {log}\n"
                                           "exec sleep 600\n")
    (bin_dir / "kopano-server").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rec = Recorder(passthrough=REAL | {"kopano-server"})
    res, _ = s.run(rec)
    assert res.ok, res.render()
    pid = int(json.loads((s.work / "run-state.json").read_text())["values"]["first start pid"])
    assert pid and not (Path(f"/proc/{pid}").exists() and
                        Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z")
    assert f"kopano-server (pid {pid}) stopped" in res.render()
    assert "Starting kopano-server" in log.read_text()
    assert ["kill", "-TERM", str(pid)] in rec.commands


def test_one_runbook_at_a_time_per_work_directory(system):
    from mailmigrate.errors import StateLocked
    from mailmigrate.paths.kopano.runstate import RunState

    s = system(kind="upgrade", gateway=False, ldap=False)
    with RunState(s.work).lock():
        with pytest.raises(StateLocked):
            s.runbook(s.recorder()).run(dry_run=False)
    res = s.runbook(s.recorder()).run(dry_run=False)
    assert res.ok, res.render()
    assert (s.work / "runbook.log").read_text().count("stop MTA: applied") == 1
