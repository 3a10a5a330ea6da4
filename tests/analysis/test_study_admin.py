"""Studies in the admin: listed as studies, read-only with their rounds inline, cancelled and
resumed by actions that call the study services."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from analysis.models import AnalysisRun, Study
from analysis.studies import study_request
from tests.factories import BuiltinModelFactory

pytestmark = pytest.mark.django_db

SETTINGS = {"dataset": {"name": "shapes", "n": 80}, "train": {"epochs": 1}, "seeds": 3,
            "rounds": 1, "concept": "curvature"}  # fmt: skip


@pytest.fixture
def study(researcher_user) -> Study:
    return study_request(
        actor=researcher_user, model=BuiltinModelFactory(), settings=SETTINGS, dispatch=False
    )


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_studies_are_listed_and_shown_read_only_with_their_rounds(admin_client, study):
    AnalysisRun.objects.create(kind="profile", subject_model=study.subject_model)
    listed = admin_client.get(reverse("admin:analysis_study_changelist"))
    assert listed.status_code == 200
    # Only studies: the profiling run is not one.
    assert [row.pk for row in listed.context["cl"].result_list] == [study.pk]

    page = admin_client.get(reverse("admin:analysis_study_change", args=[study.pk]))
    assert page.status_code == 200
    [inline] = page.context["inline_admin_formsets"]
    assert [form.original.track for form in inline] == ["base"]
    assert not page.context["has_add_permission"]
    # Nothing on the page can be edited: every field is read-only.
    assert page.context["adminform"].form.fields == {}
    history = admin_client.get(reverse("admin:analysis_study_history", args=[study.pk]))
    assert history.status_code == 200
    assert admin_client.get("/admin/analysis/study/add/").status_code == 403


def test_the_actions_cancel_and_resume_studies(admin_client, study):
    url = reverse("admin:analysis_study_changelist")

    cancel = admin_client.post(
        url, {"action": "cancel_studies", "_selected_action": [study.pk]}, follow=True
    )
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.CANCELLED
    assert f"Study {study.pk} cancelled." in cancel.content.decode()

    again = admin_client.post(
        url, {"action": "cancel_studies", "_selected_action": [study.pk]}, follow=True
    )
    assert f"Study {study.pk}: A cancelled run cannot be cancelled." in again.content.decode()

    admin_client.post(url, {"action": "resume_studies", "_selected_action": [study.pk]})
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.QUEUED


def test_staff_who_may_only_view_runs_are_offered_no_action_and_change_nothing(client, study):
    viewer = User.objects.create_user("vera-staff", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_analysisrun"))
    client.force_login(viewer)
    url = reverse("admin:analysis_study_changelist")
    listed = client.get(url)
    assert listed.status_code == 200
    assert "cancel_studies" not in listed.content.decode()
    client.post(url, {"action": "cancel_studies", "_selected_action": [study.pk]})
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.QUEUED
