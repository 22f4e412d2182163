"""The runbook's LDAP steps (seed 000 4.4.1), a part of :class:`.runbook.Runbook`.

Offline, on this host's stopped slapd (cn=config): slapcat, the Zarafa -> Kopano transform, kopano.schema
loaded with ``slapadd -n0``, the old database moved aside whole and the converted LDIF loaded, slapindex.
Online: both schemas checked on the server, then the three passes of ldap_online.py.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ...errors import ConfigError
from ...formats.ldif import dump_ldif, parse_ldif
from ..plan import Plan, Step, write_atomic
from . import ldap_offline, slapd_schema

SCHEMA_DIR = Path(__file__).parent / "schema"


class LdapSteps:
    """Mixed into Runbook: uses its settings ``s``, ``runner``, ``services``, ``state`` and config readers."""

    def _ldap_offline(self, plan: Plan) -> None:
        s = self.s
        ldir = s.work_dir / "ldap"
        export, converted = ldir / "zarafa-export.ldif", ldir / "kopano.ldif"
        schema_ldif = ldir / "kopano-schema.ldif"
        plan.add(self._service_step("stop LDAP", "stop", lambda: [s.ldap_service]))

        def do_export():
            ldir.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = export.with_name(export.name + ".partial")
            self.runner.run(["slapcat", f"-n{s.ldap_db}", "-F", str(s.ldap_config_dir), "-l", str(tmp)])
            os.chmod(tmp, 0o600)
            os.replace(tmp, export)
            return [f"{export}: {export.stat().st_size} bytes"]

        plan.add(Step("LDAP export", "slapcat of the stopped directory (also its backup)",
                      changes=lambda: [f"slapcat -n{s.ldap_db} -F {s.ldap_config_dir} -l {export}"],
                      apply=do_export, done=export.exists))

        def transform_changes():
            if not export.exists():
                return [f"write {converted} from {export} (Zarafa names -> Kopano names)"]
            return ldap_offline.plan(export, converted).steps[0].changes()

        def transform_apply():
            return ldap_offline.plan(export, converted).steps[0].apply()

        plan.add(Step("LDAP transform", "rename attributes and object classes to the Kopano schema",
                      changes=transform_changes, apply=transform_apply,
                      done=lambda: export.exists() and not transform_changes()))

        def schema_apply():
            ldir.mkdir(parents=True, exist_ok=True, mode=0o700)
            entry = slapd_schema.schema_entry((SCHEMA_DIR / "kopano.schema").read_text(), "kopano")
            write_atomic(schema_ldif, dump_ldif([entry]), mode=0o600)
            self.runner.run(["slapadd", "-n0", "-F", str(s.ldap_config_dir), "-l", str(schema_ldif)])
            _give_back(Path(s.ldap_config_dir))
            return []

        plan.add(Step("LDAP schema", "load kopano.schema into slapd's configuration",
                      changes=lambda: [f"slapadd -n0 -F {s.ldap_config_dir} -l {schema_ldif} (kopano.schema)"],
                      apply=schema_apply, done=lambda: slapd_schema.loaded(s.ldap_config_dir, "kopano")))

        def reload_apply():
            data = Path(s.ldap_data_dir)
            aside = data.with_name(data.name + ".mailmigrate-" + time.strftime("%Y%m%d-%H%M%S"))
            n = 1
            while aside.exists():
                aside = aside.with_name(aside.name.split("~")[0] + f"~{n}")
                n += 1
            aside.mkdir(mode=0o700)
            for e in sorted(data.iterdir()):
                os.replace(e, aside / e.name)
            if (aside / "DB_CONFIG").is_file():  # a BDB/HDB database's tuning belongs to the new one too
                shutil.copy2(aside / "DB_CONFIG", data / "DB_CONFIG")
            loads = parse_ldif(converted.read_bytes(), converted)
            self.runner.run(["slapadd", f"-n{s.ldap_db}", "-F", str(s.ldap_config_dir), "-l", str(converted)])
            _give_back(data)
            return [f"the Zarafa-schema database was moved to {aside} (kept)",
                    f"{len(loads)} entries loaded in the Kopano schema"]

        plan.add(self._recorded(
            "LDAP reload", "move the old database aside (never deleted), slapadd the converted LDIF",
            lambda: [f"move {s.ldap_data_dir}/* aside to {s.ldap_data_dir}.mailmigrate-<time>/",
                     f"slapadd -n{s.ldap_db} -F {s.ldap_config_dir} -l {converted}"], reload_apply))
        plan.add(self._recorded("LDAP index", "re-index for the Kopano attributes",
                                lambda: [f"slapindex -n{s.ldap_db} -F {s.ldap_config_dir}"],
                                lambda: self._slapindex()))
        plan.add(self._service_step("start LDAP", "start", lambda: [s.ldap_service]))

    def _slapindex(self) -> list[str]:
        s = self.s
        self.runner.run(["slapindex", f"-n{s.ldap_db}", "-F", str(s.ldap_config_dir)])
        _give_back(Path(s.ldap_data_dir))
        return []

    def _ldap_online(self, plan: Plan) -> None:
        from .ldap_online import OnlineMigration

        s = self.s
        m = OnlineMigration(s.ldap_url, s.ldap_base, bind_dn=s.ldap_bind_dn, password=s.ldap_password,
                            state_dir=s.work_dir / "ldap-online")
        self._closers.append(m.close)

        def missing() -> list[str]:
            import ldap3

            server = ldap3.Server(s.ldap_url, get_info=ldap3.SCHEMA, connect_timeout=30)
            conn = ldap3.Connection(server, s.ldap_bind_dn,
                                    s.ldap_password.reveal() if s.ldap_password else None, auto_bind=False)
            try:
                if not conn.bind():
                    raise ConfigError(f"{s.ldap_url}: bind as {s.ldap_bind_dn or '(anonymous)'} refused")
                known = {n.lower() for oc in (server.schema.object_classes if server.schema else {}).values()
                         for n in oc.name}
            finally:
                conn.unbind()
            return [n for n in ("kopano-user", "zarafa-user") if n not in known]

        def check():
            gone = missing()
            if gone:
                raise ConfigError(f"{s.ldap_url} does not know {', '.join(gone)}: the online migration needs both "
                                  "zarafa.schema and kopano.schema loaded; load them, then run again "
                                  f"({SCHEMA_DIR / 'kopano.schema'} if your packages ship none)")
            return []

        plan.add(Step("LDAP schemas", "both schemas are loaded on the directory server (checked, not changed)",
                      changes=lambda: [f"{s.ldap_url}: check that kopano.schema and zarafa.schema are loaded"],
                      apply=check, done=lambda: not missing()))
        self._embed(plan, "LDAP online", m.plan())


def _give_back(top: Path) -> None:
    """slapadd and slapindex run as root here; slapd runs as the owner of its directories (openldap on
    Debian) and could not read what they wrote.  Everything under ``top`` goes to ``top``'s owner."""
    if os.geteuid() != 0:
        return
    st = top.stat()
    for p in [top, *top.rglob("*")]:
        if p.lstat().st_uid != st.st_uid or p.lstat().st_gid != st.st_gid:
            os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
