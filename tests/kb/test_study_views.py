"""The study pages: who sees and starts studies (the run permissions), the form (errors beside
their fields, nothing written), the live page (progress, rounds per track, the chart, records,
undefined numbers and hostile text), cancel and resume, the scoreboard's studies, the outcomes
CSVs and the JSON export."""

import csv
import io
import json
from html import escape

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analysis.engine.study_report import study_final_report, study_values_summary
from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from analysis.studies import study_request
from kb.models import Outcome, SubjectModel
from tests.analysis.transformer_helpers import TINY_TRANSFORMER
from tests.factories import (
    BuiltinModelFactory,
    ChangeFactory,
    FindingFactory,
    InsightFactory,
    SubjectModelFactory,
)
from tests.helpers import nothing_written

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "outsider", "viewer", "researcher", "staff"]
VIEWERS = {"viewer", "researcher", "staff"}
RESEARCHERS = {"researcher", "staff"}
HOSTILE = '<script>alert("x")</script>'
BASE_VALUES = [0.80, 0.82, 0.84]
SETTINGS = {
    "concept": "curvature",
    "seeds": 3,
    "rounds": 2,
    "dataset": {"name": "shapes", "n": 200},
}


# --- building studies: the real request, then rounds decided as the orchestration would ------


def _decide(row: StudyRound, values: list[float] | None, **fields) -> StudyRound:
    row.values = values
    row.summary = None if values is None else study_values_summary(values)
    row.decided_at = timezone.now()
    for name, value in fields.items():
        setattr(row, name, value)
    row.save()
    return row


def _round(study: Study, index: int, track: str, **fields) -> StudyRound:
    base = study.study_rounds.get(index=0)
    fields = {"spec": base.spec, "plan": {}, "parameters": base.parameters + 40 * index,
              "params_added": 40, **fields}  # fmt: skip
    return StudyRound.objects.create(study=study, index=index, track=track, **fields)


def _records(model: SubjectModel, values: list[float]) -> dict:
    """A finding, insight, change and outcome as a guided round writes them."""
    insight = InsightFactory()
    change = ChangeFactory(insight=insight, target_model=model, status="evaluated")
    outcome = Outcome.objects.create(
        change=change, metric="test_accuracy", baseline_values=BASE_VALUES,
        variant_values=values, effect=0.03, ci_low=0.01, ci_high=0.05, p_value=0.02,
        verdict="improved", source=Outcome.Source.STUDY,
    )  # fmt: skip
    finding = FindingFactory(subject_model=model, layer_name="conv2", unit_indices=[1])
    return {"finding": finding, "insight": insight, "change": change, "outcome": outcome}


def _study(actor, model=None, *, rounds: int = 1, hostile: str = "") -> Study:
    """A requested study (round 0 decided) with `rounds` decided rounds: guided kept with its
    records, random not kept, uniform sat out (its plan's error says `hostile`)."""
    model = model or BuiltinModelFactory()
    study = study_request(actor=actor, model=model, settings=SETTINGS, dispatch=False)
    _decide(study.study_rounds.get(index=0), BASE_VALUES)
    for index in range(1, rounds + 1):
        guided = [0.85, 0.86, 0.88]
        _decide(
            _round(study, index, "guided", plan={"reason": f"conv2 holds it {hostile}"}),
            guided, kept=True, **_records(model, guided),
            decision={"kept": True, "reason": "kept: the interval excludes zero"},
        )  # fmt: skip
        _decide(
            _round(study, index, "random"), [0.80, 0.80, 0.80], kept=False,
            decision={"kept": False, "reason": "not kept: the track keeps its current model"},
        )  # fmt: skip
        _round(study, index, "uniform", plan={"error": f"no room {hostile}", "field_errors": {}},
               params_added=0, kept=False, decided_at=timezone.now())  # fmt: skip
    return study


def _finish(study: Study, result: dict | None = None) -> Study:
    """The study as the orchestration finishes it: succeeded, with the engine's report."""
    if result is None:
        rows = [
            {"index": r.index, "track": r.track, "values": r.values, "parameters": r.parameters,
             "kept": r.kept, "summary": r.summary, "sat_out": "error" in r.plan}
            for r in study.study_rounds.order_by("index", "track")
        ]  # fmt: skip
        result = study_final_report(study.config, rows)
    Study.objects.filter(pk=study.pk).update(
        status=AnalysisRun.Status.SUCCEEDED, result=result, progress_percent=100,
        finished_at=timezone.now(),
    )  # fmt: skip
    study.refresh_from_db()
    return study


@pytest.fixture
def study(researcher_user):
    return _study(researcher_user)


# --- permissions ------------------------------------------------------------------------------

PAGES = [
    ("study-list", False, VIEWERS),
    ("study-detail", True, VIEWERS),
    ("study-live", True, VIEWERS),
    ("study-create", False, RESEARCHERS),
]


@pytest.mark.parametrize("role", ROLES)
def test_every_study_page_answers_each_role_as_the_run_permissions_say(study, as_role, role):
    client = as_role(role)
    for name, detail, allowed in PAGES:
        url = reverse(name, args=[study.pk] if detail else [])
        response = client.get(url)
        if role == "anonymous":
            assert response.status_code == 302, url
            assert response.url.startswith(f"{reverse('login')}?next="), url
        else:
            assert response.status_code == (200 if role in allowed else 403), url


@pytest.mark.parametrize("role", ["anonymous", "outsider", "viewer"])
def test_refused_roles_cannot_start_cancel_or_resume_a_study(study, as_role, role):
    client = as_role(role)
    model = study.subject_model
    with nothing_written():
        for url, data in [
            (reverse("study-create"), {"model": model.pk, **_form_data()}),
            (reverse("study-cancel", args=[study.pk]), {}),
            (reverse("study-resume", args=[study.pk]), {}),
        ]:
            response = client.post(url, data)
            assert response.status_code == (302 if role == "anonymous" else 403), url


def test_cancel_and_resume_take_only_posts(study, client_r):
    with nothing_written():
        for name in ("study-cancel", "study-resume"):
            assert client_r.get(reverse(name, args=[study.pk])).status_code == 405


def test_people_who_cannot_request_runs_see_no_new_study_button(study, as_role):
    viewer = as_role("viewer")
    assert reverse("study-create") not in viewer.get(reverse("study-list")).content.decode()
    model_page = viewer.get(study.subject_model.get_absolute_url()).content.decode()
    assert reverse("study-create") not in model_page
    assert "Cancel the study" not in viewer.get(study.get_absolute_url()).content.decode()


def test_a_missing_study_is_404_and_a_run_is_not_a_study(world, client_r):
    assert client_r.get(reverse("study-detail", args=[999999])).status_code == 404
    assert client_r.get(reverse("study-detail", args=[world.run.pk])).status_code == 404
    assert client_r.post(reverse("study-cancel", args=[world.run.pk])).status_code == 404


# --- the form ---------------------------------------------------------------------------------


def _form_data(**changes) -> dict:
    data = {
        "dataset": "shapes", "dataset_size": 200, "epochs": 1, "learning_rate": "",
        "seeds": 3, "rounds": 2, "budget_fraction": 0.1, "concept": "curvature",
        "rule": "widen_most_selective", "tracks": ["guided", "random", "uniform"],
        "random_seed": 7,
    }  # fmt: skip
    return data | changes


def test_the_form_starts_a_study_with_its_design_frozen(client_r, researcher_user):
    model = BuiltinModelFactory()
    response = client_r.post(reverse("study-create"), _form_data(model=model.pk))
    study = Study.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("study-detail", args=[study.pk])
    assert (study.subject_model, study.requested_by) == (model, researcher_user)
    config = study.config
    assert (config["rounds"], config["seeds"], config["random_seed"]) == (2, [0, 1, 2], 7)
    assert (config["concept"], config["rule"], config["budget_fraction"]) == (
        "curvature", "widen_most_selective", 0.1,
    )  # fmt: skip
    assert config["tracks"] == ["guided", "random", "uniform"]
    assert config["dataset"]["n"] == 200 and config["train"]["epochs"] == 1
    assert [(r.index, r.track) for r in study.study_rounds.all()] == [(0, "base")]
    assert sorted(AnalysisJob.objects.filter(run=study).values_list("key", flat=True)) == [
        "r0:base:s0", "r0:base:s1", "r0:base:s2",
    ]  # fmt: skip


def test_the_form_sets_the_learning_rate_and_fewer_tracks(client_r):
    model = BuiltinModelFactory()
    data = _form_data(model=model.pk, learning_rate="0.005", tracks=["uniform", "guided"])
    client_r.post(reverse("study-create"), data)
    config = Study.objects.get().config
    assert config["train"]["learning_rate"] == 0.005
    assert config["tracks"] == ["guided", "uniform"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"seeds": 2}, "seeds", "use 3 to 20 seeds, got 2."),
        ({"rounds": 11}, "rounds", "must be a whole number from 1 to 10, got 11."),
        ({"budget_fraction": 1.5}, "budget_fraction", "must be a number above 0 and at most 1"),
        ({"tracks": ["random", "uniform"]}, "tracks", 'must hold "guided" and at least one'),
        ({"tracks": ["guided"]}, "tracks", 'must hold "guided" and at least one'),
        ({"concept": ""}, "concept", "required: the guided rule reads the units' scores"),
        ({"concept": "banana"}, "concept", "shapes has no class or attribute 'banana'"),
        ({"dataset_size": 5}, "dataset_size", "for shapes"),
        ({"epochs": 0}, "epochs", ""),
        ({"learning_rate": "-1"}, "learning_rate", ""),
        ({"rule": "guess"}, "rule", "Select a valid choice."),
    ],
)
def test_bad_settings_are_errors_beside_their_field_and_nothing_is_written(
    client_r, changes, field, message
):
    model = BuiltinModelFactory()
    with nothing_written():
        response = client_r.post(reverse("study-create"), _form_data(model=model.pk, **changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field], errors
    assert message in " ".join(errors[field])


def test_each_form_offers_the_built_in_models_of_its_family(client_r):
    cnn = BuiltinModelFactory(name="Shapes CNN")
    transformer = BuiltinModelFactory(name="Tiny transformer", architecture_spec=TINY_TRANSFORMER)
    SubjectModelFactory(name="InceptionV1")
    form = client_r.get(reverse("study-create"), {"model": cnn.pk}).context["form"]
    assert form.fields["model"].choices == [(cnn.pk, "Shapes CNN")]
    assert form["model"].value() == str(cnn.pk)
    assert "concept" in form.fields and "head_role" not in form.fields
    # Opened for a transformer (the model page's link), or asked for: the transformer form.
    for query in ({"model": transformer.pk}, {"family": "transformer"}):
        response = client_r.get(reverse("study-create"), query)
        form = response.context["form"]
        assert form.fields["model"].choices == [(transformer.pk, "Tiny transformer")]
        assert {"task", "length", "segment", "steps", "probe_size", "head_role",
                "threshold"} <= set(form.fields)  # fmt: skip
        assert "concept" not in form.fields and "epochs" not in form.fields
        assert response.context["title"] == "New study of a transformer"
    body = client_r.get(reverse("study-create")).content.decode()
    assert f'href="{reverse("study-create")}?family=transformer"' in body


def _transformer_form_data(**changes) -> dict:
    data = {
        "task": "induction", "length": 16, "segment": 4, "eval_seed": "", "train_fraction": "",
        "split_seed": "", "steps": 6, "probe_size": 16, "seeds": 3, "rounds": 2,
        "budget_fraction": 0.3, "head_role": "induction", "threshold": 0.4,
        "rule": "insert_attention_until_role", "tracks": ["guided", "random", "uniform"],
        "random_seed": 7,
    }  # fmt: skip
    return data | changes


def test_the_transformer_form_starts_a_study_with_its_design_frozen(client_r):
    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    url = f"{reverse('study-create')}?model={transformer.pk}"
    response = client_r.post(url, _transformer_form_data(model=transformer.pk))
    study = Study.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("study-detail", args=[study.pk])
    config = study.config
    assert study.subject_model == transformer
    assert (config["dataset"]["name"], config["dataset"]["length"]) == ("induction", 16)
    assert config["dataset"]["segment"] == 4
    assert (config["train"]["steps"], config["probe_size"], config["seeds"]) == (6, 16, [0, 1, 2])
    assert (config["head_role"], config["threshold"], config["rule"]) == (
        "induction", 0.4, "insert_attention_until_role",
    )  # fmt: skip
    assert (config["rounds"], config["budget_fraction"], config["random_seed"]) == (2, 0.3, 7)
    assert "concept" not in config


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"threshold": 1.5}, "threshold", "1.5"),
        ({"steps": 0}, "steps", ""),
        ({"segment": 12}, "segment", ""),
        ({"head_role": "copying"}, "head_role", "Select a valid choice."),
        ({"seeds": 2}, "seeds", "use 3 to 20 seeds, got 2."),
    ],
)
def test_bad_transformer_settings_are_errors_beside_their_field_and_nothing_is_written(
    client_r, changes, field, message
):
    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    url = f"{reverse('study-create')}?family=transformer"
    with nothing_written():
        response = client_r.post(url, _transformer_form_data(model=transformer.pk, **changes))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [field], errors
    assert message in " ".join(errors[field])


def test_a_model_that_is_not_offered_is_refused(client_r):
    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    with nothing_written():
        response = client_r.post(reverse("study-create"), _form_data(model=transformer.pk))
    assert list(response.context["form"].errors) == ["model"]


def test_the_model_page_offers_a_study_of_a_built_in_cnn_or_transformer(client_r):
    for model in (BuiltinModelFactory(), BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)):
        link = f'href="{reverse("study-create")}?model={model.pk}"'
        assert link in client_r.get(model.get_absolute_url()).content.decode()
    uploaded = SubjectModelFactory()
    assert reverse("study-create") not in client_r.get(uploaded.get_absolute_url()).content.decode()


# --- the live page ----------------------------------------------------------------------------


def _rows(body: str, track: str) -> str:
    """The HTML of one track's rounds table."""
    start = body.index(f'<table data-track="{track}">')
    return body[start : body.index("</table>", start)]


def test_the_page_shows_each_rounds_numbers_decision_and_records(client_r, researcher_user):
    study = _study(researcher_user)
    guided = study.study_rounds.get(index=1, track="guided")
    body = client_r.get(study.get_absolute_url()).content.decode()
    assert 'data-live-url="{}"'.format(reverse("study-live", args=[study.pk])) in body
    summary = study_values_summary([0.85, 0.86, 0.88])
    row = _rows(body, "guided")
    assert f"<td>{summary['mean']:.4g}</td>" in row
    assert f"<td>{summary['ci_low']:.4g} to {summary['ci_high']:.4g}</td>" in row
    assert f'<td>{guided.parameters} <span class="muted">(+40)</span></td>' in row
    assert '<span class="status status-succeeded">kept</span>' in row
    assert "Kept: the interval excludes zero." in row
    assert f'href="{reverse("finding-detail", args=[guided.finding_id])}">finding</a>' in row
    assert f'href="{reverse("insight-detail", args=[guided.insight_id])}">insight</a>' in row
    assert f'href="{reverse("change-detail", args=[guided.change_id])}">change</a>' in row
    outcome_url = f"{reverse('change-detail', args=[guided.change_id])}#outcome-{guided.outcome_id}"
    assert f'href="{outcome_url}">outcome</a>' in row
    random_row = _rows(body, "random")
    assert '<span class="status status-failed">not kept</span>' in random_row
    # Every seed the same: no spread, so no interval, said as such rather than as a number.
    assert "<td>0.8</td>" in random_row and "<td>undefined</td>" in random_row
    uniform = _rows(body, "uniform")
    assert '<span class="status status-sat-out">sat out</span>' in uniform
    assert uniform.count("<td>—</td>") == 2  # no mean, no interval
    assert "Round 2 of 2" in body  # round 1 decided, round 2 next


def test_a_transformer_study_page_shows_its_head_role_threshold_and_task(client_r, researcher_user):
    transformer = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    settings = {"dataset": {"name": "induction", "length": 16, "segment": 4},
                "train": {"steps": 6}, "seeds": 3, "probe_size": 16, "threshold": 0.4}  # fmt: skip
    study = study_request(actor=researcher_user, model=transformer, settings=settings,
                          dispatch=False)  # fmt: skip
    body = client_r.get(study.get_absolute_url()).content.decode()
    assert (
        "<dt>Head role</dt><dd>induction (a head plays it at a score of 0.4 or more)</dd>" in body
    )
    assert (
        "<dt>Task</dt><dd>induction, 16 tokens per sequence, a segment of 4 that repeats; 6 "
        "training steps; 16 probe sequences</dd>" in body
    )
    assert "<dt>Concept</dt>" not in body and "<dt>Dataset</dt>" not in body


def test_an_undecided_round_shows_dashes_and_pending(client_r, researcher_user):
    study = _study(researcher_user, rounds=0)
    _round(study, 1, "guided")
    body = client_r.get(reverse("study-live", args=[study.pk])).content.decode()
    row = _rows(body, "guided")
    assert row.count("<td>—</td>") == 2
    assert '<span class="status status-running">pending</span>' in row
    assert 'data-finished="false"' in body
    assert "Round 1 of 2" in body


def test_a_track_running_ahead_of_the_others_is_named_with_its_round(client_r, researcher_user):
    study = _study(researcher_user, rounds=0)
    _decide(_round(study, 1, "guided"), [0.80, 0.80, 0.81], kept=False,
            decision={"kept": False, "reason": "not kept"})  # fmt: skip
    _round(study, 2, "guided")
    _round(study, 1, "random")
    _round(study, 1, "uniform")
    body = client_r.get(reverse("study-live", args=[study.pk])).content.decode()
    assert "Round 1 of 2 · guided ahead at round 2</span>" in body
    assert '<span class="status status-failed">not kept</span>' in _rows(body, "guided")


def test_before_the_base_model_is_measured_the_chart_waits(client_r, researcher_user):
    study = study_request(actor=researcher_user, model=BuiltinModelFactory(), settings=SETTINGS,
                          dispatch=False)  # fmt: skip
    AnalysisJob.objects.filter(run=study, key="r0:base:s1").update(status="done")
    body = client_r.get(study.get_absolute_url()).content.decode()
    assert 'data-testid="no-trajectory"' in body
    assert "<svg" not in body
    assert "Base model (round 0), then 2 rounds" in body
    assert "1 of 3 jobs done" in body
    assert '<span class="status status-running">training</span>' in _rows(body, "base")


def test_the_chart_fills_in_with_the_decided_rounds(client_r, researcher_user):
    study = _study(researcher_user)
    chart = client_r.get(study.get_absolute_url()).context["chart"]
    assert chart.count('class="track track-') == 3  # guided, random, uniform
    # Uniform sat round 1 out: its line has the base model only.
    assert chart.count("<circle") == 2 + 2 + 1
    assert "Uniform, round 0" in chart


def test_hostile_text_is_escaped(client_r, researcher_user):
    model = BuiltinModelFactory(name=f"Model {HOSTILE}")
    study = _study(researcher_user, model, hostile=HOSTILE)
    for url in (study.get_absolute_url(), reverse("study-live", args=[study.pk]),
                reverse("study-list")):  # fmt: skip
        body = client_r.get(url).content.decode()
        assert HOSTILE not in body, url
    live = client_r.get(reverse("study-live", args=[study.pk])).content.decode()
    assert "no room &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in live


@pytest.mark.parametrize("name", ["study-detail", "study-live"])
def test_the_study_page_runs_the_same_queries_for_one_round_and_many(
    client_r, researcher_user, name
):
    def count(rounds: int) -> int:
        study = _study(researcher_user, rounds=rounds)
        url = reverse(name, args=[study.pk])
        client_r.get(url)  # warm the session and permission caches
        with CaptureQueriesContext(connection) as queries:
            assert client_r.get(url).status_code == 200
        return len(queries)

    assert count(1) == count(6)


def test_the_list_runs_the_same_queries_for_one_study_and_many(client_r, researcher_user):
    def count() -> int:
        client_r.get(reverse("study-list"))
        with CaptureQueriesContext(connection) as queries:
            client_r.get(reverse("study-list"))
        return len(queries)

    _study(researcher_user)
    one = count()
    for _ in range(4):
        _study(researcher_user)
    assert count() == one


# --- cancel and resume ------------------------------------------------------------------------


def test_cancel_keeps_the_decided_rounds_and_resume_queues_the_study_again(client_r, study):
    decided = list(study.study_rounds.filter(decided_at__isnull=False).values_list("pk", flat=True))
    body = client_r.get(study.get_absolute_url()).content.decode()
    assert f'data-confirm="Cancel study {study.pk}?' in body
    response = client_r.post(reverse("study-cancel", args=[study.pk]), follow=True)
    assert response.redirect_chain == [(study.get_absolute_url(), 302)]
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.CANCELLED
    assert "Study cancelled; its decided rounds are kept." in response.content.decode()
    kept = study.study_rounds.filter(decided_at__isnull=False).values_list("pk", flat=True)
    assert list(kept) == decided
    body = response.content.decode()
    assert 'data-finished="true"' in body and "Cancel the study" not in body
    response = client_r.post(reverse("study-resume", args=[study.pk]), follow=True)
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.QUEUED
    assert (
        "Study resumed: each track continues from its last decided round."
        in response.content.decode()
    )


def test_cancelling_a_finished_study_is_refused_with_a_message(client_r, study):
    _finish(study)
    response = client_r.post(reverse("study-cancel", args=[study.pk]), follow=True)
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.SUCCEEDED
    messages = [str(m) for m in response.context["messages"]]
    assert len(messages) == 1 and "Study cancelled" not in messages[0]


# --- the final answer and the scoreboard ------------------------------------------------------


def test_a_finished_study_shows_its_comparisons_and_win_rate(client_r, researcher_user):
    study = _finish(_study(researcher_user, rounds=2))
    report = study.result
    body = client_r.get(study.get_absolute_url()).content.decode()
    versus_random = report["comparisons"]["guided_vs_random"]
    assert f"<td>{versus_random['difference']:+.4g}</td>" in body
    assert escape(f"Guided against random: {versus_random['explanation']}.") in body
    parameters = (versus_random["guided_parameters"], versus_random["control_parameters"])
    assert parameters == (study.study_rounds.get(index=2, track="guided").parameters,
                          study.study_rounds.get(index=0).parameters)  # fmt: skip
    assert "<td>{} vs {}</td>".format(*parameters) in body
    rate = report["win_rate"]
    assert (rate["wins"], rate["rounds"]) == (2, 2)
    assert "in <strong>2 of 2</strong> rounds: 100%" in body
    assert f"95% Wilson interval {rate['ci_low'] * 100:.0f}%–100%" in body
    # The uniform track never had a candidate: its final model is the base model.
    assert report["comparisons"]["guided_vs_uniform"] is not None


def test_undefined_numbers_of_the_report_say_undefined(client_r, researcher_user):
    comparison = {"difference": 0.01, "ci_low": None, "ci_high": None, "p_value": None,
                  "effect_size": None, "verdict": "inconclusive"}  # fmt: skip
    result = {
        "final": {}, "trajectory": {},
        "comparisons": {"guided_vs_random": comparison, "guided_vs_uniform": None},
        "win_rate": {"wins": 0, "rounds": 0, "share": None, "ci_low": None, "ci_high": None},
    }  # fmt: skip
    study = _finish(_study(researcher_user), result)
    body = client_r.get(study.get_absolute_url()).content.decode()
    assert ("<td>+0.01</td><td>undefined</td><td>undefined</td><td>undefined</td>") in body
    assert "not compared: the track was not in this study" in body
    assert "in <strong>0 of 0</strong> rounds: undefined (95% Wilson interval undefined)" in body
    board = client_r.get(reverse("scoreboard")).content.decode()
    assert "+0.01 (interval undefined; p undefined)" in board
    assert '<td>—</td><td class="muted">not compared</td>' in board


def test_the_scoreboard_lists_finished_studies_only(client_r, researcher_user):
    finished = _finish(_study(researcher_user))
    running = _study(researcher_user)
    body = client_r.get(reverse("scoreboard")).content.decode()
    assert 'id="studies-heading"' in body
    assert f'href="{finished.get_absolute_url()}">Study #{finished.pk}</a>' in body
    assert f"Study #{running.pk}<" not in body
    comparison = finished.result["comparisons"]["guided_vs_random"]
    assert f"{comparison['difference']:+.4g} (" in body
    assert "1 of 1: 100%" in body


def test_the_scoreboard_has_no_study_section_without_finished_studies(client_r, study):
    assert 'id="studies-heading"' not in client_r.get(reverse("scoreboard")).content.decode()


# --- outcomes CSV and the JSON export ---------------------------------------------------------


def _csv(response) -> list[dict]:
    streamed = getattr(response, "streaming", False)
    content = b"".join(response.streaming_content) if streamed else response.content
    return list(csv.DictReader(io.StringIO(content.decode())))


def test_the_outcomes_csv_says_which_study_round_and_track_measured_an_outcome(
    world, client_r, study
):
    guided = study.study_rounds.get(index=1, track="guided")
    rows = {row["change"]: row for row in _csv(client_r.get(reverse("outcomes-csv")))}
    by_study, by_run = rows[str(guided.change)], rows[str(world.change)]
    assert [by_study[k] for k in ("study", "study_round", "study_track", "source")] == [
        str(study.pk), "1", "guided", "study",
    ]  # fmt: skip
    assert [by_study[k] for k in ("dataset", "dataset_size", "seed_list")] == [
        "shapes", "200", "0 1 2",
    ]  # fmt: skip
    assert by_study["run_url"] == f"http://testserver{study.get_absolute_url()}"
    assert [by_run[k] for k in ("study", "study_round", "study_track")] == ["", "", ""]
    assert list(rows[str(guided.change)])[:23] == [
        "insight", "change", "model", "metric", "direction", "verdict", "effect", "ci_low",
        "ci_high", "p_value", "effect_vs_control", "control_ci_low", "control_ci_high",
        "beats_baseline", "beats_control", "source", "seeds", "recorded_at", "dataset",
        "dataset_size", "epochs", "seed_list", "run_url",
    ]  # fmt: skip


def test_the_api_outcomes_csv_has_the_study_columns(world, client_r, study):
    guided = study.study_rounds.get(index=1, track="guided")
    rows = {row["id"]: row for row in _csv(client_r.get("/api/export/outcomes.csv"))}
    by_study, by_run = rows[str(guided.outcome_id)], rows[str(world.outcome.pk)]
    assert [by_study[k] for k in ("study", "study_round", "study_track", "seed_list")] == [
        str(study.pk), "1", "guided", "0 1 2",
    ]  # fmt: skip
    assert by_study["run_url"] == f"http://testserver/api/runs/{study.pk}/"
    assert [by_run[k] for k in ("study", "study_round", "study_track")] == ["", "", ""]
    assert by_run["run_url"] == f"http://testserver/api/runs/{world.run.pk}/"


def test_the_json_export_holds_studies_and_their_rounds(world, client_r, as_role, study):
    document = json.loads(b"".join(client_r.get("/api/export/").streaming_content))
    # The world holds a queued study of its own (round 0 only).
    assert [row["id"] for row in document["studies"]] == [world.study.pk, study.pk]
    assert document["studies"][1]["config"] == study.config
    rounds = [row for row in document["study_rounds"] if row["study"] == study.pk]
    assert [(r["index"], r["track"]) for r in rounds] == [
        (0, "base"), (1, "guided"), (1, "random"), (1, "uniform"),
    ]  # fmt: skip
    guided = study.study_rounds.get(index=1, track="guided")
    assert rounds[1]["outcome"] == guided.outcome_id and rounds[1]["summary"] == guided.summary
    assert rounds[3]["values"] is None and rounds[3]["plan"]["field_errors"] == {}
    viewer = as_role("viewer")
    assert "study_rounds" in json.loads(b"".join(viewer.get("/api/export/").streaming_content))
