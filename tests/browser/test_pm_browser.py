"""The product manager's path in Chromium, as a non-superuser with only the PM role:
create a draft on the Add page (variants, metric, targeting, a QA override), size it with the
calculator, start, pause, resume, complete and ship -- every page checked with axe-core (WCAG 2 AA).
A viewer then reads the report on the non-admin login page."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from experiments.models import Experiment, Metric

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pm-browser-pass-42"
WCAG_AA = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
           "resultTypes": ["violations"]}


def assert_accessible(page, name: str, artifacts) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options=WCAG_AA)
    if results.violations_count:
        (artifacts / f"axe-{name}.json").write_text(json.dumps(results.response["violations"], indent=2))
    assert results.violations_count == 0, f"{name}:\n{results.generate_report()}"


def test_pm_ships_an_experiment_in_chromium(live_server, page, artifacts, transactional_db):
    call_command("create_user", "pat", "--role", "pm", "--password", PASSWORD, stdout=io.StringIO())
    call_command("create_user", "vic", "--role", "viewer", "--password", PASSWORD, stdout=io.StringIO())
    purchase = Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    base = live_server.url

    page.goto(f"{base}/admin/login/?next=/admin/experiments/experiment/add/")
    page.fill("#id_username", "pat")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/experiments/experiment/add/")
    assert_accessible(page, "experiment-add", artifacts)

    page.fill("#id_key", "browser-exp")
    page.fill("#id_name", "Green button")
    page.fill("#id_traffic_allocation", "50")
    for i, (key, weight) in enumerate([("control", "50"), ("green", "50")]):
        page.fill(f"#id_variants-{i}-key", key)
        page.fill(f"#id_variants-{i}-weight", weight)
    page.check("#id_variants-0-is_control")
    page.select_option("#id_experiment_metrics-0-metric", str(purchase.pk))
    page.click("#targeting_rules-group .add-row a")
    page.fill("#id_targeting_rules-0-attribute", "country")
    page.select_option("#id_targeting_rules-0-operator", "in")
    page.fill("#id_targeting_rules-0-values", '["CN", "US"]')
    page.click("#overrides-group .add-row a")
    page.fill("#id_overrides-0-unit_id", "qa-phone-1")
    page.fill("#id_overrides-0-variant_key", "green")

    # The calculator reads the form (50 % traffic, two variants) and fills the planned sample size.
    page.click("#ss-calculate")
    page.wait_for_function("document.querySelector('#ss-use').disabled === false")
    assert "at 50 % traffic allocation" in page.inner_text("#ss-result")
    page.click("#ss-use")
    planned = int(page.input_value("#id_planned_sample_size"))
    assert planned > 1000
    page.click("input[name=_continue]")
    page.wait_for_url("**/change/")
    exp = Experiment.objects.get(key="browser-exp")
    assert exp.planned_sample_size == planned and exp.overrides.get().variant.key == "green"
    assert exp.owner.username == "pat"

    # The lifecycle buttons are visible without scrolling.
    start = page.locator("#lifecycle-start")
    box = start.bounding_box()
    assert box and box["y"] + box["height"] <= 900
    assert page.locator("#sample-size-helper").bounding_box()["y"] < 900
    assert_accessible(page, "experiment-change", artifacts)
    page.screenshot(path=str(artifacts / "pm-change-above-the-fold.png"))

    # An edit typed just before Start is saved, then the confirmation says what will happen.
    page.fill("#id_planned_duration_days", "14")
    start.click()
    page.wait_for_url("**/lifecycle/start/")
    summary = page.inner_text("#lifecycle-summary")
    assert "Start: 2 variants (control 50 %, green 50 %), 50 % of traffic." in summary
    assert "Analysis plan frozen" in summary
    assert_accessible(page, "confirm-start", artifacts)
    page.screenshot(path=str(artifacts / "pm-confirm-start.png"))
    page.click("#confirm-lifecycle")
    page.wait_for_url("**/change/")
    assert "started" in page.inner_text(".messagelist")
    exp.refresh_from_db()
    assert exp.status == "running" and exp.planned_duration_days == 14

    for action in ("pause", "resume"):
        page.click(f"#lifecycle-{action}")
        page.wait_for_url(f"**/lifecycle/{action}/")
        page.click("#confirm-lifecycle")
        page.wait_for_url("**/change/")
    page.click("#lifecycle-complete")
    page.wait_for_url("**/lifecycle/complete/")
    page.check("#ship-green")
    assert_accessible(page, "confirm-complete", artifacts)
    page.click("#confirm-lifecycle")
    page.wait_for_url("**/change/")
    exp.refresh_from_db()
    assert exp.status == "completed" and exp.shipped_variant.key == "green"
    page.screenshot(path=str(artifacts / "pm-shipped.png"), full_page=True)

    # A viewer (no admin access) logs in on the report login page and reads the report list.
    viewer = page.context.browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    viewer.goto(f"{base}/reports/")
    assert "/login/" in viewer.url
    assert_accessible(viewer, "report-login", artifacts)
    viewer.fill("#id_username", "vic")
    viewer.fill("#id_password", PASSWORD)
    viewer.click("#login-submit")
    viewer.wait_for_url(f"{base}/reports/")
    assert viewer.locator("#experiment-list tbody tr", has_text="browser-exp").count() == 1
    assert_accessible(viewer, "report-list-viewer", artifacts)
    viewer.context.close()
