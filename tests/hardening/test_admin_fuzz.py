"""Garbage into every admin form: field messages, never a 500, nothing saved.

Covers the add and change forms of experiments (with their inlines), metrics, layers and API
keys: huge and non-finite numbers, negative weights, text that is not JSON, Unicode, missing
management-form fields, plus a Hypothesis pass that puts arbitrary text into every field.
The hidden fields (management forms, inline ids) are read from the page itself, so an inline
added to the admin later is carried along.
"""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import User
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from access.models import APIKey
from experiments import services
from experiments.models import Experiment, Layer, Metric

pytestmark = pytest.mark.django_db

NASTY = [
    "", " ", "-1", "-50", "0", "1e309", "-1e309", "NaN", "nan", "Infinity", "inf",
    "9" * 40, "0." + "0" * 30 + "1", "1_000", "0x10", "５０", "٣", "½", "50,5", "abc", "null",
    "{", "[1, 2]", '{"a": [}', "\x00", "é" * 300, "😀" * 70, "<script>alert(1)</script>", "' OR 1=1 --",
    "x" * 5000,
]


class FormFields(HTMLParser):
    """The fields of an admin page's main form with their current values, as a browser posts them."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._select_first: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.data[name] = a.get("value") or "on"
            else:
                self.data[name] = a.get("value") or ""
        elif tag == "select" and name:
            self._select, self._select_first = name, None
        elif tag == "option" and self._select:
            if self._select_first is None:
                self._select_first = a.get("value") or ""
            if "selected" in a:
                self.data[self._select] = a.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            self.data.setdefault(self._select, self._select_first or "")
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


_ADD_PAGES: dict[str, dict[str, str]] = {}


def page_fields(client, url: str) -> dict[str, str]:
    """The page's form fields; add pages hold no rows' ids, so they are read once per session."""
    if url.endswith("/add/") and url in _ADD_PAGES:
        return dict(_ADD_PAGES[url])
    r = client.get(url)
    assert r.status_code == 200, url
    parser = FormFields()
    parser.feed(r.content.decode())
    data = {k: v for k, v in parser.data.items() if k != "csrfmiddlewaretoken" and "__prefix__" not in k}
    if url.endswith("/add/"):
        _ADD_PAGES[url] = dict(data)
    return data


@pytest.fixture
def pm(client):
    client.force_login(User.objects.create(username="pm", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def world(db):
    Metric.objects.create(key="purchase", name="Purchase", event="purchase", kind="conversion")
    layer = Layer.objects.create(key="checkout", name="Checkout", holdout_percent=10)
    draft = services.create_experiment({
        "key": "draft-exp", "name": "Draft", "traffic_allocation": 100, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
        "targeting": [{"attribute": "country", "operator": "in", "values": ["CN"]}],
    })
    running = services.start_experiment(services.create_experiment({
        "key": "running-exp", "name": "Running", "traffic_allocation": 50, "planned_sample_size": 10000,
        "variants": [{"key": "control", "weight": 50, "is_control": True}, {"key": "b", "weight": 50}],
        "metrics": [{"metric": "purchase", "role": "primary"}],
    }))
    from access.services import create_api_key

    key, _ = create_api_key("ci-key", "client")
    return {"layer": layer, "draft": draft, "running": running, "key": key}


def experiment_add_data(pm) -> dict[str, str]:
    """A valid add form, built on the page's own hidden fields."""
    data = page_fields(pm, "/admin/experiments/experiment/add/")
    metric = Metric.objects.get(key="purchase")
    data.update({
        "key": "fuzzed-exp", "name": "Fuzzed", "hypothesis": "h", "traffic_allocation": "100",
        "significance_level": "0.05", "correction": "holm",
        "variants-TOTAL_FORMS": "2",
        "variants-0-key": "control", "variants-0-name": "control", "variants-0-weight": "50",
        "variants-0-is_control": "on", "variants-0-payload": "{}", "variants-0-position": "0",
        "variants-1-key": "green", "variants-1-name": "green", "variants-1-weight": "50",
        "variants-1-payload": '{"color": "green"}', "variants-1-position": "1",
        "experiment_metrics-TOTAL_FORMS": "1",
        "experiment_metrics-0-metric": str(metric.pk), "experiment_metrics-0-role": "primary",
        "experiment_metrics-0-position": "0", "experiment_metrics-0-non_inferiority_margin": "0.02",
        "targeting_rules-TOTAL_FORMS": "1",
        "targeting_rules-0-attribute": "country", "targeting_rules-0-operator": "in",
        "targeting_rules-0-values": '["CN", "US"]', "targeting_rules-0-position": "0",
    })
    return data


def assert_refused(r, model, before: int, *, message: str | None = None) -> None:
    assert r.status_code == 200, (r.status_code, r.content[:300])
    body = r.content.decode()
    assert "errornote" in body or "errorlist" in body, "no error shown"
    if message:
        assert message in body
    assert model.objects.count() == before


# --- the valid baselines (so the garbage tests below can fail) -------------------------------------

def test_valid_forms_save(pm, world):
    r = pm.post("/admin/experiments/experiment/add/", experiment_add_data(pm))
    assert r.status_code == 302, r.content.decode()[:2000]
    assert Experiment.objects.filter(key="fuzzed-exp").exists()
    data = page_fields(pm, "/admin/experiments/metric/add/")
    data.update({"key": "clicks", "name": "Clicks", "event": "click", "kind": "count"})
    assert pm.post("/admin/experiments/metric/add/", data).status_code == 302
    data = page_fields(pm, "/admin/experiments/layer/add/")
    data.update({"key": "search", "name": "Search", "holdout_percent": "5"})
    assert pm.post("/admin/experiments/layer/add/", data).status_code == 302
    data = page_fields(pm, "/admin/access/apikey/add/")
    data.update({"name": "new-key", "scope": "client"})
    assert pm.post("/admin/access/apikey/add/", data).status_code == 302


# --- experiments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("variants-0-weight", "-5", None),
    ("variants-0-weight", "1e309", None),
    ("variants-0-weight", "NaN", None),
    ("variants-0-weight", "9" * 40, None),
    ("variants-0-weight", "50.001", None),
    ("variants-1-weight", "60", "sum to 100"),
    ("variants-0-payload", "not json", None),
    ("variants-0-payload", "{", None),
    ("variants-0-key", "Ünïcode Key", None),
    ("variants-1-key", "control", "duplicate"),
    ("traffic_allocation", "1e400", None),
    ("traffic_allocation", "-1", None),
    ("traffic_allocation", "Infinity", None),
    ("significance_level", "nan", None),
    ("significance_level", "0.9", None),
    ("planned_sample_size", "-1", None),
    ("planned_sample_size", "9" * 30, None),
    ("layer_share", "abc", None),
    ("layer_share", "50", "Only experiments in a layer"),
    ("key", "x" * 65, None),
    ("key", "", None),
    ("key", "😀", None),
    ("targeting_rules-0-values", "[not json", None),
    ("targeting_rules-0-values", "a,,b", None),
    ("targeting_rules-0-values", '{"a": 1}', None),
    ("targeting_rules-0-values", "[[1]]", None),
    ("targeting_rules-0-values", "[null]", None),
    ("targeting_rules-0-values", "[NaN]", None),
    ("targeting_rules-0-values", "[1e999]", None),
    ("targeting_rules-0-values", '["' + "x" * 300 + '"]', None),
    ("targeting_rules-0-operator", "bogus", None),
    ("targeting_rules-0-attribute", "1bad", None),
    ("targeting_rules-0-operator", "gt", None),
    ("experiment_metrics-0-metric", "999999", None),
    ("experiment_metrics-0-role", "boss", None),
    ("correction", "bonferroni", None),
    ("layer", "999999", None),
    ("owner", "abc", None),
])
def test_experiment_add_form_refuses_garbage(pm, world, field, value, message):
    data = experiment_add_data(pm)
    data[field] = value
    before = Experiment.objects.count()
    assert_refused(pm.post("/admin/experiments/experiment/add/", data), Experiment, before, message=message)


@pytest.mark.parametrize("missing", ["variants-TOTAL_FORMS", "variants-INITIAL_FORMS",
                                     "experiment_metrics-TOTAL_FORMS", "targeting_rules-INITIAL_FORMS"])
def test_missing_management_form_fields(pm, world, missing):
    data = experiment_add_data(pm)
    del data[missing]
    before = Experiment.objects.count()
    assert_refused(pm.post("/admin/experiments/experiment/add/", data), Experiment, before)


@pytest.mark.parametrize("total", ["-1", "abc", "1e3", ""])
def test_tampered_management_form(pm, world, total):
    data = experiment_add_data(pm)
    data["variants-TOTAL_FORMS"] = total
    before = Experiment.objects.count()
    assert_refused(pm.post("/admin/experiments/experiment/add/", data), Experiment, before)


@pytest.mark.parametrize("which", ["draft", "running"])
@pytest.mark.parametrize("field, value", [
    ("traffic_allocation", "-1"), ("traffic_allocation", "1e309"), ("traffic_allocation", "10"),
    ("significance_level", "inf"), ("name", ""), ("planned_duration_days", "-3"),
    ("variants-0-weight", "-1"), ("variants-0-payload", "[not json"), ("targeting_rules-0-values", "{"),
    ("layer_share", "1e400"),
])
def test_experiment_change_form_refuses_garbage(pm, world, which, field, value):
    exp = world[which]
    url = f"/admin/experiments/experiment/{exp.pk}/change/"
    data = page_fields(pm, url)
    if field not in data:
        pytest.skip(f"{field} is read-only on a {which} experiment")
    data[field] = value
    before = exp.history.count()
    r = pm.post(url, data)
    if (which, field, value) == ("draft", "traffic_allocation", "10"):
        assert r.status_code == 302  # a draft may lower its traffic; a running one may not
        return
    assert r.status_code == 200, (r.status_code, r.content[:300])
    body = r.content.decode()
    assert "errornote" in body or "errorlist" in body
    assert exp.history.count() == before  # nothing saved


# --- metrics, layers, API keys -------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("cap", "-1"), ("cap", "inf"), ("cap", "1e400"), ("cap", "nan"),
    ("conversion_window_hours", "-1"), ("conversion_window_hours", "9" * 30),
    ("kind", "bogus"), ("key", "Key With Spaces"), ("event", "bad event name!"), ("event", ""),
    ("direction", "sideways"), ("kind", "ratio"), ("denominator_event", "bad name!"),
])
def test_metric_forms_refuse_garbage(pm, world, field, value):
    data = page_fields(pm, "/admin/experiments/metric/add/")
    data.update({"key": "m2", "name": "M", "event": "click", "kind": "count", field: value})
    before = Metric.objects.count()
    assert_refused(pm.post("/admin/experiments/metric/add/", data), Metric, before)
    metric = Metric.objects.get(key="purchase")
    url = f"/admin/experiments/metric/{metric.pk}/change/"
    data = page_fields(pm, url)
    data[field] = value
    r = pm.post(url, data)
    assert r.status_code == 200 and "errorlist" in r.content.decode()


@pytest.mark.parametrize("field, value", [
    ("holdout_percent", "101"), ("holdout_percent", "-1"), ("holdout_percent", "NaN"),
    ("holdout_percent", "1e400"), ("key", ""), ("key", "ÜBER"), ("name", ""), ("salt", "s" * 200),
])
def test_layer_forms_refuse_garbage(pm, world, field, value):
    data = page_fields(pm, "/admin/experiments/layer/add/")
    data.update({"key": "l2", "name": "L", field: value})
    before = Layer.objects.count()
    assert_refused(pm.post("/admin/experiments/layer/add/", data), Layer, before)
    url = f"/admin/experiments/layer/{world['layer'].pk}/change/"
    data = page_fields(pm, url)
    data[field] = value
    r = pm.post(url, data)
    assert r.status_code == 200 and "errorlist" in r.content.decode()


@pytest.mark.parametrize("field, value", [
    ("name", ""), ("name", "n" * 60), ("scope", "root"), ("expiry_date_0", "not a date"),
    ("expiry_date_0", "9999-99-99"), ("expiry_date_1", "25:61:00"),
])
def test_api_key_forms_refuse_garbage(pm, world, field, value):
    data = page_fields(pm, "/admin/access/apikey/add/")
    data.update({"name": "k2", "scope": "client", field: value})
    if field.startswith("expiry_date"):
        data.setdefault("expiry_date_0", "2030-01-01")
        data.setdefault("expiry_date_1", "00:00:00")
        data[field] = value
    before = APIKey.objects.count()
    assert_refused(pm.post("/admin/access/apikey/add/", data), APIKey, before)


def test_api_key_is_shown_once_and_stored_hashed(pm, world):
    data = page_fields(pm, "/admin/access/apikey/add/")
    data.update({"name": "shown-once", "scope": "analyst"})
    r = pm.post("/admin/access/apikey/add/", data, follow=True)
    body = r.content.decode()
    obj = APIKey.objects.get(name="shown-once")
    marker = "The API key for shown-once is: "
    assert marker in body
    raw = body.split(marker, 1)[1].split(".", 1)[0] + "." + body.split(marker, 1)[1].split(".", 1)[1].split(".")[0]
    assert raw.startswith(obj.prefix + ".")
    assert obj.is_valid(raw) and raw not in obj.hashed_key
    again = pm.get(f"/admin/access/apikey/{obj.pk}/change/").content.decode()
    assert raw not in again and raw.split(".", 1)[1] not in again
    assert raw.split(".", 1)[1] not in pm.get("/admin/access/apikey/").content.decode()


# --- Hypothesis: arbitrary text in any field ----------------------------------------------------------

texts = st.one_of(st.sampled_from(NASTY), st.text(max_size=80), st.from_regex(r"-?[0-9]{1,40}(\.[0-9]{1,40})?(e[0-9]{1,4})?", fullmatch=True))
FORM_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FORM_SETTINGS
@given(data=st.data())
def test_any_text_in_any_experiment_field_never_500(pm, world, data):
    form = experiment_add_data(pm)
    fields = sorted(k for k in form if not k.endswith(("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")))
    for name in data.draw(st.lists(st.sampled_from(fields), min_size=1, max_size=4, unique=True)):
        form[name] = data.draw(texts).replace("\x00", "")
    r = pm.post("/admin/experiments/experiment/add/", form)
    assert r.status_code in (200, 302), (r.status_code, r.content[:300])
    if r.status_code == 302:  # it happened to be valid: keep the key free for the next example
        Experiment.objects.filter(key=form["key"]).delete()


@FORM_SETTINGS
@given(path=st.sampled_from(["/admin/experiments/metric/add/", "/admin/experiments/layer/add/", "/admin/access/apikey/add/"]),
       data=st.data())
def test_any_text_in_other_add_forms_never_500(pm, world, path, data):
    form = page_fields(pm, path)
    for name in data.draw(st.lists(st.sampled_from(sorted(form)), min_size=1, max_size=4, unique=True)):
        form[name] = data.draw(texts).replace("\x00", "")
    r = pm.post(path, form)
    assert r.status_code in (200, 302), (r.status_code, r.content[:300])


@pytest.mark.parametrize("payload", ["", "NaN", '{"x": Infinity}', "[1, 2]", '"text"', "12"])
def test_variant_payload_must_be_a_json_object(pm, world, payload):
    """The API refuses these (`The payload must be a JSON object.`); the admin must agree, and an
    empty box must mean ``{}``, not a NULL the database refuses with a 500."""
    data = experiment_add_data(pm)
    data["variants-1-payload"] = payload
    before = Experiment.objects.count()
    r = pm.post("/admin/experiments/experiment/add/", data)
    assert r.status_code in (200, 302), (r.status_code, r.content[:200])
    if payload == "" and r.status_code == 302:
        assert Experiment.objects.get(key="fuzzed-exp").variants.get(key="green").payload == {}
    elif payload:
        assert_refused(r, Experiment, before)
