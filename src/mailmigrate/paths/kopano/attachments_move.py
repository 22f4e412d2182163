"""Move of the attachment directory from Zarafa's place to Kopano's (``attachment_path``).

``mv /var/lib/zarafa/attachments/* /var/lib/kopano/attachments/`` as a plan: on one file system each
top-level entry is renamed (instant, whatever the size); across file systems each file is copied under a
temporary name, flushed, renamed into place and only then removed from the source, so an interruption
leaves every attachment in at least one of the two places and a rerun continues.  A file already present
in the target with the same size is not copied again.  Ownership zarafa -> kopano follows (see
permissions.py), and server.cfg's ``attachment_path`` is pointed at the new place, with a backup.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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

    def pending(self) -> list[str]:
        ents = self._entries()
        if not ents:
            return []
        how = "rename" if self.same_fs() else "copy, verify size, remove source file"
        files = sum(1 for e in ents for _ in ([e] if e.is_file() else e.rglob("*")))
        return [f"{how}: {len(ents)} entries ({files} files) {self.source} -> {self.target}"]

    def move(self) -> list[str]:
        self.target.mkdir(parents=True, exist_ok=True)
        if self.same_fs():
            n = 0
            for e in self._entries():
                dest = self.target / e.name
                if dest.exists() and e.is_dir():
                    _merge_rename(e, dest)
                else:
                    os.replace(e, dest)
                n += 1
            return [f"{n} entries renamed"]
        copied = skipped = 0
        for f in sorted(p for p in self.source.rglob("*") if p.is_file()):
            dest = self.target / f.relative_to(self.source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() and dest.stat().st_size == f.stat().st_size:
                skipped += 1
            else:
                tmp = dest.with_name(f".{dest.name}{PARTIAL}")
                shutil.copy2(f, tmp)
                with open(tmp, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
                copied += 1
            os.unlink(f)
        for d in sorted((p for p in self.source.rglob("*") if p.is_dir()), reverse=True):
            d.rmdir()
        return [f"{copied} files copied, {skipped} already there"]

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


def _merge_rename(src: Path, dest: Path) -> None:
    for e in sorted(src.iterdir()):
        d = dest / e.name
        if d.exists() and e.is_dir():
            _merge_rename(e, d)
        elif d.exists() and d.stat().st_size == e.stat().st_size:
            e.unlink()
        else:
            os.replace(e, d)
    src.rmdir()
