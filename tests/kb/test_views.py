"""The dashboard and the canonical record pages respect each role."""

import pytest
from django.urls import reverse

from tests.factories import FindingFactory, InterviewFactory, ResearcherFactory

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_login(client):
    finding = FindingFactory()
    for url in [reverse("dashboard"), finding.get_absolute_url()]:
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_login_page_answers(client):
    assert client.get(reverse("login")).status_code == 200


def test_viewer_sees_findings_but_not_interviews_or_researchers(client, viewer_user):
    finding, interview = FindingFactory(title="Curves"), InterviewFactory()
    client.force_login(viewer_user)
    response = client.get(finding.get_absolute_url())
    assert response.status_code == 200
    assert "Curves" in response.content.decode()
    assert client.get(interview.get_absolute_url()).status_code == 403
    assert client.get(interview.researcher.get_absolute_url()).status_code == 403


def test_researcher_sees_personal_fields(client, researcher_user):
    researcher = ResearcherFactory(full_name="Ada Secret")
    client.force_login(researcher_user)
    assert "Ada Secret" in client.get(researcher.get_absolute_url()).content.decode()


def test_outsider_sees_nothing(client, outsider_user):
    client.force_login(outsider_user)
    assert client.get(FindingFactory().get_absolute_url()).status_code == 403
    body = client.get(reverse("dashboard")).content.decode()
    assert "Interviews" not in body


def test_dashboard_shows_counts_and_activity(client, researcher_user):
    from kb.services.subjects import finding_create
    from tests.factories import SubjectModelFactory

    finding_create(
        actor=researcher_user,
        subject_model=SubjectModelFactory(name="Net"),
        title="Edges",
        layer_name="conv1",
    )
    client.force_login(researcher_user)
    body = client.get(reverse("dashboard")).content.decode()
    assert "Net: Edges" in body
    assert "Interviews" in body


def test_missing_record_is_404(client, researcher_user):
    client.force_login(researcher_user)
    assert client.get(reverse("finding-detail", args=[999999])).status_code == 404
