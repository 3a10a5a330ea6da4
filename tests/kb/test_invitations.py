"""Survey links: single use, unguessable, expiring, rate-limited, and nothing written when
they cannot be used."""

import datetime

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from kb.models import Answer, Interview, InvitationState, SurveyInvitation
from kb.services.invitations import (
    InvitationUnavailable,
    invitation_create,
    invitation_get_usable,
    invitation_respond,
    invitation_withdraw,
    token_digest,
)
from kb.services.people import researcher_anonymise
from tests.factories import QuestionFactory, ResearcherFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def invited(researcher_user):
    question = QuestionFactory(text="Useful?", kind="likert")
    researcher = ResearcherFactory()
    invitation, token = invitation_create(
        actor=researcher_user, survey=question.survey, researcher=researcher
    )
    return invitation, token, question


def test_only_the_digest_of_an_unguessable_token_is_stored(invited):
    invitation, token, _ = invited
    assert len(token) >= 43
    assert invitation.token_digest == token_digest(token)
    assert token not in str(SurveyInvitation.objects.values().get())


def test_answers_become_an_interview_and_spend_the_link(invited):
    invitation, token, question = invited
    interview = invitation_respond(token=token, answers={question.pk: 4})
    invitation.refresh_from_db()
    assert (invitation.interview, invitation.used_at is not None) == (interview, True)
    assert (interview.researcher, interview.survey) == (invitation.researcher, question.survey)
    assert Answer.objects.get(interview=interview).likert == 4
    with nothing_written(), pytest.raises(InvitationUnavailable) as refused:
        invitation_respond(token=token, answers={question.pk: 3})
    assert refused.value.reason == "used"


def test_expired_and_unknown_links_write_nothing(invited):
    invitation, token, question = invited
    SurveyInvitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - datetime.timedelta(seconds=1)
    )
    for attempt, reason in [(token, "expired"), ("not-a-token", "unknown")]:
        with nothing_written(), pytest.raises(InvitationUnavailable) as refused:
            invitation_respond(token=attempt, answers={question.pk: 3})
        assert refused.value.reason == reason


def test_invalid_answers_leave_the_link_unused(invited):
    invitation, token, question = invited
    with nothing_written(), pytest.raises(ValidationError):
        invitation_respond(token=token, answers={question.pk: None})
    invitation.refresh_from_db()
    assert invitation.used_at is None


def test_respondent_page_without_an_account(client, invited):
    _, token, question = invited
    url = reverse("survey-respond", args=[token])
    assert client.get(url).status_code == 200
    response = client.post(url, {f"answer_{question.pk}": "5"})
    assert response.status_code == 200
    assert "Thank you" in response.content.decode()
    assert Interview.objects.get().answers.get().likert == 5
    used = client.get(url)
    assert used.status_code == 410
    assert "already been used" in used.content.decode()


def test_missing_answer_is_shown_next_to_its_question_and_nothing_written(client, invited):
    _, token, question = invited
    with nothing_written():
        response = client.post(reverse("survey-respond", args=[token]), {})
    assert response.context["form"].errors[f"answer_{question.pk}"] == ["This field is required."]


def test_unknown_link_gets_a_clear_page(client):
    response = client.get(reverse("survey-respond", args=["nope"]))
    assert response.status_code == 404
    assert "This survey link is not valid" in response.content.decode()


def test_submissions_are_rate_limited(client, invited, settings):
    settings.SURVEY_RESPONSE_RATE_LIMIT = 2
    _, token, question = invited
    url = reverse("survey-respond", args=[token])
    for _ in range(2):
        assert client.post(url, {}).status_code == 200
    with nothing_written():
        response = client.post(url, {f"answer_{question.pk}": "5"})
    assert response.status_code == 429


def test_invitation_page_shows_the_link_once(client, researcher_user):
    question, researcher = QuestionFactory(), ResearcherFactory()
    client.force_login(researcher_user)
    response = client.post(
        reverse("invitation-create", args=[question.survey.pk]),
        {"researcher": researcher.pk, "valid_days": 7},
    )
    link = response.context["link"]
    token = link.rstrip("/").rsplit("/", 1)[1]
    assert link == f"http://testserver/s/{token}/"
    assert SurveyInvitation.objects.get().token_digest == token_digest(token)
    survey_page = client.get(question.survey.get_absolute_url()).content.decode()
    assert token not in survey_page
    assert "Waiting" in survey_page


def test_a_researcher_withdraws_a_waiting_link_and_it_stops_working(
    client, researcher_user, invited
):
    invitation, token, _ = invited
    client.force_login(researcher_user)
    response = client.post(reverse("invitation-withdraw", args=[invitation.pk]))
    assert response.status_code == 302
    assert response["Location"].endswith(f"/surveys/{invitation.survey_id}/#survey-links")
    invitation.refresh_from_db()
    assert invitation.is_expired and not invitation.is_used
    client.logout()
    page = client.get(reverse("survey-respond", args=[token]))
    assert page.status_code == 410
    assert "expired" in page.content.decode()
    # Withdrawing again changes nothing.
    with nothing_written():
        client.force_login(researcher_user)
        client.post(reverse("invitation-withdraw", args=[invitation.pk]))


def test_an_answered_link_cannot_be_withdrawn(client, researcher_user, invited):
    invitation, token, question = invited
    invitation_respond(token=token, answers={question.pk: 4})
    client.force_login(researcher_user)
    with nothing_written():
        response = client.post(reverse("invitation-withdraw", args=[invitation.pk]), follow=True)
    assert "answered already; nothing to withdraw" in response.content.decode()
    with pytest.raises(ValidationError):
        invitation_withdraw(actor=researcher_user, invitation=invitation)


@pytest.mark.parametrize("role", ["anonymous", "outsider", "viewer"])
def test_only_researchers_withdraw_links(client, invited, viewer_user, outsider_user, role):
    invitation, _, _ = invited
    user = {"anonymous": None, "outsider": outsider_user, "viewer": viewer_user}[role]
    if user:
        client.force_login(user)
    with nothing_written():
        response = client.post(reverse("invitation-withdraw", args=[invitation.pk]))
    assert response.status_code == (302 if role == "anonymous" else 403)
    if role == "anonymous":
        assert response["Location"].startswith(reverse("login"))
    invitation.refresh_from_db()
    assert not invitation.is_expired


def test_withdrawing_is_a_post_and_the_survey_page_offers_it_for_waiting_links(
    client, researcher_user, invited
):
    invitation, _, _ = invited
    client.force_login(researcher_user)
    url = reverse("invitation-withdraw", args=[invitation.pk])
    with nothing_written():
        assert client.get(url).status_code == 405
    page = client.get(reverse("survey-detail", args=[invitation.survey_id])).content.decode()
    assert f'action="{url}"' in page


@pytest.mark.parametrize("valid_days", [0, -1, 91])
def test_a_link_valid_for_too_few_or_too_many_days_is_refused(researcher_user, valid_days):
    question, researcher = QuestionFactory(), ResearcherFactory()
    with nothing_written(), pytest.raises(ValidationError) as refusal:
        invitation_create(
            actor=researcher_user, survey=question.survey, researcher=researcher,
            valid_days=valid_days,
        )  # fmt: skip
    assert "1 to 90 days" in str(refusal.value.message_dict["valid_days"])


def test_an_anonymised_researcher_is_not_invited(researcher_user):
    question, researcher = QuestionFactory(), ResearcherFactory()
    researcher_anonymise(actor=researcher_user, researcher=researcher)
    with nothing_written(), pytest.raises(ValidationError) as refusal:
        invitation_create(actor=researcher_user, survey=question.survey, researcher=researcher)
    assert "anonymised" in str(refusal.value.message_dict["researcher"])


def test_the_invitation_form_offers_only_researchers_who_may_be_invited(client, researcher_user):
    question, kept, erased = QuestionFactory(), ResearcherFactory(), ResearcherFactory()
    researcher_anonymise(actor=researcher_user, researcher=erased)
    client.force_login(researcher_user)
    url = reverse("invitation-create", args=[question.survey.pk])
    options = client.get(url).context["form"].fields["researcher"].queryset
    assert list(options) == [kept]
    with nothing_written():
        response = client.post(url, {"researcher": erased.pk, "valid_days": 7})
    assert "researcher" in response.context["form"].errors


def test_anonymising_a_researcher_withdraws_their_waiting_links(researcher_user, invited):
    invitation, token, question = invited
    answered, answered_token = invitation_create(
        actor=researcher_user, survey=question.survey, researcher=invitation.researcher
    )
    invitation_respond(token=answered_token, answers={question.pk: 3})
    other, _ = invitation_create(
        actor=researcher_user, survey=question.survey, researcher=ResearcherFactory()
    )
    researcher_anonymise(actor=researcher_user, researcher=invitation.researcher)
    states = {row.pk: row.state for row in SurveyInvitation.objects.all()}
    assert states == {
        invitation.pk: InvitationState.EXPIRED,
        answered.pk: InvitationState.ANSWERED,
        other.pk: InvitationState.WAITING,
    }
    with pytest.raises(InvitationUnavailable, match="expired"):
        invitation_get_usable(token=token)


def test_links_are_found_by_state(researcher_user, invited):
    invitation, token, question = invited
    expired, _ = invitation_create(
        actor=researcher_user, survey=question.survey, researcher=ResearcherFactory()
    )
    invitation_withdraw(actor=researcher_user, invitation=expired)
    answered, answered_token = invitation_create(
        actor=researcher_user, survey=question.survey, researcher=ResearcherFactory()
    )
    invitation_respond(token=answered_token, answers={question.pk: 5})
    found = {
        state: list(SurveyInvitation.objects.in_state(state).values_list("pk", flat=True))
        for state in InvitationState
    }
    assert found == {
        InvitationState.WAITING: [invitation.pk],
        InvitationState.EXPIRED: [expired.pk],
        InvitationState.ANSWERED: [answered.pk],
    }
    for state, (pk,) in found.items():
        assert SurveyInvitation.objects.get(pk=pk).state == state
