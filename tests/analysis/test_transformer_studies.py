"""A study of a transformer through the services: requested with a sequence task and a head role,
its jobs run in this process as a worker runs them (the command line's path), every round
decided with the head mechanism check, and its records written: the head profile as a finding,
the rule's reasoning as an insight, the change and the outcome."""

from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils.html import escape

from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from analysis.studies import study_job_inputs, study_job_key, study_request
from analysis.study_cli import study_run_here
from kb.models import ArchitectureChange, Finding, Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.analysis.study_helpers import assert_rows_and_report_are_the_engines
from tests.analysis.transformer_helpers import TINY_TRANSFORMER
from tests.analysis.workers import celery_worker, require_redis, unique_queue, wait_for
from tests.factories import SHAPES_SPEC, BuiltinModelFactory
from tests.helpers import nothing_written

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("media")]

SEEDS = [0, 1, 2]
SETTINGS = {
    "dataset": {"name": "induction", "length": 16, "segment": 4},
    "train": {"steps": 6},
    "seeds": 3,
    "probe_size": 16,
    "rounds": 2,
    "budget_fraction": 0.3,
}


@pytest.fixture
def client_r(client, researcher_user):
    """The test client, signed in as the researcher."""
    client.force_login(researcher_user)
    return client


def _study(actor, **settings):
    model = BuiltinModelFactory(name="Tiny transformer", architecture_spec=TINY_TRANSFORMER)
    return study_request(actor=actor, model=model, settings={**SETTINGS, **settings},
                         dispatch=False)  # fmt: skip


def _result(study, index, track, seed) -> dict:
    return AnalysisJob.objects.get(run=study, key=study_job_key(index, track, seed)).result


def test_a_bad_transformer_setting_is_refused_by_field_and_nothing_is_written(researcher_user):
    model = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    with nothing_written(), pytest.raises(ValidationError) as excinfo:
        study_request(
            actor=researcher_user, model=model,
            settings={**SETTINGS, "head_role": "copying", "train": {"steps": 0}},
        )  # fmt: skip
    assert excinfo.value.message_dict == {
        "head_role": ["must be one of previous_token, induction, duplicate_token, got 'copying'."],
        "train.steps": ["must be a whole number from 1 to 20000, got 0."],
    }


def test_the_request_freezes_the_transformer_design(researcher_user):
    study = _study(researcher_user)
    config = study.config
    assert (config["head_role"], config["threshold"], config["metric"], config["direction"]) == (
        "induction", 0.5, "test_loss", "decrease"
    )  # fmt: skip
    assert config["rule"] == "insert_attention_until_role"
    assert config["dataset"] == {"name": "induction", "length": 16, "segment": 4,
                                 "eval_seed": 10_000}  # fmt: skip
    assert config["model"]["architecture_spec"] == TINY_TRANSFORMER
    base = StudyRound.objects.get(study=study, index=0)
    assert base.parameters == 3764
    # A transformer's base is profiled at every seed (the head check pairs seeds).
    inputs = [study_job_inputs(run_id=study.pk, key=study_job_key(0, "base", s)) for s in SEEDS]
    assert [item["profile"] for item in inputs] == [True, True, True]


def test_a_two_round_transformer_study_runs_and_writes_every_record(researcher_user, client_r):
    study = _study(researcher_user)
    study_run_here(study)
    study.refresh_from_db()
    assert study.status == AnalysisRun.Status.SUCCEEDED, study.error
    rows = list(StudyRound.objects.filter(study=study).order_by("index", "track"))
    assert [(row.index, row.track) for row in rows] == [
        (0, "base"), (1, "guided"), (1, "random"), (1, "uniform"),
        (2, "guided"), (2, "random"), (2, "uniform"),
    ]  # fmt: skip
    base_profiles = [_result(study, 0, "base", seed)["profile"] for seed in SEEDS]
    assert all(set(profile["heads"]) == {"blocks.0.attn", "blocks.1.attn"}
               for profile in base_profiles)  # fmt: skip
    assert all(_result(study, 1, "random", seed)["profile"] is None for seed in SEEDS)

    base, guided = rows[0], rows[1]
    plan = guided.plan
    assert plan["rule"] == "insert_attention_until_role"
    assert plan["change"]["operation"] == "insert_block"
    assert plan["mechanism_request"] == {
        "layer": "blocks.2.attn", "added_heads": list(range(plan["parameters"]["n_heads"])),
        "score": "induction",
    }  # fmt: skip
    # The rule read the base model's head profile at the first seed.
    heads = base_profiles[0]["heads"]
    best = max(
        ((score, int(layer.split(".")[1]), head, layer)
         for layer, scores in heads.items() for head, score in enumerate(scores["induction"])),
        key=lambda item: (item[0], -item[1], -item[2]),
    )  # fmt: skip
    assert best[0] < 0.5  # six training steps form no induction head
    assert guided.mechanism["layer"] == "blocks.2.attn"
    assert [row["seed"] for row in guided.mechanism["per_seed"]] == SEEDS
    assert [row["baseline_best"] for row in guided.mechanism["per_seed"]] == [
        max(score for scores in profile["heads"].values() for score in scores["induction"])
        for profile in base_profiles
    ]

    finding = guided.finding
    assert finding.title == (
        f"Study {study.pk} round 1: no head reaches the induction threshold 0.50; best "
        f"{best[0]:.2f} at layer {best[1]} head {best[2]}"
    )
    assert (finding.layer_name, finding.unit_indices, finding.concept) == (
        best[3], [best[2]], "induction"
    )  # fmt: skip
    assert finding.kind == Finding.Kind.FEATURE
    assert [run.pk for run in finding.evidence_runs.all()] == [study.pk]
    assert [link.finding for link in guided.insight.finding_links.all()] == [finding]
    assert plan["reason"] in guided.insight.statement
    change = guided.change
    assert (change.operation, change.parameters) == (
        ArchitectureChange.Operation.INSERT_BLOCK, plan["parameters"]
    )  # fmt: skip
    outcome = guided.outcome
    random = rows[2]
    assert outcome.source == Outcome.Source.STUDY
    assert outcome.metric == "test_loss"
    assert outcome.baseline_values == base.values
    assert outcome.variant_values == guided.values
    assert outcome.control_values == random.values
    assert f"Mechanism check: {guided.mechanism['interpretation']}." in outcome.notes
    for row in rows[2:4]:
        assert row.plan["budget"] == guided.params_added
        assert abs(row.params_added - guided.params_added) <= 0.05 * guided.params_added
        assert row.outcome.source == Outcome.Source.STUDY
        assert f"Control track ({row.track}) of study #{study.pk}." in row.outcome.notes
    report = study.result
    assert report["metric"] == "test_loss"
    assert report["final"]["guided"]["values"] is not None
    assert (
        study.environment["dataset_fingerprint"]
        == _result(study, 0, "base", 0)["dataset_fingerprint"]
    )
    page = client_r.get(study.get_absolute_url())
    assert page.status_code == 200
    assert escape(plan["reason"]) in page.content.decode()
    # Planned track by track as dependencies allowed, the study is the engine's reference.
    assert_rows_and_report_are_the_engines(study)


# --- the command line ---------------------------------------------------------------------------

CLI_TINY = ["--seeds", "3", "--length", "16", "--segment", "4", "--steps", "4",
            "--probe-size", "16", "--budget-fraction", "0.3"]  # fmt: skip


def _run_analysis(*args: str) -> str:
    out = StringIO()
    call_command("run_analysis", *args, stdout=out)
    return out.getvalue()


# The progress bar is drawn by a thread with its own database connection.
@pytest.mark.django_db(transaction=True)
def test_the_command_line_runs_a_transformer_study_with_its_task_flags():
    model = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    output = _run_analysis("study", "--model", str(model.pk), "--rounds", "1", "--head-role",
                           "induction", "--threshold", "0.4", *CLI_TINY)  # fmt: skip
    study = Study.objects.get()
    assert study.status == AnalysisRun.Status.SUCCEEDED
    assert f"Study {study.pk} succeeded." in output
    assert study.config["dataset"] == {"name": "induction", "length": 16, "segment": 4,
                                       "eval_seed": 10_000}  # fmt: skip
    assert (study.config["train"]["steps"], study.config["probe_size"]) == (4, 16)
    assert (study.config["head_role"], study.config["threshold"]) == ("induction", 0.4)
    assert StudyRound.objects.filter(study=study).count() == 4


@pytest.mark.parametrize(
    ("spec", "flags", "message"),
    [
        (TINY_TRANSFORMER, ["--epochs", "1"], "--epochs does not apply to studies."),
        (TINY_TRANSFORMER, ["--concept", "induction"], "--concept does not apply to studies."),
        (SHAPES_SPEC, ["--head-role", "induction"],
         "--head-role, --length, --probe-size, --segment, --steps does not apply to studies."),
        (TINY_TRANSFORMER, ["--threshold", "2"],
         "threshold (--threshold): must be a number from 0.0 to 1.0, got 2.0."),
        (TINY_TRANSFORMER, ["--length", "40"],
         "dataset.length (--length): the model takes at most 16 positions (n_ctx)."),
    ],
    ids=["epochs", "concept", "head-role-on-a-cnn", "threshold", "length"],
)  # fmt: skip
def test_flags_that_do_not_fit_the_models_family_are_refused(spec, flags, message):
    model = BuiltinModelFactory(architecture_spec=spec)
    with nothing_written(), pytest.raises(CommandError) as excinfo:
        _run_analysis("study", "--model", str(model.pk), *CLI_TINY, *flags)
    assert str(excinfo.value) == message


# --- a real worker --------------------------------------------------------------------------------


@pytest.fixture
def worker(settings, tmp_path):
    """Starts a worker on the test's queue."""
    require_redis()
    settings.ANALYSIS_QUEUE = unique_queue()
    settings.ANALYSIS_SWEEP_SECONDS = 1
    settings.MEDIA_ROOT = tmp_path / "media"
    log = tmp_path / "worker.log"

    def start(**options):
        return celery_worker(
            queue=settings.ANALYSIS_QUEUE, log_path=log, media_root=settings.MEDIA_ROOT, **options
        )

    start.log = log
    return start


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_transformer_study_runs_on_a_real_worker(worker, researcher_user):
    model = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    with worker(concurrency=2):
        study = study_request(actor=researcher_user, model=model, settings=SETTINGS)
        wait_for(
            lambda: study if (study.refresh_from_db() or study.is_finished) else None,
            timeout=120,
            describe=lambda: worker.log.read_text()[-3000:],
        )
    assert study.status == AnalysisRun.Status.SUCCEEDED, study.error
    rows = list(StudyRound.objects.filter(study=study).order_by("index", "track"))
    assert len(rows) == 7 and all(row.decided_at is not None for row in rows)
    guided = [row for row in rows if row.track == "guided" and "error" not in row.plan]
    assert guided and all(row.mechanism["seeds"] == 3 for row in guided)
    assert all(row.outcome.metric == "test_loss" for row in guided)
    assert set(study.jobs.values_list("attempts", flat=True)) == {1}
