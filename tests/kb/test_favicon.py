"""Every page, the admin's too, names the site's icon, and the icon is served."""

import pytest
from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.urls import reverse

pytestmark = pytest.mark.django_db

ICON = f'<link rel="icon" href="{static("kb/favicon.svg")}" type="image/svg+xml">'


def test_site_and_admin_pages_link_the_svg_icon(client, staff_user):
    client.force_login(staff_user)
    for url in [reverse("dashboard"), reverse("login"), reverse("admin:index")]:
        assert ICON in client.get(url).content.decode(), url


def test_the_icon_is_a_small_svg():
    path = finders.find("kb/favicon.svg")
    with open(path, encoding="utf-8") as icon:
        text = icon.read()
    assert text.startswith('<svg xmlns="http://www.w3.org/2000/svg"')
    assert len(text.encode()) < 2_000
