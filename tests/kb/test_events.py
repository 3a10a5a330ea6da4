"""The event log: one event per write, personal data never logged, rows never edited."""

import datetime

import pytest

from kb.models import AppendOnlyError, Event
from kb.services.people import researcher_anonymise, researcher_create
from kb.services.records import record_update
from kb.services.subjects import finding_create
from tests.factories import InterviewFactory, SubjectModelFactory

pytestmark = pytest.mark.django_db


def test_create_logs_who_what_and_the_fields(researcher_user):
    model = SubjectModelFactory(name="InceptionV1")
    finding = finding_create(
        actor=researcher_user,
        subject_model=model,
        title="Curves",
        layer_name="mixed3b",
        unit_indices=[379],
    )
    event = Event.objects.get()
    assert (event.actor, event.action, event.target_id) == (researcher_user, "created", finding.pk)
    assert event.target_label == "InceptionV1: Curves"
    assert event.changes["layer_name"] == "mixed3b"
    assert event.changes["unit_indices"] == [379]


def test_update_logs_only_changed_fields_as_old_and_new(researcher_user):
    model = SubjectModelFactory(name="M", family="A")
    record_update(model, actor=researcher_user, data={"family": "B", "name": "M"})
    event = Event.objects.get()
    assert event.action == "updated"
    assert event.changes == {"family": ["A", "B"]}


def test_update_without_changes_logs_nothing(researcher_user):
    model = SubjectModelFactory(name="M", family="A")
    record_update(model, actor=researcher_user, data={"family": "A"})
    assert not Event.objects.exists()


def test_personal_data_never_enters_the_log(researcher_user):
    researcher = researcher_create(
        actor=researcher_user,
        pseudonym="Lead A",
        role="research_lead",
        seniority="principal",
        full_name="Ada Secret",
        contact_email="ada@example.org",
    )
    record_update(researcher, actor=researcher_user, data={"full_name": "Ada Hidden"})
    logged = str(list(Event.objects.values_list("target_label", "changes")))
    assert "Ada" not in logged
    assert "ada@example.org" not in logged
    assert "Lead A" not in logged
    assert Event.objects.filter(action="updated").get().changes == {
        "full_name": "(changed; value not logged)"
    }


def test_transcript_edits_are_logged_without_the_text(researcher_user):
    interview = InterviewFactory(transcript="old words")
    record_update(interview, actor=researcher_user, data={"transcript": "new words"})
    event = Event.objects.get()
    assert event.changes == {"transcript": "(changed; value not logged)"}
    assert event.target_label == f"interview #{interview.pk}"


def test_events_cannot_be_edited_or_deleted(researcher_user):
    SubjectModelFactory()
    finding_create(
        actor=researcher_user, subject_model=SubjectModelFactory(), title="T", layer_name="l"
    )
    event = Event.objects.get()
    event.action = "deleted"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    assert Event.objects.get().action == "created"


def test_anonymise_erases_personal_data_everywhere_but_keeps_interviews(researcher_user):
    researcher = researcher_create(
        actor=researcher_user,
        pseudonym="Lead A",
        role="research_lead",
        seniority="principal",
        full_name="Ada Secret",
        contact_email="ada@example.org",
        affiliation="Lab X",
        consent_given=True,
        consent_date=datetime.date(2026, 1, 5),
        consent_scope="quotes",
    )
    interview = InterviewFactory(researcher=researcher)
    researcher_anonymise(actor=researcher_user, researcher=researcher)
    researcher.refresh_from_db()
    assert (researcher.full_name, researcher.contact_email, researcher.affiliation) == ("", "", "")
    assert researcher.pseudonym == f"Anonymised researcher {researcher.pk}"
    assert researcher.anonymised_at is not None
    assert interview.researcher_id == researcher.pk
    history = list(researcher.history.values_list("pseudonym", flat=True))
    assert set(history) == {researcher.pseudonym}
    assert Event.objects.filter(action="anonymised").get().changes == {
        "cleared": ["full_name", "affiliation", "contact_email", "pseudonym"],
        "interviews_erased": 0,
    }
