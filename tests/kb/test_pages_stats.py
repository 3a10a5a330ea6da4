"""Theme statistics, the scoreboard, search and the CSV exports, as the pages show them."""

import csv
import io

import pytest
from django.urls import reverse

from kb import selectors
from kb.models import Outcome
from tests.factories import ChangeFactory, InterviewFactory, ResearcherFactory, ThemeFactory

pytestmark = pytest.mark.django_db


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_theme_prevalence_counts_researchers_by_role_with_a_child_theme_rolled_up(
    world, client, viewer_user
):
    parent = ThemeFactory(name="Motivation")
    world.theme.parent = parent
    world.theme.save()
    InterviewFactory(researcher=ResearcherFactory(role="research_lead"))
    stats = selectors.theme_prevalence()
    rows = {row["theme"].name: row for row in stats["rows"]}
    assert [row["theme"].name for row in stats["rows"]] == ["Motivation", world.theme.name]
    assert rows["Motivation"]["depth"] == 0 and rows[world.theme.name]["depth"] == 1
    assert (rows["Motivation"]["overall"]["count"], rows["Motivation"]["overall"]["n"]) == (1, 2)
    assert [(c["label"], c["count"], c["n"]) for c in rows["Motivation"]["by_role"]] == [
        ("ML engineer", 1, 1),
        ("Research lead", 0, 1),
    ]
    client.force_login(viewer_user)
    body = client.get(reverse("theme-list")).content.decode()
    assert "1 of 2" in body
    assert "<svg" in body


def test_scoreboard_counts_the_outcome_against_baseline_and_control(world, client, viewer_user):
    client.force_login(viewer_user)
    response = client.get(reverse("scoreboard"))
    board = response.context["board"]
    assert board["overall"]["beat_baseline"]["count"] == 1
    assert board["overall"]["beat_control"]["count"] == 1
    assert [label for label, _ in board["by_operation"]] == ["Widen a layer"]
    assert world.outcome.get_absolute_url() in response.content.decode()


def test_scoreboard_leaves_study_rounds_to_the_study_section(world, client, viewer_user):
    client.force_login(viewer_user)
    before = client.get(reverse("scoreboard")).context["board"]
    change = ChangeFactory(insight=world.insight, target_model=world.model, status="evaluated")
    Outcome.objects.create(
        change=change, metric="test_accuracy", baseline_values=[0.5, 0.6, 0.7],
        variant_values=[0.9, 0.9, 0.95], effect=0.3167, verdict="improved",
        source=Outcome.Source.STUDY,
    )  # fmt: skip
    after = client.get(reverse("scoreboard")).context["board"]
    assert after["overall"] == before["overall"]
    assert after["overall"]["changes"] == 2  # the world's measured and manual outcomes


def test_outcomes_csv(world, client, viewer_user):
    client.force_login(viewer_user)
    rows = _rows(client.get(reverse("outcomes-csv")))
    assert rows[0][:6] == ["insight", "change", "model", "metric", "direction", "verdict"]
    assert rows[1][0] == world.insight.title
    assert rows[1][5:7] == ["improved", "0.02"]
    assert rows[1][13:15] == ["True", "True"]


def test_theme_by_researcher_csv(world, client, researcher_user):
    client.force_login(researcher_user)
    rows = _rows(client.get(reverse("theme-researcher-csv")))
    assert rows == [
        ["theme", "parent", world.researcher.pseudonym, "researchers"],
        [world.theme.name, "", "1", "1"],
    ]
