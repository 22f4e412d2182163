"""The dashboard with a project of 1,000 accounts: totals, paging, filters, bulk actions, errors linked to
their log lines, the report reusing the last verification, throughput recorded — through HTTP and a browser."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mailmigrate.model import Secret
from test_dashboard import CHROMIUM_ARGS, TOKEN, login

N = 1000


def make_big_project(tmp_path: Path, n: int = N) -> Path:
    """n accounts, each a Maildir of two small messages; units user0000 … user0999."""
    names = [f"user{i:04d}" for i in range(n)]
    for i, name in enumerate(names):
        for d in ("cur", "new", "tmp"):
            (tmp_path / "src" / name / d).mkdir(parents=True)
        for k in range(2):
            (tmp_path / "src" / name / "cur" / f"170000000{k}.M{i}P{k}.host:2,S").write_bytes(
                f"Subject: {name} {k}\r\nMessage-ID: <{name}.{k}@x>\r\n\r\nbody {k}\r\n".encode())
    proj = tmp_path / "big.toml"
    proj.write_text(f"""
[project]
name = "big"
[source]
url = "maildir:{tmp_path / 'src'}/%u"
[target]
url = "maildir:{tmp_path / 'dst'}/%u"
[accounts]
list = {names!r}
""".replace("'", '"'))
    from mailmigrate.workflow.actions import Workflow
    from mailmigrate.workflow.project import load_project

    wf = Workflow(load_project(proj))
    wf.init()
    wf.close()
    return proj


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    return make_big_project(tmp_path_factory.mktemp("big"))


@pytest.fixture
def client(big):
    from mailmigrate.dashboard import create_app

    c = create_app(str(big), Secret(TOKEN), start_worker=False).test_client()
    _, csrf = login(c)
    return c, csrf


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-unit="([^"]+)"', page)


def test_units_are_paged_with_totals(client):
    c, _ = client
    page = c.get("/").get_data(as_text=True)
    assert len(_rows(page)) == 50 and _rows(page)[0] == "user0000"
    assert "page 1 of 20" in page and '1000 matching' in page
    assert re.search(r'data-total="units">0 / 1000<', page)
    page = c.get("/?page=3&per=100").get_data(as_text=True)
    assert _rows(page)[0] == "user0200" and len(_rows(page)) == 100 and "page 3 of 10" in page
    assert len(_rows(c.get("/?per=100000").get_data(as_text=True))) == 500  # a page never exceeds 500 rows
    page = c.get("/?sort=unit&desc=1").get_data(as_text=True)
    assert _rows(page)[0] == "user0999"


def test_filter_and_bulk_actions(client, big):
    c, csrf = client
    page = c.get("/?q=user012").get_data(as_text=True)
    assert _rows(page) == [f"user012{i}" for i in range(10)] and "10 matching" in page
    # the selected ones
    r = c.post("/bulk", data={"csrf": csrf, "action": "skip", "scope": "selected", "unit": ["user0120", "user0121"]})
    assert r.status_code == 302
    st = {u["unit"]: u["state"] for u in c.get("/api/status").get_json()["units"]}
    assert st["user0120"] == st["user0121"] == "skipped" and st["user0122"] == "not_started"
    # every unit the filter matches, on every page
    c.post("/bulk", data={"csrf": csrf, "action": "skip", "scope": "matching", "q": "user03"})
    st = {u["unit"]: u["state"] for u in c.get("/api/status").get_json()["units"]}
    assert sum(st[f"user03{i:02d}"] == "skipped" for i in range(100)) == 100
    assert st["user0400"] == "not_started"
    page = c.get("/?state=skipped&per=500").get_data(as_text=True)
    assert len(_rows(page)) == 102 and re.search(r'data-total="units">102 / 1000<', page)
    # a bulk action without the CSRF token is refused
    assert c.post("/bulk", data={"action": "skip", "scope": "matching"}).status_code == 403
    # an action the units' states do not allow is refused per unit, and said
    r = c.post("/bulk", data={"csrf": csrf, "action": "abort", "scope": "matching", "state": "skipped"},
               follow_redirects=True)
    assert "abort: done for 0 of 102 unit(s), refused for 102" in r.get_data(as_text=True)


def test_failed_unit_links_to_its_error_lines_and_report_reuses_verification(tmp_path):
    proj = make_big_project(tmp_path, n=3)
    (tmp_path / "src" / "user0002" / "cur").rename(tmp_path / "src" / "user0002" / "gone")  # not a Maildir now
    mm = [sys.executable, "-m", "mailmigrate.cli.main", "project"]
    subprocess.run([*mm, "start", str(proj)], capture_output=True, text=True)
    p = subprocess.run([*mm, "report", str(proj)], capture_output=True, text=True)
    from mailmigrate.dashboard import create_app

    c = create_app(str(proj), Secret(TOKEN), start_worker=False).test_client()
    login(c)
    page = c.get("/?state=problem").get_data(as_text=True)
    assert _rows(page) == ["user0002"], p.stderr
    link = re.search(r'<a class="err" href="([^"]+)"', page).group(1)
    assert "unit=user0002" in link and "level=ERROR" in link
    logs = c.get(link.replace("&amp;", "&")).get_data(as_text=True)
    assert "user0002" in logs and "INFO" not in re.sub(r"<select.*?</select>", "", logs, flags=re.S)
    # project report verified the started units a moment ago: the dashboard's report says so
    report = c.get("/api/report").get_json()
    by = {u["unit"]: u for u in report["units"]}
    assert by["user0000"]["verification"]["ok"] and by["user0001"]["verification"]["totals"]["source_messages"] == 2
    html = c.get("/report").get_data(as_text=True)
    assert html.count("not verified yet") == 1  # user0002 only
    # the unit's page lists its folders from that verification; sizes are human-readable
    unit = c.get("/unit/user0000").get_data(as_text=True)
    assert "INBOX" in unit and re.search(r"\d+ B<", unit)
    # throughput was recorded while the units copied
    t = c.get("/api/status").get_json()["totals"]
    assert t["units"] == 3 and t["verified_messages"] == 4
    assert "<rect" in c.get("/").get_data(as_text=True)


@pytest.fixture
def big_server(big):
    from werkzeug.serving import make_server

    from mailmigrate.dashboard import create_app

    app = create_app(str(big), Secret(TOKEN))
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.mark.skipif(not os.path.exists("/usr/bin/chromium"), reason="Debian's chromium is not installed")
def test_browser_with_1000_units_filter_select_and_act(big_server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(big_server + "/")
        page.fill("input[name=token]", TOKEN)
        page.get_by_role("button", name="Log in").click()
        expect(page.locator("#matching")).to_have_text("1000 matching")
        expect(page.locator("tr[data-unit]")).to_have_count(50)
        page.fill("input[name=q]", "user077")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#matching")).to_have_text("10 matching")
        page.check("#select-page")
        page.select_option("select[name=action]", "start")
        page.get_by_role("button", name="Do it on the selected").click()
        expect(page.locator(".flash")).to_contain_text("start: queued for 10 of 10 unit(s)")
        for i in range(10):
            expect(page.locator(f"tr[data-unit=user077{i}] [data-field=state]")).to_have_text("migrating", timeout=60000)
        expect(page.locator('[data-total="messages"]')).not_to_have_text("0")
        page.goto(big_server + "/?state=migrating")
        expect(page.locator("#matching")).to_have_text("10 matching")
        expect(page.get_by_role("link", name="next →")).to_have_count(0)
        page.screenshot(path=str(Path(os.environ.get("MAILMIGRATE_SCREENSHOTS_DIR", "/tmp")) / "dashboard-1000.png"))
        browser.close()
