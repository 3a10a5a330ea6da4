"""Every page, for every role: anonymous visitors go to the login page, outsiders see nothing,
viewers see results but never transcripts, answers, highlights or personal data, researchers
see and change everything."""

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse

from tests.helpers import nothing_written
from tests.kb.pages import World

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
    ("researcher-anonymise", "researcher", RESEARCHERS),
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
    ("agreement", None, RESEARCHERS),
    ("coding-round-list", None, RESEARCHERS),
    ("coding-round-detail", "coding_round", RESEARCHERS),
    ("coding-round-create", None, RESEARCHERS),
    ("model-create", None, RESEARCHERS),
    ("model-update", "model", RESEARCHERS),
    ("model-profile", "model", RESEARCHERS),
    ("finding-create", None, RESEARCHERS),
    ("finding-update", "finding", RESEARCHERS),
    ("finding-ablate", "finding", RESEARCHERS),
    ("insight-create", None, RESEARCHERS),
    ("insight-update", "insight", RESEARCHERS),
    ("change-create", None, RESEARCHERS),
    ("change-update", "proposed_change", RESEARCHERS),
    ("change-experiment", "change", RESEARCHERS),
    ("outcome-create", "change", RESEARCHERS),
    ("question-update", "question", RESEARCHERS),
    ("question-delete", "question", RESEARCHERS),
    ("highlight-update", "highlight", RESEARCHERS),
    ("highlight-delete", "highlight", RESEARCHERS),
    ("researcher-delete", "researcher", RESEARCHERS),
    ("survey-delete", "survey", RESEARCHERS),
    ("interview-delete", "interview", RESEARCHERS),
    ("theme-delete", "theme", RESEARCHERS),
    ("model-delete", "model", RESEARCHERS),
    ("finding-delete", "finding", RESEARCHERS),
    ("insight-delete", "insight", RESEARCHERS),
    ("change-delete", "change", RESEARCHERS),
    ("outcome-update", "manual_outcome", RESEARCHERS),
    ("outcome-delete", "manual_outcome", RESEARCHERS),
]
# Writes a refused role must not reach by POST: 403 (or the login page) and no write.
POSTS = [
    ("highlight-create", "interview"),
    ("interview-theme-create", "interview"),
    ("researcher-anonymise", "researcher"),
    ("run-cancel", "run"),
    ("run-retry", "run"),
    ("question-move", "question"),
    ("insight-unlink-finding", ("insight", "finding_link")),
    ("insight-unlink-quote", ("insight", "quote_link")),
    ("highlight-update", "highlight"),
    ("outcome-update", "manual_outcome"),
    ("coding-round-create", None),
    ("coding-round-done", "coding_round"),
    ("coding-round-close", "coding_round"),
    ("coding-round-consensus", "coding_round"),
    *[(name, attribute) for name, attribute, _ in PAGES if name.endswith("-delete")],
]
# Pages that write on POST and must never write on GET.
POST_ONLY = [
    "question-move", "insight-unlink-finding", "insight-unlink-quote", "coding-round-done",
    "coding-round-close", "coding-round-consensus",
]  # fmt: skip


def _url(world, name: str, attributes: str | tuple | None) -> str:
    """The page's URL, with the primary keys of the world's records named in `attributes`."""
    if isinstance(attributes, str):
        attributes = (attributes,)
    return reverse(name, args=[getattr(world, attribute).pk for attribute in attributes or ()])


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


def test_writes_refuse_get_even_for_researchers(world, as_role):
    client = as_role("researcher")
    with nothing_written():
        for name, attribute in POSTS:
            if name in POST_ONLY:
                assert client.get(_url(world, name, attribute)).status_code == 405, name


def test_viewer_sees_no_edit_delete_or_remove_controls(world, as_role):
    client = as_role("viewer")
    records = (
        world.insight, world.finding, world.change, world.manual_outcome.change, world.model,
        world.theme,
    )  # fmt: skip
    for record in records:
        body = client.get(record.get_absolute_url()).content.decode()
        assert "/delete/" not in body, record
        assert "/edit/" not in body, record
        assert "/remove/" not in body, record
    body = client.get(world.survey.get_absolute_url()).content.decode()
    assert "/questions/" not in body


def test_researcher_sees_delete_links_and_remove_buttons(world, as_role):
    client = as_role("researcher")
    body = client.get(world.insight.get_absolute_url()).content.decode()
    assert reverse("insight-delete", args=[world.insight.pk]) in body
    assert reverse("insight-unlink-finding", args=[world.insight.pk, world.finding_link.pk]) in body
    assert reverse("insight-unlink-quote", args=[world.insight.pk, world.quote_link.pk]) in body
    assert reverse("outcome-update", args=[world.manual_outcome.pk]) in body
    assert reverse("outcome-delete", args=[world.manual_outcome.pk]) in body
    body = client.get(world.interview.get_absolute_url()).content.decode()
    assert reverse("highlight-update", args=[world.highlight.pk]) in body
    assert reverse("highlight-delete", args=[world.highlight.pk]) in body
    body = client.get(world.survey.get_absolute_url()).content.decode()
    assert reverse("question-update", args=[world.question.pk]) in body
    assert reverse("question-delete", args=[world.question.pk]) in body


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


def _records_with_a_page() -> list[str]:
    """World attributes whose model has get_absolute_url, so the admin offers "view on site"."""
    return [
        name
        for name, field in World.__dataclass_fields__.items()
        if hasattr(field.type, "get_absolute_url")
    ]


def test_every_model_with_a_page_is_in_the_view_on_site_test():
    with_page = {
        model
        for app in ("kb", "analysis")
        for model in apps.get_app_config(app).get_models()
        if hasattr(model, "get_absolute_url")
    }
    assert with_page == {World.__dataclass_fields__[name].type for name in _records_with_a_page()}


@pytest.mark.parametrize("attribute", _records_with_a_page())
def test_admin_view_on_site_reaches_the_canonical_page(world, as_role, attribute):
    client = as_role("staff")
    record = getattr(world, attribute)
    # The admin links a proxy (Study) by its own content type, not its concrete model's.
    content_type_id = ContentType.objects.get_for_model(record, for_concrete_model=False).pk
    view_on_site = f"/admin/r/{content_type_id}/{record.pk}/"
    meta = record._meta
    admin_page = client.get(
        reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[record.pk])
    )
    assert admin_page.status_code == 200
    assert view_on_site in admin_page.content.decode()
    response = client.get(view_on_site)
    assert response.status_code == 302
    assert response.url.endswith(record.get_absolute_url())
    page = client.get(record.get_absolute_url())
    assert page.status_code == 200
