"""The flag and audience admin in Chromium, as a PM: add a flag with a 10 % rollout in
production through the page's own forms, and an audience; every page checked with axe-core."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from experiments.models import Audience, Flag

from .test_pm_browser import assert_accessible

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pm-browser-pass-42"


def test_pm_rolls_out_a_flag_in_chromium(live_server, page, artifacts, transactional_db):
    from access.services import get_environment

    for key in ("development", "staging", "production"):
        get_environment(key)  # (a flushed database lost the migration's rows)
    call_command("create_user", "pat", "--role", "pm", "--password", PASSWORD, stdout=io.StringIO())
    base = live_server.url
    page.goto(f"{base}/admin/login/?next=/admin/experiments/audience/add/")
    page.fill("#id_username", "pat")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/experiments/audience/add/")
    assert_accessible(page, "audience-add", artifacts)
    page.fill("#id_key", "eu-mobile")
    page.fill("#id_name", "EU mobile")
    page.fill("#id_conditions", "country in DE, FR\nplatform equals ios")
    page.click("input[name=_save]")
    page.wait_for_url(f"{base}/admin/experiments/audience/")
    assert Audience.objects.get(key="eu-mobile").conditions[1]["values"] == ["ios"]

    page.goto(f"{base}/admin/experiments/flag/add/")
    assert_accessible(page, "flag-add", artifacts)
    page.fill("#id_key", "new-checkout")
    page.fill("#id_name", "New checkout")
    page.fill("#id_default_text", "false")
    group = page.locator(".inline-group", has_text="Rules in Production")
    group.locator(".add-row a").click()
    group.locator("select[name$='-0-kind']").select_option("rollout")
    group.locator("input[name$='-0-value_text']").fill("true")
    group.locator("input[name$='-0-percent']").fill("10")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    assert_accessible(page, "flag-change", artifacts)
    rule = Flag.objects.get(key="new-checkout").rules.get()
    assert (rule.environment.key, float(rule.percent), rule.value, rule.salt) == ("production", 10.0, True, "new-checkout")
