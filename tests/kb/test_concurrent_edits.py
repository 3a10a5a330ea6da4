"""Two people editing one insight, finding or change: the second save from a form opened on
the same version is refused with who changed what, nothing is written, the input is kept,
and saving again (after a look) replaces the version it now names. Writes a run makes move
the version on without failing, and two saves at the same moment cannot both pass."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from kb.models import ArchitectureChange, Finding, Insight
from kb.services.changes import change_set_status
from kb.services.insights import insight_update
from kb.services.records import RecordChanged
from kb.services.subjects import finding_update
from tests.analysis.workers import require_postgresql
from tests.factories import ChangeFactory, FindingFactory, InsightFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

# kind: (factory, model, edit page, field a person edits, first and second person's values)
KINDS = {
    "insight": (InsightFactory, Insight, "insight-update", "statement", "Widen it", "Prune it"),
    "finding": (FindingFactory, Finding, "finding-update", "concept", "curves", "edges"),
    "change": (ChangeFactory, ArchitectureChange, "change-update", "rationale", "Room", "Cost"),
}


@pytest.fixture
def two_clients(client, django_user_model, researcher_user):
    """Rita (the researcher) and Bob, another researcher, each signed in on a client."""
    bob = django_user_model.objects.create_user("bob", password="pw-bob")
    bob.groups.set(researcher_user.groups.all())
    client.force_login(researcher_user)
    other = Client()
    other.force_login(bob)
    return client, other


def _opened(client, url: str) -> dict:
    """The edit form's fields as the page shows them, ready to post back."""
    return _form_data(client.get(url).context["form"])


def _form_data(form) -> dict:
    values = {field.html_name: field.value() for field in form}  # as the widgets show them
    return {name: value for name, value in values.items() if value not in (None, [])}


@pytest.mark.parametrize("kind", KINDS)
def test_the_second_save_from_a_stale_form_is_refused_and_then_taken_knowingly(two_clients, kind):
    factory, model, page, field, first, second = KINDS[kind]
    record = factory()
    rita, bob = two_clients
    url = reverse(page, args=[record.pk])
    rita_form, bob_form = _opened(rita, url), _opened(bob, url)
    assert rita_form["version"] == bob_form["version"] == 1

    assert rita.post(url, {**rita_form, field: first}).status_code == 302
    with nothing_written():
        refused = bob.post(url, {**bob_form, field: second})

    assert refused.status_code == 200
    [error] = refused.context["form"].non_field_errors()
    assert error.startswith(
        f"This {model._meta.verbose_name} was changed after you opened it (version 1 when you "
        f"opened it, version 2 now): saved by rita, last at "
    )
    assert error.endswith(
        f"; changed since: {field}. Nothing was saved. Your input is kept below: compare it "
        f"with the {model._meta.verbose_name} as it is now, then save again to replace their "
        "version."
    )
    stored = model.objects.get(pk=record.pk)
    assert (getattr(stored, field), stored.version) == (first, 2)
    body = refused.content.decode()
    assert second in body  # Bob's input, kept
    assert '<input type="hidden" name="version" value="2"' in body

    again = {**bob_form, field: second, "version": "2"}
    assert bob.post(url, again).status_code == 302
    stored = model.objects.get(pk=record.pk)
    assert (getattr(stored, field), stored.version) == (second, 3)


def test_a_stale_save_in_the_admin_is_refused_too(client, staff_user):
    finding = FindingFactory()
    client.force_login(staff_user)
    url = reverse("admin:kb_finding_change", args=[finding.pk])
    opened = _form_data(client.get(url).context["adminform"].form)
    finding_update(actor=None, finding=finding, data={"concept": "curves"}, expected_version=1)
    with nothing_written():
        refused = client.post(url, {**opened, "concept": "edges"})
    assert refused.status_code == 200
    [error] = refused.context["adminform"].form.non_field_errors()
    assert error.startswith("This finding was changed after you opened it (version 1 when you")
    assert Finding.objects.get(pk=finding.pk).concept == "curves"
    again = {**opened, "concept": "edges", "opened_version": 2}
    assert client.post(url, again).status_code == 302
    stored = Finding.objects.get(pk=finding.pk)
    assert (stored.concept, stored.version) == ("edges", 3)


def test_a_form_without_its_version_is_refused(two_clients):
    rita, _ = two_clients
    insight = InsightFactory()
    url = reverse("insight-update", args=[insight.pk])
    data = _opened(rita, url)
    del data["version"]
    with nothing_written():
        response = rita.post(url, {**data, "statement": "Changed"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "This form does not say which version of the record it was opened on, so saving it "
        "could overwrite someone else's changes. Open the edit page again and redo your "
        "changes there."
    ]
    assert Insight.objects.get(pk=insight.pk).statement == insight.statement


def test_a_status_set_by_a_run_moves_the_version_on_and_never_fails_on_it():
    change = ChangeFactory()
    stale = ArchitectureChange.objects.get(pk=change.pk)
    change_set_status(actor=None, change=change, status=ArchitectureChange.Status.RUNNING)
    # A copy read before the first status change still takes the next one.
    change_set_status(actor=None, change=stale, status=ArchitectureChange.Status.EVALUATED)
    stored = ArchitectureChange.objects.get(pk=change.pk)
    assert (stored.status, stored.version, stale.version) == ("evaluated", 3, 3)
    assert list(stored.history.order_by("history_id").values_list("version", flat=True)) == [
        1, 2, 3,
    ]  # fmt: skip


def test_a_save_naming_an_older_version_is_refused_even_when_it_changes_nothing():
    finding = FindingFactory()
    finding_update(actor=None, finding=finding, data={"concept": "curves"}, expected_version=1)
    with nothing_written(), pytest.raises(RecordChanged) as refused:
        finding_update(actor=None, finding=finding, data={"concept": "curves"}, expected_version=1)
    assert (refused.value.expected_version, refused.value.current_version) == (1, 2)
    assert refused.value.summary.startswith(
        "This finding was changed after you opened it (version 1 when you opened it, version 2 "
        "now): saved by an analysis run or a script, last at "
    )
    assert Finding.objects.get(pk=finding.pk).version == 2


@pytest.mark.django_db(transaction=True)
def test_two_saves_of_one_version_at_the_same_moment_cannot_both_pass():
    """The first save holds its transaction open; the second, started meanwhile from the same
    version, waits at the row lock (seen in pg_stat_activity), then is refused."""
    require_postgresql()
    insight = InsightFactory()
    first_saved, release = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def save(name: str, title: str) -> None:
        try:
            copy = Insight.objects.get(pk=insight.pk)  # read at version 1 by both
            with transaction.atomic():
                if name == "second":
                    first_saved.wait(10)
                insight_update(actor=None, insight=copy, data={"title": title}, expected_version=1)
                if name == "first":
                    first_saved.set()
                    release.wait(10)
            outcome[name] = "saved"
        except RecordChanged as error:
            outcome[name] = error
        finally:
            connection.close()

    threads = [
        threading.Thread(target=save, args=("first", "First")),
        threading.Thread(target=save, args=("second", "Second")),
    ]
    for thread in threads:
        thread.start()
    assert first_saved.wait(10)
    assert _waiting_on_a_lock(timeout=10) == 1
    release.set()
    for thread in threads:
        thread.join(10)

    assert outcome["first"] == "saved"
    assert isinstance(outcome["second"], RecordChanged)
    assert (outcome["second"].expected_version, outcome["second"].current_version) == (1, 2)
    stored = Insight.objects.get(pk=insight.pk)
    assert (stored.title, stored.version) == ("First", 2)


def _waiting_on_a_lock(*, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            [(waiting,)] = cursor.fetchall()
        if waiting:
            return waiting
        time.sleep(0.02)
    return 0
