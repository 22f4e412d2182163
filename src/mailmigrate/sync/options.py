"""What a sync run is asked to do, as values that travel: the engine's options and the whole request.

A request is built once (by the command line, a project, a fleet worker reading its job) and written out
by one ``to_dict`` and read back by one ``from_dict``: a fleet job is the request's dict, so an option
added here reaches the workers without anyone copying it field by field, and each side keeps its own
store options (before, one side's ``insecure`` was sent and applied to both).  What cannot travel stays
out by construction: passwords, OAuth token sources and the accounts' passwords (workers have their own),
and the run's live objects (progress, Ctrl-C, rate limiters), which the receiving side supplies.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..model import Account, AccountResult, Secret
from ..stores.registry import StoreOptions, StoreSpec, parse_spec
from .selection import Selection

TYPE_CHECKING = False  # typing's constant, without importing typing: see model.py

if TYPE_CHECKING:
    from .limits import RateLimiter
    from .state import StateDB


class Progress:
    """Receives progress events; the CLI draws bars, the dashboard stores numbers.  All no-ops here."""

    def account_start(self, account: str) -> None: ...
    def folder_start(self, account: str, folder: str, to_copy: int, bytes_to_copy: int) -> None: ...
    def copied(self, account: str, folder: str, messages: int, nbytes: int) -> None: ...
    def folder_done(self, account: str, folder: str) -> None: ...
    def account_done(self, account: str, result: AccountResult) -> None: ...


@dataclass
class SyncOptions:
    """How the engine syncs each account of a run: deletes, retries, connections, rules, live objects."""

    delete: bool = False
    dry_run: bool = False
    max_attempts: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    progress: Progress = field(default_factory=Progress)
    #: called between batches; tests use it to simulate a crash at an exact point
    checkpoint: Callable[[str], None] | None = None
    #: set by the command line on Ctrl-C: accounts stop before their next batch, and no new one starts
    stop_requested: threading.Event = field(default_factory=threading.Event)
    #: connections per side and account: folders are synced this many at a time
    connections: int = 3
    #: shared by all accounts writing to the same target server (see sync.limits)
    target_limiter: "RateLimiter | None" = None
    #: seconds a lost intent stays watched for a late commit: far longer than any server takes to finish a
    #: command whose client is gone
    late_commit_window: float = 3600.0
    #: seconds a run waits at the end of a folder for a late commit of intents it declared lost itself, so
    #: that the usual case (the killed session finishes within a second) is settled by the same run
    late_commit_grace: float = 2.0
    #: delete even where the emptied-source guard would withhold deletes (sync.deletes.guard_refusal)
    force_delete: bool = False
    #: the emptied-source guard: withhold deletes when more than this share of a folder's (or the account's)
    #: copies would go in one run
    delete_guard: float = 0.5
    #: the user's folder and message rules (sync.selection)
    selection: Selection = field(default_factory=Selection)

    #: the run's live objects: each process that runs the options brings its own
    LOCAL = frozenset({"progress", "checkpoint", "stop_requested", "target_limiter"})

    def to_dict(self) -> dict:
        """Every option but the live ones, as JSON values."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in self.LOCAL:
                continue
            value = getattr(self, f.name)
            out[f.name] = value.as_dict() if isinstance(value, Selection) else value
        return out

    @classmethod
    def from_dict(cls, d: dict | None, **local) -> "SyncOptions":
        """The options of :meth:`to_dict`, with ``local`` (progress, checkpoint, …) given by the receiver.
        Keys it does not know (written by a newer version) are ignored; missing ones take their default."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)} - cls.LOCAL
        values = {k: v for k, v in d.items() if k in known}
        if "selection" in values:
            values["selection"] = Selection.from_dict(values["selection"])
        values["max_attempts"] = max(1, int(values.get("max_attempts", 6)))
        values["connections"] = max(1, int(values.get("connections", 3)))
        return cls(**values, **local)


def store_options_dict(o: StoreOptions) -> dict:
    """The store options that travel: never ``oauth`` (a token source is this machine's) nor ``create``
    (the receiver decides it from the run: a dry run creates nothing)."""
    return {"insecure": o.insecure, "allow_plaintext": o.allow_plaintext, "master_user": o.master_user,
            "timeout": o.timeout}


def store_options_from_dict(d: dict | None, **local) -> StoreOptions:
    d = d or {}
    return StoreOptions(insecure=bool(d.get("insecure")), allow_plaintext=bool(d.get("allow_plaintext")),
                        master_user=d.get("master_user") or None, timeout=float(d.get("timeout", 60.0)), **local)


@dataclass
class SyncRequest:
    """A whole run: both stores, the accounts, the state and the limits shared by the accounts."""

    source: StoreSpec
    target: StoreSpec
    accounts: list[Account]
    state_path: Path
    source_options: StoreOptions = field(default_factory=StoreOptions)
    target_options: StoreOptions = field(default_factory=StoreOptions)
    source_password: Secret | None = None  # for every account without its own (or the master's)
    target_password: Secret | None = None
    jobs: int = 1
    sync: SyncOptions = field(default_factory=SyncOptions)
    #: per target server: messages/s, bytes/s, and connections across all accounts of the run
    max_rate: float | None = None
    max_bandwidth: float | None = None
    max_connections: int | None = None
    #: opens the state (default: the SQLite StateDB, locked for the run); e.g. sync.state_pg.open_state
    state_factory: "Callable[[Path], StateDB] | None" = None
    #: a state with per-account locks (PostgreSQL): seconds to wait for an account another process syncs
    lock_wait: float = 0.0

    def to_dict(self) -> dict:
        """The request without its accounts, passwords, state or live objects: what a fleet job carries.
        Store URLs travel as the user wrote them, which never hold a password (``parse_spec`` refuses one)."""
        return {
            "source": self.source.text,
            "target": self.target.text,
            "source_options": store_options_dict(self.source_options),
            "target_options": store_options_dict(self.target_options),
            "jobs": self.jobs,
            "max_rate": self.max_rate,
            "max_bandwidth": self.max_bandwidth,
            "max_connections": self.max_connections,
            "lock_wait": self.lock_wait,
            "sync": self.sync.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict, *, accounts: list[Account] | None = None, state_path: Path | str = "",
                  source_password: Secret | None = None, target_password: Secret | None = None,
                  source_oauth=None, target_oauth=None, **local) -> "SyncRequest":
        """The request of :meth:`to_dict`; what never travels is given here by the receiver (``local``:
        the SyncOptions' live objects, e.g. ``progress``)."""
        return cls(
            source=parse_spec(d["source"]),
            target=parse_spec(d["target"]),
            accounts=list(accounts or []),
            state_path=state_path,
            source_options=store_options_from_dict(d.get("source_options"), oauth=source_oauth),
            target_options=store_options_from_dict(d.get("target_options"), oauth=target_oauth),
            source_password=source_password,
            target_password=target_password,
            jobs=max(1, int(d.get("jobs") or 1)),
            sync=SyncOptions.from_dict(d.get("sync"), **local),
            max_rate=d.get("max_rate"),
            max_bandwidth=d.get("max_bandwidth"),
            max_connections=d.get("max_connections"),
            lock_wait=float(d.get("lock_wait") or 0.0),
        )
