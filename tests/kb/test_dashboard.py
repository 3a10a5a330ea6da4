"""The dashboard's recent activity lists the same events as the API's event log and the admin's:
a viewer never sees events about researchers, interviews, answers or highlights, even by their
labels."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils.text import capfirst
from rest_framework.test import APIClient

from kb import events
from kb.models import Answer, Event
from kb.roles import VIEWER

pytestmark = pytest.mark.django_db


@pytest.fixture
def activity(world, researcher_user) -> dict[str, str]:
    """One event about each kind of record; each row's text as the dashboard prints it."""
    answer = Answer.objects.get(interview=world.interview)
    records = {
        "personal": [world.researcher, world.interview, answer, world.highlight],
        "shared": [world.insight, world.finding],
    }
    rows = {}
    for group, instances in records.items():
        for instance in instances:
            event = events.record_created(actor=researcher_user, instance=instance, fields={})
            rows[f"{capfirst(event.target_type.name)}: {event.target_label}"] = group
    return rows


def _recent_activity(client, user) -> tuple[str, list[int]]:
    client.force_login(user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    return response.content.decode(), [event.pk for event in response.context["events"]]


def _api_event_ids(user) -> list[int]:
    api = APIClient()
    api.force_authenticate(user)
    return [row["id"] for row in api.get("/api/events/").json()["results"]]


def test_only_a_researchers_activity_shows_events_about_personal_records(
    client, viewer_user, researcher_user, activity
):
    viewer_body, viewer_shown = _recent_activity(client, viewer_user)
    researcher_body, researcher_shown = _recent_activity(client, researcher_user)

    for row, group in activity.items():
        assert (row in viewer_body) is (group == "shared"), row
        assert row in researcher_body, row
    assert len(viewer_shown) == 2
    assert len(researcher_shown) == 6
    # The page and the API read the log through one rule.
    assert viewer_shown == _api_event_ids(viewer_user)
    assert researcher_shown == _api_event_ids(researcher_user)


def test_the_admins_event_list_reads_the_log_through_the_same_rule(
    client, django_user_model, researcher_user, activity
):
    # Given a staff account with only the viewer's permissions
    staff_viewer = django_user_model.objects.create_user(username="vera", is_staff=True)
    staff_viewer.groups.add(Group.objects.get(name=VIEWER))
    client.force_login(staff_viewer)
    # When it opens the admin's event list
    response = client.get(reverse("admin:kb_event_changelist"))
    # Then it lists the events the viewer's dashboard and API list, and no other
    assert response.status_code == 200
    listed = sorted(event.pk for event in response.context["cl"].result_list)
    assert listed == sorted(_api_event_ids(staff_viewer))
    assert len(listed) == 2
    hidden = Event.objects.exclude(pk__in=listed).filter(target_type__model="researcher").get()
    detail = client.get(reverse("admin:kb_event_change", args=[hidden.pk]))
    assert detail.status_code == 302  # the admin's answer for a record it cannot find
