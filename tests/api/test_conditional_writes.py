"""Conditional writes to the records people edit together (insights, findings, changes):
each representation carries its version and an ETag; a PATCH names the version it was made
on, in If-Match (stale: 412) or in the body (stale: 409), and without either answers 428; a
DELETE or an unlink with a stale If-Match answers 412. Nothing is written on a refusal, and
a write that passes answers with the new ETag."""

import json

import pytest

from kb.models import ArchitectureChange, Finding, Insight, InsightFinding
from kb.services.records import record_update
from tests.factories import ChangeFactory, FindingFactory, InsightFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

# path: (factory, model, a field a client edits, a value for it)
KINDS = {
    "insights": (InsightFactory, Insight, "statement", "Widen it."),
    "findings": (FindingFactory, Finding, "concept", "curves"),
    "changes": (ChangeFactory, ArchitectureChange, "rationale", "Room for curves."),
}


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


def _saved_by_someone_else(record) -> None:
    record_update(type(record).objects.get(pk=record.pk), actor=None, data={"title": "Theirs"})


@pytest.mark.parametrize("kind", KINDS)
def test_a_patch_with_the_etag_of_the_read_passes_and_answers_the_new_etag(client, kind):
    factory, model, field, value = KINDS[kind]
    record = factory()
    url = f"/api/{kind}/{record.pk}/"
    read = client.get(url)
    assert (read["ETag"], read.json()["version"]) == ('"1"', 1)
    response = client.patch(url, {field: value}, format="json", headers={"If-Match": '"1"'})
    assert response.status_code == 200, response.content
    assert (response["ETag"], response.json()["version"], response.json()[field]) == (
        '"2"', 2, value,
    )  # fmt: skip
    assert client.get(url)["ETag"] == '"2"'


@pytest.mark.parametrize("kind", KINDS)
def test_a_patch_made_on_an_older_version_is_refused_and_writes_nothing(client, kind):
    factory, model, field, value = KINDS[kind]
    record = factory()
    url = f"/api/{kind}/{record.pk}/"
    model.objects.filter(pk=record.pk).update(version=2)  # saved since the client read it
    before = getattr(record, field)
    with nothing_written():
        by_header = client.patch(url, {field: value}, format="json", headers={"If-Match": '"1"'})
        by_body = client.patch(url, {field: value, "version": 1}, format="json")
        by_neither = client.patch(url, {field: value}, format="json")
    assert (by_header.status_code, by_body.status_code, by_neither.status_code) == (412, 409, 428)
    name = model._meta.verbose_name
    assert by_header.json() == {
        "detail": f"This {name} was saved again after you opened it (version 1 when you opened "
        f"it, version 2 now). Nothing was saved: read the {name} again (GET) and send your "
        "change with If-Match set to its new ETag.",
        "version": 2,
    }
    assert by_body.json()["detail"].endswith("send your change with its new `version`.")
    assert by_neither.json() == {
        "detail": f"Say which version of the {name} you changed, so that a change someone else "
        "saved meanwhile is not overwritten unseen: send If-Match with the ETag of your GET (now "
        '"2") or `version` in the body.',
        "version": 2,
    }
    assert getattr(model.objects.get(pk=record.pk), field) == before


def test_a_stale_answer_says_who_changed_what(client, researcher_user):
    insight = InsightFactory()
    url = f"/api/insights/{insight.pk}/"
    client.patch(url, {"title": "Theirs", "version": 1}, format="json")
    response = client.patch(url, {"statement": "Mine", "version": 1}, format="json")
    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "This insight was changed after you opened it (version 1 when you opened it, version 2 "
        "now): saved by rita, last at "
    )
    assert "; changed since: title. Nothing was saved" in response.json()["detail"]


@pytest.mark.parametrize(
    ("if_match", "status"),
    [('"1", "2"', 200), ("*", 200), ('W/"1"', 412), ("1", 412), ('"9"', 412)],
)
def test_if_match_compares_strong_tags_and_star_takes_any_version(client, if_match, status):
    insight = InsightFactory()
    response = client.patch(
        f"/api/insights/{insight.pk}/", {"statement": "New"}, format="json",
        headers={"If-Match": if_match},
    )  # fmt: skip
    assert response.status_code == status, response.content
    stored = Insight.objects.get(pk=insight.pk)
    assert (stored.statement, stored.version) == (
        ("New", 2) if status == 200 else (insight.statement, 1)
    )


def test_a_delete_with_a_stale_if_match_is_refused(client):
    finding = FindingFactory()
    _saved_by_someone_else(finding)
    url = f"/api/findings/{finding.pk}/"
    with nothing_written():
        refused = client.delete(url, headers={"If-Match": '"1"'})
    assert refused.status_code == 412
    assert refused.json()["version"] == 2
    assert client.delete(url, headers={"If-Match": '"2"'}).status_code == 204
    assert not Finding.objects.filter(pk=finding.pk).exists()


def test_an_unlink_with_a_stale_if_match_is_refused_and_one_that_passes_moves_the_version(
    client,
):
    link = InsightFinding.objects.create(insight=InsightFactory(), finding=FindingFactory())
    url = f"/api/insights/{link.insight_id}/unlink/"
    body = {"findings": [link.finding_id]}
    with nothing_written():
        refused = client.post(url, body, format="json", headers={"If-Match": '"7"'})
    assert refused.status_code == 412
    unlinked = client.post(url, body, format="json", headers={"If-Match": '"1"'})
    assert (unlinked.status_code, unlinked["ETag"], unlinked.json()["findings"]) == (200, '"2"', [])


def test_the_schema_documents_the_preconditions(client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    patch = schema["paths"]["/api/insights/{id}/"]["patch"]
    assert {"409", "412", "428"} <= set(patch["responses"])
    assert [p["name"] for p in patch["parameters"] if p["in"] == "header"] == ["If-Match"]
    assert "ETag" in patch["responses"]["200"]["headers"]
    assert "ETag" in schema["paths"]["/api/findings/{id}/"]["get"]["responses"]["200"]["headers"]
    assert "412" in schema["paths"]["/api/changes/{id}/"]["delete"]["responses"]
    update = schema["components"]["schemas"]["PatchedInsightUpdateRequest"]["properties"]
    assert update["version"]["type"] == "integer"
    # Records without versions take unconditional writes, as before.
    assert "428" not in schema["paths"]["/api/themes/{id}/"]["patch"]["responses"]
