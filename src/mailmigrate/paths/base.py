"""What every migration path offers the workflow: one interface, so that the workflow never asks which path
it drives.

A path (the plain mailbox copy, CommuniGate Pro, NethServer 7 -> 8, the next one) is a plug-in: a class
registered by name in :mod:`.registry`.  The workflow (``workflow/``) owns the one state machine of every
unit, its store, history, logs and locks; a path owns only what is particular to it:

* ``Settings`` – its section of the project file as a dataclass (``parse_settings``), so that a typo is a
  ConfigError at load time and no untyped dict travels through the workflow;
* ``units()`` – what ``project init`` lists (accounts, applications), with the metadata kept for each;
* ``refusal()`` – a rule of its own against an action, on top of the state machine's (NethServer 7's account
  provider finishes last), as a sentence for the administrator;
* ``act(unit, action, record)`` – the work of one action on one unit.  It reports through ``record`` (a
  :class:`Recorder`: log lines, the unit's metadata, live progress) and returns an :class:`Outcome`; the
  workflow turns that into the unit's next state.  Data a path needs between actions (what start created,
  an endpoint's id) goes into the unit's metadata, never into a state of its own.

Paths sit below the workflow (imports point down), so what they know of the workflow is only the two small
protocols here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol

#: the actions every unit knows (the workflow's state machine decides when each may run)
ACTIONS = ("start", "sync", "finish", "abort", "skip")


class Recorder(Protocol):
    """What an action may write about its unit: narrow on purpose, so that a path cannot change a unit's
    state or another unit."""

    #: the project's other units, read-only
    others: "UnitsView"
    #: the caller's live display of a mail copy (an engine ``Progress``), or None
    listener: Any

    def log(self, level: str, message: str) -> None: ...

    def meta(self) -> dict:
        """The unit's metadata as stored now."""

    def update_meta(self, changes: dict) -> dict:
        """Set these keys of the unit's metadata in one transaction (other keys, set meanwhile by another
        process, are kept); returns the metadata after."""

    def progress(self, *, total: int | None = None, done: int | None = None, bytes_done: int | None = None,
                 folder: str | None = None) -> None: ...


class UnitsView(Protocol):
    """The project's other units, read-only, for a path's own rules."""

    def state(self, unit: str) -> str | None: ...

    def settled(self, unit: str) -> bool:
        """Whether the unit's migration is over (migrated, or skipped)."""


@dataclass
class UnitInfo:
    """One unit as ``init`` lists it."""

    name: str
    kind: str = "account"
    meta: dict = field(default_factory=dict)
    #: keys of ``meta`` that an ``init`` run again refreshes on a unit it registered before
    refresh: tuple[str, ...] = ()


@dataclass
class Outcome:
    """What one action did.  ``ok`` False makes the unit failed; ``bound`` says whether the unit has anything
    on the target now (None: what the action implies - start, sync and finish bind, abort unbinds)."""

    ok: bool
    message: str
    bound: bool | None = None
    #: the path's own result object, for a caller that knows the path (the ``ns7`` command prints its log)
    result: Any = None


class MigrationPath:
    """Base of every path plug-in; see the module's docstring for the contract."""

    #: the name in the project file's ``[project] path``
    name: ClassVar[str] = ""
    #: the project file's section holding the path's settings (None: the path has none of its own)
    section: ClassVar[str | None] = None
    #: whether its start, sync and finish are per-account mail copies that fleet workers can run
    copies_on_fleet: ClassVar[bool] = False
    #: whether its units' mail can be verified message by message (the report's verification)
    verifies_mail: ClassVar[bool] = False
    #: whether the project file names a [source] and a [target] mail store for it
    uses_stores: ClassVar[bool] = True

    def __init__(self, project, settings=None):
        #: the project's common settings (name, state, sides, accounts, options); duck-typed, as the
        #: workflow's Project lives above this layer
        self.project = project
        self.settings = settings

    @classmethod
    def parse_settings(cls, project_name: str, data: dict, rel: Callable) -> Any:
        """The path's section of the parsed project file ``data`` as its Settings (``rel`` makes a path
        relative to the project file); ConfigError says what is wrong."""
        return None

    #: whether the path finds its accounts itself (the project file then has no [accounts])
    finds_accounts: ClassVar[bool] = False

    @classmethod
    def source_section(cls, settings) -> dict | None:
        """The [source] the path's settings imply (None: the project file's own [source])."""
        return None

    @classmethod
    def check_sides(cls, project_name: str, sides: dict) -> None:
        """Refuse a [source] or [target] the path cannot work with (ConfigError); ``sides`` by name."""

    @classmethod
    def default_groupware_source(cls, settings) -> Callable[[str], str] | None:
        """The source URL of a [groupware] pair that names none (``calendars``/``contacts`` -> URL), for a
        path whose own source holds the groupware; None: a pair needs both URLs."""
        return None

    def units(self) -> list[UnitInfo]:
        raise NotImplementedError

    def refusal(self, unit: str, action: str, others: UnitsView) -> str | None:
        """The path's own reason why ``action`` may not run on ``unit`` now, or None."""
        return None

    def act(self, unit: str, action: str, record: Recorder) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the path holds between actions (files, connections)."""
