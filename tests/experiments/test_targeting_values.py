"""Issue 12: targeting values typed as a comma list, numeric strings, semver and date operators."""
from __future__ import annotations

import pytest

from experiments import services
from experiments.forms import TargetingRuleForm, ValuesField
from experiments.models import Experiment

from .conftest import experiment_data

pytestmark = pytest.mark.django_db


def rules(*rule):
    return [{"attribute": a, "operator": op, "values": v} for a, op, v in rule]


@pytest.mark.parametrize("rule", [
    ("age", "gte", ["18"]), ("age", "lt", [18.5]), ("app_version", "semver_gte", ["1.4.0"]),
    ("app_version", "semver_lt", ["2.0.0-beta.1"]), ("app_version", "semver_eq", ["1.0.0+build.5"]),
    ("signup", "after", ["2026-03-01"]), ("signup", "before", ["2026-03-01T12:00:00+02:00"]),
])
def test_valid_operands_are_accepted(admin_api, metrics, rule):
    r = admin_api.post("/api/v1/experiments", experiment_data(targeting=rules(rule)), format="json")
    assert r.status_code == 201, r.json()
    assert r.json()["targeting"][0]["values"] == rule[2]


@pytest.mark.parametrize("rule,words", [
    (("age", "gte", ["eighteen"]), "number"), (("age", "gte", [True]), "number"),
    (("app_version", "semver_gte", ["1.4"]), "semantic version"),
    (("app_version", "semver_gt", ["v1.4.0"]), "semantic version"),
    (("app_version", "semver_lt", [140]), "semantic version"),
    (("signup", "after", ["2026-02-30"]), "ISO 8601"), (("signup", "before", ["2026-03-01T12:00:00"]), "ISO 8601"),
    (("signup", "after", ["2026-03-01", "2026-04-01"]), "exactly one value"),
])
def test_bad_operands_are_a_400_naming_targeting_i_values(admin_api, metrics, rule, words):
    data = experiment_data(targeting=rules(("country", "in", ["CN"]), rule))
    r = admin_api.post("/api/v1/experiments", data, format="json")
    assert r.status_code == 400
    body = r.json()["targeting"]  # {"1": {"values": [...]}}: rule index 1, field values
    assert "0" not in body and words in " ".join(body["1"]["values"]), body
    assert not Experiment.objects.exists()


def test_the_service_refuses_them_too(make_experiment):
    with pytest.raises(services.ValidationError) as err:
        services.validate_targeting(rules(("v", "semver_eq", ["1.2.3-01"])))
    assert "Rule 1 (v)" in err.value.message_dict["targeting"][0]


@pytest.mark.parametrize("typed,stored", [
    ("CN, US", ["CN", "US"]), ("CN", ["CN"]), ("  ", []), ('["CN", "US"]', ["CN", "US"]), ("[18]", [18]),
    ("18", ["18"]), ("1.4.0, 2.0.0-rc.1", ["1.4.0", "2.0.0-rc.1"]), ('["a,b", true]', ["a,b", True]),
])
def test_values_field_reads_comma_lists_and_json(typed, stored):
    assert ValuesField(required=False).clean(typed) == stored


@pytest.mark.parametrize("typed", ["CN,,US", "[1, 2", '["CN"', "CN,", '{"a": 1}', "{"])
def test_values_field_refuses_what_it_cannot_read(typed):
    with pytest.raises(services.ValidationError):
        ValuesField(required=False).clean(typed)


@pytest.mark.parametrize("stored,shown", [
    (["CN", "US"], "CN, US"), ([18], "[18]"), (["a,b"], '["a,b"]'), ([], ""), ([" x"], '[" x"]'),
])
def test_values_field_shows_what_it_reads_back(stored, shown):
    field = ValuesField(required=False)
    assert field.prepare_value(stored) in (shown, "[]" if not stored else shown)
    assert field.clean(field.prepare_value(stored)) == stored


def test_admin_form_validates_operands_per_operator():
    from django.forms import modelform_factory

    from experiments.models import TargetingRule

    Form = modelform_factory(TargetingRule, form=TargetingRuleForm, fields=["attribute", "operator", "values", "position"])
    form = Form(data={"attribute": "app_version", "operator": "semver_gte", "values": "1.4", "position": 0})
    assert not form.is_valid() and "semantic version" in str(form.errors["values"])
    form = Form(data={"attribute": "age", "operator": "gte", "values": "18", "position": 0})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["values"] == ["18"]
