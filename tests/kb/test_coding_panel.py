"""The interview page's coding panel without scripts: the codebook as a tree, a new theme
added from the page, marked passages that the keyboard reaches, and a typed quote that
occurs more than once coded where the coder chooses."""

import pytest
from django.urls import reverse

from kb.forms import MAX_OCCURRENCE_CHOICES
from kb.models import Highlight, Theme
from tests.factories import InterviewFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

TWICE = "At first the probe was wrong. We fixed it; later the probe was wrong again."
PASSAGE = "the probe was wrong"


def _page(client, interview) -> str:
    return client.get(reverse("interview-detail", args=[interview.pk])).content.decode()


def test_the_codebook_shows_as_a_tree_with_sub_themes_folded_under_their_theme(client_r):
    parent = ThemeFactory(name="Tools")
    child = ThemeFactory(name="Probes", parent=parent)
    ThemeFactory(name="Aims")

    response = client_r.get(reverse("interview-detail", args=[InterviewFactory().pk]))

    tree = response.context["codebook"]
    assert [node.theme.name for node in tree] == ["Aims", "Tools"]
    assert [node.theme for node in tree[1].children] == [child]
    html = response.content.decode()
    assert "<summary>Sub-themes of Tools (1)</summary>" in html
    assert f'<input type="checkbox" name="themes" value="{child.pk}">' in html


def test_a_theme_added_from_the_page_returns_to_the_page(client_r):
    interview, parent = InterviewFactory(), ThemeFactory(name="Tools")
    url = reverse("interview-theme-create", args=[interview.pk])

    response = client_r.post(
        url, {"theme-name": "Probes", "theme-parent": parent.pk, "theme-colour": "#112233"}
    )

    theme = Theme.objects.get(name="Probes")
    assert (theme.parent, theme.colour) == (parent, "#112233")
    assert response.status_code == 302
    assert response.url == reverse("interview-detail", args=[interview.pk]) + "#code-heading"


def test_a_script_adding_a_theme_gets_the_theme_or_its_errors_as_json(client_r):
    interview, parent = InterviewFactory(), ThemeFactory(name="Tools")
    url = reverse("interview-theme-create", args=[interview.pk])
    json = {"HTTP_ACCEPT": "application/json"}

    added = client_r.post(
        url, {"theme-name": "Probes", "theme-parent": parent.pk, "theme-colour": "#112233"}, **json
    )
    with nothing_written():
        again = client_r.post(
            url,
            {"theme-name": "Probes", "theme-parent": parent.pk, "theme-colour": "#112233"},
            **json,
        )
        unnamed = client_r.post(url, {"theme-name": "", "theme-colour": "#112233"}, **json)

    theme = Theme.objects.get(name="Probes")
    assert (added.status_code, added.json()) == (
        201, {"id": theme.pk, "name": "Probes", "colour": "#112233", "parent": parent.pk},
    )  # fmt: skip
    assert again.status_code == 400
    assert again.json()["errors"]["__all__"][0]["message"] == (
        "A sibling theme already has this name."
    )
    assert unnamed.json()["errors"]["name"][0]["message"] == "This field is required."


def test_a_refused_theme_shows_its_error_beside_the_field_on_the_page(client_r):
    interview = InterviewFactory()
    with nothing_written():
        response = client_r.post(
            reverse("interview-theme-create", args=[interview.pk]),
            {"theme-name": "", "theme-colour": "#112233"},
        )
    assert response.status_code == 400
    assert response.context["theme_form"].errors["name"] == ["This field is required."]
    assert '<details class="new-theme" open>' in response.content.decode()


@pytest.mark.parametrize("role", ["viewer", "outsider", "anonymous"])
def test_only_those_who_may_add_themes_add_them_from_the_page(world, as_role, role):
    client = as_role(role)
    with nothing_written():
        response = client.post(
            reverse("interview-theme-create", args=[world.interview.pk]),
            {"theme-name": "Sneaky", "theme-colour": "#112233"},
        )
    assert response.status_code == (302 if role == "anonymous" else 403)


def test_marked_passages_are_focusable_and_described_by_their_themes(client_r):
    interview = InterviewFactory()
    first, second = ThemeFactory(name="Aims"), ThemeFactory(name="Tools")
    start = interview.transcript.index("actionable steps")
    highlight = Highlight.objects.create(
        interview=interview, start=start, end=start + 16, quote="actionable steps"
    )
    highlight.themes.set([first, second])

    html = _page(client_r, interview)

    assert (
        f'<mark class="hl" tabindex="0" title="Aims, Tools" '
        f'aria-describedby="highlight-{highlight.pk}-themes"'
    ) in html
    assert f'<span id="highlight-{highlight.pk}-themes">Coded with Aims, Tools.</span>' in html


def test_a_typed_quote_found_twice_asks_which_occurrence_and_codes_the_chosen_one(client_r):
    interview, theme = InterviewFactory(transcript=TWICE), ThemeFactory()
    url = reverse("highlight-create", args=[interview.pk])
    second = TWICE.index(PASSAGE, 1)

    with nothing_written():
        asked = client_r.post(url, {"quote": PASSAGE, "themes": [theme.pk]})
    chosen = client_r.post(url, {"quote": PASSAGE, "themes": [theme.pk], "occurrence": second})

    assert asked.status_code == 400
    form = asked.context["highlight_form"]
    assert form.errors["occurrence"] == [
        "This text occurs 2 times; choose the one you mean and save again."
    ]
    assert form.fields["occurrence"].choices == [
        (
            9,
            "At character 9: At first «the probe was wrong». "
            "We fixed it; later the probe was wrong…",
        ),
        (
            49,
            "At character 49: …the probe was wrong. "
            "We fixed it; later «the probe was wrong» again.",
        ),
    ]
    html = asked.content.decode()
    assert "Which occurrence?" in html
    assert f'value="{second}"' in html
    highlight = Highlight.objects.get()
    assert chosen.url == highlight.get_absolute_url()
    assert (highlight.start, highlight.end) == (second, second + len(PASSAGE))


def test_an_occurrence_that_is_not_one_asks_again_and_writes_nothing(client_r):
    interview, theme = InterviewFactory(transcript=TWICE), ThemeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("highlight-create", args=[interview.pk]),
            {"quote": PASSAGE, "themes": [theme.pk], "occurrence": 3},
        )
    assert response.status_code == 400
    assert list(response.context["highlight_form"].errors) == ["occurrence"]


def test_a_typed_quote_found_too_often_asks_for_a_longer_passage(client_r):
    interview, theme = InterviewFactory(transcript="a " * 50_000), ThemeFactory()
    with nothing_written():
        response = client_r.post(
            reverse("highlight-create", args=[interview.pk]), {"quote": "a", "themes": [theme.pk]}
        )
    assert response.status_code == 400
    form = response.context["highlight_form"]
    assert form.errors["quote"] == [
        f"This text occurs more than {MAX_OCCURRENCE_CHOICES} times; type a longer passage "
        "so that it says which one you mean."
    ]
    assert "Which occurrence?" not in response.content.decode()
