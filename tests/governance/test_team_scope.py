"""EXPERIMENT_EDIT_SCOPE=team: only the owner and the members of the experiment's team may edit it."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, PermissionDenied

from experiments import approvals
from experiments.governance import in_edit_scope

from .conftest import change_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_setup(person, draft, settings):
    settings.EXPERIMENT_EDIT_SCOPE = "team"
    checkout = Group.objects.create(name="checkout")
    owner = person("owner", "pm")
    draft.owner, draft.team = owner, checkout
    draft.save()
    return {"owner": owner, "mate": person("mate", "pm", groups=[checkout]), "outsider": person("out", "pm"),
            "experiment": draft}


def test_scope_rules(team_setup, person, settings):
    exp = team_setup["experiment"]
    assert in_edit_scope(team_setup["owner"], exp) and in_edit_scope(team_setup["mate"], exp)
    assert not in_edit_scope(team_setup["outsider"], exp)
    exp.team = None
    assert not in_edit_scope(team_setup["mate"], exp)  # no team: the owner's alone
    exp.owner = None
    assert in_edit_scope(team_setup["outsider"], exp)  # neither owner nor team: open
    settings.EXPERIMENT_EDIT_SCOPE = "all"
    exp.owner = team_setup["owner"]
    assert in_edit_scope(team_setup["outsider"], exp)
    settings.EXPERIMENT_EDIT_SCOPE = "teams"
    with pytest.raises(ImproperlyConfigured):
        in_edit_scope(team_setup["outsider"], exp)


def test_outsider_gets_a_read_only_page_and_cannot_post(team_setup, client):
    exp = team_setup["experiment"]
    client.force_login(team_setup["outsider"])
    change = f"/admin/experiments/experiment/{exp.pk}/change/"
    page = client.get(change)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    r = client.post(change, change_form_data(exp, name="hijacked"))
    assert r.status_code == 403
    exp.refresh_from_db()
    assert exp.name == "Governed"
    assert client.get(f"/admin/experiments/experiment/{exp.pk}/lifecycle/start/").status_code == 403
    client.post(f"/admin/experiments/experiment/{exp.pk}/transition/start/")
    exp.refresh_from_db()
    assert exp.status == "draft"
    with pytest.raises(PermissionDenied):
        approvals.request_approval(exp, "start", user=team_setup["outsider"])


def test_team_member_edits_and_starts(team_setup, client):
    exp = team_setup["experiment"]
    client.force_login(team_setup["mate"])
    r = client.post(f"/admin/experiments/experiment/{exp.pk}/change/", change_form_data(exp, name="Renamed"))
    assert r.status_code == 302
    client.post(f"/admin/experiments/experiment/{exp.pk}/transition/start/")
    exp.refresh_from_db()
    assert exp.name == "Renamed" and exp.status == "running"


def test_team_choices_leave_out_the_role_groups(team_setup, client):
    client.force_login(team_setup["owner"])
    html = client.get(f"/admin/experiments/experiment/{team_setup['experiment'].pk}/change/").content.decode()
    team_select = html[html.index('id="id_team"'):html.index("</select>", html.index('id="id_team"'))]
    assert "checkout" in team_select and "Product manager" not in team_select and "Viewer" not in team_select
