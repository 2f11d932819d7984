"""Each dashboard rendered in headless Chromium (Debian's), driven by Playwright.

Logs in as the viewer, opens each dashboard from superset_assets/, waits until every
chart has rendered, and fails on an error toast or a chart error. A screenshot of each
dashboard is saved under <test data dir>/screenshots/ and listed at the end of the run.
"""

import shutil
import time

import pytest

from lakehouse.superset import assets
from tests.integration.test_superset import login_csrf_token

pytestmark = pytest.mark.superset

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Flags for a closed network: no background calls home, no sandbox as root.
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ERRORS = "[data-test='toast-container'] .toast--danger, [data-test='error-alert'], .ant-alert-error, .alert-danger"
DASHBOARDS = [(d["slug"], d["dashboard_title"],
               sum(1 for n in d["position"].values() if isinstance(n, dict) and n.get("type") == "CHART"))
              for d in assets.dashboards()]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, marts):
    context = browser.new_context(viewport={"width": 1600, "height": 1400}, base_url=marts.superset_url)
    pg = context.new_page()
    for attempt in range(2):
        pg.goto("/login/")
        token = login_csrf_token(pg.content())
        resp = context.request.post("/login/", form={
            "csrf_token": token, "username": marts.superset_viewer_user,
            "password": marts.superset_viewer_password.get_secret_value()})
        if resp.status != 429 or attempt:
            break
        time.sleep(61)  # login is rate limited per minute; earlier modules logged in too
    assert resp.ok, resp.status
    yield pg
    context.close()


@pytest.mark.parametrize("slug,title,n_charts", DASHBOARDS)
def test_dashboard_renders_without_errors(marts, page, slug, title, n_charts, screenshot_dir):
    page.goto(f"/superset/dashboard/{slug}/", wait_until="networkidle", timeout=120_000)
    assert title in page.content(), f"{slug}: the dashboard title is not on the page (login failed?)"
    charts = page.locator("[data-test='chart-container']")
    loading = page.locator(".loading, [data-test='loading-indicator']")
    # Polled from here: Superset's CSP forbids the string evaluation wait_for_function uses.
    deadline = time.monotonic() + 120
    while not (charts.count() >= n_charts and loading.count() == 0):
        assert time.monotonic() < deadline, f"{slug}: {charts.count()}/{n_charts} charts, {loading.count()} loading"
        page.wait_for_timeout(500)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2000)  # ECharts animates bars and lines in; shoot the final frame
    path = screenshot_dir / f"{slug}.png"
    page.screenshot(path=str(path), full_page=True)
    errors = page.locator(ERRORS)
    assert errors.count() == 0, f"{slug}: " + " | ".join(errors.all_inner_texts())[:1000]
    assert charts.count() == n_charts


def test_with_trino_down_a_dashboard_shows_an_error_and_superset_stays_up(marts, page, screenshot_dir):
    import requests

    from lakehouse.stack import supervisor
    from tests.integration.conftest import lakehouse

    supervisor.client(marts).supervisor.stopProcess("trino", True)
    try:
        page.goto("/superset/dashboard/data-quality/", wait_until="networkidle", timeout=120_000)
        errors = page.locator(ERRORS)
        deadline = time.monotonic() + 120
        while errors.count() == 0:
            assert time.monotonic() < deadline, "no chart error shown with Trino down"
            page.wait_for_timeout(500)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(screenshot_dir / "data-quality-trino-down.png"), full_page=True)
        assert "Data quality" in page.content()  # the page itself still renders
        assert requests.get(f"{marts.superset_url}/health", timeout=10).text == "OK"
    finally:
        lakehouse("up", timeout=600)
