"""The API docs load their scripts, styles and icon from this site (drf-spectacular-sidecar),
never from a CDN: the pages work offline and trust no other site's code."""

import re
from html.parser import HTMLParser

from django.conf import settings
from django.contrib.staticfiles import finders
from django.test import RequestFactory
from drf_spectacular.views import SpectacularRedocView

ANY_URL = re.compile(r"(?:https?:)?//[^\s\"'<>]+")


class _Resources(HTMLParser):
    """The addresses of the scripts, and of the stylesheets and icons, a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        if tag == "script" and attributes.get("src"):
            self.scripts.append(attributes["src"])
        if tag == "link" and attributes.get("href"):
            self.links.append(attributes["href"])


def _resources(html: str) -> _Resources:
    parser = _Resources()
    parser.feed(html)
    return parser


def _assert_static_files_of_this_site(urls: list[str]) -> None:
    assert urls
    for url in urls:
        assert url.startswith(settings.STATIC_URL), url
        assert finders.find(url.removeprefix(settings.STATIC_URL)) is not None, url


def test_the_swagger_docs_load_nothing_from_another_site(client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert ANY_URL.findall(html) == []
    resources = _resources(html)
    assert resources.scripts == [
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js",
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-standalone-preset.js",
        "/api/docs/?script=",  # the page's own set-up script: served, not inline (CSP)
    ]
    _assert_static_files_of_this_site(resources.scripts[:2] + resources.links)


def test_redoc_would_load_its_script_from_this_site():
    # Not mounted today; REDOC_DIST is pinned so mounting it cannot bring the CDN's script
    # back. (Its stock template still links Google Fonts: override it before mounting.)
    response = SpectacularRedocView.as_view(url="/api/schema/")(RequestFactory().get("/"))

    scripts = _resources(response.render().content.decode()).scripts
    assert scripts == ["/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js"]
    _assert_static_files_of_this_site(scripts)
