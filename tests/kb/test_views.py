"""Every page, for every role: anonymous visitors go to the login page, outsiders see nothing,
viewers see results but never transcripts, answers, highlights or personal data, researchers
see and change everything."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.helpers import nothing_written
from tests.kb.pages import world_build

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
SIGNED_IN = {"outsider", "viewer", "researcher", "staff"}
VIEWERS = {"viewer", "researcher", "staff"}
RESEARCHERS = {"researcher", "staff"}

# (url name, args from the world, roles that get 200)
PAGES = [
    ("dashboard", None, SIGNED_IN),
    ("search", None, SIGNED_IN),
    ("scoreboard", None, VIEWERS),
    ("outcomes-csv", None, VIEWERS),
    ("insight-list", None, VIEWERS),
    ("insight-detail", "insight", VIEWERS),
    ("finding-list", None, VIEWERS),
    ("finding-detail", "finding", VIEWERS),
    ("model-list", None, VIEWERS),
    ("model-detail", "model", VIEWERS),
    ("change-list", None, VIEWERS),
    ("change-detail", "change", VIEWERS),
    ("run-list", None, VIEWERS),
    ("run-detail", "run", VIEWERS),
    ("run-live", "run", VIEWERS),
    ("theme-list", None, VIEWERS),
    ("theme-detail", "theme", VIEWERS),
    ("survey-list", None, VIEWERS),
    ("survey-detail", "survey", VIEWERS),
    ("researcher-list", None, RESEARCHERS),
    ("researcher-detail", "researcher", RESEARCHERS),
    ("researcher-create", None, RESEARCHERS),
    ("researcher-update", "researcher", RESEARCHERS),
    ("interview-list", None, RESEARCHERS),
    ("interview-detail", "interview", RESEARCHERS),
    ("interview-create", None, RESEARCHERS),
    ("interview-update", "interview", RESEARCHERS),
    ("survey-create", None, RESEARCHERS),
    ("survey-update", "survey", RESEARCHERS),
    ("question-create", "survey", RESEARCHERS),
    ("invitation-create", "survey", RESEARCHERS),
    ("theme-create", None, RESEARCHERS),
    ("theme-update", "theme", RESEARCHERS),
    ("theme-researcher-csv", None, RESEARCHERS),
    ("model-create", None, RESEARCHERS),
    ("model-update", "model", RESEARCHERS),
    ("model-profile", "model", RESEARCHERS),
    ("finding-create", None, RESEARCHERS),
    ("finding-update", "finding", RESEARCHERS),
    ("finding-ablate", "finding", RESEARCHERS),
    ("insight-create", None, RESEARCHERS),
    ("insight-update", "insight", RESEARCHERS),
    ("change-create", None, RESEARCHERS),
    ("change-update", "change", RESEARCHERS),
    ("change-experiment", "change", RESEARCHERS),
    ("outcome-create", "change", RESEARCHERS),
]
# Writes that only accept POST; a refused role must get 403 (or the login page) and no write.
POSTS = [
    ("highlight-create", "interview"),
    ("researcher-anonymise", "researcher"),
    ("run-cancel", "run"),
    ("run-retry", "run"),
]


@pytest.fixture
def world(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return world_build()


@pytest.fixture
def as_role(client, request):
    def login(role: str):
        if role != "anonymous":
            client.force_login(request.getfixturevalue(f"{role}_user"))
        return client

    return login


def _url(world, name: str, attribute: str | None) -> str:
    args = [getattr(world, attribute).pk] if attribute else []
    return reverse(name, args=args)


@pytest.mark.parametrize("role", ROLES)
def test_every_page_answers_each_role_as_its_permissions_say(world, as_role, role):
    client = as_role(role)
    login = reverse("login")
    for name, attribute, allowed in PAGES:
        url = _url(world, name, attribute)
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302, url
            assert response.url.startswith(f"{login}?next="), url
        else:
            expected = 200 if role in allowed else 403
            assert response.status_code == expected, (url, response.status_code)


@pytest.mark.parametrize("role", ["anonymous", "outsider", "viewer"])
def test_refused_roles_cannot_post_writes(world, as_role, role):
    client = as_role(role)
    with nothing_written():
        for name, attribute in POSTS:
            response = client.post(_url(world, name, attribute), {"quote": "actionable steps"})
            assert response.status_code == (302 if role == "anonymous" else 403), name


def test_run_figure_is_served_only_to_roles_that_see_runs(world, as_role, outsider_user, client):
    url = reverse("run-figure", args=[world.run.pk, "arms"])
    assert client.get(url).status_code == 302
    client.force_login(outsider_user)
    assert client.get(url).status_code == 403
    viewer = as_role("viewer")
    response = viewer.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert viewer.get(reverse("run-figure", args=[world.run.pk, "nope"])).status_code == 404


def test_viewer_never_sees_transcripts_answers_or_personal_data(world, as_role):
    client = as_role("viewer")
    pages = [
        reverse("dashboard"),
        world.insight.get_absolute_url(),
        world.theme.get_absolute_url(),
        world.survey.get_absolute_url(),
        reverse("search") + "?q=actionable",
    ]
    for url in pages:
        body = client.get(url).content.decode()
        assert "pretty pictures" not in body, url
        assert "Secret Person" not in body, url
        assert world.researcher.pseudonym not in body, url
        assert f"/interviews/{world.interview.pk}/" not in body, url


def test_viewer_sees_a_consented_quote_without_its_context(world, as_role):
    body = as_role("viewer").get(world.insight.get_absolute_url()).content.decode()
    assert "<blockquote>actionable steps</blockquote>" in body
    assert "An interviewed ml engineer." in body


def test_viewer_sees_no_quote_when_consent_is_internal_only(world, as_role):
    world.researcher.consent_scope = "internal"
    world.researcher.save()
    body = as_role("viewer").get(world.insight.get_absolute_url()).content.decode()
    assert "<blockquote>" not in body
    assert "consent covers internal analysis only" in body


def test_researcher_sees_personal_fields_and_the_transcript(world, as_role):
    client = as_role("researcher")
    assert "Secret Person 0" in client.get(world.researcher.get_absolute_url()).content.decode()
    body = client.get(world.interview.get_absolute_url()).content.decode()
    assert "pretty pictures" in body
    assert 'title="' + world.theme.name + '"' in body


def test_outsider_dashboard_shows_no_counts(world, as_role):
    body = as_role("outsider").get(reverse("dashboard")).content.decode()
    assert "Your account has no role yet" in body
    assert "Recent activity" not in body


def test_missing_record_is_404(as_role):
    client = as_role("researcher")
    assert client.get(reverse("finding-detail", args=[999999])).status_code == 404
    assert client.get(reverse("run-detail", args=[999999])).status_code == 404


def test_login_page_and_logout(client, researcher_user):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": "rita", "password": "pw-rita"})
    assert response.status_code == 302
    assert response.url == reverse("dashboard")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_admin_view_on_site_reaches_the_canonical_page(world, as_role):
    client = as_role("staff")
    content_type_id = ContentType.objects.get_for_model(world.insight).pk
    response = client.get(f"/admin/r/{content_type_id}/{world.insight.pk}/")
    assert response.status_code == 302
    assert response.url.endswith(world.insight.get_absolute_url())
