"""File permissions of the seed for Kopano running as the unprivileged user ``kopano``.

Configuration files 640 root:kopano and /etc/kopano 750 (services read, never write, their
credentials); ``ssl/`` 750 root:kopano with its files 640; everything owned by ``zarafa`` in Kopano's
data, log, attachment and search directories re-owned to ``kopano`` (user and group separately, as the
seed's two ``find -user``/``find -group`` commands do).

All paths sit under ``root`` so the plan can be made and tested on a copy.  Ownership changes are
planned and applied only for users and groups that exist on this machine; when ``kopano`` (or
``zarafa``) does not exist, the plan says so and changes the modes only.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from ..plan import Plan, Step


def _uid(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def _gid(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


@dataclass(frozen=True)
class Change:
    path: Path
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    def describe(self, owner: str | None, group: str | None) -> str:
        parts = []
        if self.mode is not None:
            parts.append(f"chmod {self.mode:o}")
        if self.uid is not None or self.gid is not None:
            who = (owner if self.uid is not None else "") + (f":{group}" if self.gid is not None else "")
            parts.append(f"chown {who}")
        return f"{' '.join(parts)} {self.path}"


class Permissions:
    def __init__(self, root: str | os.PathLike = "/", *, etc: str = "/etc/kopano", extra_dirs: list[str] = (),
                 user: str = "kopano", group: str = "kopano", old_user: str = "zarafa", old_group: str = "zarafa"):
        self.root = Path(root)
        self.etc = etc
        self.dirs = ["/var/lib/kopano", "/var/log/kopano", *extra_dirs]
        self.user, self.group, self.old_user, self.old_group = user, group, old_user, old_group

    def _p(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    def notes(self) -> list[str]:
        out = []
        if _gid(self.group) is None:
            out.append(f"group {self.group} does not exist here: group ownership is not changed")
        if _uid(self.user) is None:
            out.append(f"user {self.user} does not exist here: file owners are not changed")
        return out

    def changes(self) -> list[Change]:
        kgid, kuid = _gid(self.group), _uid(self.user)
        ouid, ogid = _uid(self.old_user), _gid(self.old_group)
        root_uid = 0
        out: list[Change] = []

        def want(p: Path, mode: int | None, uid: int | None, gid: int | None) -> None:
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                return
            m = mode if mode is not None and (st.st_mode & 0o7777) != mode else None
            u = uid if uid is not None and st.st_uid != uid else None
            g = gid if gid is not None and st.st_gid != gid else None
            if m is not None or u is not None or g is not None:
                out.append(Change(p, m, u, g))

        etc = self._p(self.etc)
        if etc.is_dir():
            want(etc, 0o750, root_uid if kgid is not None else None, kgid)
            for f in sorted(etc.rglob("*.cfg")):
                if f.is_file() and not f.is_symlink():
                    want(f, 0o640, root_uid if kgid is not None else None, kgid)
            ssl = etc / "ssl"
            if ssl.is_dir():
                want(ssl, 0o750, root_uid if kgid is not None else None, kgid)
                for f in sorted(ssl.rglob("*")):
                    if f.is_dir():
                        want(f, 0o750, root_uid if kgid is not None else None, kgid)
                    elif f.is_file():
                        want(f, 0o640, root_uid if kgid is not None else None, kgid)
        for d in self.dirs:
            top = self._p(d)
            if not top.exists():
                continue
            for p in [top, *sorted(top.rglob("*"))]:
                st = p.lstat()
                u = kuid if kuid is not None and ouid is not None and st.st_uid == ouid else None
                g = kgid if kgid is not None and ogid is not None and st.st_gid == ogid else None
                if u is not None or g is not None:
                    want(p, None, u, g)
        return out

    def lines(self) -> list[str]:
        return [c.describe(self.user, self.group) for c in self.changes()]

    def apply(self) -> list[str]:
        done = []
        for c in self.changes():
            if c.uid is not None or c.gid is not None:
                os.lchown(c.path, -1 if c.uid is None else c.uid, -1 if c.gid is None else c.gid)
            if c.mode is not None:
                os.chmod(c.path, c.mode)
            done.append(c.describe(self.user, self.group))
        return [f"{len(done)} paths changed"] + self.notes()

    def plan(self) -> Plan:
        return Plan(f"Kopano file permissions under {self.root}", [
            Step("permissions and ownership", "cfg 640 root:kopano, directories 750, zarafa -> kopano",
                 changes=lambda: self.lines() + [f"note: {n}" for n in self.notes()] if self.changes() else [],
                 apply=self.apply),
        ])
