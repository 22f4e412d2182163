"""`mailmigrate fleet status|requeue`: see a fleet run's accounts by state and send lost jobs again."""

from __future__ import annotations

import json
import os

from ..errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser("fleet", help="a fleet run's accounts by state; send stuck jobs again",
                       description="Read a fleet run's job table in the shared PostgreSQL state: accounts by "
                                   "state, the stuck ones (worker silent, job lost by the broker) named, and "
                                   "their jobs sent again.")
    fsub = p.add_subparsers(dest="fleet_command", metavar="ACTION")
    for name, text in (("status", "accounts of a run by state, stuck ones named (the newest run by default)"),
                       ("requeue", "send the jobs of stuck accounts (or of the named unfinished ones) again")):
        a = fsub.add_parser(name, help=text)
        a.add_argument("--state", metavar="URL", help="postgresql://… (default: MAILMIGRATE_STATE)")
        a.add_argument("--broker", metavar="URL", help="redis://… or amqp://… (default: MAILMIGRATE_BROKER); "
                                                       "on Redis, queued jobs are looked for on it")
        a.add_argument("--run", metavar="ID", help="the run (default: the newest)")
        a.add_argument("--stale-after", type=float, default=120, metavar="S",
                       help="a running account whose worker said nothing for S seconds is stuck (default 120)")
        if name == "status":
            a.add_argument("--json", action="store_true")
            a.add_argument("--runs", action="store_true", help="list the newest runs instead")
            a.set_defaults(func=run_status)
        else:
            a.add_argument("accounts", nargs="*", metavar="ACCOUNT")
            a.set_defaults(func=run_requeue)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _state(args):
    from ..sync.state_pg import PgStateDB, is_pg_url

    url = args.state or os.environ.get("MAILMIGRATE_STATE")
    if not is_pg_url(url):
        raise ConfigError("the fleet's state is on PostgreSQL: --state postgresql://… (or MAILMIGRATE_STATE)")
    return PgStateDB.open(url)


def run_status(args) -> int:
    from ..fleet import jobs, status

    if not args.stale_after > 0:
        raise ConfigError("--stale-after must be a number of seconds above 0")
    state = _state(args)
    try:
        if args.runs:
            found = jobs.runs(state)
            if args.json:
                print(json.dumps([{**r, "created": str(r["created"]), "updated": str(r["updated"])} for r in found],
                                 indent=2))
            for r in [] if args.json else found:
                print(f"{r['run_id']}  {r['updated']:%Y-%m-%d %H:%M:%S}  {r['done']}/{r['total']} done, "
                      f"{r['failed']} failed, {r['running']} running, {r['queued'] + r['waiting']} waiting")
            return 0
        broker = args.broker or os.environ.get("MAILMIGRATE_BROKER")
        run_id = status.pick_run(state, args.run)
        st = status.run_status(state, run_id, broker, args.stale_after)
    finally:
        state.close()
    if args.json:
        print(json.dumps({"run_id": st.run_id, "counts": st.counts, "broker_checked": st.broker_checked,
                          "accounts": st.accounts}, indent=2))
        return 1 if st.stuck else 0
    c = st.counts
    print(f"run {st.run_id}: {c['total']} accounts: {c['done']} done, {c['failed']} failed, {c['running']} running, "
          f"{c['waiting']} waiting for their lock, {c['queued']} queued")
    for a in st.accounts:
        line = f"  {a['status']:8} {a['account']}"
        if a.get("worker"):
            line += f"  ({a['worker']}, attempt {a['attempts']})"
        if a.get("stuck"):
            line += f"  STUCK: {a['stuck']}"
        if a.get("error"):
            line += f"  {a['error']}"
        print(line)
    if st.stuck:
        print(f"{len(st.stuck)} stuck: `mailmigrate fleet requeue --run {st.run_id}` sends their jobs again")
    if broker is None and c["queued"]:
        print("(give --broker on Redis to check that the queued jobs are still on it)")
    return 1 if st.stuck else 0


def run_requeue(args) -> int:
    from ..fleet import status
    from ..fleet.app import broker_from

    if not args.stale_after > 0:
        raise ConfigError("--stale-after must be a number of seconds above 0")
    broker = broker_from(args.broker)
    state = _state(args)
    try:
        run_id = status.pick_run(state, args.run)
        done = status.requeue(state, run_id, broker, args.accounts, args.stale_after)
    finally:
        state.close()
    for account, what in done:
        print(f"{account}: {what}")
    if not done:
        print(f"run {run_id}: nothing stuck")
    return 0
