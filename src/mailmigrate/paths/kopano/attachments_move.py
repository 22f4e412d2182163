"""Move of the attachment directory from Zarafa's place to Kopano's (``attachment_path``).

``mv /var/lib/zarafa/attachments/* /var/lib/kopano/attachments/`` as a plan: on one file system each
top-level entry is renamed (instant, whatever the size); across file systems each file is copied under a
temporary name, flushed, renamed into place and only then removed from the source, so an interruption
leaves every attachment in at least one of the two places and a rerun continues.  A file already present
in the target is compared byte for byte: the same content counts as moved (the source copy goes), another
content is a conflict — neither file is deleted or overwritten, the conflict is reported and the step fails
until someone decides (Kopano may already have written there).  A copy first checks that the target's file
system has room.  A source directory that is a mount point of its own is not copied at all: re-pointing the
mount (the fstab line) is the move, and the plan says so.  Ownership zarafa -> kopano follows (see
permissions.py), and server.cfg's ``attachment_path`` is pointed at the new place, with a backup.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ...errors import ConfigError
from ..plan import Plan, Step, backup_file, write_atomic
from . import cfgfile
from .permissions import Permissions

PARTIAL = ".mm-partial"


class AttachmentMove:
    def __init__(self, source: str | os.PathLike, target: str | os.PathLike, *, server_cfg: str | None = None,
                 force_copy: bool = False):
        self.source, self.target = Path(source), Path(target)
        self.server_cfg = Path(server_cfg) if server_cfg else None
        self.force_copy = force_copy

    def _entries(self) -> list[Path]:
        return sorted(self.source.iterdir()) if self.source.is_dir() else []

    def same_fs(self) -> bool:
        t = self.target if self.target.exists() else self.target.parent
        while not t.exists():
            t = t.parent
        return not self.force_copy and self.source.stat().st_dev == t.stat().st_dev

    def _mounted(self) -> bool:
        return self.source.is_dir() and os.path.ismount(self.source)

    def _fstab_plan(self) -> list[str]:
        return [f"{self.source} is a file system of its own: move it by re-pointing its mount, not by copying:",
                f"  stop kopano-server; umount {self.source}",
                f"  in /etc/fstab change the mount point {self.source} to {self.target}",
                f"  mkdir -p {self.target}; mount {self.target}; then run this step again"]

    def pending(self) -> list[str]:
        ents = self._entries()
        if not ents:
            return []
        if self._mounted():
            return self._fstab_plan()
        how = "rename" if self.same_fs() else "copy, compare, remove source file"
        files = sum(1 for e in ents for _ in ([e] if e.is_file() else e.rglob("*")))
        return [f"{how}: {len(ents)} entries ({files} files) {self.source} -> {self.target}"]

    def move(self) -> list[str]:
        if self._mounted():
            raise ConfigError("\n".join(self._fstab_plan()))
        self.target.mkdir(parents=True, exist_ok=True)
        conflicts: list[str] = []
        if self.same_fs():
            n = 0
            for e in self._entries():
                n += _merge_rename(e, self.target / e.name, conflicts)
            lines = [f"{n} entries renamed"]
        else:
            files = sorted(p for p in self.source.rglob("*") if p.is_file())
            need = sum(f.stat().st_size for f in files if not (self.target / f.relative_to(self.source)).exists())
            free = shutil.disk_usage(self.target).free
            if need > free:
                raise ConfigError(f"{self.target} has {free >> 20} MiB free, the attachments to copy need "
                                  f"{need >> 20} MiB: make room (or move the mount) first; nothing was copied")
            copied = skipped = 0
            for f in files:
                dest = self.target / f.relative_to(self.source)
                dest.parent.mkdir(parents=True, exist_ok=True)
                if dest.exists():
                    if not _same_content(f, dest):
                        conflicts.append(f"{f} and {dest} differ: both kept")
                        continue
                    skipped += 1
                else:
                    tmp = dest.with_name(f".{dest.name}{PARTIAL}")
                    shutil.copy2(f, tmp)
                    with open(tmp, "rb") as fh:
                        os.fsync(fh.fileno())
                    if not _same_content(f, tmp):
                        os.unlink(tmp)
                        raise ConfigError(f"{dest}: the copy differs from {f} (disk or file system error)")
                    os.replace(tmp, dest)
                    copied += 1
                os.unlink(f)
            for d in sorted((p for p in self.source.rglob("*") if p.is_dir()), reverse=True):
                if not any(d.iterdir()):
                    d.rmdir()
            lines = [f"{copied} files copied, {skipped} already there"]
        if conflicts:
            raise ConfigError("attachment files that exist in both places with different contents (Kopano may "
                              "have written there already); nothing of them was deleted or overwritten:\n  "
                              + "\n  ".join(conflicts))
        return lines

    def _cfg_change(self) -> list[str]:
        if self.server_cfg is None or not self.server_cfg.exists():
            return []
        cur = cfgfile.active(self.server_cfg.read_text()).get("attachment_path")
        return [] if cur == str(self.target) else [f"{self.server_cfg}: attachment_path {cur} -> {self.target}"]

    def _set_cfg(self) -> list[str]:
        backup_file(self.server_cfg)
        text = cfgfile.set_directive(self.server_cfg.read_text(), "attachment_path", str(self.target))
        write_atomic(self.server_cfg, text.encode())
        return []

    def plan(self) -> Plan:
        perms = Permissions("/", etc="/nonexistent", extra_dirs=[])
        perms.dirs = [str(self.target)]
        return Plan(f"attachments {self.source} -> {self.target}", [
            Step("move attachments", "same file system: rename; else copy then remove", changes=self.pending,
                 apply=self.move),
            Step("ownership zarafa -> kopano", "files of zarafa now belong to kopano",
                 changes=lambda: perms.lines() + ([f"note: {n}" for n in perms.notes()] if perms.changes() else []),
                 apply=perms.apply),
            Step("attachment_path in server.cfg", "Kopano must look where the files are",
                 changes=self._cfg_change, apply=self._set_cfg),
        ])


def _same_content(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def _merge_rename(src: Path, dest: Path, conflicts: list[str]) -> int:
    """Rename ``src`` to ``dest``; into an existing directory entry by entry. A file already at ``dest``
    with the same bytes makes the source copy redundant; with other bytes both stay (a conflict)."""
    if not dest.exists() and not dest.is_symlink():
        os.replace(src, dest)
        return 1
    if src.is_dir() and dest.is_dir():
        for e in sorted(src.iterdir()):
            _merge_rename(e, dest / e.name, conflicts)
        if not any(src.iterdir()):
            src.rmdir()
        return 1
    if src.is_file() and dest.is_file() and _same_content(src, dest):
        src.unlink()
        return 1
    conflicts.append(f"{src} and {dest} differ: both kept")
    return 0
