"""A small knowledge base built through the services (so events exist), and API clients
for the fixed cast of users."""

import datetime

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from analysis.services import experiment_request
from kb.models import Stance
from kb.services.changes import change_create
from kb.services.codebook import highlight_create, theme_create
from kb.services.insights import insight_create, outcome_record_manual
from kb.services.interviews import interview_create, survey_create
from kb.services.invitations import invitation_create
from kb.services.people import researcher_create
from kb.services.subjects import finding_create, subject_model_create
from tests.factories import SHAPES_SPEC

TRANSCRIPT = "We want actionable steps for improving the model, not pretty pictures."


@pytest.fixture(autouse=True)
def _fast_passwords(fast_passwords):
    # The cast of users is created for every test.
    pass


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle histories live in the cache; each test starts with a clean slate.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def api():
    """A client per user: api(user) signs in with a session (CSRF not enforced)."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def users(researcher_user, viewer_user, staff_user, outsider_user):
    return {
        "anonymous": None,
        "outsider": outsider_user,
        "viewer": viewer_user,
        "researcher": researcher_user,
        "staff": staff_user,
    }


@pytest.fixture
def kb(researcher_user):
    """One of everything, written by a researcher through the services."""
    actor = researcher_user
    person = researcher_create(
        actor=actor, pseudonym="P1", role="ml_engineer", seniority="senior",
        full_name="Secret Person", affiliation="Secret Lab", contact_email="p1@example.org",
    )  # fmt: skip
    survey = survey_create(
        actor=actor, title="Caring", questions=[{"text": "How useful?", "kind": "likert"}]
    )
    question = survey.questions.get()
    interview = interview_create(
        actor=actor, researcher=person, conducted_on=datetime.date(2026, 2, 1), survey=survey,
        transcript=TRANSCRIPT, summary="Wants steps.", answers={question.pk: 4},
    )  # fmt: skip
    theme = theme_create(actor=actor, name="Actionability")
    highlight = highlight_create(
        actor=actor, interview=interview, start=8, end=24, quote=TRANSCRIPT[8:24], themes=[theme]
    )
    model = subject_model_create(
        actor=actor, name="shapes-cnn", kind="builtin", architecture_spec=SHAPES_SPEC
    )
    finding = finding_create(
        actor=actor, subject_model=model, title="Curves in conv2", layer_name="conv2",
        unit_indices=[1, 2], concept="circle",
    )  # fmt: skip
    insight = insight_create(
        actor=actor, title="Widen conv2", statement="Curves live in conv2.",
        supporting_findings=[finding], supporting_highlights=[highlight],
    )  # fmt: skip
    change = change_create(
        actor=actor, insight=insight, target_model=model, operation="widen_layer",
        parameters={"layer": "conv2", "units": 2},
    )  # fmt: skip
    outcome = outcome_record_manual(
        actor=actor, change=change, verdict="improved",
        baseline_values=[0.8, 0.81, 0.79], variant_values=[0.85, 0.87, 0.84],
        control_values=[0.8, 0.8, 0.81],
    )  # fmt: skip
    run = experiment_request(
        actor=actor, change=change, config={"seeds": 3, "train": {"epochs": 1}}, dispatch=False
    )
    invitation, token = invitation_create(actor=actor, survey=survey, researcher=person)
    return {
        "researcher": person, "survey": survey, "question": question, "interview": interview,
        "answer": interview.answers.get(), "theme": theme, "highlight": highlight,
        "model": model, "finding": finding, "insight": insight, "change": change,
        "outcome": outcome, "run": run, "invitation": invitation,
        "invitation_token": token, "stance": Stance.SUPPORTS,
    }  # fmt: skip
