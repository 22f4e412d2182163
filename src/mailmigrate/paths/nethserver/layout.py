"""Where things are on each system, relative to a root the user chooses.

Every path is built under a root so that a migration can be tried on a copy in a scratch directory and then
pointed at ``/`` on the real machine with the same code; nothing here reaches outside its root.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...formats.atomic import replace_file


@dataclass(frozen=True)
class SmeSource:
    """An unpacked SME Server / NethService full backup (the archive's paths, under ``root``)."""

    root: Path

    @property
    def db_dir(self) -> Path:
        return self.root / "home/e-smith/db"

    def db(self, name: str) -> Path:
        return self.db_dir / name

    @property
    def shadow(self) -> Path:
        return self.root / "etc/shadow"

    def user_home(self, user: str) -> Path:
        return self.root / "home/e-smith/files/users" / user

    @property
    def admin_home(self) -> Path:
        return self.root / "home/e-smith"

    def maildir(self, user: str) -> Path:
        return (self.admin_home if user == "admin" else self.user_home(user)) / "Maildir"

    @property
    def shared_index(self) -> Path:
        return self.root / "etc/dovecot/sharedmailbox/dict.db"


@dataclass(frozen=True)
class NethServerTree:
    """A NethServer 6/7 system under ``root``: e-smith databases, vmail, homes."""

    root: Path

    @property
    def db_dir(self) -> Path:
        return self.root / "var/lib/nethserver/db"

    def db(self, name: str) -> Path:
        return self.db_dir / name

    @property
    def shadow(self) -> Path:
        return self.root / "etc/shadow"

    @property
    def vmail(self) -> Path:
        return self.root / "var/lib/nethserver/vmail"

    def mail_home(self, user: str, domain: str) -> Path:
        return self.vmail / (user if "@" in user or user == "vmail" else f"{user}@{domain}")

    @property
    def home(self) -> Path:
        return self.root / "var/lib/nethserver/home"

    @property
    def admin_migration(self) -> Path:
        return self.root / "var/lib/nethserver/migration/admin"

    @property
    def root_home(self) -> Path:
        return self.root / "root"

    @property
    def shared_index(self) -> Path:
        return self.vmail / "shared-mailboxes.db"

    @property
    def custom_templates(self) -> Path:
        return self.root / "etc/e-smith/templates-custom"

    @property
    def state_dir(self) -> Path:
        return self.root / "var/lib/mailmigrate"

    @property
    def log_dir(self) -> Path:
        return self.root / "var/log"


@dataclass(frozen=True)
class NS8MailTree:
    """The NS8 mail application's data under ``root`` (one directory per user, no domain in names)."""

    root: Path

    @property
    def vmail(self) -> Path:
        return self.root / "vmail"

    def mail_home(self, user: str) -> Path:
        return self.vmail / user

    @property
    def shared_index(self) -> Path:
        return self.vmail / "shared-mailboxes.db"

    @property
    def settings(self) -> Path:
        return self.root / "mail-settings.json"

    @property
    def fetch_tasks(self) -> Path:
        return self.root / "fetch-tasks.json"


def unpack_archive(archive: Path, dest: Path) -> Path:
    """Unpack a backup tar.gz into ``dest`` (once: an unpacked tree is reused by a rerun).

    Members that would land outside ``dest`` (absolute paths, ``..``) and devices are refused: the archive
    comes from another machine and is data, not instructions.  A symlink that is absolute or points out of
    ``dest`` is something a user of the old server could plant in a home: it is skipped (not the whole
    archive), and listed in the marker file for :func:`skipped_links` to report on every run.
    """
    marker = dest / MARKER
    if marker.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []

    def links_inside(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        try:
            return tarfile.data_filter(member, path)
        except (tarfile.AbsoluteLinkError, tarfile.LinkOutsideDestinationError):
            skipped.append(f"{member.name} -> {member.linkname}")
            return None

    try:
        with tarfile.open(archive, "r:*") as tf:
            tf.extractall(dest, filter=links_inside)
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"cannot unpack {archive}: {e}") from None
    # the marker says the tree is whole: the unpacked files reach the disk before it does, or a power loss
    # could leave a marker over empty files that a rerun would then migrate
    os.sync()
    text = str(archive) + "\n" + "".join(f"skipped link: {x}\n" for x in skipped)
    replace_file(marker, text.encode("utf-8", "surrogateescape"), "umask", suffix=".tmp", sync_dir=True)
    return dest


MARKER = ".mailmigrate-unpacked"


def skipped_links(dest: Path) -> list[str]:
    """The symlinks :func:`unpack_archive` left out of ``dest``, as ``member -> target``."""
    try:
        lines = (dest / MARKER).read_text("utf-8", "surrogateescape").splitlines()
    except FileNotFoundError:
        return []
    return [ln.removeprefix("skipped link: ") for ln in lines if ln.startswith("skipped link: ")]


def open_sme_source(path: str | os.PathLike, staging: Path) -> SmeSource:
    p = Path(path)
    if p.is_dir():
        src = SmeSource(p)
    elif p.is_file():
        src = SmeSource(unpack_archive(p, staging))
    else:
        raise ConfigError(f"{p}: no such backup archive or directory")
    if not src.db("accounts").is_file():
        raise ConfigError(f"{p}: not an SME Server / NethService backup (no home/e-smith/db/accounts)")
    return src
