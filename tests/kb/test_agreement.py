"""Agreement between coders (kb.agreement) against values worked out by hand, the coder each
highlight records (page, API, admin), and the agreement API and page.

Hand formulas, for two coders A and B over N characters (units):
    Cohen's kappa = (p_o - p_e) / (1 - p_e), p_o the share of units where A and B agree,
    p_e = p_A1 * p_B1 + p_A0 * p_B0 from each coder's share of coded (1) and uncoded (0) units.
For m coders who all code every unit (nominal, binary values):
    Krippendorff's alpha = 1 - (n - 1) * o_01 / (n_0 * n_1), with n = m * N values in all,
    n_0 and n_1 the number of 0 and 1 values, and o_01 = sum over units of a_u * b_u / (m - 1),
    a_u and b_u the coders who gave unit u a 0 and a 1.
"""

import math
import warnings

import krippendorff
import numpy as np
import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient
from sklearn.metrics import cohen_kappa_score

from kb.agreement import MAX_INTERVIEWS, agreement
from kb.models import Highlight
from kb.services.codebook import highlight_create
from tests.factories import InterviewFactory, ThemeFactory
from tests.helpers import nothing_written

# Users are created by many tests here.
pytestmark = pytest.mark.usefixtures("fast_passwords")

A, B, C = 1, 2, 3  # coders
T, U = 10, 20  # themes
I1, I2, I3 = 100, 200, 300  # interviews


def theme_row(lengths, spans, theme=T) -> dict:
    return agreement(lengths, spans)["themes"][theme]


# --- the computation, by hand -------------------------------------------------------------


def test_perfect_agreement_is_one():
    row = theme_row({I1: 10}, [(A, T, I1, 2, 6), (B, T, I1, 2, 6)])
    assert row == {"alpha": 1.0, "kappa": 1.0, "coded": {A: 4, B: 4}}


def test_systematic_disagreement_is_negative():
    # A codes "ab", B codes "cd" of "abcd": every unit disagrees.
    # kappa: p_o = 0, p_e = .5 * .5 + .5 * .5 = .5, so (0 - .5) / .5 = -1.
    # alpha: n = 8, n_0 = n_1 = 4, o_01 = 4 units * 1 * 1 / 1 = 4: 1 - 7 * 4 / 16 = -0.75.
    row = theme_row({I1: 4}, [(A, T, I1, 0, 2), (B, T, I1, 2, 4)])
    assert row["kappa"] == pytest.approx(-1.0)
    assert row["alpha"] == pytest.approx(-0.75)


def test_a_known_two_by_two_table():
    # 10 characters; A codes 0-5, B codes 2-7:
    #            B=1  B=0
    #     A=1     4    2
    #     A=0     2    2
    # kappa: p_o = 6/10, p_e = .6 * .6 + .4 * .4 = .52, (.6 - .52) / .48 = 1/6.
    # alpha: n = 20, n_1 = 12, n_0 = 8, o_01 = 4: 1 - 19 * 4 / 96 = 5/24.
    row = theme_row({I1: 10}, [(A, T, I1, 0, 6), (B, T, I1, 2, 8)])
    assert row["kappa"] == pytest.approx(1 / 6)
    assert row["alpha"] == pytest.approx(5 / 24)
    assert row["coded"] == {A: 6, B: 6}


def test_three_coders_get_alpha_and_no_kappa():
    # A 1100, B 1100, C 1000: only unit 1 is split (a=1, b=2): o_01 = 2/2 = 1;
    # n = 12, n_1 = 5, n_0 = 7: alpha = 1 - 11 * 1 / 35 = 24/35.
    spans = [(A, T, I1, 0, 2), (B, T, I1, 0, 2), (C, T, I1, 0, 1)]
    row = theme_row({I1: 4}, spans)
    assert row["alpha"] == pytest.approx(24 / 35)
    assert row["kappa"] is None


def test_overall_takes_each_theme_and_character_as_a_unit():
    # T: both code "ab" of "abcd"; U: A codes "a", B codes "b". Over the 8 units:
    # A 1100 1000, B 1100 0100: both 1: 2, A only: 1, B only: 1, neither: 4.
    # kappa: p_o = 6/8, p_e = (3/8)^2 + (5/8)^2 = 34/64: (48 - 34) / (64 - 34) = 7/15.
    # alpha: n = 16, n_1 = 6, n_0 = 10, o_01 = 2: 1 - 15 * 2 / 60 = 0.5.
    spans = [(A, T, I1, 0, 2), (B, T, I1, 0, 2), (A, U, I1, 0, 1), (B, U, I1, 1, 2)]
    result = agreement({I1: 4}, spans)
    assert result["themes"][T]["alpha"] == 1.0
    assert result["overall"]["kappa"] == pytest.approx(7 / 15)
    assert result["overall"]["alpha"] == pytest.approx(0.5)
    assert result["overall"]["coded"] == {A: 3, B: 3}


def test_one_coder_only_is_undefined():
    result = agreement({I1: 10}, [(A, T, I1, 0, 3)])
    assert result["themes"][T] == {"alpha": None, "kappa": None, "coded": {A: 3}}
    assert result["overall"]["alpha"] is None


def test_no_variation_is_undefined_not_zero():
    # Both code every character: nothing varies, so chance agreement is total.
    row = theme_row({I1: 5}, [(A, T, I1, 0, 5), (B, T, I1, 0, 5)])
    assert row == {"alpha": None, "kappa": None, "coded": {A: 5, B: 5}}


def test_nothing_coded_gives_no_themes_and_undefined_overall():
    result = agreement({I1: 5}, [])
    assert result == {
        "coders": [],
        "characters": 5,
        "themes": {},
        "overall": {"alpha": None, "kappa": None, "coded": {}},
    }


def test_interviews_are_concatenated_and_other_interviews_ignored():
    # I1 "abcd" + I2 "efgh": A codes I1 0-2, B codes I2 0-2 (past I2's end: cut at 4, a
    # transcript shortened since); C coded only I3, not chosen, so is no coder here.
    spans = [(A, T, I1, 0, 2), (B, T, I2, 0, 9), (C, T, I3, 0, 2), (A, T, I1, 1, 2)]
    result = agreement({I2: 4, I1: 4}, spans)
    assert result["coders"] == [A, B]
    assert result["characters"] == 8
    # A coded only I1 and B only I2: each is missing on the other's interview, so no unit
    # was seen by both and nothing is defined (not A 1100 0000 against B 0000 1111).
    assert result["themes"][T] == {"alpha": None, "kappa": None, "coded": {A: 2, B: 4}}


def test_a_coder_counts_only_on_interviews_they_coded():
    # The reviewer's case: A and B agree on I1; I2, coded only by A, changes nothing.
    agreeing = [(A, T, I1, 2, 6), (B, T, I1, 2, 6)]
    for spans in (agreeing, [*agreeing, (A, T, I2, 0, 5)]):
        result = agreement({I1: 10, I2: 10}, spans)
        assert result["themes"][T]["alpha"] == result["themes"][T]["kappa"] == 1.0
        assert result["overall"]["alpha"] == result["overall"]["kappa"] == 1.0


def test_a_highlight_on_any_theme_makes_a_coder_present():
    # B coded U on I2, so on I2 B saw T and left it uncoded: A 0011 1100, B 0011 0000.
    # 2x2 over 8 units: both 1: 2, A only: 2, neither: 4; p_o = 6/8,
    # p_e = (4/8)(2/8) + (4/8)(6/8) = 1/2: kappa = (3/4 - 1/2) / (1/2) = 1/2.
    spans = [(A, T, I1, 2, 4), (B, T, I1, 2, 4), (A, T, I2, 0, 2), (B, U, I2, 3, 4)]
    assert theme_row({I1: 4, I2: 4}, spans)["kappa"] == pytest.approx(0.5)


def per_character(lengths, spans, coders, themes) -> np.ndarray:
    """(coders, units) matrix, units each (theme, interview, character): 1 coded, 0 not, NaN
    where the coder has no highlight on the interview (missing), as the libraries take it."""
    present = {(coder, interview) for coder, _, interview, *_ in spans}
    blocks = []
    for theme in themes:
        for interview, length in sorted(lengths.items()):
            block = np.full((len(coders), length), np.nan)
            for row, coder in enumerate(coders):
                if (coder, interview) in present:
                    block[row] = 0
            for coder, span_theme, span_interview, start, end in spans:
                if (span_theme, span_interview) == (theme, interview):
                    block[coders.index(coder), start : min(end, length)] = 1
            blocks.append(block)
    return np.concatenate(blocks, axis=1)


def library_alpha(matrix: np.ndarray) -> float | None:
    try:
        value = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    except ValueError:  # a single value in the whole domain
        return None
    return None if math.isnan(value) else float(value)


def library_kappa(matrix: np.ndarray) -> float | None:
    both = ~np.isnan(matrix).any(axis=0)
    if not both.any():
        return None
    value = cohen_kappa_score(matrix[0, both], matrix[1, both], labels=[0, 1])
    return None if math.isnan(value) else float(value)


@pytest.mark.parametrize("seed", range(40))
def test_the_closed_forms_equal_the_libraries_on_random_cases(seed):
    random = np.random.default_rng(seed)
    coders = [A, B] if seed % 2 else [A, B, C]
    lengths = {I1: int(random.integers(1, 12)), I2: int(random.integers(1, 12)), I3: 5}
    spans = []
    for coder in coders:
        for interview in random.choice(list(lengths), size=int(random.integers(1, 3))):
            for _ in range(int(random.integers(1, 4))):
                start = int(random.integers(0, lengths[interview] + 1))
                end = start + int(random.integers(0, 6))  # may run past the end: cut there
                spans.append((coder, int(random.choice([T, U])), int(interview), start, end))
    result = agreement(lengths, spans)
    coders = result["coders"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no variation: the libraries warn, then answer nan
        for theme, row in result["themes"].items():
            matrix = per_character(lengths, spans, coders, [theme])
            assert row["alpha"] == pytest.approx(library_alpha(matrix))
            if len(coders) == 2:
                assert row["kappa"] == pytest.approx(library_kappa(matrix))
            assert row["coded"] == dict(zip(coders, np.nansum(matrix, axis=1), strict=True))
        matrix = per_character(lengths, spans, coders, sorted(result["themes"]))
        assert result["overall"]["alpha"] == pytest.approx(library_alpha(matrix))
        if len(coders) == 2:
            assert result["overall"]["kappa"] == pytest.approx(library_kappa(matrix))


def test_long_transcripts_need_no_per_character_arrays():
    # 50 transcripts of 200,000 characters, 30 themes: 300M (theme, character) units.
    random = np.random.default_rng(0)
    lengths = {interview: 200_000 for interview in range(1, 51)}
    spans = [
        (coder, theme, interview, start, start + int(random.integers(1, 5_000)))
        for coder in (A, B)
        for theme in range(1, 31)
        for interview in lengths
        for start in random.integers(0, 200_000, size=3).tolist()
    ]
    result = agreement(lengths, spans)
    assert result["coders"] == [A, B] and result["characters"] == 10_000_000
    assert sorted(result["themes"]) == list(range(1, 31))
    assert set(result["overall"]) == {"alpha", "kappa", "coded"}


# --- the coder of each highlight ----------------------------------------------------------

TRANSCRIPT = "We want actionable steps for improving the model, not pretty pictures."


@pytest.fixture(autouse=True)
def _fresh_throttles():
    # Throttle histories live in the cache; each test starts with a clean slate.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def interview(db):
    return InterviewFactory(transcript=TRANSCRIPT)


@pytest.fixture
def theme(db):
    return ThemeFactory(name="Actionability")


def code(user, interview, theme, start: int, end: int) -> Highlight:
    return highlight_create(
        actor=user, interview=interview, start=start, end=end,
        quote=interview.transcript[start:end], themes=[theme],
    )  # fmt: skip


def test_the_page_records_the_coder_and_shows_it(client, researcher_user, interview, theme):
    client.force_login(researcher_user)
    response = client.post(
        reverse("highlight-create", args=[interview.pk]),
        {"start": 8, "end": 24, "quote": TRANSCRIPT[8:24], "themes": [theme.pk]},
    )
    assert response.status_code == 302
    assert Highlight.objects.get().coder == researcher_user
    page = client.get(reverse("interview-detail", args=[interview.pk])).content.decode()
    assert "coded by rita" in page
    assert f"{reverse('agreement')}?interview={interview.pk}" in page


def test_the_api_records_the_coder_read_only(researcher_user, staff_user, interview, theme):
    api = APIClient()
    api.force_authenticate(researcher_user)
    body = {"interview": interview.pk, "start": 0, "end": 7, "quote": TRANSCRIPT[:7],
            "themes": [theme.pk]}  # fmt: skip
    response = api.post("/api/highlights/", body, format="json")
    assert response.status_code == 201
    assert response.json()["coder"] == researcher_user.pk
    assert Highlight.objects.get().coder == researcher_user
    # The coder is who is signed in; a body naming another is refused, nothing written.
    with nothing_written():
        refused = api.post("/api/highlights/", {**body, "coder": staff_user.pk}, format="json")
    assert refused.status_code == 400


def test_the_admin_records_the_acting_user_as_coder(client, staff_user, interview, theme):
    client.force_login(staff_user)
    response = client.post(
        "/admin/kb/highlight/add/",
        {"interview": interview.pk, "source": "transcript", "start": 0, "end": 7,
         "quote": TRANSCRIPT[:7], "themes": [theme.pk], "note": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[-2000:]
    highlight = Highlight.objects.get()
    assert (highlight.coder, highlight.created_by) == (staff_user, staff_user)


def test_old_highlights_without_a_coder_do_not_count(researcher_user, interview, theme):
    code(researcher_user, interview, theme, 0, 7)
    Highlight.objects.update(coder=None)
    api = APIClient()
    api.force_authenticate(researcher_user)
    data = api.get("/api/statistics/agreement/", {"interview": interview.pk}).json()
    assert data["coders"] == [] and data["themes"] == []


# --- the API and the page -----------------------------------------------------------------

URL = "/api/statistics/agreement/"


@pytest.fixture
def coded(researcher_user, staff_user, interview, theme):
    """rita and sam code the interview's first 24 characters: rita 0-16, sam 8-24."""
    code(researcher_user, interview, theme, 0, 16)
    code(staff_user, interview, theme, 8, 24)
    return interview


def test_the_api_answers_per_theme_and_overall(researcher_user, staff_user, coded, theme):
    api = APIClient()
    api.force_authenticate(researcher_user)
    response = api.get(URL, {"interview": coded.pk})
    assert response.status_code == 200
    data = response.json()
    n = len(TRANSCRIPT)  # rita 0-16, sam 8-24: both 8, one only 8 each, neither n - 24
    p_o, p_e = (n - 16) / n, (16 / n) ** 2 + ((n - 16) / n) ** 2
    coders = [
        {"coder": researcher_user.pk, "username": "rita", "coded_characters": 16},
        {"coder": staff_user.pk, "username": "sam", "coded_characters": 16},
    ]
    assert data["interviews"] == [coded.pk]
    assert data["characters"] == n
    assert [row["theme"] for row in data["themes"]] == [theme.pk]
    assert data["themes"][0]["name"] == "Actionability"
    assert data["themes"][0]["coders"] == coders
    assert data["themes"][0]["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e))
    alpha = 1 - (2 * n - 1) * 16 / ((2 * n - 32) * 32)
    assert data["themes"][0]["alpha"] == pytest.approx(alpha)
    assert data["overall"]["kappa"] == pytest.approx(data["themes"][0]["kappa"])


@pytest.mark.parametrize(
    ("role", "status"),
    [("anonymous", 401), ("outsider", 403), ("viewer", 403), ("researcher", 200),
     ("staff", 200)],
)  # fmt: skip
def test_the_api_answers_each_role_as_highlights_do(request, coded, role, status):
    api = APIClient()
    if role != "anonymous":
        api.force_authenticate(request.getfixturevalue(f"{role}_user"))
    assert api.get(URL, {"interview": coded.pk}).status_code == status
    assert api.get("/api/highlights/").status_code == status


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({}, "Choose at least one interview"),
        ({"interview": "abc"}, "A valid integer is required."),
        ({"interview": 2**70}, "Ensure this value is less than or equal to"),
        ({"interview": 999999}, "No interview with id 999999."),
        ({"interview": list(range(1, MAX_INTERVIEWS + 2))}, "Ensure this field has no more"),
    ],
)
def test_the_api_refuses_bad_interview_ids_with_a_field_error(researcher_user, query, message):
    api = APIClient()
    api.force_authenticate(researcher_user)
    response = api.get(URL, query)
    assert response.status_code == 400
    assert message in str(response.json()["interview"])


def test_the_schema_lists_the_agreement_endpoint(db):
    schema = APIClient().get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"][URL]["get"]
    assert operation["operationId"] == "statistics_agreement"
    [parameter] = [p for p in operation["parameters"] if p["name"] == "interview"]
    assert parameter["required"] is True and parameter["schema"]["type"] == "array"
    assert {"200", "400", "403"} <= set(operation["responses"])


def test_the_selector_runs_two_queries(coded, django_assert_num_queries):
    from kb.selectors import interview_agreement

    with django_assert_num_queries(2):
        interview_agreement([coded.pk])


def test_the_page_shows_the_table_and_undefined(client, researcher_user, coded):
    client.force_login(researcher_user)
    page = client.get(reverse("agreement"), {"interview": coded.pk})
    assert page.status_code == 200
    text = page.content.decode()
    assert "Actionability" in text and "Characters coded by sam" in text
    alone = InterviewFactory(transcript="Short.")
    code(researcher_user, alone, ThemeFactory(name="Alone"), 0, 5)
    text = client.get(reverse("agreement"), {"interview": alone.pk}).content.decode()
    assert "undefined" in text


def test_the_page_refuses_viewers_and_unknown_ids(client, researcher_user, viewer_user):
    client.force_login(viewer_user)
    assert client.get(reverse("agreement")).status_code == 403
    client.force_login(researcher_user)
    assert client.get(reverse("agreement")).status_code == 200
    refused = client.get(reverse("agreement"), {"interview": 999999})
    assert refused.status_code == 400
    assert "Select a valid choice" in refused.content.decode()
