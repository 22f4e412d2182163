"""The migration paths by name: the one place that maps ``[project] path = "..."`` to a plug-in.

A new path is a :class:`~.base.MigrationPath` subclass passed to :func:`register`; the workflow, the CLI and
the dashboard then drive it without a change.  The built-in paths register themselves when this module is
first asked (their modules import heavier parts of the tree, which a CLI command that runs no project should
not pay for).
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import MigrationPath

#: the path of a project file that names none
DEFAULT = "mailbox"
_PATHS: dict[str, type[MigrationPath]] = {}
#: the built-in paths' modules by name, in the order ``names()`` lists them (a command loads only the one
#: its project names: NethServer's pulls in its cluster API client, CommuniGate's its tree readers)
_BUILTIN = {"mailbox": "mailmigrate.paths.mailbox", "nethserver7": "mailmigrate.paths.nethserver.plugin",
            "communigate": "mailmigrate.paths.communigate.plugin"}
_loaded = False


def register(cls: type[MigrationPath]) -> type[MigrationPath]:
    """Make ``cls`` the path of its ``name`` (usable as a class decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _PATHS[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _PATHS.pop(name, None)


def _load(name: str | None = None) -> None:
    """Import the built-in path ``name`` (None: all of them) unless it is registered already."""
    global _loaded
    if name is not None:
        if name not in _PATHS and name in _BUILTIN:
            importlib.import_module(_BUILTIN[name])
        return
    if not _loaded:
        _loaded = True
        for mod in _BUILTIN.values():
            importlib.import_module(mod)


def names() -> tuple[str, ...]:
    _load()
    return tuple(_PATHS)


def get(name: str, project_name: str | None = None) -> type[MigrationPath]:
    _load(name)
    if name in _PATHS:
        return _PATHS[name]
    who = f"project {project_name}: " if project_name else ""
    raise ConfigError(f"{who}path {name!r} is not one of {', '.join(names())}")
