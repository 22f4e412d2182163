"""`mailmigrate worker`: a Celery worker of a fleet; `mailmigrate state upgrade URL`: the state's schema."""

from __future__ import annotations

import os
import socket

from ..errors import ConfigError
from ..credentials import SOURCE, TARGET
from ..sync.accounts import load_accounts_file
from . import oauth_options
from .output import setup_logging


def register(sub) -> None:
    p = sub.add_parser("worker", help="run sync jobs of a fleet (Celery worker)",
                       description="Take per-account sync jobs from the broker and run them against the shared "
                                   "PostgreSQL state. Passwords come from MAILMIGRATE_SOURCE_PASSWORD / "
                                   "MAILMIGRATE_TARGET_PASSWORD, the password files or the --accounts file; "
                                   "jobs never carry them.")
    p.add_argument("--broker", metavar="URL", help="redis://HOST:6379/0 or amqp://USER@HOST:5672// "
                                                   "(default: MAILMIGRATE_BROKER)")
    p.add_argument("--state", metavar="URL", help="postgresql://… shared state (default: MAILMIGRATE_STATE)")
    p.add_argument("--redis", metavar="URL", help="Redis for connection slots and rate limits (default: the "
                                                  "broker when it is Redis, else MAILMIGRATE_REDIS)")
    p.add_argument("--concurrency", type=int, default=os.cpu_count() or 2, metavar="N",
                   help="accounts at once in this worker (processes; default: CPUs)")
    p.add_argument("--hostname", metavar="NAME", help="worker name (default mailmigrate@HOST)")
    p.add_argument("--source-password-file", metavar="FILE")
    p.add_argument("--target-password-file", metavar="FILE")
    p.add_argument("--accounts", metavar="FILE", help="CSV with per-account passwords (mode 0600)")
    p.add_argument("--visibility-timeout", type=float, default=3600, metavar="S",
                   help="Redis broker: a job not acknowledged after S seconds is given to another worker "
                        "(default 3600; longer than the longest account)")
    p.add_argument("--slot-ttl", type=float, default=30, metavar="S",
                   help="a dead worker's connection slots come back after S seconds (default 30)")
    p.add_argument("--heartbeat", type=float, default=10, metavar="S",
                   help="say every S seconds that a running account's worker is alive (default 10); the command "
                        "following the run sends a job again after --stale-after seconds of silence")
    p.add_argument("--log-file", metavar="FILE")
    oauth_options.add_arguments(p)
    p.set_defaults(func=run_worker)

    s = sub.add_parser("state", help="the sync state database: upgrade its schema")
    ssub = s.add_subparsers(dest="state_command", metavar="ACTION")
    u = ssub.add_parser("upgrade", help="apply the schema migrations this mailmigrate knows (PostgreSQL or "
                                        "SQLite); stop the workers first")
    u.add_argument("url", metavar="URL|PATH")
    u.set_defaults(func=run_upgrade)
    s.set_defaults(func=lambda args: (s.print_help(), 2)[1])


def run_upgrade(args) -> int:
    from ..sync.state import SCHEMA_VERSION as SQLITE_VERSION, StateDB
    from ..sync.state_pg import is_pg_url, redact_url, upgrade

    if is_pg_url(args.url):
        before, after = upgrade(args.url)
        what = redact_url(args.url)
    else:
        db = StateDB.open(args.url)  # SQLite: the schema is created, checked or upgraded on open
        db.close()
        after = SQLITE_VERSION
        before = db.upgraded_from or after
        what = args.url
    print(f"state {what}: schema {before} -> {after}" if before != after else f"state {what}: schema {after}, "
          "up to date")
    return 0


def run_worker(args) -> int:
    setup_logging(max(args.verbose, 1), args.log_file)
    from ..fleet.app import broker_from, make_app
    from ..fleet.tasks import WorkerConfig, configure
    from ..sync.state_pg import PgStateDB, is_pg_url

    broker = broker_from(args.broker)
    state_url = args.state or os.environ.get("MAILMIGRATE_STATE")
    if not is_pg_url(state_url):
        raise ConfigError("a worker needs the shared state: --state postgresql://… (or MAILMIGRATE_STATE)")
    redis_url = args.redis or os.environ.get("MAILMIGRATE_REDIS") or (
        broker if broker.startswith(("redis://", "rediss://")) else None)
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    if not args.heartbeat > 0:
        raise ConfigError("--heartbeat must be a number of seconds above 0")
    src_pw = SOURCE.read(args.source_password_file)
    tgt_pw = TARGET.read(args.target_password_file)
    accounts = load_accounts_file(args.accounts) if args.accounts else []
    from ..stores.registry import StoreOptions

    oauth = StoreOptions(), StoreOptions()
    oauth_options.apply(args, *oauth)
    PgStateDB.open(state_url).close()  # fail now, not in every job: reachable, schema current
    configure(WorkerConfig(state_url, redis_url, source_password=src_pw, target_password=tgt_pw,
                           accounts=accounts, slot_ttl=args.slot_ttl, heartbeat=args.heartbeat,
                           source_oauth=oauth[0].oauth, target_oauth=oauth[1].oauth))
    app = make_app(broker, visibility_timeout=args.visibility_timeout,
                   restore_interval=max(1.0, min(10.0, args.visibility_timeout / 10)))
    name = args.hostname or f"mailmigrate-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(["worker", f"--concurrency={args.concurrency}", "--pool=prefork", f"--hostname={name}",
                     "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
                     "-Q", "mailmigrate"])
    return 0
