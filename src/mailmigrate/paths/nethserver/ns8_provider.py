"""NethServer 7 -> 8, the local account provider (NS7's OpenLDAP) as an application, migrated last.

The seed's order: every other application moves first and keeps reaching the NS7 provider (through a
temporary external user domain on NS8); the provider itself moves at the end, and only then is it switched
off on NS7.  So ``finish`` here is refused while any other application is still neither migrated nor skipped,
and the NS7 provider is disabled only after the NS8 directory was checked to hold everything NS7's holds.

Everything goes through the directory layer (``directory/``): the two directories are URLs
(``ldap://HOST/BASEDN?bind=DN``), the copy is ``directory.copy.copy`` (users with their password hashes,
posix ids, names and mail addresses; groups as posixGroups with their gidNumber and members, the shape NS7
kept them in: what ``LdapDirectory`` reads and writes), the check is ``directory.checklist.compare`` (with
the group ids) plus a per-user comparison of the password hashes, and readings of
NS7 are saved with ``directory.snapshot`` (no passwords) next to the migration state.

* start  binds to both directories, reads them, saves the NS7 reading, and reports what sync would copy;
* sync   adds what NS8 lacks; objects mailmigrate created are kept up to date with NS7 (a password or a
         membership changed there); objects NS8 had before are never changed, only reported when they
         differ.  The names to be created are written to the state before the copy, so abort knows them
         even after a crash;
* finish a final sync, the checklist (nothing of NS7 missing on NS8, every password hash that could cross
         crossed), and only then the NS7 provider disabled (``slapd`` status=disabled in its configuration
         database);
* abort  removes from NS8 the entries mailmigrate created (groups first), nothing else; NS7 is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from ...directory import passwords, snapshot
from ...directory.base import DEFAULT_FIELDS, Directory, DirectoryReader, DirectoryWriter, PasswordHash, fold
from ...directory.checklist import compare
from ...directory.copy import CopyReport, PasswordPolicy, copy, diff_directories
from ...directory.provider import AccountProvider, convert_password_policy
from ...directory.urls import open_directory
from ...errors import ConfigError
from ...formats.atomic import replace_file
from ...formats.esmith import EsmithDb, read_esmith, write_esmith
from ...model import Secret
from ..journal import EventLog

KINDS = ("users", "groups")  # what an NS7 OpenLDAP provider holds


@dataclass
class ProviderLink:
    """Where the two providers are: directory URLs and bind passwords (from files or the environment, never
    from a command line)."""

    source: str  # NS7's local OpenLDAP
    target: str  # the NS8 provider that replaces it
    source_password: Secret | None = field(default=None, repr=False)
    target_password: Secret | None = field(default=None, repr=False)

    def open(self) -> tuple[DirectoryReader, DirectoryWriter]:
        src = open_directory(self.source, self.source_password)
        # NS8's OpenLDAP provider keeps groups as NS7's did (posixGroup, memberUid, gidNumber); a target URL
        # with its own ?group_style= is taken at its word
        dst = open_directory(self.target, self.target_password, group_style="posix")
        if not isinstance(dst, DirectoryWriter):
            raise ConfigError(f"{self.target}: cannot be written; the NS8 provider must be a writable directory")
        return src, dst


class _Subset(DirectoryReader):
    """A reading restricted to some users and groups: the objects mailmigrate created, for the update pass."""

    def __init__(self, d: Directory, names: dict[str, set[str]]):
        self.d, self.names = d, names

    def read(self) -> Directory:
        out = Directory(name=self.d.name, base_dn=self.d.base_dn)
        for kind in KINDS:
            for key, obj in getattr(self.d, kind).items():
                if key in self.names.get(kind, set()):
                    out.add(obj)
        return out

    def describe(self) -> str:
        return self.d.name


def check_source(cfg: EsmithDb) -> None:
    """NS7's ``sssd`` record says which provider NS7 uses; only a local OpenLDAP is migrated here."""
    r = cfg.get("sssd")
    props = dict(r.props) if r is not None else {}
    if props.get("Provider", "ldap") != "ldap":
        raise ConfigError(f"NS7 uses a {props.get('Provider')} account provider: a Samba DC is migrated by NS8's "
                          "own tool; mailmigrate moves a local OpenLDAP provider")
    host = (urlsplit(props.get("LdapURI", "ldap://127.0.0.1")).hostname or "").lower()
    if host not in ("127.0.0.1", "localhost", "::1", ""):
        raise ConfigError(f"NS7 uses a remote account provider ({props['LdapURI']}): there is nothing to migrate; "
                          "NS8 needs an external user domain pointing at it (docs/nethserver.md)")


def _fields(dst) -> dict:
    return getattr(dst, "fields", None) or DEFAULT_FIELDS


def _ours(entry: dict) -> dict[str, set[str]]:
    return {k: set(entry.setdefault("entries", {}).setdefault(k, [])) for k in KINDS}


def start(link: ProviderLink, entry: dict, state_dir: Path, log: EventLog) -> dict:
    src, dst = link.open()
    with src, dst:
        s, d = src.read(), dst.read()
        missing = [k for k in KINDS if k not in dst.kinds]
        if missing:
            raise ConfigError(f"{dst.describe()} cannot hold {', '.join(missing)}")
        state_dir.mkdir(parents=True, exist_ok=True)
        snapshot.save(s, state_dir / "ns7-account-provider-start.json")
        diff = diff_directories(s, d, kinds=frozenset(KINDS), fields=_fields(dst))
    _ours(entry)
    log.info("start", f"bound to {src.describe()} (NS7: {len(s.users)} user(s), {len(s.groups)} group(s)) and "
                      f"{dst.describe()} (NS8: {len(d.users)} user(s), {len(d.groups)} group(s))")
    to_add = {k: len(diff.kinds[k].missing) for k in KINDS}
    log.info("start", f"sync will add {to_add['users']} user(s) and {to_add['groups']} group(s)")
    for kind in KINDS:
        for name in diff.kinds[kind].changed:
            log.warning("start", f"{kind[:-1]} {name} exists on NS8 and differs; NS8's entry is left as it is")
    return {"ns7_users": len(s.users), "ns7_groups": len(s.groups), "to_add": sum(to_add.values())}


def sync(link: ProviderLink, entry: dict, save: Callable[[], None], log: EventLog, action: str) -> dict:
    """Add what NS8 lacks, then bring what mailmigrate created up to date; returns counts."""
    src, dst = link.open()
    with src, dst:
        s, d = src.read(), dst.read()
        ours = _ours(entry)
        for kind in KINDS:  # intents first: abort must know every name even if the copy dies half-way
            for key in getattr(s, kind):
                if key not in getattr(d, kind) and key not in ours[kind]:
                    entry["entries"][kind].append(key)
                    ours[kind].add(key)
        save()
        added = copy(src, dst, update_existing=False, password_policy=PasswordPolicy("skip"))
        # what the first pass could not add is not tried again (one error per object, not two)
        failed = {(k, fold(n)) for k, n, _ in added.failed}
        todo = {k: {n for n in names if (k, n) not in failed} for k, names in ours.items()}
        updated = copy(_Subset(s, todo), dst, update_existing=True, password_policy=PasswordPolicy("skip"))
    _report(added, updated, ours, s, log, action)
    return {"users_added": len(added.created.get("users", [])), "groups_added": len(added.created.get("groups", [])),
            "updated": sum(map(len, updated.updated.values())), "failed": len(added.failed) + len(updated.failed)}


def _report(added: CopyReport, updated: CopyReport, ours: dict[str, set[str]], s: Directory, log: EventLog,
            action: str) -> None:
    for kind, names in added.created.items():
        log.info(action, f"{kind} added on NS8: {', '.join(sorted(names))}")
    for kind, names in updated.updated.items():
        log.info(action, f"{kind} updated on NS8 from NS7: {', '.join(sorted(names))}")
    for kind, names in added.left_alone.items():
        for n in names:
            if n.casefold() not in ours.get(kind, set()):
                log.warning(action, f"{kind[:-1]} {n} existed on NS8 before and differs from NS7; left as it is")
    for k, n, r in added.failed + updated.failed:
        log.error(action, f"{k[:-1]} {n}: {r}")
    for p in added.passwords:
        if p.action != "kept":
            log.warning(action, f"password of {p.user}: {p.reason}")
    for kind in KINDS:
        for key in sorted(ours[kind] - set(getattr(s, kind))):
            log.warning(action, f"{kind[:-1]} {key} was removed on NS7 after it was copied; still on NS8")


def verify(link: ProviderLink, state_dir: Path, log: EventLog) -> bool:
    """The post-migration checklist between NS7 and NS8 (kept as JSON next to the state) and the password
    hashes; True when nothing of NS7 is missing on NS8."""
    src, dst = link.open()
    with src, dst:
        s, d = src.read(), dst.read()
        schemes = dst.password_schemes
    cl = compare(s, d, group_ids="gid" in _fields(dst).get("groups", ()))
    replace_file(state_dir / "ns7-account-provider-checklist.json", (cl.as_json() + "\n").encode("utf-8"), "umask",
                 suffix=".tmp")
    snapshot.save(s, state_dir / "ns7-account-provider-finish.json")
    ok = cl.ok
    for item in cl.items:
        for m in item.missing:
            log.error("finish", f"checklist: {item.name}: {m} is on NS7, not on NS8")
    wrong = []
    for key, u in s.users.items():
        want = passwords.adapt(u.password, schemes) if isinstance(u.password, PasswordHash) else None
        if want is None:
            continue
        got = d.users.get(key)
        got_pw = got.password if got is not None else None
        if not isinstance(got_pw, PasswordHash) or passwords.to_ldap(got_pw) != passwords.to_ldap(want):
            wrong.append(u.login)
    if wrong:
        ok = False
        log.error("finish", f"password of {', '.join(sorted(wrong))} on NS8 is not the one NS7 has")
    if ok:
        n = sum(i.before for i in cl.items)
        log.info("finish", f"checklist passed: all {n} item(s) of NS7 are on NS8; password hashes match")
        _, note = convert_password_policy(AccountProvider("ldap", s.base_dn or "", local=True))
        log.warning("finish", note)
    return ok


def abort(link: ProviderLink, entry: dict, save: Callable[[], None], log: EventLog) -> int:
    """Remove the entries mailmigrate created on NS8 (groups before users); returns how many."""
    _, dst = link.open()
    removed = 0
    with dst:
        d = dst.read()
        for kind in ("groups", "users"):
            names = entry.setdefault("entries", {}).setdefault(kind, [])
            for key in list(names):
                if key in getattr(d, kind):
                    dst.delete(kind, key)
                    removed += 1
                names.remove(key)
                save()
    log.info("abort", f"{removed} entr{'y' if removed == 1 else 'ies'} mailmigrate had created removed from NS8; "
                      "NS7's provider unchanged")
    return removed


def disable_source(cfg_path: Path, log: EventLog) -> None:
    """NS7's OpenLDAP switched off in its configuration database; the running service follows when NS7
    applies it (``signal-event runlevel-adjust``)."""
    cfg = read_esmith(cfg_path)
    rec = cfg.get("slapd")
    if rec is None:
        log.warning("finish", "no slapd record in NS7's configuration database: stop NS7's OpenLDAP by hand")
        return
    rec.props["status"] = "disabled"
    write_esmith(cfg_path, cfg)
    log.info("finish", "NS7 account provider disabled (slapd status=disabled); on the NS7 host run: "
                       "signal-event runlevel-adjust")

