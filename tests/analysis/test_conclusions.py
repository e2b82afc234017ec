"""Conclusions of completed experiments and the learnings library (/reports/library/):
the write rule, permissions by role, filters, the win rate and the measured impact."""
from __future__ import annotations

import math
import threading
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client

from access.roles import ROLE_NAMES
from analysis import conclusions, reports
from analysis.models import Conclusion
from experiments import services
from experiments.models import Experiment

from .reporting import make_experiment, populate

pytestmark = pytest.mark.django_db


def _user(name: str, role: str | None) -> User:
    user = User.objects.create(username=name, is_staff=role in ("pm", "analyst"))
    if role:
        user.groups.add(Group.objects.get(name=ROLE_NAMES[role]))
    return user


def _client(name: str, role: str | None) -> Client:
    client = Client()
    client.force_login(_user(name, role))
    return client


def _completed(key: str, *, lift: float, seed: int, ended: str, owner: User | None = None,
               ship: str | None = None) -> Experiment:
    experiment = make_experiment(key)
    populate(experiment, units=400, lift=lift, seed=seed, days=3)
    reports.compute_report(experiment, include_segments=False)
    experiment = services.complete_experiment(experiment, shipped_variant=ship, approved=True)
    Experiment.objects.filter(pk=experiment.pk).update(
        ended_at=datetime.fromisoformat(ended).replace(tzinfo=UTC), owner=owner)
    return Experiment.objects.get(pk=experiment.pk)


@pytest.fixture
def world():
    pat = _user("pat", "pm")
    a = _completed("alpha", lift=0.4, seed=1, ended="2026-10-05T12:00:00", owner=pat, ship="green")
    b = _completed("beta", lift=0.2, seed=2, ended="2026-11-10T12:00:00", owner=pat, ship="green")
    c = _completed("gamma", lift=0.0, seed=3, ended="2026-11-20T12:00:00")
    d = _completed("delta", lift=0.0, seed=4, ended="2026-11-25T12:00:00")
    conclusions.save_conclusion(a, outcome="won", summary="Green wins on mobile.", tags="Checkout, colour",
                                links="https://example.com/doc")
    conclusions.save_conclusion(b, outcome="won", summary="Green again.", tags=["colour"])
    conclusions.save_conclusion(c, outcome="lost", summary="Nothing moved.", tags="pricing")
    conclusions.save_conclusion(d, outcome="invalid", summary="Broken tracking.", tags="")
    running = make_experiment("epsilon")
    return {"a": a, "b": b, "c": c, "d": d, "running": running, "pat": pat}


# --- the write rule --------------------------------------------------------------------------------

def test_save_normalises_and_validates(world):
    a = Conclusion.objects.get(experiment=world["a"])
    assert a.tags == ",checkout,colour," and a.tag_list == ["checkout", "colour"]
    assert a.links == ["https://example.com/doc"]
    cases = [
        ({"outcome": "maybe"}, "outcome"),
        ({"summary": "  "}, "summary"),
        ({"links": "javascript:alert(1)"}, "links"),
        ({"tags": "ok, <b>"}, "tags"),
    ]
    for change, field in cases:
        data = {"outcome": "won", "summary": "s", "tags": "", "links": "", **change}
        with pytest.raises(ValidationError) as exc:
            conclusions.save_conclusion(world["a"], **data)
        assert field in exc.value.message_dict, change
    with pytest.raises(ValidationError, match="only a completed experiment"):
        conclusions.save_conclusion(world["running"], outcome="won", summary="Too early.")
    # Editing keeps one row and records history.
    conclusions.save_conclusion(world["a"], outcome="inconclusive", summary="Revisited.")
    assert Conclusion.objects.filter(experiment=world["a"]).count() == 1
    assert Conclusion.objects.get(experiment=world["a"]).history.count() == 2


# --- permissions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role, can_edit", [("pm", True), ("analyst", True), ("viewer", False), (None, False)])
def test_who_may_write_a_conclusion(world, role, can_edit):
    client = _client(f"u-{role}", role)
    url = "/reports/gamma/conclusion/"
    r = client.post(url, {"outcome": "inconclusive", "summary": "Re-read.", "tags": "pricing", "links": ""})
    if can_edit:
        assert r.status_code == 302 and r["Location"].endswith("/reports/gamma/#conclusion")
        c = Conclusion.objects.get(experiment=world["c"])
        assert c.outcome == "inconclusive" and c.updated_by.username == f"u-{role}"
        assert c.history.latest().history_user.username == f"u-{role}"
        assert client.get(url).status_code == 200
    else:
        assert r.status_code == 403
        assert Conclusion.objects.get(experiment=world["c"]).outcome == "lost"


def test_form_errors_name_the_field_and_running_experiments_are_refused(world):
    client = _client("ann", "analyst")
    r = client.post("/reports/gamma/conclusion/", {"outcome": "won", "summary": "", "tags": "", "links": ""})
    assert r.status_code == 400 and "Write what was learnt." in r.content.decode()
    r = client.post("/reports/epsilon/conclusion/", {"outcome": "won", "summary": "x", "tags": "", "links": ""})
    assert r.status_code == 400 and "only a completed experiment" in r.content.decode()
    assert not Conclusion.objects.filter(experiment=world["running"]).exists()


def test_report_page_shows_the_conclusion_and_the_edit_button_by_role(world):
    page = _client("vic", "viewer").get("/reports/alpha/").content.decode()
    assert 'id="conclusion"' in page and "Green wins on mobile." in page and "outcome-won" in page
    assert 'href="https://example.com/doc"' in page and "edit-conclusion" not in page
    page = _client("ann", "analyst").get("/reports/alpha/").content.decode()
    assert 'id="edit-conclusion"' in page
    running = _client("ann2", "analyst").get("/reports/epsilon/").content.decode()
    assert 'id="conclusion"' not in running


def test_library_needs_a_login_and_the_view_report_permission(world):
    assert Client().get("/reports/library/").status_code == 302
    assert _client("nobody", None).get("/reports/library/").status_code == 403
    for role in ("viewer", "analyst", "pm"):
        assert _client(f"l-{role}", role).get("/reports/library/").status_code == 200


# --- filters and the summary ----------------------------------------------------------------------

def _keys(client: Client, query: str = "") -> list[str]:
    r = client.get(f"/reports/library/{query}")
    assert r.status_code == 200
    return [row["experiment"].key for row in r.context["rows"]]


def test_library_filters(world):
    client = _client("vic", "viewer")
    assert _keys(client) == ["delta", "gamma", "beta", "alpha"]  # newest end first; running left out
    assert _keys(client, "?tag=colour") == ["beta", "alpha"]
    assert _keys(client, "?tag=COLOUR") == ["beta", "alpha"]
    assert _keys(client, "?tag=col") == []  # whole tags only
    assert _keys(client, "?outcome=lost") == ["gamma"]
    assert _keys(client, "?metric=purchase") == ["delta", "gamma", "beta", "alpha"]
    assert _keys(client, "?metric=revenue") == []  # a secondary metric, not a primary one
    assert _keys(client, "?owner=pat") == ["beta", "alpha"]
    assert _keys(client, "?from=2026-11-10&to=2026-11-20") == ["gamma", "beta"]  # both days included
    assert _keys(client, "?q=tracking") == ["delta"]
    r = client.get("/reports/library/?from=soon&outcome=maybe")
    text = r.content.decode()
    assert "from: Enter a date" in text and "outcome: Choose one of" in text
    assert len(r.context["rows"]) == 4  # bad filters are reported and ignored, not a 500


def test_library_rows_show_decision_lift_and_conclusion(world):
    r = _client("vic", "viewer").get("/reports/library/")
    page = r.content.decode()
    rows = {row["experiment"].key: row for row in r.context["rows"]}
    snapshot = world["a"].snapshots.first()
    green = next(v for v in snapshot.payload["metrics"][0]["variants"] if v["variant"] == "green")
    lift = rows["alpha"]["lift"]
    assert lift["relative"] == green["lift"]["relative"] and [lift["low"], lift["high"]] == green["lift"]["ci_relative"]
    assert rows["alpha"]["decision"] == snapshot.payload["decision"]
    assert f"{green['lift']['relative']:+.1%}" in page and "Green wins on mobile." in page


def test_win_rate_and_cumulative_impact(world):
    r = _client("vic", "viewer").get("/reports/library/")
    summary = r.context["summary"]
    assert summary["outcomes"] == {"won": 2, "lost": 1, "inconclusive": 0, "invalid": 1}
    assert summary["win_rate"] == pytest.approx(2 / 3)  # invalid left out
    rows = {row["experiment"].key: row["lift"] for row in r.context["rows"]}
    (impact,) = summary["impact"]
    assert impact["metric"] == "purchase" and impact["wins"] == 2
    assert impact["relative"] == pytest.approx(rows["alpha"]["relative"] + rows["beta"]["relative"])
    half = math.hypot(*[(rows[k]["high"] - rows[k]["low"]) / 2 for k in ("alpha", "beta")])
    assert impact["high"] - impact["relative"] == pytest.approx(half)
    assert "Win rate: 66.7%" in r.content.decode() or "Win rate: 67%" in r.content.decode()


def test_summary_of_an_empty_library():
    summary = conclusions.library_summary([])
    assert summary["win_rate"] is None and summary["impact"] == [] and summary["concluded"] == 0


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------

@pytest.mark.postgres
def test_concurrent_first_conclusions_make_one_row(transactional_db):
    experiment = make_experiment("race")
    experiment = services.complete_experiment(experiment, approved=True)
    n = 4
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            conclusions.save_conclusion(experiment, outcome="won", summary=f"writer {i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert Conclusion.objects.filter(experiment=experiment).count() == 1
    assert Conclusion.objects.get(experiment=experiment).history.count() == n
