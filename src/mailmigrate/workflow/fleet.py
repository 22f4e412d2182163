"""A project's start, sync and finish on the fleet: the copying is one Celery job per account, the workflow
stays here.

Why the split: workers are many processes on many machines that share only the broker and the PostgreSQL
state; the workflow store (SQLite or PostgreSQL) is the project's, written by the one command that acts.  So
this command takes every unit into its busy state (refusals as usual), enqueues one job per account as
``mailmigrate sync --executor celery`` does, then follows the run in the fleet's job table: each unit's
done/total goes to the workflow store as the workers report it (where ``project status`` and the dashboard
read it), and as soon as an account's job has its result the unit's outcome is recorded like a local run's:
the result and its problems in the unit's meta and log, the worker that ran it in the log, the transition in
the history.  A finish verifies each account here, message by message, once its final sync is back.

If this command is interrupted its units are marked failed; jobs already handed out still run on the
workers, and the account lock keeps any later action from copying the same account alongside them.

Nothing but the job table tells this command whether any worker is there: with none running it would wait
in silence.  So when jobs sit queued and no worker has taken one for ``idle_warning`` seconds it says so
(on stderr through logging, and in the project log), naming the command that starts a worker; and with a
``fleet_timeout`` it stops waiting, leaving its units as an interruption does, since the queued jobs still
run whenever a worker comes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError, MailmigrateError
from ..fleet.watch import STILL_RUNS, IdleWatch, timeout_message, timeout_reason
from ..model import AccountResult
from ..paths.base import Outcome
from ..sync.runner import account_key
from .driver import UnitRecorder
from .outcome import ActionOutcome
from .project import Project, check_fleet
from .states import IllegalTransition

if TYPE_CHECKING:
    from .actions import Workflow  # noqa: F401  (a type name only: the actions import this module)

log = logging.getLogger("mailmigrate.workflow")

#: the actions whose work is copying mail, and so can run on the fleet; abort and skip stay here
COPYING = ("start", "sync", "finish")


@dataclass
class FleetSettings:
    broker: str
    state_url: str
    max_connections: int | None = None
    poll: float = 0.5
    #: seconds to wait for the fleet before giving up (None: no limit)
    timeout: float | None = None
    #: seconds without a worker taking a queued job before the warning
    idle_warning: float = 60.0
    #: seconds without a word from a running job's worker before its job is sent again (fleet/follow.py)
    stale_after: float = 120.0


def settings(project: Project, executor: str | None = None, broker: str | None = None,
             timeout: float | None = None) -> FleetSettings | None:
    """Where the project's copying runs: None for this machine, else the fleet's settings (``executor``,
    ``broker`` and ``timeout`` override the project file's ``[fleet]``)."""
    executor = executor or project.executor
    if timeout is not None and timeout <= 0:
        raise ConfigError("--fleet-timeout must be a number of seconds above 0")
    if executor == "local":
        if timeout is not None:
            raise ConfigError("--fleet-timeout limits the wait for the fleet; it needs the celery executor")
        return None
    if executor != "celery":
        raise ConfigError(f"executor {executor!r} is not local or celery")
    check_fleet(project.name, project.path, project.state)
    from ..fleet.app import broker_from

    return FleetSettings(broker_from(broker or project.broker), str(project.state), project.max_connections,
                         timeout=timeout if timeout is not None else project.fleet_timeout,
                         idle_warning=project.idle_warning, stale_after=project.stale_after)


def run_units(flow: "Workflow", units: list[str], action: str, fleet: FleetSettings, *,
              on_progress: Callable[[dict], None] | None = None) -> list[ActionOutcome]:
    outcomes: dict[str, ActionOutcome] = {}
    begun = {}
    for unit in units:
        refusal = flow.driver.refusal(unit, action)
        if refusal:
            u = flow.wf.get(unit)
            outcomes[unit] = ActionOutcome(unit, action, False, u.state if u else "?", refusal)
            continue
        try:
            t = flow.wf.begin(unit, action, flow.actor)
        except IllegalTransition as e:
            u = flow.wf.get(unit)
            outcomes[unit] = ActionOutcome(unit, action, False, u.state if u else "?", str(e))
            continue
        flow.wf.log(unit, "INFO", f"{action} by {flow.actor}, on the fleet")
        try:
            begun[unit] = (t, flow.path.account(unit))
        except MailmigrateError as e:
            outcomes[unit] = _end(flow, unit, t, False, str(e), None)
    if begun:
        _follow(flow, begun, action, fleet, outcomes, on_progress)
    return [outcomes[u] for u in units]


def _follow(flow, begun: dict, action: str, fleet: FleetSettings, outcomes: dict, on_progress) -> None:
    from ..fleet import jobs
    from ..fleet.follow import Follower
    from ..fleet.submit import enqueue
    from ..sync.state_pg import PgStateDB

    pending = dict(begun)
    state = follow = None
    try:
        req = flow.path.request([acc for _, acc in begun.values()])  # reads password files: may fail
        req.sync = flow.path.sync_options(delete=action == "finish" and flow.project.delete_on_finish)
        req.max_connections = fleet.max_connections
        unit_of = {account_key(req, acc): unit for unit, (_, acc) in begun.items()}
        state = PgStateDB.open(fleet.state_url)
        run_id, _ = enqueue(state, req, fleet.broker)
        follow, state = Follower(fleet.state_url, fleet.broker, run_id, state=state,
                                 stale_after=fleet.stale_after), None
        for unit in pending:
            flow.wf.set_progress(unit, total=0, done=0, bytes_done=0, folder="")
            flow.wf.log(unit, "INFO", f"queued as job of fleet run {run_id}")
        shown, last, status = {}, None, {}
        began = time.monotonic()
        idle = IdleWatch(fleet.broker, fleet.state_url, fleet.idle_warning)
        while pending:
            s = follow.summary()
            rows = follow.rows() if s is not None else None
            if s is None or rows is None:  # the state database is away (a restart): the workers go on
                if fleet.timeout is not None and time.monotonic() - began >= fleet.timeout:
                    _give_up(flow, fleet, pending, status, len(begun), outcomes)
                time.sleep(fleet.poll)
                continue
            if on_progress and s != last:
                on_progress(s)
            last = s
            warning = idle.check(s)
            if warning:
                log.warning("%s", warning)
                flow.wf.log(None, "WARNING", warning)
            for row in rows:
                unit = unit_of.get(row["account"])
                if unit not in pending:
                    continue
                status[unit] = row["status"]
                numbers = (row["to_copy"], row["copied"], row["bytes_copied"])
                if shown.get(unit) != numbers:
                    shown[unit] = numbers
                    flow.wf.set_progress(unit, total=max(numbers[0], numbers[1]), done=numbers[1],
                                         bytes_done=numbers[2])
                if row["status"] in jobs.FINAL:
                    t, acc = pending.pop(unit)
                    outcomes[unit] = _outcome(flow, unit, t, acc, row)
            if pending and fleet.timeout is not None and time.monotonic() - began >= fleet.timeout:
                _give_up(flow, fleet, pending, status, len(begun), outcomes)
            if pending:
                time.sleep(fleet.poll)
    except MailmigrateError as e:
        for unit, (t, _) in list(pending.items()):
            outcomes[unit] = _end(flow, unit, t, False, str(e), None)
        pending.clear()
    except Exception as e:  # a bug must not leave the units busy forever
        log.exception("fleet %s crashed", action)
        for unit, (t, _) in list(pending.items()):
            outcomes[unit] = _end(flow, unit, t, False, f"internal error: {e!r}", None)
        pending.clear()
    finally:
        for unit, (t, _) in pending.items():  # interrupted (Ctrl-C): the jobs may still run on workers
            _end(flow, unit, t, False, f"stopped while the fleet was running it; {STILL_RUNS}", None)
        if state is not None:
            state.close()
        if follow is not None:
            follow.close()


def _give_up(flow, fleet: FleetSettings, pending: dict, status: dict, total: int, outcomes: dict) -> None:
    """The fleet timeout: the units still waiting end as on an interruption, saying why; their jobs stay on
    the broker and in the job table, so a worker that comes later still runs them and a later action on the
    unit copies nothing twice."""
    log.warning("%s", timeout_message(fleet.timeout, [status.get(u, "queued") for u in pending], total))
    for unit, (t, _) in list(pending.items()):
        outcomes[unit] = _end(flow, unit, t, False, timeout_reason(fleet.timeout, status.get(unit, "queued")), None)
    pending.clear()


def _outcome(flow, unit: str, t, acc, row: dict) -> ActionOutcome:
    result = row["result"] or AccountResult(row["account"], error="the worker recorded no result")
    if row["worker"]:
        flow.wf.log(unit, "INFO", f"ran on {row['worker']} (attempt {row['attempts']})")
    record = UnitRecorder(flow.wf, unit)
    out = flow.path.record_result(result, record)
    c = result.counters
    flow.wf.set_progress(unit, total=max(row["to_copy"], c.copied), done=c.copied, bytes_done=c.bytes_copied)
    if t.action == "finish":
        if not out.ok:
            out = Outcome(False, f"final sync: {out.message}", True)
        else:
            try:
                out = flow.path.verify_finish(unit, record)
            except MailmigrateError as e:
                out = Outcome(False, f"verification: {e}", True)
    return _end(flow, unit, t, out.ok, out.message, out.bound)


def _end(flow, unit: str, t, ok: bool, message: str, bound: bool | None) -> ActionOutcome:
    return flow.driver.end(unit, t, ok, message, bound)
