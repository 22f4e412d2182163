"""Online LDAP migration from the Zarafa to the Kopano schema, on a live directory, both schemas loaded.

The seed's three passes, each one computed from what the directory holds *now*, so that a run stopped
anywhere is resumed by running it again (every change to an entry is one atomic modify operation):

1. add the Kopano twin of every Zarafa auxiliary object class;
2. move every ``zarafa*`` value to its ``kopano*`` twin and delete the Zarafa attribute, per entry;
3. remove the Zarafa object classes;

then the server objects' socket becomes /var/run/kopano/server.sock.  Address lists and dynamic groups
have a STRUCTURAL Zarafa class, which LDAP does not let a modify change: those entries are written to a
journal file, deleted and added again in the Kopano schema, and a journal left by an interruption is
replayed first.  Before the first change the whole subtree is saved as an LDIF backup.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

import ldap3
from ldap3.core import exceptions as lex

from ...errors import AuthenticationFailed, ConnectionLost
from ...formats.ldif import LdifEntry, dump_ldif, parse_ldif
from ...model import Secret
from ...directory.base import DirectoryError
from ..plan import Plan, Step, write_atomic
from .ldapmap import (STRUCTURAL, is_zarafa, kopano_name, new_socket, transform,
                      translate_value)

log = logging.getLogger("mailmigrate.kopano.ldap")

Entry = tuple[str, dict[str, list[bytes]]]


def _classes(attrs: dict[str, list[bytes]]) -> list[str]:
    for k, v in attrs.items():
        if k.lower() == "objectclass":
            return [x.decode("utf-8", "replace") for x in v]
    return []


def _get(attrs: dict[str, list[bytes]], name: str) -> list[bytes]:
    for k, v in attrs.items():
        if k.lower() == name.lower():
            return v
    return []


class OnlineMigration:
    def __init__(self, url: str, base_dn: str, *, bind_dn: str | None, password: Secret | None,
                 state_dir: str | Path, before_modify: Callable[[str], None] | None = None, timeout: int = 30):
        self.url, self.base_dn, self.bind_dn = url, base_dn, bind_dn
        self._password = password
        self.state_dir = Path(state_dir)
        self.before_modify = before_modify
        self.timeout = timeout
        self._conn: ldap3.Connection | None = None

    # -- connection -----------------------------------------------------------------------------------

    def _c(self) -> ldap3.Connection:
        if self._conn is None:
            server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=self.timeout)
            try:
                conn = ldap3.Connection(server, self.bind_dn, self._password.reveal() if self._password else None,
                                        receive_timeout=self.timeout, raise_exceptions=False)
                if not conn.bind():
                    raise AuthenticationFailed(f"{self.url}: bind as {self.bind_dn or '(anonymous)'} refused: "
                                               f"{conn.result.get('description')}")
            except lex.LDAPSocketOpenError as e:
                raise ConnectionLost(f"{self.url}: cannot connect: {e}") from None
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.unbind()
            self._conn = None

    def entries(self) -> list[Entry]:
        conn = self._c()
        try:
            gen = conn.extend.standard.paged_search(self.base_dn, "(objectClass=*)", ldap3.SUBTREE,
                                                    attributes=[ldap3.ALL_ATTRIBUTES], paged_size=500,
                                                    generator=True)
            out = [(r["dn"], {k: list(v) for k, v in r["raw_attributes"].items()})
                   for r in gen if r.get("type") == "searchResEntry"]
        except lex.LDAPException as e:
            raise DirectoryError(f"{self.url}: search under {self.base_dn} failed: {e}") from None
        return out

    def _modify(self, dn: str, changes: dict) -> None:
        if self.before_modify is not None:
            self.before_modify(dn)
        conn = self._c()
        if not conn.modify(dn, changes):
            raise DirectoryError(f"{self.url}: modify {dn} refused: {conn.result.get('description')}: "
                                 f"{conn.result.get('message')}")

    # -- the passes -----------------------------------------------------------------------------------

    @property
    def backup_path(self) -> Path:
        return self.state_dir / "ldap-backup-before-kopano.ldif"

    @property
    def journal_dir(self) -> Path:
        return self.state_dir / "ldap-journal"

    def backup(self) -> list[str]:
        entries = self.entries()
        write_atomic(self.backup_path, dump_ldif([LdifEntry(dn, a) for dn, a in entries]), mode=0o600)
        return [f"{len(entries)} entries saved to {self.backup_path}"]

    def _structural(self) -> list[Entry]:
        return [(dn, a) for dn, a in self.entries() if any(c.lower() in STRUCTURAL for c in _classes(a))]

    def _journal(self) -> list[Path]:
        return sorted(self.journal_dir.glob("*.ldif")) if self.journal_dir.is_dir() else []

    def recreate_structural(self) -> list[str]:
        out = []
        present = {dn.lower() for dn, _ in self.entries()}
        for j in self._journal():  # an interrupted replacement: add what was deleted
            for e in parse_ldif(j.read_bytes(), j):
                if e.dn.lower() not in present:
                    self._add(e.dn, e.attributes)
                    out.append(f"{e.dn}: re-added from journal {j.name}")
            j.unlink()
        for dn, attrs in self._structural():
            new, notes = transform(dn, attrs)
            j = self.journal_dir / (hashlib.sha256(dn.lower().encode()).hexdigest()[:16] + ".ldif")
            write_atomic(j, dump_ldif([LdifEntry(dn, new)]), mode=0o600)
            if self.before_modify is not None:
                self.before_modify(dn)
            conn = self._c()
            if not conn.delete(dn):
                raise DirectoryError(f"{self.url}: delete {dn} refused: {conn.result.get('description')}")
            self._add(dn, new)
            j.unlink()
            out.append(f"{dn}: recreated as {', '.join(_classes(new))}")
        return out

    def _add(self, dn: str, attrs: dict[str, list[bytes]]) -> None:
        conn = self._c()
        if not conn.add(dn, attributes=attrs):
            raise DirectoryError(f"{self.url}: add {dn} refused: {conn.result.get('description')}: "
                                 f"{conn.result.get('message')}")

    def _step1(self) -> list[tuple[str, dict, str]]:
        todo = []
        for dn, a in self.entries():
            classes = _classes(a)
            low = {c.lower() for c in classes}
            add = [kopano_name(c) for c in classes if is_zarafa(c) and c.lower() not in STRUCTURAL
                   and kopano_name(c).lower() not in low]
            if not add:
                continue
            ch = {"objectClass": [(ldap3.MODIFY_ADD, add)]}
            text = f"{dn}: add objectClass {', '.join(add)}"
            todo.append((dn, ch, text))
        return todo

    def _step2(self) -> list[tuple[str, dict, str]]:
        todo = []
        for dn, a in self.entries():
            ch, names = {}, []
            for k, vals in a.items():
                if not is_zarafa(k):
                    continue
                twin = kopano_name(k)
                have = set(_get(a, twin))
                missing = [translate_value(k, v) for v in vals if translate_value(k, v) not in have]
                if missing:
                    ch[twin] = [(ldap3.MODIFY_ADD, missing)]
                ch[k] = [(ldap3.MODIFY_DELETE, [])]
                names.append(f"{k} -> {twin}")
            if ch:
                todo.append((dn, ch, f"{dn}: move {', '.join(names)}"))
        return todo

    def _step3(self) -> list[tuple[str, dict, str]]:
        todo = []
        for dn, a in self.entries():
            classes = _classes(a)
            low = {c.lower() for c in classes}
            if any(is_zarafa(k) for k in a):
                continue  # values not moved yet (pass 2 first)
            drop = [c for c in classes if is_zarafa(c) and kopano_name(c).lower() in low]
            if not drop:
                continue
            ch = {"objectClass": [(ldap3.MODIFY_DELETE, drop)]}
            text = f"{dn}: remove objectClass {', '.join(drop)}"
            todo.append((dn, ch, text))
        return todo

    def _step4(self) -> list[tuple[str, dict, str]]:
        todo = []
        for dn, a in self.entries():
            if "kopano-server" not in {c.lower() for c in _classes(a)}:
                continue
            for v in _get(a, "kopanoFilePath"):
                s = new_socket(v.decode("utf-8", "replace"))
                if s is not None:
                    todo.append((dn, {"kopanoFilePath": [(ldap3.MODIFY_REPLACE, [s.encode()])]},
                                 f"{dn}: kopanoFilePath {v.decode('utf-8', 'replace')} -> {s}"))
        return todo

    def _run(self, pending: Callable[[], list[tuple[str, dict, str]]]) -> list[str]:
        out = []
        for dn, ch, text in pending():
            self._modify(dn, ch)
            out.append(text)
        return out

    def plan(self) -> Plan:
        def lines(fn):
            return lambda: [t for _, _, t in fn()]

        return Plan(f"LDAP {self.url} {self.base_dn}: Zarafa schema -> Kopano schema", [
            Step("backup LDIF", f"save the subtree to {self.backup_path} before any change",
                 changes=lambda: [f"save every entry under {self.base_dn} to {self.backup_path}"],
                 apply=self.backup, done=self.backup_path.exists),
            Step("recreate address lists and dynamic groups", "structural classes cannot be modified",
                 changes=lambda: [f"replay journal {j}" for j in self._journal()]
                 + [f"{dn}: delete and add again with Kopano classes" for dn, _ in self._structural()],
                 apply=self.recreate_structural),
            Step("add Kopano object classes", "pass 1", changes=lines(self._step1),
                 apply=lambda: self._run(self._step1)),
            Step("move zarafa* values to kopano*", "pass 2", changes=lines(self._step2),
                 apply=lambda: self._run(self._step2)),
            Step("remove Zarafa object classes", "pass 3", changes=lines(self._step3),
                 apply=lambda: self._run(self._step3)),
            Step("server socket", "kopanoFilePath -> /var/run/kopano/server.sock", changes=lines(self._step4),
                 apply=lambda: self._run(self._step4)),
        ])
