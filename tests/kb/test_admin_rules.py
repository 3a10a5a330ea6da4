"""The admin follows the services' rules: a measured change, a measured model's spec, a
finding's model and an outcome's values cannot be changed there, and old versions are shown,
never restored."""

import pytest
from django.urls import reverse

from analysis import services as analysis_services
from kb.models import ArchitectureChange, SubjectModel
from tests.factories import SHAPES_SPEC, ChangeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def _measured_change(user) -> ArchitectureChange:
    change = ChangeFactory()
    analysis_services.experiment_request(
        actor=user, change=change, config={"seeds": 3, "train": {"epochs": 1}}, dispatch=False
    )
    return ArchitectureChange.objects.get(pk=change.pk)


def test_a_history_revert_post_is_refused(admin_client, researcher_user):
    change = _measured_change(researcher_user)
    first_version = change.history.order_by("history_id").first()
    url = reverse(
        "admin:kb_architecturechange_simple_history", args=[change.pk, first_version.history_id]
    )
    assert admin_client.get(url).status_code == 200
    with nothing_written():
        assert admin_client.post(url, {"rationale": "old"}).status_code == 403
    assert ArchitectureChange.objects.get(pk=change.pk).status == "running"


def test_a_change_measured_after_its_admin_page_opened_is_refused(admin_client, researcher_user):
    change = ChangeFactory()
    url = reverse("admin:kb_architecturechange_change", args=[change.pk])
    form = {
        "insight": change.insight_id, "target_model": change.target_model_id,
        "operation": "widen_layer", "parameters": '{"layer": "conv1", "units": 3}',
        "rationale": "", "expected_metric": "test_accuracy", "expected_direction": "increase",
        "minimum_effect": "0.01", "outcomes-TOTAL_FORMS": "0", "outcomes-INITIAL_FORMS": "0",
    }  # fmt: skip
    analysis_services.experiment_request(
        actor=researcher_user, change=change, config={"seeds": 3}, dispatch=False
    )
    response = admin_client.post(url, form)
    assert response.status_code == 200  # the form again, with the refusal
    assert "can no longer be edited" in response.content.decode()
    assert ArchitectureChange.objects.get(pk=change.pk).parameters == {"layer": "conv2", "units": 2}


def test_a_measured_model_keeps_its_spec_in_the_admin(admin_client, researcher_user):
    change = _measured_change(researcher_user)
    model = change.target_model
    url = reverse("admin:kb_subjectmodel_change", args=[model.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="architecture_spec"' not in page and 'name="weights"' not in page
    assert 'name="family"' in page
    response = admin_client.post(
        url, {"name": model.name, "family": "tiny", "task": "", "dataset": "", "source": ""}
    )
    assert response.status_code == 302
    stored = SubjectModel.objects.get(pk=model.pk)
    assert (stored.family, stored.architecture_spec) == ("tiny", SHAPES_SPEC)


def test_outcomes_and_a_findings_model_are_read_only_in_the_admin(admin_client, world):
    page = admin_client.get(
        reverse("admin:kb_outcome_change", args=[world.manual_outcome.pk])
    ).content.decode()
    for field in ("verdict", "baseline_values", "variant_values"):
        assert f'name="{field}"' not in page
    assert 'name="notes"' in page
    assert admin_client.get(reverse("admin:kb_outcome_add")).status_code == 403
    page = admin_client.get(
        reverse("admin:kb_finding_change", args=[world.finding.pk])
    ).content.decode()
    assert 'name="subject_model"' not in page and 'name="title"' in page
