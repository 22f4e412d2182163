"""Upgrade checks: new options of the shipped example server.cfg, user_safe_mode, and the directory checklist.

After new packages are installed the seed has the administrator compare /etc/kopano/server.cfg with
/usr/share/doc/kopano/example-config/server.cfg by hand; here the comparison lists the options the
example documents that the installed file neither sets nor mentions (new options), and the ones the
installed file sets that the example no longer knows.  ``user_safe_mode`` is reported because the seed
wants it on only while testing an upgrade.  The post-upgrade checklist (users, groups, companies,
memberships, send-as, contacts, address lists, dynamic groups) is the directory layer's before/after
comparison, applied to two readings of the directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ...directory.base import Directory
from ...directory.checklist import Checklist, compare
from ...errors import ConfigError
from . import cfgfile


@dataclass
class ConfigCheck:
    file: str
    new_options: list[str] = field(default_factory=list)
    unknown_options: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self) -> str:
        out = [f"{self.file}:"]
        out += [f"  new option in the example configuration: {n}" for n in self.new_options]
        out += [f"  set here, unknown to the example configuration: {n}" for n in self.unknown_options]
        out += [f"  {n}" for n in self.notes]
        if len(out) == 1:
            out.append("  nothing new")
        return "\n".join(out)


def check_config(installed: str | Path, example: str | Path) -> ConfigCheck:
    installed, example = Path(installed), Path(example)
    for p in (installed, example):
        if not p.is_file():
            raise ConfigError(f"{p}: no such configuration file")
    mine = installed.read_text(errors="replace")
    theirs = example.read_text(errors="replace")
    known_here, known_there = cfgfile.known(mine), cfgfile.known(theirs)
    res = ConfigCheck(str(installed), sorted(known_there - known_here),
                      sorted(set(cfgfile.active(mine)) - known_there))
    if cfgfile.active(mine).get("user_safe_mode", "no").lower() in ("yes", "true", "1"):
        res.notes.append("user_safe_mode is on: turn it off once the server log shows no user created or deleted")
    return res


def check_config_dir(installed_dir: str | Path, example_dir: str | Path) -> list[ConfigCheck]:
    """Every ``.cfg`` of the example directory that also exists in the installed one."""
    installed_dir, example_dir = Path(installed_dir), Path(example_dir)
    if not example_dir.is_dir():
        raise ConfigError(f"{example_dir}: no such example configuration directory")
    return [check_config(installed_dir / p.name, p) for p in sorted(example_dir.glob("*.cfg"))
            if (installed_dir / p.name).is_file()]


def directory_checklist(before: Directory, after: Directory) -> Checklist:
    """The seed's post-upgrade checklist, object by object."""
    return compare(before, after)
