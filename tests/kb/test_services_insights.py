"""Insight writes: an edit changes fields and links more evidence in one transaction."""

import pytest
from django.core.exceptions import ValidationError

from kb.models import Stance
from kb.services.insights import insight_update
from tests.factories import BuiltinModelFactory, FindingFactory, InsightFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def _links(insight) -> set[tuple[int, str]]:
    return set(insight.finding_links.values_list("finding_id", "stance"))


def test_an_update_links_new_evidence_and_keeps_the_stance_of_linked_items(researcher_user):
    model = BuiltinModelFactory()
    linked, fresh = FindingFactory(subject_model=model), FindingFactory(subject_model=model)
    insight = InsightFactory(title="Old")
    insight.finding_links.create(finding=linked, stance=Stance.SUPPORTS)
    insight_update(
        actor=researcher_user,
        insight=insight,
        data={"title": "New"},
        supporting_findings=[fresh],
        contradicting_findings=[linked],  # already linked as supporting: left as it is
    )
    insight.refresh_from_db()
    assert insight.title == "New"
    assert _links(insight) == {(linked.pk, Stance.SUPPORTS), (fresh.pk, Stance.SUPPORTS)}
    assert insight.history.count() == 2


def test_an_update_with_contradictory_evidence_writes_nothing(researcher_user):
    finding = FindingFactory(subject_model=BuiltinModelFactory())
    insight = InsightFactory(title="Old")
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        insight_update(
            actor=researcher_user,
            insight=insight,
            data={"title": "New"},
            supporting_findings=[finding],
            contradicting_findings=[finding],
        )
    assert set(excinfo.value.message_dict) == {"findings"}
    insight.refresh_from_db()
    assert insight.title == "Old"
