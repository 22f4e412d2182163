"""The dashboard: login, CSRF, actions, logs, report — through HTTP and through a real browser."""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path

import pytest

from mailmigrate.model import Secret

TOKEN = "tok-" + "x" * 20


def make_project(tmp_path: Path, n_msgs: int = 3) -> Path:
    src = tmp_path / "src"
    for d in ("cur", "new", "tmp"):
        (src / d).mkdir(parents=True)
    for i in range(n_msgs):
        (src / "cur" / f"16000000{i:02d}.M{i}.host:2,S").write_bytes(
            f"Subject: m{i}\r\nMessage-ID: <{i}@x>\r\n\r\nbody {i}\r\n".encode())
    proj = tmp_path / "proj.toml"
    proj.write_text(f"""
[project]
name = "demo"
[source]
url = "maildir:{src}"
[target]
url = "maildir:{tmp_path / 'dst'}"
[accounts]
list = ["ann"]
""")
    from mailmigrate.workflow.actions import Workflow
    from mailmigrate.workflow.project import load_project

    Workflow(load_project(proj)).init()
    return proj


@pytest.fixture
def client(tmp_path):
    from mailmigrate.dashboard import create_app

    app = create_app(str(make_project(tmp_path)), Secret(TOKEN), start_worker=False)
    return app.test_client()


def login(client, token=TOKEN):
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"token": token, "csrf": csrf})
    if r.status_code == 302:  # the CSRF token is renewed at login: read the new one
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)
    return r, csrf


def test_pages_need_login(client):
    r = client.get("/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/login")
    assert client.get("/api/status").status_code == 401


def test_wrong_token_refused(client):
    r, _ = login(client, "wrong")
    assert r.status_code == 401
    assert client.get("/").status_code == 302


def test_post_without_csrf_token_is_refused(client):
    r, csrf = login(client)
    assert r.status_code == 302
    assert client.post("/unit/ann/skip", data={}).status_code == 403
    assert client.post("/unit/ann/skip", data={"csrf": "forged"}).status_code == 403
    assert client.post("/unit/ann/skip", data={"csrf": csrf}).status_code == 302
    assert "skipped" in client.get("/").get_data(as_text=True)


def test_illegal_action_is_explained(client):
    _, csrf = login(client)
    client.post("/unit/ann/finish", data={"csrf": csrf})
    page = client.get("/").get_data(as_text=True)
    assert "cannot finish: it has not been started yet" in page


def test_html_is_escaped(tmp_path):
    """Log lines come from mail data: a folder called <script> must not run in the administrator's browser."""
    from mailmigrate.dashboard import create_app

    app = create_app(str(make_project(tmp_path)), Secret(TOKEN), start_worker=False)
    app.extensions["mailmigrate"]["workflow"].wf.log("ann", "ERROR", "folder <script>alert(1)</script>")
    c = app.test_client()
    login(c)
    page = c.get("/logs").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_communigate_units_are_listed_and_act(tmp_path):
    """A CommuniGate project's units are its store's accounts, with what the overview found."""
    import shutil

    from mailmigrate.dashboard import create_app
    from mailmigrate.workflow.actions import Workflow
    from mailmigrate.workflow.project import load_project

    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "communigate", tmp_path / "cg")
    proj = tmp_path / "cg.toml"
    proj.write_text(f"""[project]
name = "cg"
path = "communigate"
[communigate]
base = "cg"
domains = ["example.org"]
directory = "passwd-file:{tmp_path / 'users.passwd'}"
[target]
url = "imap://127.0.0.1:1?master=plain&tls=none"
master = "master"
""")
    Workflow(load_project(proj)).init()
    c = create_app(str(proj), Secret(TOKEN), start_worker=False).test_client()
    _, csrf = login(c)
    page = c.get("/").get_data(as_text=True)
    assert "dave@example.org" in page and "erin@example.org" in page and "alice@example.com" not in page
    assert "found 5 messages in 3 folders" in page  # dave: INBOX, Archive, Trash
    c.post("/unit/erin@example.org/skip", data={"csrf": csrf})
    units = {u["unit"]: u for u in c.get("/api/status").get_json()["units"]}
    assert units["erin@example.org"]["state"] == "skipped" and units["dave@example.org"]["state"] == "not_started"


@pytest.fixture
def server(tmp_path):
    from werkzeug.serving import make_server

    from mailmigrate.dashboard import create_app

    proj = make_project(tmp_path, n_msgs=5)
    app = create_app(str(proj), Secret(TOKEN))
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_port}", tmp_path
    srv.shutdown()


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Debian's chromium is not installed")
def test_browser_login_start_sync_finish_report(server):
    from playwright.sync_api import expect, sync_playwright

    url, tmp = server
    # MAILMIGRATE_SCREENSHOTS=1 refreshes the pictures in docs/; otherwise they go to the test's tmp dir.
    docs = Path(__file__).resolve().parent.parent / "docs" if os.environ.get("MAILMIGRATE_SCREENSHOTS") else tmp
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 650})
        # Without the token nothing is shown but the login form.
        page.goto(url + "/")
        expect(page.locator("input[name=token]")).to_be_visible()
        page.fill("input[name=token]", TOKEN)
        page.get_by_role("button", name="Log in").click()
        row = page.locator("tr[data-unit=ann]")
        expect(row.locator("[data-field=state]")).to_have_text("not_started")

        def press(action, state):
            row.locator(f"button[value={action}]").click()
            expect(row.locator("[data-field=state]")).to_have_text(state, timeout=20000)
            expect(row.locator("em")).to_have_count(0, timeout=20000)

        press("start", "migrating")
        press("sync", "migrating")
        press("finish", "migrated")
        page.screenshot(path=str(docs / "dashboard-units.png"))
        page.goto(url + "/report")
        frame = page.frame_locator("iframe")
        expect(frame.locator("body")).to_contain_text("Everything verified")
        expect(frame.locator("body")).to_contain_text("Source: 5 messages")
        page.screenshot(path=str(docs / "dashboard-report.png"))
        page.goto(url + "/logs?search=finish")
        expect(page.locator("table")).to_contain_text("verified: 5 messages")
        page.screenshot(path=str(docs / "dashboard-logs.png"))
        browser.close()
    # the target holds the five messages
    got = sorted(p.read_bytes() for p in (tmp / "dst" / "cur").iterdir())
    want = sorted(p.read_bytes() for p in (tmp / "src" / "cur").iterdir())
    assert got == want


def test_request_without_token_refused_over_http(server):
    import urllib.error
    import urllib.request

    url, _ = server
    req = urllib.request.Request(url + "/unit/ann/start", data=b"csrf=x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code in (401, 403)
