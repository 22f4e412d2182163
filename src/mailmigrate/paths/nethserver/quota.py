"""Quota after the NethServer 7 -> 8 mail copy: what the NS8 Dovecot must report, and making it report that.

NS7's Dovecot keeps Maildir++ quota (a ``maildirsize`` file per Maildir, trusted until its limits change);
NS8's keeps ``count`` quota with virtual sizes (the usage lives in Dovecot's own index files, and a mailbox
with more unindexed messages than ``mail_vsize_bg_after_count`` is counted in the background, so right after
an import a user may see no usage at all).  Our copy writes message files straight into the NS8 Maildirs,
past any Dovecot, so whatever quota state a Dovecot wrote before the final sync (a ``maildirsize`` of a
Dovecot that served the tree, or one copied in by another tool) no longer matches the files.

So, after the final sync:

* the usage each user must see is computed from the files themselves (messages in ``cur/`` and ``new/``,
  physical and virtual size: the size with CRLF line ends, which is what ``quota_vsizes = yes`` counts);
* ``maildirsize`` files in the migrated Maildirs are removed: a Maildir++ Dovecot then recounts on first
  use, a ``count`` Dovecot never read them (this is all that can be done for a tree under a root with no
  Dovecot at hand);
* when the target Dovecot's configuration is given, ``doveadm quota recalc`` runs for every migrated user
  with the background threshold off (so the count is finished when it returns, not queued), and
  ``doveadm quota get`` is compared with the computed usage: a user whose numbers differ is an error.
  ``doveadm quota recalc`` reports some failures only on stderr with exit status 0, so the comparison,
  not the exit status, is what says the quota is right.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ...errors import ConfigError
from ...formats import maildir as mdfmt

EX_NOUSER = 67  # doveadm: the userdb does not know the user


@dataclass
class Usage:
    messages: int = 0
    bytes: int = 0  # file sizes
    vsize: int = 0  # sizes with CRLF line ends

    def kib(self, *, virtual: bool) -> int:
        """What IMAP GETQUOTAROOT and ``doveadm quota get`` show as STORAGE: KiB, rounded up."""
        return math.ceil((self.vsize if virtual else self.bytes) / 1024)

    def as_dict(self) -> dict:
        return asdict(self)


def _vsize_of_file(path: Path) -> int:
    """Size with every bare LF counted as CRLF, read in chunks (a CR closing one chunk pairs with an LF
    opening the next)."""
    total = 0
    prev = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk) + chunk.count(b"\n") - chunk.count(b"\r\n")
            if chunk[:1] == b"\n" and prev == b"\r":
                total -= 1
            prev = chunk[-1:]
    return total


def maildir_usage(maildir: Path) -> Usage:
    """Messages and sizes of a whole Maildir++ (INBOX and every folder).  A W= in a file name is Dovecot's
    own record of the virtual size and is taken as it is; other files are read."""
    u = Usage()
    if not maildir.is_dir():
        return u
    dirs = [maildir] + sorted(d for d in maildir.iterdir() if d.is_dir() and d.name.startswith(".")
                              and d.name not in (".", ".."))
    for d in dirs:
        for sub in ("cur", "new"):
            try:
                entries = list(os.scandir(d / sub))
            except FileNotFoundError:
                continue
            for e in entries:
                if not e.is_file(follow_symlinks=False) or e.name.startswith("."):
                    continue
                size = e.stat(follow_symlinks=False).st_size
                try:
                    name = mdfmt.parse_name(e.name)
                    vsize = name.vsize
                except Exception:
                    vsize = None
                u.messages += 1
                u.bytes += size
                u.vsize += vsize if vsize is not None else _vsize_of_file(Path(e.path))
    return u


def remove_maildirsize(maildir: Path) -> bool:
    """Remove a Maildir++ quota file; True when there was one."""
    try:
        (maildir / "maildirsize").unlink()
    except FileNotFoundError:
        return False
    return True


@dataclass
class Reported:
    """What the target Dovecot says about one user: STORAGE in KiB and MESSAGE count."""

    storage_kib: int | None
    messages: int | None


class Doveadm:
    """``doveadm -c CONFIG ...`` for the target Dovecot (which must be running: user lookups go to its auth
    service).  Arguments are user names and the configuration path only; nothing secret is passed."""

    def __init__(self, config: str | os.PathLike, binary: str = "doveadm", timeout: float = 3600):
        self.config = str(config)
        self.binary = binary
        self.timeout = timeout
        if not Path(self.config).is_file():
            raise ConfigError(f"{self.config}: no Dovecot configuration there (--dovecot-config)")

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.binary, "-c", self.config, *args], capture_output=True, text=True,
                                  timeout=self.timeout)
        except FileNotFoundError:
            raise ConfigError(f"{self.binary}: no such program (--doveadm)") from None
        except subprocess.TimeoutExpired:
            raise ConfigError(f"doveadm {' '.join(args[:2])} did not end in {self.timeout:.0f}s") from None

    def vsizes(self) -> bool:
        """Whether the target counts virtual sizes (``quota_vsizes``), as NS8 does."""
        p = self._run("config", "-h", "plugin/quota_vsizes")
        if p.returncode != 0:
            raise ConfigError(f"doveadm config: {_last_line(p.stderr)}")
        return p.stdout.strip().lower() in ("yes", "y", "1", "true")

    def recalc(self, user: str) -> tuple[int, str]:
        """(exit status, the error doveadm printed or ""), with background counting off for this run."""
        p = self._run("-o", "mail_vsize_bg_after_count=0", "quota", "recalc", "-u", user)
        err = "; ".join(ln.split("Error: ", 1)[1] for ln in p.stderr.splitlines() if "Error: " in ln)
        return p.returncode, err

    def get(self, user: str) -> tuple[int, Reported | str]:
        p = self._run("-o", "mail_vsize_bg_after_count=0", "-f", "tab", "quota", "get", "-u", user)
        if p.returncode != 0:
            return p.returncode, _last_line(p.stderr) or f"exit status {p.returncode}"
        storage = messages = None
        for line in p.stdout.splitlines()[1:]:
            cols = line.split("\t")
            if len(cols) >= 3 and cols[2].strip().isdigit():  # the first quota root is the user's own
                if cols[1] == "STORAGE" and storage is None:
                    storage = int(cols[2])
                elif cols[1] == "MESSAGE" and messages is None:
                    messages = int(cols[2])
        return 0, Reported(storage, messages)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
