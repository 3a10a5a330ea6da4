"""Input serializers refuse what they would otherwise drop or half-read: fields they do not
take (on every write, JSON or multipart, and inside nested items), run settings placed
outside `config`, and evidence links missing their record in a partial update. Each answers
400 naming the field, and nothing is written."""

import pytest

from analysis.services import run_cancel
from kb.api.mixins import UNKNOWN_FIELD
from kb.models import InsightFinding, Outcome, Stance
from kb.services.subjects import finding_create
from tests.api.writes import WRITE_IDS, WRITES, if_match, resolve, send
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

RUN_SETTINGS_GO_IN_CONFIG = "Unknown field; run settings go inside `config`."


@pytest.fixture
def client(api, researcher_user):
    return api(researcher_user)


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=WRITE_IDS)
def test_unknown_fields_are_refused_on_every_write(client, kb, method, path, body):
    body = {**resolve(body or {}, kb), "shade": "blue", "id": 7}
    message = RUN_SETTINGS_GO_IN_CONFIG if "config" in body else UNKNOWN_FIELD
    with nothing_written():
        response = send(client, method, resolve(path, kb), body)
    assert response.status_code == 400, response.content
    assert response.json() == {"shade": [message], "id": [message]}


def test_a_read_only_field_is_refused_not_ignored(client, kb):
    outcome = kb["outcome"]
    with nothing_written():
        response = client.patch(f"/api/outcomes/{outcome.pk}/", {"verdict": "worse"})
    assert response.status_code == 400
    assert response.json() == {"verdict": [UNKNOWN_FIELD]}
    outcome.refresh_from_db()
    assert outcome.verdict == Outcome.Verdict.IMPROVED


def test_unknown_fields_are_named_beside_other_field_errors(client, kb):
    with nothing_written():
        response = client.post("/api/themes/", {"name": "", "shade": "dark"})
    assert response.status_code == 400
    assert response.json() == {"shade": [UNKNOWN_FIELD], "name": ["This field may not be blank."]}


@pytest.mark.parametrize("method", ["post", "patch"])
def test_unknown_fields_are_refused_in_a_multipart_form(client, kb, method):
    path = "/api/models/" if method == "post" else f"/api/models/{kb['model'].pk}/"
    with nothing_written():
        response = getattr(client, method)(
            path, {"name": "Uploaded", "shade": "blue"}, format="multipart"
        )
    assert response.status_code == 400, response.content
    assert response.json() == {"shade": [UNKNOWN_FIELD]}


def test_weights_on_an_update_are_refused_with_the_reason(client, kb):
    with nothing_written():
        response = client.patch(
            f"/api/models/{kb['model'].pk}/", {"weights": "x"}, format="multipart"
        )
    assert response.status_code == 400
    assert response.json()["weights"][0].startswith("Weights are set when a model is registered")


def test_unknown_fields_inside_an_evidence_link_are_refused(client, kb):
    link = {"finding": kb["finding"].pk, "stance": "supports", "weight": 2}
    with nothing_written():
        response = client.post(
            "/api/insights/", {"title": "T", "statement": "S", "findings": [link]}
        )
    assert response.status_code == 400
    assert response.json() == {"findings": {"0": {"weight": [UNKNOWN_FIELD]}}}


@pytest.mark.parametrize(
    "path", ["/api/changes/{change}/run-experiment/", "/api/models/{model}/profile/",
             "/api/findings/{finding}/ablate/"],
)  # fmt: skip
def test_run_settings_outside_config_are_refused(client, kb, path):
    run_cancel(actor=None, run=kb["run"])
    url = path.format(**{name: record.pk for name, record in kb.items() if hasattr(record, "pk")})
    with nothing_written():
        response = client.post(url, {"seeds": 3, "config": {}})
    assert response.status_code == 400
    assert response.json() == {"seeds": [RUN_SETTINGS_GO_IN_CONFIG]}


@pytest.mark.parametrize("seeds", [10**30, 2**63, [2**63, 1, 2]])
def test_huge_integers_in_a_run_config_are_refused(client, kb, seeds):
    run_cancel(actor=None, run=kb["run"])
    with nothing_written():
        response = client.post(
            f"/api/changes/{kb['change'].pk}/run-experiment/", {"config": {"seeds": seeds}}
        )
    assert response.status_code == 400
    assert set(response.json()) == {"seeds"}


@pytest.mark.parametrize(
    ("link", "error"),
    [
        ({"stance": "supports"}, {"finding": ["This field is required."]}),
        ({}, {"finding": ["This field is required."]}),
        ({"finding": None}, {"finding": ["This field may not be null."]}),
    ],
)
@pytest.mark.parametrize("kind", ["findings", "highlights"])
def test_an_evidence_link_without_its_record_is_refused_in_a_patch(client, kb, kind, link, error):
    if kind == "highlights" and "finding" in link:
        link = {"highlight": link.pop("finding"), **link}
    error = {kind[:-1]: messages for messages in error.values()}
    insight = kb["insight"]
    with nothing_written():
        response = client.patch(f"/api/insights/{insight.pk}/", {kind: [link]})
    assert response.status_code == 400, response.content
    assert response.json() == {kind: {"0": error}}


def test_an_evidence_link_in_a_patch_gets_the_default_stance(client, kb, researcher_user):
    other = finding_create(
        actor=researcher_user, subject_model=kb["model"], title="Edges", layer_name="conv1"
    )
    insight = kb["insight"]
    response = client.patch(
        f"/api/insights/{insight.pk}/", {"findings": [{"finding": other.pk}]},
        headers=if_match(insight),
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert InsightFinding.objects.get(insight=insight, finding=other).stance == Stance.SUPPORTS
