"""Folders synced several at a time, each worker on its own pair of connections.

Why: the latency of one connection, not bandwidth or CPU, bounds a single-connection copy.  The workers
share the account's state, options, report and its per-target-folder locks; each has its own connections
and counters (added up at the end).

A mixin of the account's run (sync/engine.py): it uses the run's stores (their ``clone``), ``_fork``,
``_sync_one``, ``_ensure_target_folder`` and ``_target_locks``.
"""

from __future__ import annotations

import logging
import queue
import threading

from ..errors import FolderFailed, MailmigrateError, ServerRefused
from ..model import FolderPath
from .folders import FolderPlan

log = logging.getLogger("mailmigrate.sync")


class Parallel:
    def _parallel(self, work: list[FolderPlan], statuses, tgt_statuses) -> None:
        """Several folders at once, each worker on its own pair of connections (issue: the latency of one
        connection, not bandwidth or CPU, bounds a single-connection copy)."""
        order = sorted(work, key=lambda p: -((statuses.get(p.source.path).count or 0)
                                             if statuses.get(p.source.path) else 0))
        q: queue.Queue = queue.Queue()
        for p in order:
            q.put(p)
        errors: list[BaseException] = []
        clones = []
        for _ in range(min(self.opt.connections, len(work)) - 1):
            src = getattr(self.source._store, "clone", lambda: None)()
            tgt = getattr(self.target._store, "clone", lambda: None)()
            if src is None or tgt is None:
                break
            clones.append(self._fork(src, tgt))

        def worker(run) -> None:
            try:
                if run is not self:
                    try:
                        run.open()
                    except MailmigrateError as e:
                        # The server may limit connections per user: fewer workers, not a failure.  The
                        # side that did open is let go now, not when the account ends: on the fleet it holds
                        # a connection slot other accounts are waiting for.
                        run.close()
                        log.info("account %s: an extra connection was refused (%s); going on with fewer",
                                 self.account, e)
                        return
                while not errors:
                    try:
                        plan = q.get_nowait()
                    except queue.Empty:
                        return
                    run._sync_one(plan, statuses.get(plan.source.path), tgt_statuses.get(plan.source.path))
            except BaseException as e:  # handed to the account's retry logic below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(r,), name="mailmigrate-folder", daemon=True)
                   for r in clones]
        for t in threads:
            t.start()
        worker(self)
        for t in threads:
            t.join()
        for r in clones:
            r.close()
            self.c.add(r.c)
            self.finished |= r.finished
        if errors:
            raise errors[0]

    def _target_lock(self, target_path: FolderPath) -> threading.RLock:
        with self._target_locks_guard:
            return self._target_locks.setdefault(self._tid(target_path), threading.RLock())

    def _create_before_parallel(self, work: list[FolderPlan]) -> None:
        """The target folders the parallel workers need, created here, one after the other on this
        connection.  Dovecot 2.3 with its mailbox list index (the default) lost one of two folders created at
        the same moment by two sessions of one user: the folder and its mail were on disk, and LIST never
        showed it again (tests/test_fleet.py found it under load)."""
        for plan in work:
            fstate = self.state.folder(self.account, plan.source.path)
            target_path = fstate.target_path if fstate else plan.target_path
            try:
                self._ensure_target_folder(plan, fstate, target_path)
            except (FolderFailed, ServerRefused):
                continue  # the folder's own worker meets it again and reports it with the folder
