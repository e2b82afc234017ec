"""The report page in a real browser: log in, read the demo report, export CSV, recompute."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from analysis.management.commands.seed_demo import DEMO_PASSWORD, DEMO_USER

from .test_pm_browser import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", "--units", "3000", "--days", "5", "--no-progress", stdout=io.StringIO())
    return "checkout-button"


def test_demo_report_in_chromium(live_server, page, demo, artifacts):
    page.goto(f"{live_server.url}/reports/{demo}/")
    assert "/login/?next=" in page.url  # login required (the report login, open to every role)
    page.fill("#id_username", DEMO_USER)
    page.fill("#id_password", DEMO_PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{live_server.url}/reports/{demo}/")

    decision = page.locator("#decision")
    assert decision.is_visible()
    assert decision.get_attribute("data-recommendation") in {"ship", "do_not_ship", "keep_running", "invalid_srm"}
    assert page.locator("#decision .decision-headline").inner_text().strip()
    assert page.locator("#decision .reasons li").count() >= 1
    srm = page.locator("#srm-banner")
    assert srm.is_visible() and srm.get_attribute("data-srm") in {"passed", "failed"}
    tables = page.locator("table.metric-table")
    assert tables.count() == 5  # the demo's five metrics
    first = tables.first
    assert first.locator("tbody tr").count() == 2  # control + green
    headers = first.locator("thead").inner_text()
    for label in ("Units", "Relative lift", "p-value", "Adjusted p", "Chance to beat control"):
        assert label in headers
    charts = page.locator("svg.chart")
    assert charts.count() >= 6
    interval = page.locator("#metric-purchase svg.chart-interval")
    assert interval.is_visible() and interval.locator("circle").count() >= 1
    box = interval.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 40  # really laid out, not collapsed
    assert page.locator("#exposures svg polyline").count() == 2
    # The stylesheet is served (no CDN): the decision card has its coloured border.
    assert page.eval_on_selector("#decision", "e => getComputedStyle(e).borderLeftWidth") == "6px"

    # Day by day (issue 17): every metric's daily value and cumulative lift, the partial day marked.
    daily = page.locator("#daily")
    assert daily.is_visible()
    assert page.locator("#daily .daily-metric").count() == 5
    lift = page.locator("#daily-purchase svg.chart-line").nth(1)
    box = lift.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 100
    assert lift.locator("polyline.series").count() >= 1 and lift.locator("polygon.band").count() >= 1
    if "is partial" in daily.locator("p").first.inner_text():
        assert page.locator("#daily svg g.partial").count() == 2 * 5
        assert "partial day" in page.locator("#daily-purchase svg g.partial").first.inner_html()
    page.screenshot(path=str(artifacts / "report-checkout-button.png"), full_page=True)
    assert_accessible(page, "report-detail", artifacts)
    # Every chart has its numbers as a table (its text alternative), checked by axe-core when open.
    assert page.locator("figure.chart-box details.chart-data table").count() == page.locator("svg.chart").count()
    page.eval_on_selector_all("details.chart-data", "els => els.forEach(e => e.open = true)")
    assert page.locator("#exposures details.chart-data table").is_visible()
    assert page.locator("#daily-purchase details.chart-data table").first.is_visible()
    assert_accessible(page, "report-detail-tables", artifacts)

    with page.expect_download() as download:
        page.click("#export-csv")
    with open(download.value.path(), encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.startswith("experiment,computed_at,section,")
    assert f"\r\n{demo}," in text and ",purchase,Purchase conversion,primary," in text

    page.click("#recompute")
    page.wait_for_load_state()
    assert "The report was recomputed." in page.locator(".messages").inner_text()

    page.goto(f"{live_server.url}/reports/")
    row = page.locator("#experiment-list tbody tr", has_text=demo)
    assert row.count() == 1 and "Running" in row.inner_text()
    assert_accessible(page, "report-list", artifacts)

    page.goto(f"{live_server.url}/reports/library/?outcome=won")
    assert page.locator("#library-summary").is_visible() and "Win rate" in page.locator("#win-rate").inner_text()
    assert_accessible(page, "report-library", artifacts)


def test_shared_link_in_chromium_without_an_account(live_server, page, demo, artifacts):
    from analysis import sharing
    from experiments.models import Experiment

    link = sharing.create_link(Experiment.objects.get(key=demo), days=1)
    page.goto(f"{live_server.url}{sharing.url_of(link)}")
    assert "/login/" not in page.url
    assert page.locator("#shared-banner").is_visible() and page.locator("#decision").is_visible()
    assert page.locator("#export-csv").count() == 0 and page.locator("#recompute").count() == 0
    assert page.locator("svg.chart").count() >= 6
    assert_accessible(page, "report-shared", artifacts)
    sharing.revoke(link)
    response = page.goto(f"{live_server.url}{sharing.url_of(link)}")
    assert response.status == 410 and page.locator("#share-invalid").is_visible()
