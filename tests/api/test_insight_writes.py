"""Insights through the API: a PATCH edits fields and links more evidence."""

import pytest

from kb.services.subjects import finding_create
from tests.api.writes import if_match

pytestmark = pytest.mark.django_db


def test_a_patch_links_more_findings_and_leaves_linked_ones_alone(api, kb, researcher_user):
    fresh = finding_create(
        actor=researcher_user, subject_model=kb["model"], title="Corners in conv1",
        layer_name="conv1", unit_indices=[0], concept="corner",
    )  # fmt: skip
    body = {
        "title": "Widen conv2 for curves",
        "findings": [
            {"finding": fresh.pk, "stance": "contradicts"},
            {"finding": kb["finding"].pk, "stance": "contradicts"},  # linked as supporting
        ],
    }
    response = api(researcher_user).patch(
        f"/api/insights/{kb['insight'].pk}/", body, format="json", headers=if_match(kb["insight"])
    )
    assert response.status_code == 200, response.content
    shown = api(researcher_user).get(f"/api/insights/{kb['insight'].pk}/").json()
    assert shown["title"] == "Widen conv2 for curves"
    assert sorted((link["finding"], link["stance"]) for link in shown["findings"]) == sorted(
        [(kb["finding"].pk, "supports"), (fresh.pk, "contradicts")]
    )
