"""Coding rounds: starting one, blind coding on every page that shows highlights, marking a
part done, closing, the disagreements side by side and the consensus version, and theme
statistics per coder or for the consensus.

The cast: ann and ben code the round's interview; rita is a researcher outside the round.
The transcript is 40 characters; ann codes [0, 10) and [20, 30) with the theme, ben [0, 10)
and [25, 35): they agree on [0, 10) and differ on [20, 35).
"""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from kb import agreement, selectors, statistics
from kb.models import Event, Highlight, InsightHighlight
from kb.roles import RESEARCHER
from kb.services import coding_rounds
from kb.services.codebook import highlight_create, highlight_delete, highlight_update
from tests.factories import InsightFactory, InterviewFactory, ThemeFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_passwords")]

TRANSCRIPT = "abcdefghij" + "ABCDEFGHIJ" + "klmnopqrst" + "KLMNOPQRST"  # 40 characters


def make_coder(django_user_model, name):
    user = django_user_model.objects.create_user(username=name, password="pw-" + name)
    user.groups.add(Group.objects.get(name=RESEARCHER))
    return django_user_model.objects.get(pk=user.pk)  # fresh permission cache


def code(user, interview, theme, start, end):
    return highlight_create(
        actor=user, interview=interview, start=start, end=end,
        quote=interview.transcript[start:end], themes=[theme],
    )  # fmt: skip


@pytest.fixture
def cast(roles, django_user_model, researcher_user):
    ann = make_coder(django_user_model, "ann")
    ben = make_coder(django_user_model, "ben")
    return {"ann": ann, "ben": ben, "rita": researcher_user}


@pytest.fixture
def coded(cast):
    interview = InterviewFactory(transcript=TRANSCRIPT)
    other = InterviewFactory(transcript=TRANSCRIPT)
    theme = ThemeFactory(name="Actionability")
    ann, ben = cast["ann"], cast["ben"]
    highlights = {
        "ann_agreed": code(ann, interview, theme, 0, 10),
        "ann_own": code(ann, interview, theme, 20, 30),
        "ben_agreed": code(ben, interview, theme, 0, 10),
        "ben_own": code(ben, interview, theme, 25, 35),
        "ben_other": code(ben, other, theme, 10, 20),  # not in the round
    }
    coding_round = coding_rounds.round_start(
        actor=cast["rita"], name="Round one", interviews=[interview], coders=[ann, ben]
    )
    return {
        **cast, **highlights, "interview": interview, "other": other, "theme": theme,
        "round": coding_round,
    }  # fmt: skip


def visible(user) -> set[int]:
    return set(selectors.highlights_visible(user=user).values_list("pk", flat=True))


# --- the pure parts: passages and consensus spans -------------------------------------------


def test_passages_split_where_some_coder_codes_and_mark_agreement():
    found = agreement.passages({1: [(0, 10), (20, 30)], 2: [(0, 10), (25, 35)], 3: []})
    assert found == [
        {"start": 0, "end": 10, "agreed": False, "spans": {1: [(0, 10)], 2: [(0, 10)], 3: []}},
        {"start": 20, "end": 35, "agreed": False,
         "spans": {1: [(20, 30)], 2: [(25, 35)], 3: []}},
    ]  # fmt: skip
    two = agreement.passages({1: [(0, 10), (20, 30)], 2: [(0, 10), (25, 35)]})
    assert [(p["start"], p["end"], p["agreed"]) for p in two] == [(0, 10, True), (20, 35, False)]


def test_consensus_spans_follow_the_decision():
    passage = {"start": 20, "end": 35, "agreed": False, "spans": {1: [(20, 30)], 2: [(25, 35)]}}
    assert agreement.consensus_spans(passage, "coder:1") == [(20, 30)]
    assert agreement.consensus_spans(passage, "coder:2") == [(25, 35)]
    assert agreement.consensus_spans(passage, "keep") == [(20, 35)]
    assert agreement.consensus_spans(passage, "drop") == []
    for bad in (None, "", "coder:3", "coder:x", "maybe"):
        with pytest.raises(ValueError):
            agreement.consensus_spans(passage, bad)
    agreed = {"start": 0, "end": 10, "agreed": True, "spans": {1: [(0, 10)], 2: [(0, 10)]}}
    assert agreement.consensus_spans(agreed, None) == [(0, 10)]
    assert agreement.decision_choices([1, 2]) == ["coder:1", "coder:2", "keep", "drop"]


# --- starting, marking done, closing ----------------------------------------------------------


def test_a_round_starts_with_its_coders_and_logs_it(coded):
    coding_round = coded["round"]
    assert list(coding_round.interviews.all()) == [coded["interview"]]
    assert [(p.coder.username, p.done_at) for p in coding_round.coders.all()] == [
        ("ann", None), ("ben", None),
    ]  # fmt: skip
    assert coding_round.created_by == coded["rita"] and coding_round.closed_at is None
    logged = Event.objects.filter(target_id=coding_round.pk, target_label="Round one")
    assert sorted(logged.values_list("action", flat=True)) == ["created", "linked", "linked"]


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"interviews": []}, "interviews", "Choose at least one interview."),
        ({"coders": "one"}, "coders", "Choose at least 2 coders."),
        ({"coders": "viewer"}, "coders", "These users may not code (create highlights): victor."),
    ],
)
def test_a_bad_round_is_refused_and_nothing_written(coded, viewer_user, change, field, message):
    kwargs = {"name": "Bad", "interviews": [coded["interview"]],
              "coders": [coded["ann"], coded["ben"]]}  # fmt: skip
    if change.get("coders") == "one":
        change = {"coders": [coded["ann"], coded["ann"]]}  # the same coder twice is one
    elif change.get("coders") == "viewer":
        change = {"coders": [coded["ann"], viewer_user]}
    kwargs.update(change)
    with nothing_written(), pytest.raises(ValidationError) as raised:
        coding_rounds.round_start(actor=coded["rita"], **kwargs)
    assert raised.value.message_dict == {field: [message]}


def test_marking_done_once_and_only_as_a_coder(coded):
    coding_round = coded["round"]
    part = coding_rounds.round_mark_done(actor=coded["ann"], coding_round=coding_round)
    assert part.done_at is not None
    assert Event.objects.filter(action="status_changed", target_id=part.pk).count() == 1
    for actor, message in [
        (coded["ann"], "You have already marked your part done."),
        (coded["rita"], "You are not a coder in this round."),
    ]:
        with nothing_written(), pytest.raises(ValidationError) as raised:
            coding_rounds.round_mark_done(actor=actor, coding_round=coding_round)
        assert raised.value.messages == [message]


def test_closing_once_and_a_closed_round_takes_no_done(coded):
    coding_round = coding_rounds.round_close(actor=coded["rita"], coding_round=coded["round"])
    assert coding_round.closed_at is not None
    for change, actor, message in [
        (coding_rounds.round_close, coded["rita"], "This round is already closed."),
        (coding_rounds.round_mark_done, coded["ben"], "This round is closed."),
    ]:
        with nothing_written(), pytest.raises(ValidationError) as raised:
            change(actor=actor, coding_round=coding_round)
        assert raised.value.messages == [message]


# --- blind coding: the one rule ---------------------------------------------------------------


def test_a_blind_coder_sees_only_their_own_highlights_on_the_round_interviews(coded):
    ann_sees = {coded["ann_agreed"].pk, coded["ann_own"].pk, coded["ben_other"].pk}
    everything = ann_sees | {coded["ben_agreed"].pk, coded["ben_own"].pk}
    assert visible(coded["ann"]) == ann_sees
    assert visible(coded["rita"]) == everything  # not in the round
    assert visible(None) == everything  # the services' and commands' own reads
    coding_rounds.round_mark_done(actor=coded["ann"], coding_round=coded["round"])
    assert visible(coded["ann"]) == everything
    assert visible(coded["ben"]) == everything - {coded["ann_agreed"].pk, coded["ann_own"].pk}
    coding_rounds.round_close(actor=coded["rita"], coding_round=coded["round"])
    assert visible(coded["ben"]) == everything


def test_a_blind_coder_sees_no_consensus_or_coderless_highlights(coded):
    old = Highlight.objects.create(
        interview=coded["interview"], start=1, end=3, quote=TRANSCRIPT[1:3]
    )
    assert old.pk not in visible(coded["ann"])
    assert old.pk in visible(coded["rita"])


# --- blind coding on the pages ----------------------------------------------------------------


def page(client, user, url, status=200):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == status, url
    return response.content.decode()


def test_the_interview_page_is_blind_and_says_so(client, coded):
    url = coded["interview"].get_absolute_url()
    ann_page = page(client, coded["ann"], url)
    assert f'id="highlight-{coded["ann_own"].pk}"' in ann_page
    assert f'id="highlight-{coded["ben_own"].pk}"' not in ann_page
    assert "You code this interview blind in" in ann_page
    assert reverse("coding-round-detail", args=[coded["round"].pk]) in ann_page
    rita_page = page(client, coded["rita"], url)
    assert f'id="highlight-{coded["ben_own"].pk}"' in rita_page
    assert "blind" not in rita_page


def test_the_theme_page_lists_only_what_the_blind_coder_may_see(client, coded):
    url = coded["theme"].get_absolute_url()
    ann_page = page(client, coded["ann"], url)
    assert "klmno" in ann_page  # ann's [20, 30) ends in "klmnopqrst"'s first half
    assert "pqrstKLMNO" not in ann_page  # ben's [25, 35)
    assert "pqrstKLMNO" in page(client, coded["rita"], url)


def test_the_insight_page_hides_another_coders_quote_from_a_blind_coder(client, coded):
    insight = InsightFactory()
    InsightHighlight.objects.create(insight=insight, highlight=coded["ben_own"])
    assert "pqrstKLMNO" not in page(client, coded["ann"], insight.get_absolute_url())
    assert "pqrstKLMNO" in page(client, coded["rita"], insight.get_absolute_url())


def test_another_coders_highlight_edit_page_is_404_while_blind(client, coded):
    url = reverse("highlight-update", args=[coded["ben_own"].pk])
    page(client, coded["ann"], url, status=404)
    page(client, coded["rita"], url)


def test_the_agreement_page_counts_only_the_blind_coders_own_coding(client, coded):
    url = reverse("agreement") + f"?interview={coded['interview'].pk}"
    ann_page = page(client, coded["ann"], url)
    assert "Characters coded by ann" in ann_page and "Characters coded by ben" not in ann_page
    assert "Characters coded by ben" in page(client, coded["rita"], url)


# --- the round's page: disagreements side by side, consensus ------------------------------


def test_the_round_page_hides_the_others_work_from_a_blind_coder(client, coded):
    url = coded["round"].get_absolute_url()
    ann_page = page(client, coded["ann"], url)
    assert "You code blind in this round" in ann_page
    assert "Where the coders differ" not in ann_page and "pqrstKLMNO" not in ann_page
    assert "Mark my part done" in ann_page


def both_done(coded):
    for coder in ("ann", "ben"):
        coding_rounds.round_mark_done(actor=coded[coder], coding_round=coded["round"])


def test_the_round_page_shows_each_disagreement_side_by_side_with_agreement(client, coded):
    both_done(coded)
    text = page(client, coded["rita"], coded["round"].get_absolute_url())
    assert "Where the coders differ (1)" in text
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    assert f'id="{key}"' in text
    assert "<blockquote>klmnopqrstKLMNO</blockquote>" in text  # the passage [20, 35)
    assert "20–30</span> klmnopqrst" in text and "25–35</span> pqrstKLMNO" in text
    assert f'value="coder:{coded["ann"].pk}"' in text and 'value="drop"' in text
    # 40 characters: both code [0, 10), ann [20, 25) alone, both [25, 30), ben [30, 35) alone.
    # p_o = 30/40, each codes 20/40: p_e = .5, kappa = (.75 - .5) / .5 = .5.
    # alpha: n = 80, n_1 = n_0 = 40, o_01 = 10 units * 1 * 1 = 10: 1 - 79 * 10 / 1600.
    report = selectors.round_report(coded["round"])
    assert report["before"]["kappa"] == pytest.approx(0.5)
    assert report["before"]["alpha"] == pytest.approx(1 - 79 * 10 / 1600)
    assert report["after"] == [] and report["has_consensus"] is False


def consensus_url(coded):
    return reverse("coding-round-consensus", args=[coded["round"].pk])


def test_the_consensus_is_refused_until_every_coder_is_done(client, coded):
    client.force_login(coded["rita"])
    with nothing_written():
        response = client.post(consensus_url(coded), {})
    assert response.status_code == 302
    follow = client.get(response.url).content.decode()
    assert "Every coder must mark their part done before the consensus." in follow


def test_a_missing_or_bad_decision_is_refused_beside_its_passage(client, coded):
    both_done(coded)
    client.force_login(coded["rita"])
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    for data, message in [
        ({}, "Pick a coder&#x27;s version, keep or drop."),
        ({key: "coder:999"}, "Not a choice here: coder:999."),
        ({key: "keep", "d-1-2-3-4": "keep"}, "No such passage in this round"),
    ]:
        with nothing_written():
            response = client.post(consensus_url(coded), data)
        assert response.status_code == 400
        assert message in response.content.decode()


def test_the_consensus_takes_the_chosen_version_and_shows_agreement_after(client, coded):
    both_done(coded)
    client.force_login(coded["rita"])
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    response = client.post(consensus_url(coded), {key: f"coder:{coded['ann'].pk}"})
    assert response.status_code == 302
    consensus = Highlight.objects.filter(is_consensus=True).order_by("start")
    assert [(h.start, h.end, h.quote, h.coder, h.created_by) for h in consensus] == [
        (0, 10, TRANSCRIPT[0:10], None, coded["rita"]),
        (20, 30, TRANSCRIPT[20:30], None, coded["rita"]),
    ]
    assert [list(h.themes.all()) for h in consensus] == [[coded["theme"]]] * 2
    report = selectors.round_report(coded["round"])
    after = {row["username"]: (row["alpha"], row["kappa"]) for row in report["after"]}
    assert after["ann"] == (1.0, 1.0)  # ann's version was chosen throughout
    # ben against the consensus: both [0, 10) and [25, 30); consensus alone [20, 25), ben
    # alone [30, 35): the same table as ann against ben before.
    assert after["ben"] == (pytest.approx(1 - 79 * 10 / 1600), pytest.approx(0.5))
    # The consensus is no coder: agreement between coders is as before.
    result = selectors.interview_agreement([coded["interview"].pk])
    assert [c["username"] for c in result["coders"]] == ["ann", "ben"]
    assert result["overall"]["kappa"] == pytest.approx(0.5)
    page_text = client.get(response.url).content.decode()
    assert "Each coder against the consensus" in page_text
    assert "Rebuild the consensus" in page_text


def test_rebuilding_keeps_what_still_holds_and_replaces_the_rest(coded):
    both_done(coded)
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    build = coding_rounds.round_consensus_build
    first = build(actor=coded["rita"], coding_round=coded["round"], decisions={key: "keep"})
    assert first == {"created": 2, "deleted": 0, "kept": 0}
    again = build(actor=coded["rita"], coding_round=coded["round"], decisions={key: "keep"})
    assert again == {"created": 0, "deleted": 0, "kept": 2}
    dropped = build(actor=coded["rita"], coding_round=coded["round"], decisions={key: "drop"})
    assert dropped == {"created": 0, "deleted": 1, "kept": 1}
    spans = Highlight.objects.filter(is_consensus=True).values_list("start", "end")
    assert list(spans) == [(0, 10)]


# --- theme statistics per coder and for the consensus ---------------------------------------


def test_theme_statistics_per_coder_and_for_the_consensus(coded):
    both_done(coded)
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    coding_rounds.round_consensus_build(
        actor=coded["rita"], coding_round=coded["round"], decisions={key: "drop"}
    )

    def row(**scope):
        stats = statistics.theme_prevalence(**scope)
        (theme,) = [r for r in stats["themes"] if r["theme"] == coded["theme"].pk]
        return theme["highlights"], theme["researchers"]["count"], theme["researchers"]["n"]

    # Every coder: 5 highlights over the two interviews' researchers (two researchers).
    assert row() == (5, 2, 2)
    assert row(coder_id=coded["ann"].pk) == (2, 1, 1)  # ann coded only the round interview
    assert row(coder_id=coded["ben"].pk) == (3, 2, 2)
    assert row(consensus=True) == (1, 1, 1)  # [0, 10) only
    assert row(coder_id=coded["rita"].pk) == (0, 0, 0)


def test_the_theme_list_page_counts_one_coder_or_the_consensus(client, coded, viewer_user):
    both_done(coded)
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    coding_rounds.round_consensus_build(
        actor=coded["rita"], coding_round=coded["round"], decisions={key: "drop"}
    )
    url = reverse("theme-list")
    assert "2 of 2" in page(client, coded["rita"], url)
    assert "1 of 1" in page(client, coded["rita"], f"{url}?coder={coded['ann'].pk}")
    assert "1 of 1" in page(client, coded["rita"], f"{url}?version=consensus")
    both = f"{url}?coder={coded['ann'].pk}&version=consensus"
    assert "Choose one coder or the consensus version, not both." in page(
        client, coded["rita"], both, status=400
    )
    page(client, coded["rita"], f"{url}?coder=abc", status=400)
    assert "1 of 1" in page(client, viewer_user, f"{url}?version=consensus")
    page(client, viewer_user, f"{url}?coder={coded['ann'].pk}", status=403)


def test_the_round_page_runs_as_many_queries_for_more_coding(client, coded):
    # Closed rather than every part done: a coder who is done may not code more meanwhile.
    coding_rounds.round_close(actor=coded["rita"], coding_round=coded["round"])
    client.force_login(coded["rita"])
    url = coded["round"].get_absolute_url()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    few = queries()
    other_theme = ThemeFactory(name="Speed")
    for start in (0, 12, 24):
        code(coded["ann"], coded["interview"], other_theme, start, start + 5)
        code(coded["ben"], coded["interview"], other_theme, start + 2, start + 6)
    assert queries() == few


# --- the review's fixes: the event log, other rounds, statistics and counts under blindness --


def highlight_events(user) -> set[tuple[str, int]]:
    return set(
        selectors.event_list_visible(user=user)
        .filter(target_type__model="highlight")
        .values_list("action", "target_id")
    )


def test_the_event_log_hides_other_coders_highlights_from_a_blind_coder(client, coded):
    gone = coded["ben_own"].pk
    highlight_delete(actor=coded["ben"], highlight=coded["ben_own"])
    ann_sees = highlight_events(coded["ann"])
    own = {coded["ann_agreed"].pk, coded["ann_own"].pk}
    assert ann_sees == {(action, pk) for pk in own | {coded["ben_other"].pk}
                        for action in ("created", "linked")}  # fmt: skip
    rita_sees = highlight_events(coded["rita"])
    assert {("created", coded["ben_agreed"].pk), ("deleted", gone)} <= rita_sees
    # The dashboard reads the same rule.
    client.force_login(coded["ann"])
    shown = client.get(reverse("dashboard")).context["events"]
    assert {(e.action, e.target_id) for e in shown if e.target_type.model == "highlight"} <= (
        ann_sees
    )
    coding_rounds.round_mark_done(actor=coded["ann"], coding_round=coded["round"])
    assert highlight_events(coded["ann"]) == rita_sees


@pytest.fixture
def later_round(coded, django_user_model):
    """An open round B on the same interview in which ann codes blind, while round one
    (A) is closed."""
    coding_rounds.round_close(actor=coded["rita"], coding_round=coded["round"])
    carl = make_coder(django_user_model, "carl")
    return coding_rounds.round_start(
        actor=coded["rita"], name="Round two", interviews=[coded["interview"]],
        coders=[coded["ann"], carl],
    )  # fmt: skip


def test_a_closed_rounds_page_hides_the_spans_while_blind_in_another_round(
    client, coded, later_round
):
    url = coded["round"].get_absolute_url()
    ann_page = page(client, coded["ann"], url)
    assert "You code blind in another open round" in ann_page
    assert "pqrstKLMNO" not in ann_page and "Where the coders differ" not in ann_page
    assert selectors.coding_round_report_for(coded["round"], user=coded["ann"]) is None
    assert "pqrstKLMNO" in page(client, coded["rita"], url)
    coding_rounds.round_mark_done(actor=coded["ann"], coding_round=later_round)
    assert "pqrstKLMNO" in page(client, coded["ann"], url)


def test_per_coder_statistics_count_only_what_the_blind_caller_may_see(client, coded):
    def row(user, **scope):
        stats = statistics.theme_prevalence(user=user, **scope)
        (theme,) = [r for r in stats["themes"] if r["theme"] == coded["theme"].pk]
        return theme["highlights"], theme["researchers"]["count"], theme["researchers"]["n"]

    ben = coded["ben"].pk
    assert row(coded["rita"], coder_id=ben) == (3, 2, 2)
    assert row(coded["ann"], coder_id=ben) == (1, 1, 1)  # only ben's outside the round
    assert row(coded["ann"]) == (3, 2, 2)  # ann's two and ben's outside the round
    url = f"{reverse('theme-list')}?coder={ben}"
    assert "2 of 2" in page(client, coded["rita"], url)
    assert "1 of 1" in page(client, coded["ann"], url)


def test_one_scope_rule_for_the_page_and_the_api():
    statistics.theme_scope_validate(coder=3, version="")
    with pytest.raises(ValidationError) as raised:
        statistics.theme_scope_validate(coder=3, version="consensus")
    assert raised.value.message_dict == {"version": [statistics.THEME_SCOPE_BOTH]}


def build_consensus(coded, coding_round, decision="keep"):
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-20-35"
    return coding_rounds.round_consensus_build(
        actor=coded["rita"], coding_round=coding_round, decisions={key: decision}
    )


def test_counts_leave_out_hidden_and_consensus_highlights(client, coded, django_user_model):
    both_done(coded)
    build_consensus(coded, coded["round"])
    assert Highlight.objects.filter(is_consensus=True).count() == 2
    cleo = make_coder(django_user_model, "cleo")
    coding_rounds.round_start(
        actor=coded["rita"], name="Blind", interviews=[coded["interview"]],
        coders=[cleo, coded["ben"]],
    )  # fmt: skip
    code(cleo, coded["interview"], coded["theme"], 1, 4)

    def interview_counts(user):
        return {i.pk: i.highlight_count for i in selectors.interview_list(user=user)}

    def tree_count(user):
        (node,) = [n for n in selectors.theme_tree(user=user) if n.theme == coded["theme"]]
        return node.theme.highlight_count

    interview, other = coded["interview"].pk, coded["other"].pk
    # rita: the coders' five on the interview (ann 2, ben 2, cleo 1), no consensus copies.
    assert interview_counts(coded["rita"]) == {interview: 5, other: 1}
    assert tree_count(coded["rita"]) == 6
    # cleo codes blind in the new round: there only her own.
    assert interview_counts(cleo) == {interview: 1, other: 1} and tree_count(cleo) == 2
    client.force_login(cleo)
    listed = client.get(reverse("interview-list")).context["page"]
    assert {i.pk: i.highlight_count for i in listed} == {interview: 1, other: 1}
    by_researcher = {
        coded["interview"].researcher_id: 1, coded["other"].researcher_id: 1
    }  # fmt: skip
    researchers, rows = selectors.theme_researcher_matrix(user=cleo)
    assert rows == [(coded["theme"], [by_researcher[r.pk] for r in researchers])]
    csv_rows = client.get(reverse("theme-researcher-csv")).content.decode().splitlines()
    assert csv_rows[1] == ",".join(
        ["Actionability", "", *[str(by_researcher[r.pk]) for r in researchers], "2"]
    )
    _, rows = selectors.theme_researcher_matrix(user=coded["rita"])
    assert sorted(rows[0][1]) == [1, 5]


def test_each_round_keeps_its_own_consensus_on_a_shared_interview(coded, later_round):
    build_consensus(coded, coded["round"])
    round_one = set(Highlight.objects.filter(coding_round=coded["round"]).values_list("pk"))
    assert len(round_one) == 2
    carl = later_round.coders.get(coder__username="carl").coder
    code(carl, coded["interview"], coded["theme"], 20, 30)  # agrees with ann's [20, 30)
    coding_rounds.round_close(actor=coded["rita"], coding_round=later_round)
    # Only ann and carl are compared (ben codes in round one only): they agree on [20, 30)
    # and differ on [0, 10), ann's alone, which is dropped.
    key = f"d-{coded['interview'].pk}-{coded['theme'].pk}-0-10"
    counts = coding_rounds.round_consensus_build(
        actor=coded["rita"], coding_round=later_round, decisions={key: "drop"}
    )
    assert counts == {"created": 1, "deleted": 0, "kept": 0}
    assert set(Highlight.objects.filter(coding_round=coded["round"]).values_list("pk")) == (
        round_one
    )
    later = Highlight.objects.filter(coding_round=later_round, is_consensus=True)
    assert [(h.start, h.end, h.coder) for h in later.order_by("start")] == [(20, 30, None)]
    report = selectors.round_report(coded["round"])
    assert report["has_consensus"] is True and len(report["after"]) == 2


REVISING = "You marked your part of the coding round Round one done"


def test_a_coder_who_is_done_may_not_revise_until_the_round_closes(client, coded):
    ann, mine = coded["ann"], coded["ann_own"]
    coding_rounds.round_mark_done(actor=ann, coding_round=coded["round"])
    for write in [
        lambda: code(ann, coded["interview"], coded["theme"], 1, 5),
        lambda: highlight_update(actor=ann, highlight=mine, note="after seeing ben's"),
        lambda: highlight_delete(actor=ann, highlight=mine),
    ]:
        with nothing_written(), pytest.raises(ValidationError) as raised:
            write()
        assert raised.value.messages[0].startswith(REVISING)
    # The pages: a form error or the delete page's refusal (edit pages answer a form error
    # with 200, as every edit page does, kb.views.base.form_page).
    client.force_login(ann)
    posts = [
        (reverse("highlight-create", args=[coded["interview"].pk]),
         {"quote": "klmno", "themes": [coded["theme"].pk]}, 400),
        (reverse("highlight-update", args=[mine.pk]),
         {"note": "later", "themes": [coded["theme"].pk]}, 200),
        (reverse("highlight-delete", args=[mine.pk]), {}, 400),
    ]  # fmt: skip
    for url, data, status in posts:
        with nothing_written():
            response = client.post(url, data)
        assert response.status_code == status, url
        assert REVISING in response.content.decode().replace("&#x27;", "'"), url
    # Elsewhere, and for the others, coding goes on; after closing ann may revise again.
    code(ann, coded["other"], coded["theme"], 1, 5)
    code(coded["ben"], coded["interview"], coded["theme"], 1, 5)
    coding_rounds.round_close(actor=coded["rita"], coding_round=coded["round"])
    highlight_update(actor=ann, highlight=mine, note="revised")
    highlight_delete(actor=ann, highlight=mine)
    assert not Highlight.objects.filter(pk=mine.pk).exists()
