"""Anonymising a researcher asks first, on a page of its own, as deleting does."""

import pytest
from django.urls import reverse

from kb.models import Researcher
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db


def test_the_confirmation_page_says_what_goes_and_what_stays_and_writes_nothing(client_r, world):
    url = reverse("researcher-anonymise", args=[world.researcher.pk])
    detail = client_r.get(world.researcher.get_absolute_url()).content.decode()
    assert f'href="{url}"' in detail and "<form" not in detail.split("Erase personal data")[1]
    with nothing_written():
        page = client_r.get(url)
    body = page.content.decode()
    assert page.status_code == 200
    assert f"<h1>Anonymise {world.researcher.pseudonym}?</h1>" in body
    assert "1 interview and the quotes coded in them" in body
    assert Researcher.objects.get(pk=world.researcher.pk).anonymised_at is None


def test_confirming_anonymises_and_a_second_visit_is_turned_away(client_r, world):
    url = reverse("researcher-anonymise", args=[world.researcher.pk])
    response = client_r.post(url)
    assert response.status_code == 302
    researcher = Researcher.objects.get(pk=world.researcher.pk)
    assert researcher.anonymised_at is not None and researcher.full_name == ""
    again = client_r.get(url, follow=True)
    assert again.redirect_chain == [(researcher.get_absolute_url(), 302)]
    assert "already anonymised" in again.content.decode()
