"""`mailmigrate project …`: a migration as a project of units with states, logs and a report."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import ConfigError
from ..workflow.actions import Workflow
from ..workflow.project import TEMPLATE, load_project
from ..workflow.report import write_report
from .output import PlainProgress, setup_logging


def register(sub) -> None:
    p = sub.add_parser("project", help="run a migration as a project: init, status, start, sync, finish, "
                                       "abort, skip, report, logs")
    ps = p.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    init = ps.add_parser("init", help="write a project file (if absent) and register its accounts")
    init.add_argument("file")
    init.add_argument("--source", help="source URL for a new project file")
    init.add_argument("--target", help="target URL for a new project file")
    init.add_argument("--accounts", help="accounts CSV for a new project file")
    init.set_defaults(func=run_init)
    st = ps.add_parser("status", help="every unit with its state and progress")
    st.add_argument("file")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=run_status)
    for action, text in (("start", "first copy"), ("sync", "incremental copy, as often as wanted"),
                         ("finish", "final sync, verification, cutover"),
                         ("abort", "remove what mailmigrate made on the target"), ("skip", "leave out")):
        a = ps.add_parser(action, help=text)
        a.add_argument("file")
        a.add_argument("units", nargs="*", metavar="UNIT", help="units (default: all)")
        a.add_argument("--json", action="store_true")
        if action in ("start", "sync", "finish"):
            a.add_argument("--executor", choices=("local", "celery"),
                           help="copy here or as one job per account on `mailmigrate worker`s (default: the "
                                "project's [fleet] executor, else local)")
            a.add_argument("--broker", metavar="URL", help="celery: redis://… or amqp://… (default: [fleet] broker, "
                                                           "else MAILMIGRATE_BROKER)")
            a.add_argument("--fleet-timeout", type=float, metavar="S",
                           help="celery: stop waiting for the workers after S seconds; units not finished by "
                                "then end failed, their jobs still run later (default: [fleet] fleet_timeout, "
                                "else no limit)")
        a.set_defaults(func=run_action, action=action)
    rp = ps.add_parser("report", help="verify every started unit and write the HTML and JSON report")
    rp.add_argument("file")
    rp.add_argument("--json", action="store_true", help="also print the report on stdout")
    rp.set_defaults(func=run_report)
    lg = ps.add_parser("logs", help="the project log")
    lg.add_argument("file")
    lg.add_argument("--unit")
    lg.add_argument("--search")
    lg.set_defaults(func=run_logs)


def run_init(args) -> int:
    setup_logging(args.verbose)
    f = Path(args.file)
    if not f.exists():
        if not (args.source and args.target):
            raise ConfigError(f"{f} does not exist: give --source and --target to write a new project file")
        accounts = f'file = "{args.accounts}"' if args.accounts else "# file = \"users.csv\"   # or list = [\"ann\"]"
        f.write_text(TEMPLATE.format(name=f.stem, source=args.source, target=args.target, accounts=accounts))
        print(f"wrote {f}")
    wf = Workflow(load_project(f))
    added = wf.init()
    print(f"{len(added)} unit(s) added; {len(wf.wf.units())} in the project")
    return 0


def run_status(args) -> int:
    wf = Workflow(load_project(args.file))
    rows = wf.status()
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"project {wf.project.name}")
    found = any(r.get("found") for r in rows)  # what a CommuniGate project's overview counted at init
    for c in ("unit", "state") + (("found",) if found else ()) + ("progress", "last result", "next actions"):
        t.add_column(c)
    for r in rows:
        pr = r["progress"]
        prog = f"{pr.get('done', 0)}/{pr.get('total', 0)}" if pr else ""
        lr = r["last_result"]
        last = r["last_error"] or (f"copied {lr['counters']['copied']}, failed {lr['counters']['failed']}" if lr else "")
        f = r.get("found")
        cells = ((f"{f['messages']} msgs in {f['folders']} folders, password {f['password']}" if f else "",)
                 if found else ())
        t.add_row(r["unit"], r["state"], *cells, prog, last, " ".join(r["actions"]))
    Console().print(t)
    return 0


def run_action(args) -> int:
    setup_logging(args.verbose)
    wf = Workflow(load_project(args.file))
    from ..fleet.submit import print_progress

    outcomes = wf.run(args.units, args.action, PlainProgress(), executor=getattr(args, "executor", None),
                      broker=getattr(args, "broker", None), fleet_timeout=getattr(args, "fleet_timeout", None),
                      on_fleet=print_progress)
    if args.json:
        json.dump([o.__dict__ for o in outcomes], sys.stdout, indent=2)
        print()
    else:
        for o in outcomes:
            said = "FAILED" if not o.ok else "INCOMPLETE" if o.incomplete else "ok"
            print(f"{o.unit}: {o.action} {said} -> {o.state}: {o.message}")
    return 0 if all(o.ok and not o.incomplete for o in outcomes) else 1


def run_report(args) -> int:
    setup_logging(args.verbose)
    wf = Workflow(load_project(args.file))
    report = wf.report()
    jp, hp = write_report(report, wf.project.reports)
    if args.json:
        json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
        print()
    print(f"report: {hp}\n        {jp}", file=sys.stderr)
    return 0 if report["ok"] else 1


def run_logs(args) -> int:
    wf = Workflow(load_project(args.file))
    for r in wf.wf.logs(unit=args.unit, search=args.search):
        print(f"{r['at']} {r['level']:7} {r['unit'] or '-':20} {r['message']}")
    return 0
