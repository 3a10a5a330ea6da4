"""A change can be edited only while it is proposed and no run measured it; after that the way
to try something else is a copy. A model's spec, kind and weights are fixed once a run used
them. The rule lives in the services; pages and the admin follow it."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from analysis import services as analysis_services
from analysis.models import AnalysisRun
from kb.models import ArchitectureChange, Event, SubjectModel
from kb.services.changes import change_copy, change_edit_refusal, change_update
from kb.services.insights import outcome_record_manual
from kb.services.subjects import finding_update, subject_model_update
from tests.factories import SHAPES_SPEC, BuiltinModelFactory, ChangeFactory, FindingFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

QUICK = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}, "seeds": 3}


def _requested(change, user) -> AnalysisRun:
    return analysis_services.experiment_request(
        actor=user, change=change, config=QUICK, dispatch=False
    )


# --- services -------------------------------------------------------------------------------


def test_a_proposed_change_without_runs_is_edited_and_logged(researcher_user):
    change = ChangeFactory()
    change_update(actor=researcher_user, change=change, data={"minimum_effect": 0.05})
    assert ArchitectureChange.objects.get(pk=change.pk).minimum_effect == 0.05
    assert Event.objects.filter(action="updated", target_id=change.pk).count() == 1


def test_a_change_with_a_run_is_refused_and_nothing_is_written(researcher_user):
    change = ChangeFactory()
    run = _requested(change, researcher_user)
    analysis_services.run_cancel(actor=researcher_user, run=run)  # proposed again, but measured
    change.refresh_from_db()
    assert change.status == "proposed"
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        change_update(
            actor=researcher_user,
            change=change,
            data={"parameters": {"layer": "conv1", "units": 1}},
        )
    assert excinfo.value.message_dict == {
        "__all__": [
            f"Run {run.pk} measured this change as it is, so it can no longer be edited. "
            "Copy it as a new change to try something else."
        ]
    }
    assert ArchitectureChange.objects.get(pk=change.pk).parameters == {"layer": "conv2", "units": 2}


def test_an_evaluated_change_is_refused(researcher_user):
    change = ChangeFactory()
    outcome_record_manual(
        actor=researcher_user, change=change, baseline_values=[0.5, 0.6],
        variant_values=[0.55, 0.62],
    )  # fmt: skip
    change.refresh_from_db()
    assert change_edit_refusal(change).startswith("This change is evaluated")
    with nothing_written(), pytest.raises(ValidationError):
        change_update(actor=researcher_user, change=change, data={"rationale": "later"})


def test_a_copy_is_a_new_proposed_change_with_the_same_experiment(researcher_user):
    change = ChangeFactory(rationale="Widen where *curvature* lives.", minimum_effect=0.03)
    _requested(change, researcher_user)
    copy = change_copy(actor=researcher_user, change=ArchitectureChange.objects.get(pk=change.pk))
    assert copy.pk != change.pk and copy.status == "proposed"
    for field in ("insight", "target_model", "operation", "parameters", "rationale",
                  "expected_metric", "expected_direction", "minimum_effect"):  # fmt: skip
        assert getattr(copy, field) == getattr(change, field), field
    assert change_edit_refusal(copy) is None
    linked = Event.objects.get(action="linked", target_id=copy.pk)
    assert linked.changes == {"copied_from": [change.pk]}


def test_a_model_spec_is_fixed_once_a_run_used_it_but_its_description_is_not(researcher_user):
    model = BuiltinModelFactory()
    wider = json.loads(json.dumps(SHAPES_SPEC))
    wider["layers"][0]["out_channels"] = 32
    subject_model_update(actor=researcher_user, model=model, data={"architecture_spec": wider})
    analysis_services.profile_request(
        actor=researcher_user, subject_model=model, config={"train": {"epochs": 1}},
        dispatch=False,
    )  # fmt: skip
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        subject_model_update(
            actor=researcher_user, model=model, data={"architecture_spec": SHAPES_SPEC}
        )
    assert list(excinfo.value.message_dict) == ["architecture_spec"]
    assert "measured this model as it is" in excinfo.value.message_dict["architecture_spec"][0]
    subject_model_update(actor=researcher_user, model=model, data={"family": "tiny CNNs"})
    stored = SubjectModel.objects.get(pk=model.pk)
    assert (stored.family, stored.architecture_spec) == ("tiny CNNs", wider)


def test_a_model_measured_through_a_change_of_it_is_fixed_too(researcher_user):
    change = ChangeFactory()
    _requested(change, researcher_user)
    with pytest.raises(ValidationError) as excinfo:
        subject_model_update(
            actor=researcher_user, model=change.target_model, data={"kind": "external"}
        )
    assert list(excinfo.value.message_dict) == ["kind"]


def test_a_finding_keeps_its_model(researcher_user):
    finding, other_model = FindingFactory(), BuiltinModelFactory()
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        finding_update(actor=researcher_user, finding=finding, data={"subject_model": other_model})
    assert list(excinfo.value.message_dict) == ["subject_model"]
    finding_update(actor=researcher_user, finding=finding, data={"title": "Renamed"})
    finding.refresh_from_db()
    assert finding.title == "Renamed"


# --- pages ----------------------------------------------------------------------------------


def test_the_page_of_a_measured_change_offers_a_copy_instead_of_edit(client_r, researcher_user):
    change = ChangeFactory()
    _requested(change, researcher_user)
    body = client_r.get(reverse("change-detail", args=[change.pk])).content.decode()
    assert reverse("change-update", args=[change.pk]) not in body
    assert "This change is running, so it can no longer be edited." in body
    assert reverse("change-copy", args=[change.pk]) in body
    edit = client_r.get(reverse("change-update", args=[change.pk]), follow=True)
    assert edit.redirect_chain == [(reverse("change-detail", args=[change.pk]), 302)]
    assert "can no longer be edited" in edit.content.decode()


def test_posting_the_edit_form_of_a_measured_change_changes_nothing(client_r, researcher_user):
    change = ChangeFactory()
    _requested(change, researcher_user)
    form = {
        "insight": change.insight_id, "target_model": change.target_model_id,
        "operation": "widen_layer", "layer": "conv1", "units": 3,
        "expected_metric": "test_accuracy", "expected_direction": "increase",
        "minimum_effect": 0.01, "rationale": "",
    }  # fmt: skip
    with nothing_written():
        client_r.post(reverse("change-update", args=[change.pk]), form)
    assert ArchitectureChange.objects.get(pk=change.pk).parameters == {"layer": "conv2", "units": 2}


def test_copy_on_the_page_makes_a_new_change_and_opens_its_edit_page(client_r, researcher_user):
    change = ChangeFactory()
    _requested(change, researcher_user)
    response = client_r.post(reverse("change-copy", args=[change.pk]))
    copy = ArchitectureChange.objects.exclude(pk=change.pk).get()
    assert response.status_code == 302
    assert response["Location"] == reverse("change-update", args=[copy.pk])
    assert client_r.get(response["Location"]).status_code == 200


def test_copy_needs_a_post_and_the_permission_to_propose(client, viewer_user):
    change = ChangeFactory()
    client.force_login(viewer_user)
    with nothing_written():
        assert client.post(reverse("change-copy", args=[change.pk])).status_code == 403


def test_the_model_edit_page_shows_the_spec_fixed_once_measured(client_r, researcher_user):
    model = BuiltinModelFactory()
    analysis_services.profile_request(
        actor=researcher_user, subject_model=model, config={"train": {"epochs": 1}},
        dispatch=False,
    )  # fmt: skip
    page = client_r.get(reverse("model-update", args=[model.pk]))
    assert page.context["form"].fields["architecture_spec"].disabled
    form = {"name": model.name, "kind": "builtin", "family": "renamed", "task": "", "dataset": "",
            "architecture_spec": json.dumps({"input_shape": [1, 8, 8]}), "source": ""}  # fmt: skip
    client_r.post(reverse("model-update", args=[model.pk]), form)
    stored = SubjectModel.objects.get(pk=model.pk)
    assert stored.family == "renamed" and stored.architecture_spec == SHAPES_SPEC


# --- admin ----------------------------------------------------------------------------------


def test_the_admin_shows_a_measured_change_and_a_run_read_only(client, staff_user, researcher_user):
    change = ChangeFactory()
    run = _requested(change, researcher_user)
    client.force_login(staff_user)
    page = client.get(reverse("admin:kb_architecturechange_change", args=[change.pk]))
    assert page.status_code == 200
    assert 'name="parameters"' not in page.content.decode()
    fresh = ChangeFactory()
    page = client.get(reverse("admin:kb_architecturechange_change", args=[fresh.pk]))
    assert 'name="parameters"' in page.content.decode()
    page = client.get(reverse("admin:analysis_analysisrun_change", args=[run.pk])).content.decode()
    for field in ("config", "kind", "change", "requested_by"):
        assert f'name="{field}"' not in page
    assert client.get(reverse("admin:analysis_analysisrun_add")).status_code == 403
