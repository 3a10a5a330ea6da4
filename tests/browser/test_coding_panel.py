"""The coding panel in Chromium: a theme added inline keeps the selection and codes it; coding
by keyboard alone (a typed quote, a ticked theme, Enter) makes a highlight that Tab reaches and
whose themes are announced; a typed quote found twice is coded where the coder chooses."""

import pytest
from playwright.sync_api import expect

from kb.models import Highlight, Theme
from tests.browser.conftest import log_in
from tests.browser.test_newcomer_path import select_passage
from tests.factories import InterviewFactory, ThemeFactory

pytestmark = pytest.mark.django_db(transaction=True)

TRANSCRIPT = "At first the probe was wrong. We fixed it; later the probe was wrong again."
PASSAGE = "the probe was wrong"


@pytest.fixture
def coder(page, live_server, researcher_user):
    """Rita signed in; console errors (a refused script or style, say) collected."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    log_in(page, live_server, "rita", "pw-rita")
    return errors


def _open(page, live_server, interview) -> None:
    page.goto(f"{live_server.url}{interview.get_absolute_url()}")


def test_a_theme_added_inline_keeps_the_selection_and_codes_it(page, live_server, coder):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    tools = ThemeFactory(name="Tools")
    _open(page, live_server, interview)

    select_passage(page, "#transcript-source", "We fixed it")
    expect(page.locator("#selection-status")).to_have_text(
        "Selected 11 characters of the transcript."
    )
    page.get_by_text("New theme", exact=True).click()
    page.get_by_label("Name").fill("Repairs")
    page.get_by_label("Parent").select_option(label="Tools")
    page.get_by_role("button", name="Add the theme").click()

    expect(page.locator("[data-theme-status]")).to_have_text(
        "Theme Repairs added and ticked; your selection is kept."
    )
    expect(page.get_by_role("checkbox", name="Repairs")).to_be_checked()
    expect(page.get_by_role("checkbox", name="Repairs")).to_be_focused()
    assert page.evaluate("document.getSelection().toString()") == "We fixed it"
    theme = Theme.objects.get(name="Repairs")
    assert theme.parent == tools
    # The new theme sits under its parent in the tree.
    expect(page.locator(f'li[data-theme="{tools.pk}"] input[value="{theme.pk}"]')).to_have_count(1)

    page.get_by_role("button", name="Save the highlight").click()
    expect(page.locator("mark.hl")).to_have_text("We fixed it")
    highlight = Highlight.objects.get()
    start = TRANSCRIPT.index("We fixed it")
    assert (highlight.start, highlight.end, list(highlight.themes.all())) == (
        start, start + 11, [theme],
    )  # fmt: skip
    assert coder == []


def test_a_refused_inline_theme_shows_its_error_and_adds_nothing(page, live_server, coder):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    ThemeFactory(name="Tools")
    _open(page, live_server, interview)

    page.get_by_text("New theme", exact=True).click()
    page.get_by_label("Name").fill("Tools")
    page.get_by_role("button", name="Add the theme").click()

    expect(page.locator("[data-theme-status]")).to_have_text(
        "The theme was not added. A top-level theme already has this name."
    )
    assert Theme.objects.count() == 1
    # The browser logs the refused request (400) itself; nothing else went wrong.
    assert [error for error in coder if "400" not in error] == []


def test_keyboard_coding_makes_a_highlight_that_tab_reaches_and_announces(page, live_server, coder):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    ThemeFactory(name="Aims")
    ThemeFactory(name="Tools")
    _open(page, live_server, interview)

    page.get_by_label("Quote").focus()
    page.keyboard.type("We fixed it")
    page.keyboard.press("Tab")  # to the first theme of the tree, "Aims"
    page.keyboard.press("Tab")  # "Tools"
    expect(page.get_by_role("checkbox", name="Tools")).to_be_focused()
    page.keyboard.press("Space")
    page.keyboard.press("Enter")

    expect(page.get_by_text("Highlight saved")).to_be_visible()
    highlight = Highlight.objects.get()
    assert highlight.start == TRANSCRIPT.index("We fixed it")
    assert [theme.name for theme in highlight.themes.all()] == ["Tools"]
    # The page opens at the new highlight; the next Tab stop is its marked passage.
    page.keyboard.press("Tab")
    focused = page.locator("mark.hl:focus")
    expect(focused).to_have_text("We fixed it")
    expect(focused).to_have_accessible_description("Coded with Tools.")
    assert coder == []


def test_a_typed_quote_found_twice_asks_which_one_and_codes_the_chosen(page, live_server, coder):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    ThemeFactory(name="Tools")
    _open(page, live_server, interview)

    page.get_by_label("Quote").fill(PASSAGE)
    page.get_by_role("checkbox", name="Tools").check()
    page.get_by_role("button", name="Save the highlight").click()

    group = page.get_by_role("group", name="Which occurrence?")
    expect(group).to_have_accessible_description(
        "This text occurs 2 times; choose the one you mean and save again."
    )
    assert Highlight.objects.count() == 0
    expect(page.get_by_role("checkbox", name="Tools")).to_be_checked()
    group.get_by_role("radio", name="At character 49", exact=False).check()
    page.get_by_role("button", name="Save the highlight").click()

    expect(page.locator("mark.hl")).to_have_count(1)
    second = TRANSCRIPT.index(PASSAGE, 10)
    highlight = Highlight.objects.get()
    assert (highlight.start, highlight.end) == (second, second + len(PASSAGE))
    assert [error for error in coder if "400" not in error] == []


def test_without_scripts_a_new_theme_is_a_form_post_that_returns_to_the_page(
    browser, live_server, researcher_user
):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, live_server, "rita", "pw-rita")
        page.goto(f"{live_server.url}{interview.get_absolute_url()}")
        page.get_by_text("New theme", exact=True).click()
        page.get_by_label("Name").fill("Repairs")
        page.get_by_role("button", name="Add the theme").click()

        expect(page.get_by_text("Theme Repairs added to the codebook.")).to_be_visible()
        assert page.url.endswith(f"{interview.get_absolute_url()}#code-heading")
        page.get_by_label("Quote").fill("We fixed it")
        page.get_by_role("checkbox", name="Repairs").check()
        page.get_by_role("button", name="Save the highlight").click()
        expect(page.locator("mark.hl")).to_have_text("We fixed it")
        assert [t.name for t in Highlight.objects.get().themes.all()] == ["Repairs"]
    finally:
        context.close()
