"""Every admin changelist, add and change page answers 200 for a superuser."""

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db

REGISTERED = sorted(
    (model._meta.app_label, model._meta.model_name)
    for model in admin.site._registry
    if model._meta.app_label in {"kb", "analysis"}
)


@pytest.fixture
def demo(db):
    call_command("seed_demo", stdout=StringIO())


def test_every_knowledge_base_model_is_registered():
    from django.apps import apps

    expected = {
        (m._meta.app_label, m._meta.model_name)
        for app in ("kb", "analysis")
        for m in apps.get_app_config(app).get_models()
        if not m.__name__.startswith("Historical") and not m._meta.auto_created
    }
    assert expected - set(REGISTERED) == set()


@pytest.mark.parametrize(("app_label", "model_name"), REGISTERED)
def test_admin_pages_answer_200(client, staff_user, demo, app_label, model_name):
    from django.apps import apps

    client.force_login(staff_user)
    base = f"admin:{app_label}_{model_name}"
    assert client.get(reverse(f"{base}_changelist")).status_code == 200
    assert client.get(reverse(f"{base}_changelist"), {"q": "curve"}).status_code == 200
    model = apps.get_model(app_label, model_name)
    if admin.site._registry[model].has_add_permission(_request(staff_user)):
        assert client.get(reverse(f"{base}_add")).status_code == 200
    record = model.objects.first()
    if record is not None:
        assert client.get(reverse(f"{base}_change", args=[record.pk])).status_code == 200
        assert client.get(reverse(f"{base}_history", args=[record.pk])).status_code == 200


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_event_log_is_read_only_in_admin(client, staff_user, demo):
    from kb.models import Event

    client.force_login(staff_user)
    event = Event.objects.first()
    assert client.get(reverse("admin:kb_event_add")).status_code == 403
    assert (
        client.post(reverse("admin:kb_event_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert Event.objects.filter(pk=event.pk).exists()
