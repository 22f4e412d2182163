"""The Flask application: routes, login, CSRF.  See the package docstring for why it is built this way."""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, abort, flash, jsonify, redirect, render_template, request, session, url_for
from jinja2 import DictLoader

from ..model import Secret
from ..workflow.actions import Workflow
from ..workflow.project import load_project
from ..workflow import overview
from ..workflow.report import build_report, render_html
from ..workflow.states import ACTIONS, STATES
from . import templates
from .worker import ActionWorker

PUBLIC_ENDPOINTS = {"login", "static"}
BULK_ACTIONS = ("start", "sync", "finish", "skip", "abort")


def _chart(rate: list[dict], width: int = 720, height: int = 80, slots: int = 120) -> dict:
    """Bars of messages per minute, drawn on the server as SVG: no script, no library, any size of project.
    One slot per minute, the newest on the right, so one busy minute is a bar and not the whole chart."""
    peak = max((r["messages"] for r in rate), default=0)
    w = width / slots
    off = slots - len(rate)
    bars = []
    for i, r in enumerate(rate):
        h = round(height * r["messages"] / peak, 1) if peak else 0
        bars.append({"x": round((off + i) * w, 1), "y": round(height - h, 1), "w": max(round(w - 1, 1), 1), "h": h,
                     "minute": r["minute"].replace("T", " "), "messages": r["messages"], "bytes": r["bytes"]})
    return {"bars": bars, "width": width, "height": height, "peak": peak, "minutes": len(rate),
            "first": rate[0]["minute"].replace("T", " ") if rate else "", "first_x": round(off * w, 1), "last": rate[-1]["minute"][11:] if rate else ""}


def create_app(project_file: str, token: Secret, *, start_worker: bool = True) -> Flask:
    app = Flask(__name__)
    app.secret_key = secrets.token_bytes(32)  # sessions die with the process: a restart logs everyone out
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      MAX_CONTENT_LENGTH=64 * 1024)
    # ".html" names: Flask autoescapes by extension, and folder names and log lines come from mail data.
    app.jinja_loader = DictLoader({"base.html": templates.BASE, "login.html": templates.LOGIN,
                                   "units.html": templates.UNITS, "logs.html": templates.LOGS,
                                   "history.html": templates.HISTORY, "report.html": templates.REPORT,
                                   "unit.html": templates.UNIT})
    app.jinja_env.filters["size"] = overview.human_bytes
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

    def _filters() -> dict:
        a = request.values
        return {"q": a.get("q", ""), "state": a.get("state", ""), "sort": a.get("sort", "unit"),
                "desc": a.get("desc") in ("1", "true")}

    @app.get("/")
    def units():
        w = app.extensions["mailmigrate"]["worker"]
        status = view.status()
        f = _filters()
        try:
            page, per = int(request.args.get("page", 1)), int(request.args.get("per", 50))
        except ValueError:
            abort(400)
        pg = overview.select(status, **f, page=page, per=per)

        def url(**changes):
            args = {**f, "desc": "1" if f["desc"] else "", "page": pg.page, "per": pg.per, **changes}
            return url_for("units", **{k: v for k, v in args.items() if v not in ("", None)})

        def sort_url(key):
            return url(sort=key, desc="" if (f["sort"] == key and f["desc"]) or f["sort"] != key else "1", page=1)

        return render_template(
            "units.html", pg=pg, f=f, t=overview.totals(status, view.wf.rate(), view.wf.copied()).as_dict(),
            chart=_chart(view.wf.rate()), states=list(STATES) + ["problem"], bulk_actions=BULK_ACTIONS,
            columns=[("unit", "unit"), ("state", "state"), ("messages", "progress"), ("failed", "last result"),
                     ("updated", "updated")],
            sort_url=sort_url, page_url=lambda n: url(page=n),
            busy=w.busy() if w else set(), worker_last=w.last if w else {})

    @app.get("/api/status")
    def api_status():
        """Every unit, or the ones named with ``unit=`` (the page a browser shows), with the totals."""
        w = app.extensions["mailmigrate"]["worker"]
        status = view.status()
        wanted = set(request.args.getlist("unit"))
        return jsonify({"units": [u for u in status if not wanted or u["unit"] in wanted],
                        "totals": overview.totals(status, view.wf.rate(), view.wf.copied()).as_dict(),
                        "busy": sorted(w.busy()) if w else []})

    @app.post("/bulk")
    def bulk():
        action = request.form.get("action", "")
        if action not in BULK_ACTIONS:
            abort(400)
        if request.form.get("scope") == "matching":
            f = _filters()
            names = overview.matching_names(view.status(), q=f["q"], state=f["state"])
        else:
            names = request.form.getlist("unit")
        known = {u.name for u in view.wf.units()}
        names = [n for n in names if n in known]
        if not names:
            flash(f"{action}: no unit selected")
            return redirect(url_for("units", q=request.form.get("q") or None, state=request.form.get("state") or None))
        w = app.extensions["mailmigrate"]["worker"]
        queued = refused = 0
        for n in names:
            if w is None:
                out = view.act(n, action)
                queued += out.ok
                refused += not out.ok
            elif w.submit(n, action):
                queued += 1
        flash(f"{action}: {'done' if w is None else 'queued'} for {queued} of {len(names)} unit(s)"
              + (f", refused for {refused} (see each unit's history)" if refused else ""))
        return redirect(url_for("units", q=request.form.get("q") or None, state=request.form.get("state") or None))

    @app.get("/unit/<unit>")
    def unit(unit):
        u = next((s for s in view.status() if s["unit"] == unit), None)
        if u is None:
            abort(404)
        return render_template("unit.html", u=u)

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
        level = request.args.get("level") or None
        return render_template("logs.html", rows=view.wf.logs(unit=unit, search=search, level=level), search=search,
                               unit=unit, level=level, unit_names=[u.name for u in view.wf.units()])

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
        for name in view.verifiable():
            if w is not None:
                n += w.submit(name, "verify")
        flash(f"verification queued for {n} unit(s)")
        return redirect(url_for("report"))

    return app
