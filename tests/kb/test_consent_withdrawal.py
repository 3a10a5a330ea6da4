"""Consent withdrawal: after a researcher is anonymised, their name, affiliation and e-mail
(and, when their consent does not cover keeping them, their words) are nowhere: not on a page,
not in the API or an export, not in a backup file, not in any column of any table."""

import datetime
import io
import zipfile

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.urls import reverse

from kb.api.urls import router
from kb.models import Event, Interview
from kb.services.codebook import highlight_create
from kb.services.insights import insight_update
from kb.services.interviews import interview_create, interview_update, survey_create
from kb.services.invitations import invitation_create
from kb.services.people import researcher_anonymise, researcher_create, researcher_update
from tests.factories import InterviewFactory, ThemeFactory

pytestmark = pytest.mark.django_db

NAME = "Zebulon Quaxworth"
EMAIL = "quax@example.org"
AFFILIATION = "Institute of Quaxology"
PSEUDONYM = "Quax Seven"
SENTENCE = "The gradient whispers to the quaxbird at midnight."
ANSWER = "Only the quaxbird knows which neuron fires."
# Every value above contains one of these (case-insensitively), so a leftover fragment of
# any of them, a first name alone, say, is found too.
TRACES = ["quax", "zebulon", "whispers to the", "which neuron fires"]


def traces_in(text: str) -> list[str]:
    lowered = text.lower()
    return [trace for trace in TRACES if trace in lowered]


def admin_log(user, record, message: list) -> None:
    """Log a change the way the admin's change form does, with its own method."""
    request = RequestFactory().post("/")
    request.user = user
    admin.site.get_model_admin(type(record)).log_change(request, record, message)


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def withdrawn(world, researcher_user, staff_user):
    """A researcher who gave no consent to keep their words, their values written
    everywhere a team would write them: through the services (history, event log), the
    admin (its log), an interview with an edited transcript, answers, quotes linked to an
    insight, a survey link, and a mention of them in another researcher's interview and in
    an insight. Not anonymised yet."""
    actor = researcher_user
    person = researcher_create(
        actor=actor, pseudonym=PSEUDONYM, role="ml_engineer", seniority="senior",
        full_name="Zebulon Q.", affiliation=AFFILIATION, contact_email=EMAIL,
        consent_given=False, consent_date=None, consent_scope="none",
    )  # fmt: skip
    researcher_update(actor=actor, researcher=person, data={"full_name": NAME})
    staff = signed_in(staff_user)
    response = staff.post(
        reverse("admin:kb_researcher_change", args=[person.pk]),
        {
            "pseudonym": PSEUDONYM, "full_name": NAME, "affiliation": AFFILIATION,
            "role": "ml_engineer", "seniority": "senior", "research_area": "vision",
            "consent_date": "", "consent_scope": "none",
            "contact_email": EMAIL,
        },
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    survey = survey_create(
        actor=actor, title="Open questions",
        questions=[{"text": "Anything else?", "kind": "free_text"}],
    )  # fmt: skip
    question = survey.questions.get()
    interview = interview_create(
        actor=actor, researcher=person, conducted_on=datetime.date(2026, 2, 2), survey=survey,
        transcript=f"I am {NAME} from the {AFFILIATION}.", summary=f"Write to {EMAIL}.",
        answers={question.pk: ANSWER},
    )  # fmt: skip
    interview_update(
        actor=actor, interview=interview, data={"transcript": f"{SENTENCE} Ask {NAME}."}
    )
    theme = world.theme
    spoken = highlight_create(
        actor=actor, interview=interview, start=0, end=len(SENTENCE), quote=SENTENCE,
        themes=[theme], note=f"{NAME} said this twice.",
    )  # fmt: skip
    answer = interview.answers.get()
    highlight_create(
        actor=actor, interview=interview, answer=answer, start=0, end=len(ANSWER),
        quote=ANSWER, themes=[theme],
    )  # fmt: skip
    insight = world.insight
    insight_update(
        actor=actor, insight=insight,
        data={"statement": f"As {NAME} ({EMAIL}) told us, widen the layer."},
        supporting_highlights=[spoken],
    )  # fmt: skip
    link = insight.highlight_links.get(highlight=spoken)
    admin_log(staff_user, insight, [{"added": {"name": "insight highlight", "object": str(link)}}])
    admin_log(staff_user, interview, [{"changed": {"fields": ["Transcript"]}}])
    admin_log(staff_user, spoken, [{"changed": {"fields": ["Note"]}}])
    other = world.interview
    interview_update(
        actor=actor, interview=other, data={"transcript": f"{other.transcript} So did {NAME}."}
    )
    invitation_create(actor=actor, survey=survey, researcher=person)
    return person


# --- where to look ----------------------------------------------------------------------------


def database_traces() -> dict[str, list[str]]:
    """Every column of every table, whatever its type, read as text: {table: traces}."""
    found = {}
    quoted = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            # Column names from a query, not get_table_description: Django's SQLite
            # introspection cannot parse a CHECK constraint with a comma in it.
            cursor.execute(f"SELECT * FROM {quoted(table)} WHERE 1 = 0")
            columns = [column[0] for column in cursor.description]
            row = " OR ".join(f"LOWER(CAST({quoted(c)} AS TEXT)) LIKE %s" for c in columns)
            counts = ", ".join(f"SUM(CASE WHEN {row} THEN 1 ELSE 0 END)" for _ in TRACES)
            cursor.execute(
                f"SELECT {counts} FROM {quoted(table)}",
                [f"%{trace}%" for trace in TRACES for _ in columns],
            )
            hits = [trace for trace, n in zip(TRACES, cursor.fetchone(), strict=True) if n]
            if hits:
                found[table] = hits
    return found


def page_urls(world, person) -> list[str]:
    return [
        reverse("dashboard"),
        reverse("researcher-list"),
        reverse("researcher-detail", args=[person.pk]),
        reverse("interview-list"),
        reverse("interview-detail", args=[world.interview.pk]),
        reverse("survey-detail", args=[person.invitations.get().survey_id]),
        reverse("highlight-update", args=[world.highlight.pk]),
        reverse("theme-detail", args=[world.theme.pk]),
        reverse("insight-detail", args=[world.insight.pk]),
        # Words of theirs and around them, which do not echo a trace back in the query.
        reverse("search") + "?q=midnight",
        reverse("search") + "?q=Institute",
        reverse("theme-researcher-csv"),
        reverse("outcomes-csv"),
    ]


def admin_urls(world, person) -> list[str]:
    return [
        reverse("admin:index"),
        reverse("admin:kb_researcher_changelist"),
        reverse("admin:kb_researcher_change", args=[person.pk]),
        reverse("admin:kb_researcher_history", args=[person.pk]),
        reverse("admin:kb_interview_changelist"),
        reverse("admin:kb_answer_changelist"),
        reverse("admin:kb_highlight_changelist"),
        reverse("admin:kb_event_changelist"),
        reverse("admin:kb_insight_history", args=[world.insight.pk]),
        reverse("admin:kb_insighthighlight_changelist"),
    ]


def api_urls() -> list[str]:
    return [f"/api/{prefix}/?page_size=100" for prefix, *_ in router.registry] + [
        "/api/export/",
        "/api/export/outcomes.csv",
        "/api/export/theme-by-researcher.csv",
        "/api/statistics/theme-prevalence/",
    ]


def body(response) -> str:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode()


def backup_traces(path) -> dict[str, list[str]]:
    call_command("export_kb", str(path), stdout=io.StringIO())
    with zipfile.ZipFile(path) as archive:
        return {
            name: traces_in(archive.read(name).decode("utf-8", errors="replace"))
            for name in archive.namelist()
        }


# --- the test ---------------------------------------------------------------------------------


def test_anonymising_leaves_no_trace_of_them_anywhere(
    withdrawn, world, client_r, staff_user, tmp_path
):
    person = withdrawn
    before = database_traces()
    # The values reached the places the erasure has to reach.
    for table in ("kb_researcher", "kb_historicalinterview", "kb_historicalanswer",
                  "kb_historicalhighlight", "kb_event", "django_admin_log", "kb_insight",
                  "kb_historicalinsight"):  # fmt: skip
        assert table in before, sorted(before)

    response = client_r.post(reverse("researcher-anonymise", args=[person.pk]))
    assert response.status_code == 302

    assert database_traces() == {}
    staff = signed_in(staff_user)
    pages = {
        f"{who} {url}": traces_in(body(client.get(url)))
        for who, client in (("researcher", client_r), ("staff", staff))
        for url in page_urls(world, person)
    }
    pages |= {f"staff {url}": traces_in(body(staff.get(url))) for url in admin_urls(world, person)}
    pages |= {f"staff {url}": traces_in(body(staff.get(url))) for url in api_urls()}
    assert {where: found for where, found in pages.items() if found} == {}
    archived = backup_traces(tmp_path / "backup.zip")
    assert {name: found for name, found in archived.items() if found} == {}

    # No consent to keep their words: their interview, answer and quotes are gone,
    # the record of them stays as a neutral label, and others' records keep their own text.
    person.refresh_from_db()
    assert person.pseudonym == f"Anonymised researcher {person.pk}"
    assert not Interview.objects.filter(researcher=person).exists()
    assert Event.objects.filter(action="anonymised").get().changes["interviews_erased"] == 1
    world.interview.refresh_from_db()
    assert world.interview.transcript.endswith("So did [removed].")
    world.insight.refresh_from_db()
    assert world.insight.statement == "As [removed] ([removed]) told us, widen the layer."
    assert list(world.insight.highlight_links.all()) == [world.quote_link]


def test_consent_to_anonymised_quotes_keeps_their_words_without_their_name(world, researcher_user):
    person = researcher_create(
        actor=researcher_user, pseudonym=PSEUDONYM, role="ml_engineer", seniority="senior",
        full_name=NAME, affiliation=AFFILIATION, contact_email=EMAIL,
        consent_given=True, consent_date=datetime.date(2026, 1, 5), consent_scope="quotes",
    )  # fmt: skip
    first = f"I am {NAME.upper()} of the {AFFILIATION}; write to {EMAIL}."
    interview = interview_create(
        actor=researcher_user, researcher=person, conducted_on=datetime.date(2026, 2, 2),
        transcript=first,
    )  # fmt: skip
    interview_update(
        actor=researcher_user, interview=interview, data={"transcript": f"{first} {SENTENCE}"}
    )
    start = len(first) + 1
    quote = highlight_create(
        actor=researcher_user, interview=interview, start=start, end=start + len(SENTENCE),
        quote=SENTENCE, themes=[ThemeFactory()],
    )  # fmt: skip
    naming = highlight_create(
        actor=researcher_user, interview=interview, start=0, end=len("I am ") + len(NAME),
        quote=f"I am {NAME.upper()}", themes=[ThemeFactory()],
    )  # fmt: skip
    colleague = InterviewFactory(transcript=f"I also work at the {AFFILIATION}.")

    researcher_anonymise(actor=researcher_user, researcher=person)

    kept = f"I am [removed] of the [removed]; write to [removed]. {SENTENCE}"
    interview.refresh_from_db()
    assert interview.transcript == kept
    assert set(interview.history.values_list("transcript", flat=True)) == {
        "I am [removed] of the [removed]; write to [removed].",
        kept,
    }
    # Their name was before the quote: the highlight moves with it, onto the same words.
    quote.refresh_from_db()
    assert quote.quote == SENTENCE
    assert kept[quote.start : quote.end] == SENTENCE
    naming.refresh_from_db()
    assert (naming.quote, kept[naming.start : naming.end]) == ("I am [removed]", "I am [removed]")
    assert Event.objects.filter(action="anonymised").get().changes["interviews_erased"] == 0
    # An affiliation names an organisation, not a person: only their own records lose it.
    colleague.refresh_from_db()
    assert colleague.transcript == f"I also work at the {AFFILIATION}."


def test_an_interview_moved_to_someone_else_is_not_erased_with_them(world, researcher_user):
    """Recorded under them by mistake, then moved: it is the other person's interview."""
    person = researcher_create(
        actor=researcher_user, pseudonym=PSEUDONYM, role="ml_engineer", seniority="senior",
        full_name=NAME, consent_given=False, consent_scope="none",
    )  # fmt: skip
    interview = interview_create(
        actor=researcher_user, researcher=person, conducted_on=datetime.date(2026, 2, 2),
        transcript="Wider layers helped.",
    )  # fmt: skip
    interview_update(
        actor=researcher_user, interview=interview, data={"researcher": world.researcher}
    )

    researcher_anonymise(actor=researcher_user, researcher=person)

    interview.refresh_from_db()
    assert (interview.researcher, interview.transcript) == (
        world.researcher,
        "Wider layers helped.",
    )
