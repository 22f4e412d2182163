"""A Dovecot mail home copied file by file, so that IMAP and POP3 clients keep their caches.

Between two Dovecot Maildir servers (NethServer 7 -> 8, SME -> NethServer, ``sync --keep-uids`` between two
``maildir:`` paths) a message keeps its UID only if its file keeps its
name (the part before ``:`` is what ``dovecot-uidlist`` maps to a UID) and the folder keeps its
``dovecot-uidlist`` (UIDVALIDITY, NEXTUID, each UID, POP3 UIDLs in ``P`` fields) and ``dovecot-keywords``
(which letter is which keyword).  Copying through IMAP or the sync engine gives every message a new file
and so a new UID: every client would download everything again.  NethServer's own migration therefore
rsyncs the vmail tree; this does the same, with what rsync does not give:

* a message whose flags changed on the source (its name after ``:2,`` changed, or it moved from ``new/`` to
  ``cur/``) is renamed on the target, not copied twice;
* only files this copy wrote are ever removed from the target (a message deleted on the source since);
  what someone else put there stays.  The list of written files (the manifest, SQLite) is also what abort
  removes;
* a symlink is never followed or copied (a user could point one at any file of the server): it is skipped
  and reported by name;
* message files are written 0600 and directories 0700 whoever runs the copy, as NethServer's ``vmail`` tree
  has them, owned (when run as root) by the owner of the target mail home; each copy is fsynced before it
  replaces the target and each changed directory once at the end;
* per folder, messages first and ``dovecot-uidlist`` last, so the list never names a file not yet there.

:func:`verify_home` then proves, per folder, that the target holds the same message files (names and sizes)
and the same UID list and keywords as the source.  Dovecot's full-text indexes (``lucene-indexes``) and
Maildir++ quota files (``maildirsize``, stale once mail moves) are not copied; Dovecot's other index files
are, as rsync copies them: they hold each reader's private flags of shared and public folders.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..formats.atomic import fsync_path

EXCLUDED_DIRS = frozenset({"lucene-indexes"})
EXCLUDED_FILES = frozenset({"maildirsize"})
MESSAGE_DIRS = ("cur", "new")
FILE_MODE, DIR_MODE = 0o600, 0o700


def take_owner(path: Path, like: Path) -> None:
    """Run as root, a new file or directory gets the owner of the mail home it lands in (NS8's ``vmail``,
    as rsync's ``--usermap`` gives it in NethServer's own migration): a Dovecot already serving that home
    must read what arrives, and 0600 leaves it nobody else."""
    if os.geteuid() != 0:
        return
    st = os.stat(like)
    if st.st_uid != 0 or st.st_gid != 0:
        os.lchown(path, st.st_uid, st.st_gid)


def message_base(name: str) -> str:
    """The part of a Maildir file name that ``dovecot-uidlist`` maps to a UID."""
    return name.split(":", 1)[0]


@dataclass
class CopyResult:
    copied: int = 0  # message files
    files: int = 0  # other files (UID lists, keywords, indexes, ACLs, sieve scripts)
    renamed: int = 0
    removed: int = 0
    links: list[str] = field(default_factory=list)  # symlinks skipped, relative to the source home
    problems: list[str] = field(default_factory=list)


class Manifest:
    """Which target files this copy wrote, per mail home: only those are ever removed again."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("CREATE TABLE IF NOT EXISTS files (home TEXT, rel TEXT, PRIMARY KEY (home, rel))")

    def close(self) -> None:
        self.db.commit()
        self.db.close()

    def __enter__(self) -> "Manifest":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, home: str, rel: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO files VALUES (?, ?)", (home, rel))

    def drop(self, home: str, rel: str) -> None:
        self.db.execute("DELETE FROM files WHERE home = ? AND rel = ?", (home, rel))

    def has(self, home: str, rel: str) -> bool:
        return self.db.execute("SELECT 1 FROM files WHERE home = ? AND rel = ?", (home, rel)).fetchone() is not None

    def files(self, home: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT rel FROM files WHERE home = ? ORDER BY rel", (home,))]

    def forget(self, home: str) -> None:
        self.db.execute("DELETE FROM files WHERE home = ?", (home,))
        self.db.commit()


RelMap = Callable[[tuple[str, ...]], tuple[str, ...]]


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return a.st_size == b.st_size and a.st_mtime_ns == b.st_mtime_ns


class _Copier:
    def __init__(self, src: Path, dst: Path, manifest: Manifest, home: str, rel_map: RelMap,
                 exclude: frozenset[str], skip_files: frozenset[str]):
        self.src, self.dst, self.m, self.home, self.rel_map = src, dst, manifest, home, rel_map
        self.exclude = exclude
        self.skip_files = EXCLUDED_FILES | skip_files
        self.res = CopyResult()
        self.dirty: set[Path] = set()
        self.seen: set[str] = set()  # target files the source has now

    def target(self, rel: tuple[str, ...]) -> Path:
        return self.dst.joinpath(*self.rel_map(rel))

    def rel_key(self, p: Path) -> str:
        return str(p.relative_to(self.dst))

    def mkdir(self, d: Path) -> None:
        missing = []
        p = d
        while not os.path.lexists(p):
            missing.append(p)
            p = p.parent
        for m in reversed(missing):
            os.mkdir(m, DIR_MODE)
            if self.dst in m.parents:
                take_owner(m, self.dst)
            self.dirty.add(m.parent)
        if d.is_symlink() or not d.is_dir():
            raise NotADirectoryError(f"{d}: not a directory on the target")

    def put(self, sp: Path, st: os.stat_result, tp: Path, *, message: bool = False) -> None:
        """Copy one file unless the target has it already (same size and mtime, as rsync decides)."""
        self.seen.add(self.rel_key(tp))
        try:
            tst = os.lstat(tp)
            if stat.S_ISREG(tst.st_mode) and _same_file(st, tst):
                self.m.add(self.home, self.rel_key(tp))
                return
        except FileNotFoundError:
            pass
        self.mkdir(tp.parent)
        tmp = tp.with_name(f".{tp.name}.mailmigrate-tmp")
        try:
            fd_in = os.open(sp, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            self.res.problems.append(f"{sp.relative_to(self.src)}: not copied ({e.strerror})")
            return
        try:
            with os.fdopen(fd_in, "rb") as fin:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
                with os.fdopen(fd_out, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
                    fout.flush()
                    os.fsync(fout.fileno())
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            take_owner(tmp, self.dst)
            self.m.add(self.home, self.rel_key(tp))  # recorded before it exists under its name: abort finds it
            os.replace(tmp, tp)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        self.dirty.add(tp.parent)
        if message:
            self.res.copied += 1
        else:
            self.res.files += 1

    def remove(self, tp: Path) -> None:
        os.unlink(tp)
        self.m.drop(self.home, self.rel_key(tp))
        self.dirty.add(tp.parent)
        self.res.removed += 1

    def messages(self, folder_rel: tuple[str, ...], entries: dict[str, list[tuple[str, os.stat_result]]]) -> None:
        """One folder's ``cur``/``new``: same names as the source; renamed when only the flags changed;
        files of ours that the source no longer has removed."""
        want: dict[str, tuple[str, str, os.stat_result]] = {}
        for sub in MESSAGE_DIRS:
            for name, st in entries.get(sub, []):
                want[message_base(name)] = (sub, name, st)
        have: dict[str, list[Path]] = {}
        for sub in MESSAGE_DIRS:
            d = self.target(folder_rel + (sub,))
            if d.is_dir() and not d.is_symlink():
                for e in os.scandir(d):
                    if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
                        have.setdefault(message_base(e.name), []).append(Path(e.path))
        for base, (sub, name, st) in want.items():
            tp = self.target(folder_rel + (sub, name))
            for old in have.pop(base, []):
                if old == tp:
                    continue
                if not os.path.lexists(tp) and os.lstat(old).st_size == st.st_size and \
                        self.m.has(self.home, self.rel_key(old)):
                    self.mkdir(tp.parent)
                    os.rename(old, tp)
                    os.utime(tp, ns=(st.st_atime_ns, st.st_mtime_ns))
                    self.m.drop(self.home, self.rel_key(old))
                    self.m.add(self.home, self.rel_key(tp))
                    self.seen.add(self.rel_key(tp))
                    self.dirty.update({old.parent, tp.parent})
                    self.res.renamed += 1
                elif self.m.has(self.home, self.rel_key(old)):
                    self.remove(old)  # the same message under its old name: one file per UID
            self.put(self.src.joinpath(*folder_rel, sub, name), st, tp, message=True)
        self.m.db.commit()  # per folder: after a crash, abort still finds what this folder's copy wrote

    def run(self) -> CopyResult:
        if not self.src.is_dir() or self.src.is_symlink():
            self.res.problems.append(f"{self.src}: no mail home there")
            return self.res
        self.mkdir(self.dst)
        plain: list[tuple[Path, os.stat_result, Path]] = []
        for dirpath, dirnames, filenames in os.walk(self.src):
            here = Path(dirpath)
            rel = here.relative_to(self.src).parts
            for d in list(dirnames):
                if d in EXCLUDED_DIRS or (not rel and d in self.exclude) or os.path.islink(here / d):
                    if os.path.islink(here / d):
                        self.link(here / d)
                    dirnames.remove(d)
            if rel and rel[-1] in MESSAGE_DIRS:
                continue  # done with its folder below
            if rel and rel[-1] == "tmp":
                self.mkdir(self.target(rel))
                dirnames[:] = []
                continue  # deliveries in progress: the next sync takes them from new/
            self.mkdir(self.target(rel))
            boxes = {}
            for sub in MESSAGE_DIRS:
                if sub in dirnames:
                    boxes[sub] = []
                    for e in os.scandir(here / sub):
                        if e.is_symlink():
                            self.link(Path(e.path))
                        elif e.is_file(follow_symlinks=False) and not e.name.startswith("."):
                            boxes[sub].append((e.name, e.stat(follow_symlinks=False)))
            if boxes:
                for sub in (*MESSAGE_DIRS, "tmp"):  # a Maildir has all three, whatever a clone of it kept
                    self.mkdir(self.target(rel + (sub,)))
                self.messages(rel, boxes)
            for f in filenames:
                sp = here / f
                if f in self.skip_files or f.endswith(".mailmigrate-tmp") or (not rel and f in self.exclude):
                    continue
                st = os.lstat(sp)
                if stat.S_ISLNK(st.st_mode):
                    if not (rel == () and f == ".dovecot.sieve"):  # the active script: finish links it
                        self.link(sp)
                    continue
                if stat.S_ISREG(st.st_mode):
                    plain.append((sp, st, self.target(rel + (f,))))
        for sp, st, tp in plain:  # dovecot-uidlist and the indexes after every message they name
            self.put(sp, st, tp)
        for rel in self.m.files(self.home):  # ours, and gone from the source: a deleted message or folder
            if rel in self.seen:
                continue
            if os.path.lexists(self.dst / rel):
                self.remove(self.dst / rel)
            else:
                self.m.drop(self.home, rel)
        self.m.db.commit()
        for d in sorted(self.dirty, key=lambda p: len(p.parts), reverse=True):
            if d.is_dir():
                fsync_path(d)
        return self.res

    def link(self, p: Path) -> None:
        self.res.links.append(f"{p.relative_to(self.src)} -> {os.readlink(p)}")


def copy_home(src: Path, dst: Path, manifest: Manifest, *, home: str, rel_map: RelMap = lambda rel: rel,
              exclude: tuple[str, ...] = (), skip_files: tuple[str, ...] = ()) -> CopyResult:
    """Bring ``dst`` to what ``src`` holds (see the module docstring).  ``rel_map`` renames paths on the way
    (NS8's ``Maildir/shared/<owner>`` without the domain); ``exclude``: top-level files or directories, and
    ``skip_files``: file names at any depth, that another step writes converted (NethServer's ACL files)."""
    return _Copier(src, dst, manifest, home, rel_map, frozenset(exclude), frozenset(skip_files)).run()


def link_active_script(src_home: Path, dst_home: Path) -> str | None:
    """Dovecot's active sieve script is a symlink ``.dovecot.sieve -> sieve/NAME.sieve`` in the home: made
    again on the target when it points inside the home's ``sieve/``; anything else (absolute, ``..``) is
    something a user planted and is returned for the caller to report, never linked."""
    link = src_home / ".dovecot.sieve"
    if not link.is_symlink() or (dst_home / ".dovecot.sieve").is_symlink():
        return None
    target = os.readlink(link)
    parts = Path(target).parts
    if os.path.isabs(target) or ".." in parts or not parts or parts[0] != "sieve":
        return f".dovecot.sieve -> {target}"
    os.symlink(target, dst_home / ".dovecot.sieve")
    return None


def remove_copied(dst: Path, manifest: Manifest, *, home: str) -> int:
    """Abort: remove every file this copy wrote under ``dst`` (nothing else); returns how many messages."""
    n = 0
    for rel in manifest.files(home):
        p = dst / rel
        if os.path.lexists(p) and not p.is_dir():
            os.unlink(p)
            n += Path(rel).parent.name in MESSAGE_DIRS
    manifest.forget(home)
    return n


# -- verification ----------------------------------------------------------------------------------------


def parse_uidlist(data: bytes) -> tuple[dict[str, str], dict[int, tuple[str, str]]]:
    """(header fields, uid -> (file base, extension fields)) of a ``dovecot-uidlist`` version 3."""
    lines = data.decode("utf-8", "surrogateescape").split("\n")
    head = {w[0]: w[1:] for w in lines[0].split()[1:] if w} if lines and lines[0] else {}
    records = {}
    for ln in lines[1:]:
        if not ln.strip():
            continue
        left, _, base = ln.partition(" :")
        if not _:
            left, _, base = ln.partition(" ")
        parts = left.split()
        if parts and parts[0].isdigit():
            records[int(parts[0])] = (base, " ".join(sorted(parts[1:])))
    return head, records


def folder_dirs(home: Path) -> list[tuple[str, ...]]:
    """Relative paths of every Maildir folder (a directory with ``cur/``) below a mail home."""
    out = []
    for dirpath, dirnames, _ in os.walk(home):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS and not os.path.islink(os.path.join(dirpath, d))]
        if "cur" in dirnames:
            out.append(Path(dirpath).relative_to(home).parts)
    return sorted(out)


def verify_home(src: Path, dst: Path, *, rel_map: RelMap = lambda rel: rel) -> list[str]:
    """What a mail client of the source would miss on the target: per folder, a message file (name and size),
    UIDVALIDITY, NEXTUID, each UID with its file and POP3 UIDL, and the keywords.  Empty when nothing."""
    problems = []
    for rel in folder_dirs(src):
        s, t = src.joinpath(*rel), dst.joinpath(*rel_map(rel))
        label = "/".join(rel) or "(home)"

        def files(d: Path) -> dict[str, int]:
            return {f"{sub}/{e.name}": e.stat(follow_symlinks=False).st_size for sub in MESSAGE_DIRS
                    if (d / sub).is_dir() for e in os.scandir(d / sub)
                    if e.is_file(follow_symlinks=False) and not e.name.startswith(".")}

        want, got = files(s), files(t)
        missing = sorted(k for k, size in want.items() if got.get(k) != size)
        if missing:  # mail only the target has (delivered there meanwhile) is no loss: it gets new UIDs
            problems.append(f"{label}: {len(missing)} message file(s) missing or different, e.g. {missing[:3]}")
        for meta in ("dovecot-uidlist", "dovecot-keywords"):
            a, b = s / meta, t / meta
            if not a.is_file():
                continue
            if not b.is_file():
                problems.append(f"{label}: {meta} missing on the target")
                continue
            if meta == "dovecot-uidlist":
                (ha, ra), (hb, rb) = parse_uidlist(a.read_bytes()), parse_uidlist(b.read_bytes())
                if (ha.get("V"), ha.get("N")) != (hb.get("V"), hb.get("N")):
                    problems.append(f"{label}: UIDVALIDITY/UIDNEXT {ha.get('V')}/{ha.get('N')} on the source, "
                                    f"{hb.get('V')}/{hb.get('N')} on the target")
                elif ra != rb:
                    problems.append(f"{label}: UIDs or POP3 UIDLs differ")
            elif a.read_bytes() != b.read_bytes():
                problems.append(f"{label}: keywords differ")
    return problems
