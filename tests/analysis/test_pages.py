"""Report pages and the analysis admin, through Django's test client."""
from __future__ import annotations

import csv
import io
import re
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client

from analysis import reports
from analysis.models import ReportSnapshot
from experiments.models import Experiment

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


@pytest.fixture
def user():
    return User.objects.create_superuser("analyst", "a@example.invalid", "pw-for-tests")


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def report():
    experiment = make_experiment()
    populate(experiment, units=1500, lift=0.3, seed=5)
    experiment.refresh_from_db()
    reports.backfill_daily(experiment, days=7)
    return experiment, reports.compute_report(experiment)


@pytest.mark.parametrize("url", [
    "/reports/", "/reports/checkout/", "/reports/checkout/export.csv", "/reports/checkout/export.json",
])
def test_pages_need_a_login(client, url):
    make_experiment()
    r = client.get(url)
    assert r.status_code == 302 and r["Location"].startswith("/login/?next=")


def test_home_goes_to_the_reports(browser):
    assert browser.get("/")["Location"] == "/reports/"


def test_list_shows_status_days_and_headline(browser, report):
    make_experiment("waiting", start=False)
    page = browser.get("/reports/").content.decode()
    assert 'href="/reports/checkout/"' in page and 'href="/reports/waiting/"' in page
    headline = report[1].payload["decision"]["headline"]
    assert headline in page.replace("&#x27;", "'")
    assert "No report yet" in page  # the draft one
    assert "Running" in page and "Draft" in page


def test_report_page_shows_the_full_report(browser, report):
    experiment, snapshot = report
    page = browser.get("/reports/checkout/").content.decode()
    payload = snapshot.payload
    assert 'id="decision"' in page and f'data-recommendation="{payload["decision"]["recommendation"]}"' in page
    assert 'id="srm-banner" data-srm="passed"' in page
    assert page.count('class="table metric-table"') == 3
    assert "Purchase conversion" in page and "Refund rate" in page and "pill role\">guardrail" in page
    assert "Green sells more." in page  # hypothesis
    assert "Chance to beat control" in page and "Adjusted p" in page
    assert page.count("<svg") >= 1 + 3 + 2  # exposures, an interval chart per metric, history per decision metric
    assert "Relative lift of Purchase conversion over time" in page
    assert 'id="export-csv" href="/reports/checkout/export.csv"' in page
    assert 'href="/reports/checkout/export.json"' in page
    assert 'id="segments"' in page and "By <span class=\"mono\">country</span>" in page
    assert 'action="/reports/checkout/refresh/"' in page and "csrfmiddlewaretoken" in page
    # Figures come from the snapshot.
    green = payload["metrics"][0]["variants"][1]
    assert f"{green['lift']['relative']:+.1%}" in page


def test_srm_failure_is_a_red_banner(browser):
    experiment = make_experiment()
    populate(experiment, units=4000, drop_treatment=0.2)
    reports.compute_report(experiment)
    page = browser.get("/reports/checkout/").content.decode()
    assert 'data-srm="failed"' in page and "Sample ratio mismatch" in page
    assert 'data-recommendation="invalid_srm"' in page


def test_no_report_yet(browser):
    make_experiment()
    page = browser.get("/reports/checkout/").content.decode()
    assert 'id="no-report"' in page and 'id="recompute"' in page
    assert browser.get("/reports/nope/").status_code == 404


def test_recompute_button_needs_csrf_and_post(user):
    make_experiment()
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/reports/checkout/refresh/").status_code == 403
    assert client.get("/reports/checkout/refresh/").status_code == 405
    page = client.get("/reports/checkout/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = client.post("/reports/checkout/refresh/", {"csrfmiddlewaretoken": token})
    assert r.status_code == 302 and r["Location"] == "/reports/checkout/"
    assert ReportSnapshot.objects.count() == 1
    assert "The report was recomputed." in client.get("/reports/checkout/").content.decode()


def test_viewing_an_earlier_snapshot(browser, report):
    experiment, latest = report
    first = ReportSnapshot.objects.filter(experiment=experiment).order_by("computed_at").first()
    at = first.computed_at.isoformat().replace("+00:00", "Z")
    page = browser.get(f"/reports/checkout/?at={at}").content.decode()
    assert "You are viewing the snapshot of" in page
    assert f"export.csv?{urlencode({'at': at})}" in page
    bad = browser.get("/reports/checkout/?at=soon").content.decode()
    assert "RFC 3339" in bad  # message, and the latest report shown
    assert 'id="decision"' in bad


def test_exports_for_a_logged_in_person(browser, report):
    _, snapshot = report
    r = browser.get("/reports/checkout/export.csv")
    assert r["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert rows and rows[0]["experiment"] == "checkout"
    body = browser.get("/reports/checkout/export.json").json()
    assert body["snapshot_id"] == snapshot.pk and body["metrics"] == snapshot.payload["metrics"]


def test_names_are_escaped_in_html_and_svg(browser):
    experiment = make_experiment(metric_names={"purchase": "<script>alert(1)</script>"})
    populate(experiment, units=600, lift=0.3)
    reports.compute_report(experiment)
    page = browser.get("/reports/checkout/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# --- admin ------------------------------------------------------------------------------------

def test_admin_recompute_button_and_action(browser):
    experiment = make_experiment()
    change = browser.get(f"/admin/experiments/experiment/{experiment.pk}/change/").content.decode()
    assert 'id="admin-recompute"' in change and 'id="sample-size-helper"' in change
    assert browser.get(f"/admin/experiments/experiment/{experiment.pk}/recompute/").status_code == 405
    r = browser.post(f"/admin/experiments/experiment/{experiment.pk}/recompute/")
    assert r.status_code == 302 and ReportSnapshot.objects.count() == 1
    other = make_experiment("other")
    browser.post("/admin/experiments/experiment/", {
        "action": "recompute_selected", "_selected_action": [experiment.pk, other.pk],
    })
    assert ReportSnapshot.objects.filter(experiment=experiment).count() == 2
    assert ReportSnapshot.objects.filter(experiment=other).count() == 1
    listing = browser.get("/admin/experiments/experiment/").content.decode()
    assert "Latest result" in listing and "Keep running" in listing


def test_admin_sample_size_helper(browser, report):
    experiment, snapshot = report
    control_rate = snapshot.payload["metrics"][0]["variants"][0]["mean"]
    url = f"/admin/experiments/experiment/{experiment.pk}/sample-size/"
    page = browser.get(url).content.decode()
    assert f'value="{round(control_rate, 6)}"' in page  # prefilled from the report
    result = browser.get(url, {"baseline": "0.1", "mde": "0.05", "alpha": "0.05", "power": "0.8",
                               "n_variants": "2", "sd": ""})
    assert result.context["result"]["per_variant"] > 0 and 'id="sample-size-result"' in result.content.decode()
    error = browser.get(url, {"baseline": "2", "mde": "0.05", "alpha": "0.05", "power": "0.8",
                              "n_variants": "2", "sd": ""})
    assert "baseline" in error.context["error"]


def test_snapshot_admin_is_read_only(browser, report):
    _, snapshot = report
    assert browser.get("/admin/analysis/reportsnapshot/add/").status_code == 403
    listing = browser.get("/admin/analysis/reportsnapshot/").content.decode()
    assert "checkout" in listing
    detail = browser.get(f"/admin/analysis/reportsnapshot/{snapshot.pk}/change/").content.decode()
    assert "&quot;decision&quot;" in detail and 'name="_save"' not in detail


def test_experiment_admin_is_the_reporting_subclass():
    from django.contrib import admin

    from analysis.admin import ReportingExperimentAdmin

    assert isinstance(admin.site._registry[Experiment], ReportingExperimentAdmin)


def test_report_page_charts_have_tables_partial_day_and_distinct_snapshot_labels(browser, report):
    experiment, latest = report
    # Two more recomputations in the same minute as the latest one.
    for seconds in (1, 2):
        reports.compute_report(experiment, until=latest.computed_at + __import__("datetime").timedelta(seconds=seconds),
                               include_segments=False)
    page = browser.get("/reports/checkout/").content.decode()
    assert page.count('<details class="chart-data">') == page.count("<svg") >= 6  # a table per chart
    newest = ReportSnapshot.objects.filter(experiment=experiment).order_by("-computed_at").first()
    days = {row["date"] for row in newest.payload["daily_exposures"]}
    if newest.data_to.date().isoformat() in days:  # traffic today (not just after midnight)
        assert 'class="partial"' in page and "partial day (data until" in page and "(partial)</td>" in page
    links = re.findall(r'at=[^"]+">([^<]+)</a>', page)
    assert len(links) >= 3 and len(set(links)) == len(links), links


def test_unknown_query_parameters_on_the_exports(browser, report):
    for path in ("export.csv", "export.json"):
        r = browser.get(f"/reports/checkout/{path}?phasee=1")
        assert r.status_code == 400 and "phasee" in r.json()["detail"]
