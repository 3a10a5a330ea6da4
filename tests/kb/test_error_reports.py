"""A server error on a page that shows a transcript, in production settings: the 500 page, the
log and the mail to the admins say which URL failed, and none of them carries the transcript
or the researcher's name (kb/reporting.py, LOGGING in kb/settings.py, templates/500.html)."""

import logging
import sys

import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

from kb.models import Interview
from kb.reporting import PersonalDataFreeFilter
from kb.settings import env_admins
from kb.templatetags import kb_pages

pytestmark = pytest.mark.django_db

NAME = "Secret Person 0"  # the researcher of tests.kb.pages' world
TRANSCRIPT = f"I am {NAME}, and the quaxbird neuron in conv2 detects curves."


def personal_data_in(text: str) -> list[str]:
    forms = (NAME, NAME.replace(" ", "+"), NAME.replace(" ", "%20"), "quaxbird")
    return [value for value in forms if value.lower() in text.lower()]


@pytest.fixture
def production(settings):
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.org")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def test_a_server_error_on_a_transcript_page_reports_the_url_and_no_personal_data(
    production, world, client_r, monkeypatch, caplog
):
    Interview.objects.filter(pk=world.interview.pk).update(transcript=TRANSCRIPT)

    def corrupt_index(highlights, text):
        raise RuntimeError("the highlight index is corrupt")

    # Raised while marking up the transcript: the frames above hold it in `text`.
    monkeypatch.setattr(kb_pages, "_current", corrupt_index)
    client_r.raise_request_exception = False
    url = world.interview.get_absolute_url()
    # A name searched for travels in the query string and the referring address.
    with caplog.at_level(logging.INFO):
        response = client_r.get(
            url, {"q": NAME}, HTTP_REFERER=f"http://testserver/search/?q={NAME.replace(' ', '+')}"
        )

    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    logged = "\n".join(console.format(record) for record in caplog.records)
    [report] = mail.outbox
    [(html, _)] = report.alternatives
    places = {
        "page": page,
        "caplog": caplog.text,
        "console": logged,
        "subject": report.subject,
        "body": report.body,
        "html": html,
    }
    assert {where: found for where, found in places.items() if personal_data_in(found)} == {}
    assert f"Internal Server Error: {url}" in caplog.text
    assert f"Internal Server Error: {url}" in logged
    assert report.to == ["ops@example.org"]
    assert url in report.subject
    assert f"Request URL: {url}\n" in report.body
    assert "q = '********************'" in report.body
    assert url in html
    # Still a report to act on: the exception and where it was raised.
    assert f"RuntimeError at {url}\nthe highlight index is corrupt" in report.body
    assert "in corrupt_index" in report.body
    assert "CSRF_COOKIE = '********************'" in report.body


def test_reports_name_posted_fields_and_locals_but_not_their_values_nor_the_settings(
    production,
):
    request = RequestFactory().post("/interviews/1/edit/", {"transcript": TRANSCRIPT})
    try:
        transcript = request.POST["transcript"]
        raise ValueError(f"could not save a transcript of {len(transcript)} characters")
    except ValueError:
        exc_info = sys.exc_info()
    ours = ExceptionReporter(request, *exc_info)
    djangos = ExceptionReporter(request, *exc_info)
    djangos.filter = SafeExceptionReporterFilter()

    assert isinstance(ours.filter, PersonalDataFreeFilter)
    # What Django's own filter would have sent.
    assert personal_data_in(djangos.get_traceback_text()) == [NAME, "quaxbird"]
    assert "ALLOWED_HOSTS" in djangos.get_traceback_text()
    for report in (ours.get_traceback_text(), ours.get_traceback_html()):
        assert personal_data_in(report) == []
        assert "ALLOWED_HOSTS" not in report
        assert "transcript" in report and "********************" in report


def test_admins_are_name_address_pairs_from_the_environment(monkeypatch):
    monkeypatch.setenv("ADMINS", "Ops team:ops@example.org, Ada:ada@example.org")
    assert env_admins("ADMINS") == [("Ops team", "ops@example.org"), ("Ada", "ada@example.org")]
    monkeypatch.setenv("ADMINS", "ops@example.org")
    with pytest.raises(ImproperlyConfigured, match="ADMINS must be name:address pairs"):
        env_admins("ADMINS")
