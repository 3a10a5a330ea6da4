"""Form errors sit beside the field they are about, and every error shows at once: a wrong
confidence, evidence that both supports and contradicts, consent without a date or scope
together with a wrong e-mail address."""

import re

import pytest
from django.urls import reverse

from tests.factories import FindingFactory, SubjectModelFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

CONSENT_RULE = "Consent needs a date and a scope; without consent the scope must be none."


def _field_errors(html: str, field: str) -> list[str]:
    """The messages listed beside the field `id_<field>` on a page."""
    match = re.search(rf'<ul class="errorlist" id="id_{field}-errors">(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1)) if match else []


def test_a_confidence_above_one_is_refused_beside_the_confidence_field(client_r):
    model = SubjectModelFactory()
    with nothing_written():
        response = client_r.post(
            reverse("finding-create"),
            {
                "subject_model": model.pk, "title": "Curves", "kind": "feature",
                "layer_name": "conv1", "status": "hypothesis", "confidence": "1.7",
            },
        )  # fmt: skip
    html = response.content.decode()
    assert _field_errors(html, "confidence") == ["Confidence must lie between 0 and 1."]
    assert response.context["form"].non_field_errors() == []


def test_evidence_that_both_supports_and_contradicts_is_refused_beside_the_lists(client_r):
    finding = FindingFactory()
    with nothing_written():
        response = client_r.post(
            reverse("insight-create"),
            {
                "title": "Both ways", "statement": "s", "understanding_level": 1,
                "relevance": "safety", "status": "open",
                "supporting_findings": [finding.pk], "contradicting_findings": [finding.pk],
            },
        )  # fmt: skip
    html = response.content.decode()
    assert _field_errors(html, "contradicting_findings") == [
        "An item cannot both support and contradict an insight."
    ]
    assert response.context["form"].non_field_errors() == []


@pytest.mark.parametrize(
    ("consent", "field"),
    [
        ({"consent_given": "on", "consent_scope": "quotes"}, "consent_date"),
        ({"consent_given": "on", "consent_date": "2026-01-05", "consent_scope": "none"},
         "consent_scope"),
        ({"consent_scope": "quotes"}, "consent_scope"),
    ],
)  # fmt: skip
def test_a_consent_error_shows_together_with_the_email_error(client_r, consent, field):
    with nothing_written():
        response = client_r.post(
            reverse("researcher-create"),
            {
                "pseudonym": "P", "role": "ml_engineer", "seniority": "senior",
                "contact_email": "not an address", **consent,
            },
        )  # fmt: skip
    html = response.content.decode()
    assert _field_errors(html, "contact_email") == ["Enter a valid email address."]
    assert _field_errors(html, field) == [CONSENT_RULE]


def test_consistent_consent_passes_the_form(client_r):
    response = client_r.post(
        reverse("researcher-create"),
        {
            "pseudonym": "P", "role": "ml_engineer", "seniority": "senior",
            "consent_given": "on", "consent_date": "2026-01-05", "consent_scope": "quotes",
        },
    )  # fmt: skip
    assert response.status_code == 302
