"""The dashboard in a real browser: Debian's Chromium driven by Playwright over the real server
(uvicorn on a free loopback port) and a small generated demo project.

Log in (and be refused with a wrong password), filter and page the lead list, download its CSV
and read it back, open a person, see every chart render (an SVG with marks), a rep who sees only
their own leads (404 on another's person page, 403 on the marketing pages), log out. A
screenshot of each page goes to docs/screenshots/ (linked from the README).
"""

from __future__ import annotations

import csv
import io
import os
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PEOPLE = int(os.environ.get("LEADREFINERY_E2E_PEOPLE", "1500"))

playwright_sync = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_project(root: Path):
    """A demo project scored at three weekly cut-offs up to its newest event (so the grade
    history has points), demo logins, a cached backtest and a few alerts in the outbox."""
    from leadrefinery.act.outbox import AlertIn, enqueue
    from leadrefinery.api.auth import ensure_demo_users
    from leadrefinery.demo import run_demo
    from leadrefinery.report.common import reference_time
    from leadrefinery.report.model_report import run_backtest

    project = run_demo(root, people=PEOPLE, say=lambda m: None).project
    e = project.engine
    for t in ("scores", "score_runs", "latest_scores", "account_scores"):
        e.execute(f"DELETE FROM {t}")  # the demo scores as of the wall clock; we want history
    ref = reference_time(e)
    for days in (14, 7, 0):
        project.score(as_of=ref - timedelta(days=days))
    run_backtest(project, weeks=3)
    flagged = e.query("SELECT person_id FROM latest_scores WHERE flagged ORDER BY score DESC "
                      "LIMIT 3")
    enqueue(e, [AlertIn(trigger_id="abuse_flag", trigger_kind="abuse", severity="critical",
                        title="Trial abuse: a class of 38 guests (10 allowed)", channel="feed",
                        person_id=pid) for (pid,) in flagged])
    logins = ensure_demo_users(project.root, e)
    return project, logins


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import uvicorn

    from leadrefinery.api.app import create_app

    project, logins = build_project(tmp_path_factory.mktemp("e2e") / "demo")
    e = project.engine
    rep_user, rep_email = logins[2][0], logins[2][2].split(": ", 1)[1]
    other = e.query(
        "SELECT p.person_id FROM people p JOIN accounts a ON a.account_id = p.account_id "
        "JOIN latest_scores s ON s.person_id = p.person_id "
        "WHERE a.owner IS NOT NULL AND a.owner <> ? ORDER BY s.score DESC LIMIT 1",
        [rep_email])[0][0]
    port = free_port()
    app = create_app(project)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}", "project": project, "rep": rep_user,
           "rep_email": rep_email, "other_person": other}
    srv.should_exit = True
    thread.join(timeout=20)
    project.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    ctx.close()


def login(page, url: str, user: str, password: str = "demo"):
    page.goto(f"{url}/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def shot(page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def charts_render(page) -> int:
    """Wait for every chart to render; each must be an SVG with marks. Returns how many."""
    n = page.locator(".chart").count()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(c => c.dataset.rendered || "
        "c.dataset.error)")
    errors = page.eval_on_selector_all(".chart[data-error]", "els => els.map(e => e.dataset.error)")
    assert not errors, errors
    marks = page.eval_on_selector_all(
        ".chart", "els => els.map(e => e.querySelectorAll('svg .role-mark path, svg .role-mark "
                  "rect, svg .role-mark line, svg .role-mark symbol, svg g.mark-rect path, "
                  "svg g.mark-line path, svg g.mark-area path, svg g.mark-symbol path').length)")
    assert all(m > 0 for m in marks), marks
    return n


def test_login_required_and_wrong_password_rejected(server, page):
    url = server["url"]
    page.goto(f"{url}/leads")
    assert "/login" in page.url
    shot(page, "login")
    login(page, url, "admin", "not-the-password")
    assert "/login" in page.url
    assert page.locator("#login-error").inner_text().startswith("Wrong user name or password")
    # the API too: no session, no data
    r = page.request.get(f"{url}/api/leads")
    assert r.status == 401


def test_leads_filter_page_and_csv(server, page):
    url = server["url"]
    login(page, url, "admin")
    page.goto(f"{url}/leads")
    total = int(page.locator("#lead-total").inner_text().replace(",", ""))
    assert total >= PEOPLE * 0.9
    assert page.locator("#leads-table tbody tr").count() == 50
    shot(page, "leads", full_page=False)
    page.click("#next-page")
    assert "page=2" in page.url
    # filter: grade 3 and 4 from the chips, plus a stage
    page.goto(f"{url}/leads")
    page.click("label.chip:has(input[value='3'])")
    page.click("label.chip:has(input[value='4'])")
    page.click("#apply-filters")
    page.wait_for_load_state("networkidle")
    grades = page.eval_on_selector_all("#leads-table tbody tr",
                                       "rs => rs.map(r => r.dataset.grade)")
    assert grades and set(grades) <= {"3", "4"}
    filtered = int(page.locator("#lead-total").inner_text().replace(",", ""))
    assert 0 < filtered < total
    page.select_option("select[name=source]", "partner")
    page.click("#apply-filters")
    page.wait_for_load_state("networkidle")
    narrowed = int(page.locator("#lead-total").inner_text().replace(",", ""))
    assert 0 < narrowed < filtered
    shot(page, "leads-filtered", full_page=False)
    # the CSV of the current view: the same leads, in rank order
    with page.expect_download() as dl:
        page.click("#export-csv")
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == narrowed
    assert {r["grade"] for r in rows} <= {"3", "4"} and {r["source"] for r in rows} == {"partner"}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    first_row = page.locator("#leads-table tbody tr").first.get_attribute("data-person")
    assert rows[0]["person_id"] == first_row
    # a search by company narrows to that company
    company = server["project"].engine.scalar(
        "SELECT company FROM people WHERE company IS NOT NULL ORDER BY person_id LIMIT 1")
    page.goto(f"{url}/leads")
    page.fill("input[name=q]", company)
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("networkidle")
    subs = page.eval_on_selector_all("#leads-table tbody td.who-cell",
                                     "cs => cs.map(c => c.innerText)")
    assert subs and all(company.lower() in s.lower() for s in subs)


def test_person_page(server, page):
    url = server["url"]
    login(page, url, "admin")
    page.goto(f"{url}/leads?abuse=1")
    page.locator("#leads-table a.lead-link").first.click()
    page.wait_for_load_state("networkidle")
    assert "/people/" in page.url
    assert page.locator("#breakdown table tbody tr").count() > 0
    assert page.locator("#abuse-evidence").count() == 1
    assert page.locator("#timeline tbody tr").count() > 0
    assert page.locator("#stage ol.journey li").count() == 6
    charts_render(page)
    shot(page, "person")


@pytest.mark.parametrize("name, path, min_charts", [
    ("overview", "/overview", 4),
    ("campaigns", "/campaigns", 2),
    ("abuse", "/abuse", 0),
    ("model", "/model", 2),
])
def test_pages_and_charts(server, page, name, path, min_charts):
    url = server["url"]
    login(page, url, "analyst")
    resp = page.goto(f"{url}{path}")
    assert resp.status == 200
    page.wait_for_load_state("networkidle")
    assert charts_render(page) >= min_charts
    if name == "campaigns":
        assert page.locator("#campaign-table tbody tr").count() >= 3
        assert "$" in page.locator("#campaign-table tfoot").inner_text()
    if name == "abuse":
        assert page.locator("#flags tbody tr").count() > 0
    if name == "model":
        assert page.locator("#alerts-outbox tbody tr").count() >= 3
    shot(page, name)


def test_rep_sees_only_their_leads(server, page):
    url, rep_email = server["url"], server["rep_email"]
    login(page, url, server["rep"])
    page.goto(f"{url}/leads")
    owners = page.eval_on_selector_all("#leads-table tbody tr",
                                       "rs => rs.map(r => r.dataset.owner)")
    assert owners and set(owners) == {rep_email}
    total = int(page.locator("#lead-total").inner_text().replace(",", ""))
    e = server["project"].engine
    assert total == e.scalar(
        "SELECT count(*) FROM latest_scores s JOIN people p ON p.person_id = s.person_id "
        "JOIN accounts a ON a.account_id = p.account_id WHERE a.owner = ?", [rep_email])
    shot(page, "leads-rep", full_page=False)
    other = server["other_person"]
    resp = page.goto(f"{url}/people/{other}")
    assert resp.status == 404
    assert page.request.get(f"{url}/api/people/{other}").status == 404
    assert page.goto(f"{url}/campaigns").status == 403
    assert page.request.get(f"{url}/api/campaigns").status == 403
    api = page.request.get(f"{url}/api/leads?per_page=500").json()
    assert api["total"] == total and all(r["owner"] == rep_email for r in api["rows"])


def test_logout(server, page):
    url = server["url"]
    login(page, url, "admin")
    page.goto(f"{url}/leads")
    page.click("#logout")
    page.wait_for_load_state("networkidle")
    assert "/login" in page.url
    page.goto(f"{url}/leads")
    assert "/login" in page.url
    assert page.request.get(f"{url}/api/me").status == 401


def test_screenshots_exist():
    for name in ("login", "leads", "person", "overview", "campaigns", "abuse", "model"):
        assert (SHOTS / f"{name}.png").is_file(), name


