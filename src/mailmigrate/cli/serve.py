"""`mailmigrate serve PROJECT`: the web dashboard for a project."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from ..credentials import SECRETS, Secret, write_private
from ..errors import ConfigError
from ..stores.registry import is_loopback
from ..credentials import read_password_file
from ..workflow.project import load_project
from .output import setup_logging


def register(sub) -> None:
    p = sub.add_parser("serve", help="the web dashboard of a project (loopback only by default)")
    p.add_argument("file", metavar="PROJECT")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8025)
    p.add_argument("--public", action="store_true", help="allow listening on a non-loopback address")
    p.set_defaults(func=run)


def dashboard_token(project) -> tuple[Secret, Path]:
    """The project's token file, or a new random token written 0600 beside the project file."""
    path = project.dashboard_token_file or project.base / f"{project.name}-dashboard.token"
    if path.exists():
        return read_password_file(path, "dashboard token"), path
    token = secrets.token_urlsafe(24)
    write_private(path, token + "\n", exclusive=True)
    SECRETS.add(token)
    return Secret(token), path


def run(args) -> int:
    setup_logging(args.verbose)
    if not is_loopback(args.host) and not args.public:
        raise ConfigError(f"{args.host} is not a loopback address: the dashboard controls the migration; "
                          "pass --public if you really want it reachable from the network")
    project = load_project(args.file)
    token, path = dashboard_token(project)
    if not is_loopback(args.host):
        print(f"WARNING: the dashboard listens on {args.host}; put it behind TLS", file=sys.stderr)
    from ..dashboard import create_app

    app = create_app(str(project.file), token)
    print(f"mailmigrate dashboard for {project.name}: http://{args.host}:{args.port}/  "
          f"(log in with the token in {path})", file=sys.stderr)
    from werkzeug.serving import make_server

    make_server(args.host, args.port, app, threaded=True).serve_forever()
    return 0
