"""Folders synced several at a time, each worker on its own pair of connections.

Why: the latency of one connection, not bandwidth or CPU, bounds a single-connection copy.  The workers
share the account's state, options, report and its per-target-folder locks; each has its own connections
and counters (added up at the end).

Not part of the run's class: :func:`sync_parallel` is given the lead run (whose stores it clones, whose
``_fork`` makes the workers and whose ``_sync_one`` each worker calls; its folder run creates the target
folders, :func:`create_before_parallel`), and :class:`TargetLocks` is one object the lead run and its
workers hold in common.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..errors import MailmigrateError
from .folders import FolderPlan

log = logging.getLogger("mailmigrate.sync")


class TargetLocks:
    """One lock per target folder, by folder identity, shared by the account's folder workers: a sweep must
    not see another source folder's fresh copy into the same target folder before that copy is recorded."""

    def __init__(self) -> None:
        self._locks: dict[object, threading.RLock] = {}
        self._guard = threading.Lock()

    def get(self, identity: object) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(identity, threading.RLock())

    def of(self, target, path) -> threading.RLock:
        """The lock of the target folder ``path`` is on ``target`` (two paths can be one folder)."""
        return self.get(target.folder_identity(path))


def sync_parallel(lead, work: list[FolderPlan], statuses, tgt_statuses) -> None:
    """Several folders at once, each worker on its own pair of connections (issue: the latency of one
    connection, not bandwidth or CPU, bounds a single-connection copy).

    The workers log in while the lead creates the target folders (:func:`create_before_parallel`), and wait
    for it before they take a folder: the logins and the creation, each a few round trips, overlap instead
    of following each other.  Each worker lets its connections go as soon as no folder is left for it."""
    order = sorted(work, key=lambda p: -((statuses.get(p.source.path).count or 0)
                                         if statuses.get(p.source.path) else 0))
    q: queue.Queue = queue.Queue()
    for p in order:
        q.put(p)
    errors: list[BaseException] = []
    created = threading.Event()
    clones = []
    for _ in range(min(lead.opt.connections, len(work)) - 1):
        src = getattr(lead.source._store, "clone", lambda: None)()
        tgt = getattr(lead.target._store, "clone", lambda: None)()
        if src is None or tgt is None:
            break
        clones.append(lead._fork(src, tgt))

    def worker(run) -> None:
        try:
            if run is not lead:
                try:
                    run.open()
                except MailmigrateError as e:
                    # The server may limit connections per user: fewer workers, not a failure.
                    log.info("account %s: an extra connection was refused (%s); going on with fewer",
                             lead.account, e)
                    return
                created.wait()
            while not errors:
                try:
                    plan = q.get_nowait()
                except queue.Empty:
                    return
                run._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
        except BaseException as e:  # handed to the account's retry logic below
            errors.append(e)
        finally:
            if run is not lead:
                # Now, not when the account ends: the others may still copy for a while, and on the fleet
                # each connection holds a slot other accounts are waiting for (a side that did open, when
                # the other was refused, too).
                run.close()

    threads = [threading.Thread(target=worker, args=(r,), name="mailmigrate-folder", daemon=True)
               for r in clones]
    for t in threads:
        t.start()
    try:
        create_before_parallel(lead, work)
    except BaseException as e:  # the workers stop before their first folder; raised below
        errors.append(e)
    finally:
        created.set()
    worker(lead)
    for t in threads:
        t.join()
    for r in clones:
        lead.c.add(r.c)
        lead.finished |= r.finished
    if errors:
        raise errors[0]


def create_before_parallel(lead, work: list[FolderPlan]) -> None:
    """The target folders the parallel workers need, created here, on the lead run's connection, one after
    the other (on IMAP sent together: one round trip for all).  Dovecot 2.3 with its mailbox list index (the
    default) lost one of two folders created at the same moment by two sessions of one user: the folder and
    its mail were on disk, and LIST never showed it again (tests/test_fleet.py found it under load)."""
    recorded = {f.source_path: f for f in lead.state.folders(lead.account)}
    folders = []
    for plan in work:
        fstate = recorded.get(plan.source.path)
        folders.append((plan, fstate, fstate.target_path if fstate else plan.target_path))
    lead.folder_run.ensure_target_folders(folders)
