"""The Flask application: routes, login, CSRF.  See the package docstring for why it is built this way."""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, flash, jsonify, redirect, render_template, request, session, url_for
from jinja2 import DictLoader

from ..model import Secret
from ..workflow.actions import Workflow
from ..workflow.project import load_project
from ..workflow.report import build_report, render_html
from ..workflow.states import ACTIONS
from . import templates
from .worker import ActionWorker

PUBLIC_ENDPOINTS = {"login", "static"}


def create_app(project_file: str, token: Secret, *, start_worker: bool = True) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # sessions die with the process: a restart logs everyone out
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      MAX_CONTENT_LENGTH=64 * 1024)
    # ".html" names: Flask autoescapes by extension, and folder names and log lines come from mail data.
    app.jinja_loader = DictLoader({"base.html": templates.BASE, "login.html": templates.LOGIN,
                                   "units.html": templates.UNITS, "logs.html": templates.LOGS,
                                   "history.html": templates.HISTORY, "report.html": templates.REPORT})
    project = load_project(project_file)
    view = Workflow(project, actor="dashboard")
    worker = ActionWorker(project_file) if start_worker else None
    app.extensions["mailmigrate"] = {"workflow": view, "worker": worker}

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    @app.context_processor
    def common():
        return {"project": project.name, "csrf": csrf_token(), "authed": bool(session.get("auth"))}

    @app.before_request
    def guard():
        if request.method == "POST":
            sent = request.form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
                abort(403, description="missing or wrong CSRF token")
        if request.endpoint not in PUBLIC_ENDPOINTS and not session.get("auth"):
            if request.method == "GET" and not request.path.startswith("/api/"):
                return redirect(url_for("login"))
            abort(401)

    @app.after_request
    def headers(resp):
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "POST":
            given = request.form.get("token", "")
            if hmac.compare_digest(given.encode(), token.reveal().encode()):
                session.clear()
                session["auth"] = True
                session["csrf"] = secrets.token_urlsafe(32)
                return redirect(url_for("units"))
            flash("wrong token")
            return render_template("login.html"), 401
        return render_template("login.html")

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    def units():
        w = app.extensions["mailmigrate"]["worker"]
        return render_template("units.html", units=view.status(), busy=w.busy() if w else set(),
                               worker_last=w.last if w else {})

    @app.get("/api/status")
    def api_status():
        w = app.extensions["mailmigrate"]["worker"]
        return jsonify({"units": view.status(), "busy": sorted(w.busy()) if w else []})

    @app.post("/unit/<unit>/<action>")
    def act(unit, action):
        if action not in ACTIONS:
            abort(404)
        if view.wf.get(unit) is None:
            abort(404)
        w = app.extensions["mailmigrate"]["worker"]
        if w is None:
            out = view.act(unit, action)
            said = "refused/failed" if not out.ok else "incomplete" if out.incomplete else "ok"
            flash(f"{unit}: {action} {said}: {out.message}")
        elif w.submit(unit, action):
            flash(f"{unit}: {action} queued")
        else:
            flash(f"{unit}: {action} is already queued")
        return redirect(url_for("units"))

    @app.get("/logs")
    def logs():
        search = request.args.get("search") or None
        unit = request.args.get("unit") or None
        return render_template("logs.html", rows=view.wf.logs(unit=unit, search=search), search=search, unit=unit,
                               unit_names=[u.name for u in view.wf.units()])

    @app.get("/unit/<unit>/history")
    def history(unit):
        if view.wf.get(unit) is None:
            abort(404)
        return render_template("history.html", unit=unit, rows=view.wf.history(unit))

    @app.get("/report")
    def report():
        r = build_report(project.name, view.status(), {})
        return render_template("report.html", report_html=render_html(r))

    @app.get("/api/report")
    def api_report():
        return jsonify(build_report(project.name, view.status(), {}))

    @app.post("/report/verify")
    def verify_all():
        w = app.extensions["mailmigrate"]["worker"]
        n = 0
        for u in view.wf.units():
            if u.bound and w is not None:
                n += w.submit(u.name, "verify")
        flash(f"verification queued for {n} unit(s)")
        return redirect(url_for("report"))

    return app
