"""Configuration takeover from a Zarafa directory (/etc/zarafa) to a Kopano one (/etc/kopano).

The seed offers two ways, and both are here:

* ``changed`` (the seed's recommended way a): only the directives the administrator changed from Zarafa's
  shipped defaults are carried into Kopano's own default files, so Kopano's new defaults (sockets under
  /var/run/kopano, run as user kopano) stay in effect for everything nobody chose.  Without Zarafa's
  default files the directives whose Kopano-translated value differs from Kopano's value are carried,
  which is the best guess available and is said so.
* ``copy`` (way b): the original Kopano directory is kept as ``kopano-orig`` beside it, the target is
  replaced by a copy of the Zarafa tree, and the copy is fixed up.

Either way, server.cfg's ``enable_hosted_zarafa``/``enable_distributed_zarafa`` are renamed (Kopano knows
no alias), Zarafa paths are rewritten to Kopano's (sockets, pid files, logs, attachments, the webapp
symlink), ``mysql_database = zarafa`` becomes ``kopano`` and directives Kopano does not know are warned
about.  The result is computed in memory first, so the dry run is the unified diff that applying writes.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ..plan import Plan, Step, backup_file, write_atomic
from . import cfgfile, modernise

RENAMES = {
    "enable_hosted_zarafa": "enable_hosted_kopano",
    "enable_distributed_zarafa": "enable_distributed_kopano",
}

SERVER_SOCK = "/var/run/kopano/server.sock"
PRIO_SOCK = "/var/run/kopano/prio.sock"
SEARCH_SOCK = "/var/run/kopano/search.sock"

# Whole-value and in-value rewrites, most specific first.  ``/var/run/zarafa`` alone was the server's
# socket before Zarafa 7.2 moved it to /var/run/zarafad/server.sock.
_PATH_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"/var/run/zarafad/server\.sock|/var/run/zarafa-server\.sock|/var/run/zarafa(?![\w./-])"),
     SERVER_SOCK),
    (re.compile(r"/var/run/zarafad/prio\.sock|/var/run/zarafa-prio(?:\.sock)?(?![\w./-])"), PRIO_SOCK),
    (re.compile(r"/var/run/zarafad/search\.sock|/var/run/zarafa-search(?:\.sock)?(?![\w./-])"), SEARCH_SOCK),
    (re.compile(r"/var/run/zarafa-([A-Za-z0-9_-]+)\.pid"), r"/var/run/kopano/\1.pid"),
    # ECServer.cpp (8.7.9) defaults license_socket to /var/run/kopano/licensed.sock
    (re.compile(r"/var/run/zarafa-licensed(?:\.sock)?(?![\w./-])"), "/var/run/kopano/licensed.sock"),
    (re.compile(r"/var/run/zarafad/"), "/var/run/kopano/"),
    (re.compile(r"/etc/zarafa(?=/|$|\s)"), "/etc/kopano"),
    (re.compile(r"/var/lib/zarafa(?=/|$|\s)"), "/var/lib/kopano"),
    (re.compile(r"/var/log/zarafa(?=/|$|\s)"), "/var/log/kopano"),
    (re.compile(r"/usr/share/zarafa-webapp"), "/usr/share/kopano-webapp"),
]
_LDAP_NAME = re.compile(r"\bzarafa(?=[A-Z-])")
_KOPANO_LDAP_NAME = re.compile(r"\bkopano(?=[A-Z-])")
_USER_KEYS = {"run_as_user", "run_as_group"}


def translate_path(value: str) -> str:
    for rx, repl in _PATH_RULES:
        value = rx.sub(repl, value)
    return value


def is_ldap_file(rel: str) -> bool:
    return Path(rel).name.startswith("ldap") and rel.endswith(".cfg")


def translate_value(rel: str, name: str, value: str, ldap_schema: str = "kopano") -> str:
    """A Zarafa directive's value as Kopano needs it."""
    # mysql_database keeps its name: kopano-server creates a database it does not find (ECServer.cpp), so a
    # renamed directive without a renamed database would start Kopano on an empty one.
    if name in _USER_KEYS and value.strip() in ("", "zarafa"):
        return "kopano"  # ZCP <= 7.2.1 shipped them empty (root); Kopano runs as kopano
    if name == "local_admin_users":
        return " ".join("kopano" if w == "zarafa" else w for w in value.split())
    value = translate_path(value)
    if ldap_schema == "kopano" and is_ldap_file(rel):
        value = _LDAP_NAME.sub("kopano", value)
    return value


def translate_text(rel: str, text: str, ldap_schema: str = "kopano") -> str:
    for old, new in RENAMES.items():
        text = cfgfile.rename_directive(text, old, new)
    return cfgfile.map_values(text, lambda n, v: translate_value(rel, n, v, ldap_schema))


# -- trees ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """A file (``data`` and ``mode``) or a symbolic link (``link``) inside a configuration tree."""

    data: bytes | None = None
    mode: int = 0o644
    link: str | None = None


def read_tree(root: Path) -> dict[str, Item]:
    out: dict[str, Item] = {}
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = Item(link=os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = Item(data=p.read_bytes(), mode=st.st_mode & 0o7777)
    return out


def _text(item: Item | None) -> str:
    return item.data.decode("utf-8", "surrogateescape") if item and item.data is not None else ""


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def tree_diff(before: dict[str, Item], after: dict[str, Item], a: str, b: str) -> list[str]:
    """A unified diff of two trees, plus one line per link, mode, added or removed file."""
    out: list[str] = []
    for rel in sorted(set(before) | set(after)):
        x, y = before.get(rel), after.get(rel)
        if x == y:
            continue
        if y is None:
            out.append(f"remove {b}/{rel}")
            continue
        if y.link is not None or (x is not None and x.link is not None):
            out.append(f"link {b}/{rel} -> {y.link}" if y.link is not None else f"replace link {b}/{rel} by a file")
            if y.link is not None:
                continue
        if x is not None and x.data == y.data:
            out.append(f"chmod {y.mode:o} {b}/{rel}")
            continue
        if b"\0" in (y.data or b"") or (x is not None and b"\0" in (x.data or b"")):
            out.append(f"{'write' if x else 'create'} {b}/{rel} (binary, {len(y.data)} bytes)")
            continue
        out += [cfgfile.mask_secret(ln.rstrip("\n")) for ln in difflib.unified_diff(
            _text(x).splitlines(keepends=True), _text(y).splitlines(keepends=True),
            fromfile=f"{a}/{rel}" if x else "/dev/null", tofile=f"{b}/{rel}")]
    return out


def write_tree(root: Path, current: dict[str, Item], desired: dict[str, Item], *, remove_extra: bool,
               backup: bool) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if remove_extra:
        for rel in sorted(set(current) - set(desired), reverse=True):
            p = root / rel
            if p.is_symlink() or p.is_file():
                p.unlink()
        for dirpath, dirnames, _ in os.walk(root, topdown=False):
            for d in dirnames:
                q = Path(dirpath) / d
                if not q.is_symlink() and q.is_dir() and not any(q.iterdir()):
                    rel = str(q.relative_to(root))
                    if not any(k.startswith(rel + "/") for k in desired):
                        q.rmdir()
    for rel, item in sorted(desired.items()):
        if current.get(rel) == item:
            continue
        p = root / rel
        if backup:
            backup_file(p)
        if item.link is not None:
            if p.is_symlink() or p.exists():
                p.unlink()
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(item.link, p)
        else:
            if p.is_symlink():
                p.unlink()
            write_atomic(p, item.data, mode=item.mode)


# -- the takeover ---------------------------------------------------------------------------------------

@dataclass
class Takeover:
    """What the target tree becomes, and why (``warnings``, ``notes``)."""

    desired: dict[str, Item]
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ConfigMigration:
    zarafa_dir: Path = Path("/etc/zarafa")
    kopano_dir: Path = Path("/etc/kopano")
    mode: str = "changed"  # "changed" (way a) or "copy" (way b)
    zarafa_defaults: Path | None = None  # Zarafa's shipped example-config, for way a
    kopano_defaults: Path | None = None  # Kopano's shipped example-config (else the installed files)
    ldap_schema: str = "kopano"  # the LDAP schema Kopano will read: "kopano" (migrated) or "zarafa"
    #: where "!include /usr/share/kopano/…" lines of Kopano's files are read from (a test's root, or /)
    include_root: Path = Path("/")

    def __post_init__(self):
        self.zarafa_dir, self.kopano_dir = Path(self.zarafa_dir), Path(self.kopano_dir)
        if self.mode not in ("changed", "copy"):
            raise ConfigError(f"unknown configuration takeover mode {self.mode!r} (changed, copy)")
        if self.ldap_schema not in ("kopano", "zarafa"):
            raise ConfigError(f"unknown LDAP schema {self.ldap_schema!r} (kopano, zarafa)")
        if not self.zarafa_dir.is_dir():
            raise ConfigError(f"{self.zarafa_dir}: no such Zarafa configuration directory")

    @property
    def orig_dir(self) -> Path:
        return self.kopano_dir.with_name(self.kopano_dir.name + "-orig")

    def _kopano_reference(self) -> dict[str, Item]:
        """Kopano's own files: the shipped examples if given, else kopano-orig once made, else the target."""
        if self.kopano_defaults is not None:
            return read_tree(Path(self.kopano_defaults))
        if self.mode == "copy" and self.orig_dir.is_dir():
            return read_tree(self.orig_dir)
        return read_tree(self.kopano_dir)

    def compute(self) -> Takeover:
        zarafa = read_tree(self.zarafa_dir)
        reference = self._kopano_reference()
        if self.mode == "copy":
            return self._copy(zarafa, reference)
        return self._changed(zarafa, reference)

    def _modern(self, reference: dict[str, Item], target: dict[str, Item]) -> bool:
        """Whether the Kopano is 8.5 or later: it ships no /etc/kopano files, or its server.cfg speaks of
        server_listen (8.5 replaced the old listener directives)."""
        ref = reference.get("server.cfg") or target.get("server.cfg")
        return ref is None or "server_listen" in cfgfile.known(_text(ref))

    def _known(self, text: str) -> tuple[set[str], bool]:
        """Names a Kopano file knows, following its !include lines; False when an include is unreadable
        (then an unknown name cannot be told from one the included file documents)."""
        names, complete = cfgfile.known(text), True
        for inc in cfgfile.includes(text):
            p = self.include_root / inc.lstrip("/")
            try:
                names |= cfgfile.known(p.read_text(encoding="utf-8", errors="surrogateescape"))
            except OSError:
                complete = False
        return names, complete

    def _unknown(self, t: Takeover, rel: str, text: str, reference: dict[str, Item]) -> None:
        ref = reference.get(rel)
        if ref is None:
            return
        known = cfgfile.known(_text(ref))
        for name in cfgfile.active(text):
            if name not in known:
                t.warnings.append(f"{rel}: {name}: Kopano's {rel} does not know this directive; check that "
                                  "it still applies")

    def _leftovers(self, t: Takeover, rel: str, text: str) -> None:
        for name, value in cfgfile.active(text).items():
            if cfgfile.SECRET_NAME.search(name):
                continue
            if "zarafa" in value.lower() and not (self.ldap_schema == "zarafa" and is_ldap_file(rel)):
                t.warnings.append(f"{rel}: {name} = {value}: still names Zarafa; check it")
            if name == "mysql_database":
                t.notes.append(f"{rel}: mysql_database = {value} is kept: Kopano uses the Zarafa database under "
                               "its own name (kopano-server would create an empty one for a name it cannot find)")

    def _copy(self, zarafa: dict[str, Item], reference: dict[str, Item]) -> Takeover:
        t = Takeover({})
        for rel, item in zarafa.items():
            if item.link is not None:
                t.desired[rel] = Item(link=translate_path(item.link))
                continue
            if rel.endswith(".cfg"):
                text = translate_text(rel, _text(item), self.ldap_schema)
                if self._modern(reference, reference):
                    text = modernise.modernise(rel, text)
                self._unknown(t, rel, text, reference)
                self._leftovers(t, rel, text)
                if rel not in reference and any(r.endswith(".cfg") for r in reference):
                    t.warnings.append(f"{rel}: Kopano ships no {rel}; no Kopano component may read it")
                t.desired[rel] = Item(data=_encode(text), mode=item.mode)
            else:
                t.desired[rel] = item
        return t

    def _changed(self, zarafa: dict[str, Item], reference: dict[str, Item]) -> Takeover:
        target = read_tree(self.kopano_dir)
        t = Takeover(dict(target))
        defaults = read_tree(Path(self.zarafa_defaults)) if self.zarafa_defaults else None
        modern = self._modern(reference, target)
        if defaults is None:
            t.notes.append("Zarafa's default files not given (--zarafa-defaults): every directive whose "
                           "Kopano-translated value differs from Kopano's was carried over")
        for rel, item in sorted(zarafa.items()):
            if not rel.endswith(".cfg") or item.link is not None:
                if rel not in target and not rel.startswith("webapp"):
                    t.desired[rel] = Item(link=translate_path(item.link)) if item.link else item
                continue
            zarafa_text = _text(item)
            base_text = _text(defaults.get(rel)) if defaults is not None and rel in defaults else None
            if modern:
                zarafa_text = modernise.modernise(rel, zarafa_text)
                base_text = modernise.modernise(rel, base_text) if base_text is not None else None
            kop_item = target.get(rel)
            if kop_item is None:
                # Kopano >= 8.5 ships no files in /etc/kopano, and no Kopano ships an administrator's own
                # (ldap.cfg, a second ldap file): the whole Zarafa file, translated, is the configuration.
                text = translate_text(rel, zarafa_text, self.ldap_schema)
                t.notes.append(f"{rel}: Kopano has no {rel}: the whole Zarafa file is carried, translated")
                self._leftovers(t, rel, text)
                t.desired[rel] = Item(data=_encode(text), mode=item.mode)
                continue
            mine = cfgfile.active(zarafa_text)
            base = cfgfile.active(base_text) if base_text is not None else (
                cfgfile.active("") if defaults is not None else None)
            ref_text = _text(reference.get(rel) or kop_item)
            known, complete = self._known(ref_text)
            if modern:
                known |= set(modernise.new_values(rel, zarafa_text))
            kop_values = cfgfile.active(ref_text)
            text = _text(kop_item)
            for name, value in mine.items():
                if base is not None and base.get(name) == value:
                    continue
                new_name = RENAMES.get(name, name)
                new_value = translate_value(rel, name, value, self.ldap_schema)
                if base is None and kop_values.get(new_name) == new_value:
                    continue
                if new_name not in known:
                    if complete:
                        t.warnings.append(f"{rel}: {name}: Kopano does not know this directive; "
                                          "not carried over")
                        continue
                    t.warnings.append(f"{rel}: {name}: not in Kopano's {rel} nor in what it includes that "
                                      "could be read; carried over, check it")
                text = cfgfile.set_directive(text, new_name, new_value, "carried over from Zarafa by mailmigrate")
            if self.ldap_schema == "zarafa" and is_ldap_file(rel):
                for name, value in cfgfile.active(text).items():
                    if _KOPANO_LDAP_NAME.search(value):
                        text = cfgfile.set_directive(text, name, _KOPANO_LDAP_NAME.sub("zarafa", value))
            if rel == "server.cfg" and modern:
                text = self._keep_listener(t, zarafa_text, text)
            self._leftovers(t, rel, text)
            t.desired[rel] = Item(data=_encode(text), mode=kop_item.mode)
        return t

    def _keep_listener(self, t: Takeover, zarafa_text: str, text: str) -> str:
        """Kopano's later releases listen on loopback by default (server_listen = *%lo:236); a Zarafa that
        served other machines must go on doing so, and the administrator must hear about it."""
        was = cfgfile.active(zarafa_text).get("server_listen", "")
        now = cfgfile.active(text).get("server_listen")
        if was and not modernise.loopback_only(was) and (now is None or modernise.loopback_only(now)):
            t.warnings.append(f"server.cfg: Zarafa listened on {was}, Kopano's default listens on loopback only; "
                              f"server_listen = {was} is set so that clients elsewhere still reach it - narrow it "
                              "if they need not")
            text = cfgfile.set_directive(text, "server_listen", was, "Zarafa's listener, kept by mailmigrate")
        return text

    # -- plan -----------------------------------------------------------------------------------------

    def diff(self) -> list[str]:
        return tree_diff(read_tree(self.kopano_dir), self.compute().desired, str(self.kopano_dir),
                         str(self.kopano_dir))

    def plan(self) -> Plan:
        plan = Plan(f"configuration takeover ({self.mode}) {self.zarafa_dir} -> {self.kopano_dir}")
        if self.mode == "copy":
            plan.add(Step(
                "keep Kopano's original configuration",
                f"copy {self.kopano_dir} to {self.orig_dir} for comparison",
                changes=lambda: [f"copy {self.kopano_dir} -> {self.orig_dir}"],
                apply=self._keep_orig,
                done=lambda: self.orig_dir.exists() or not self.kopano_dir.exists()))

        def changes() -> list[str]:
            t = self.compute()
            lines = tree_diff(read_tree(self.kopano_dir), t.desired, str(self.kopano_dir), str(self.kopano_dir))
            return lines

        def apply() -> list[str]:
            t = self.compute()
            write_tree(self.kopano_dir, read_tree(self.kopano_dir), t.desired,
                       remove_extra=self.mode == "copy", backup=self.mode == "changed")
            return [f"warning: {w}" for w in t.warnings] + [f"note: {n}" for n in t.notes]

        plan.add(Step("write Kopano configuration",
                      "carry the changed directives" if self.mode == "changed" else "copy and fix up",
                      changes=changes, apply=apply))
        return plan

    def _keep_orig(self) -> list[str]:
        shutil.copytree(self.kopano_dir, self.orig_dir, symlinks=True)
        return []
