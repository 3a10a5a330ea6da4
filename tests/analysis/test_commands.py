"""The command-line side of analyses: run_analysis and the engine benchmark suite."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from analysis.models import AnalysisRun
from kb.models import Finding, Outcome
from tests.analysis import engine_helpers  # noqa: F401  (one torch thread)
from tests.factories import BuiltinModelFactory, ChangeFactory, FindingFactory
from tests.helpers import nothing_written


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


def _run_analysis(*args: str) -> str:
    out = StringIO()
    call_command("run_analysis", *args, stdout=out)
    return out.getvalue()


# The progress bar is drawn by a thread with its own database connection, which must see the
# run's committed rows.
@pytest.mark.django_db(transaction=True)
def test_run_analysis_experiment_runs_here_with_a_progress_bar_and_writes_one_outcome():
    change = ChangeFactory()
    output = _run_analysis(
        "experiment", "--change", str(change.pk), "--seeds", "3", "--epochs", "1",
        "--samples", "80",
    )  # fmt: skip
    run = AnalysisRun.objects.get()
    assert run.status == AnalysisRun.Status.SUCCEEDED
    assert f"Run {run.pk} (Change experiment), 9 job(s)" in output
    assert f"[{'#' * 30}] 100%" in output
    assert f"Run {run.pk} succeeded." in output
    for arm in ("baseline", "variant", "control"):
        assert f"  {arm:<9} test_accuracy mean " in output
    assert f"verdict: {run.result['aggregate']['verdict']}" in output
    assert Outcome.objects.filter(change=change, analysis_run=run).count() == 1


@pytest.mark.django_db(transaction=True)
def test_run_analysis_profile_proposes_a_finding():
    model = BuiltinModelFactory()
    output = _run_analysis(
        "profile", "--model", str(model.pk), "--samples", "80", "--epochs", "1",
        "--concept", "curvature",
    )  # fmt: skip
    run = AnalysisRun.objects.get()
    assert run.status == AnalysisRun.Status.SUCCEEDED
    assert "succeeded." in output
    assert Finding.objects.filter(subject_model=model, evidence_runs=run).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["experiment"], "--change is required"),
        (["experiment", "--change", "999999"], "No architecture change with id 999999."),
        (["profile", "--model", "999999"], "No subject model with id 999999."),
        (["ablation", "--finding", "999999"], "No finding with id 999999."),
    ],
)
def test_run_analysis_refuses_missing_records(args, message):
    with pytest.raises(CommandError, match=message):
        _run_analysis(*args)
    assert not AnalysisRun.objects.exists()


def _refusal(*args: str) -> str:
    with pytest.raises(CommandError) as excinfo:
        _run_analysis(*args)
    return str(excinfo.value)


@pytest.mark.django_db
def test_run_analysis_refuses_too_few_seeds_and_writes_nothing():
    change = ChangeFactory()
    with nothing_written():
        message = _refusal("experiment", "--change", str(change.pk), "--seeds", "2")
    assert message == "seeds (--seeds): use 3 to 20 seeds, got 2."
    change.refresh_from_db()
    assert change.status == "proposed"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", str(10**30)], "seeds (--seeds): use 3 to 20 seeds, got a larger number."),
        (["--seeds", str(2**63)], f"seeds (--seeds): use 3 to 20 seeds, got {2**63}."),
        (["--seeds", "1000000"], "seeds (--seeds): use 3 to 20 seeds, got 1000000."),
        (["--samples", "20"],
         "dataset.n (--samples): must be a whole number from 40 to 50000 for shapes, got 20."),
        (["--dataset", "digits", "--samples", "10"],
         "dataset.limit (--samples): must be a whole number from 20 to 1797 for digits, "
         "got 10."),
        (["--epochs", "101"], "train.epochs (--epochs): must be a whole number from 1 to 100, "
                              "got 101."),
        (["--concept", "x" * 1_000_000],
         "concept (--concept): must be a class or attribute name of at most 100 characters."),
        (["--dataset", "digits"],
         "dataset.name (--dataset): digits gives inputs [1, 8, 8] and 10 classes; the model "
         "takes [1, 12, 12] and 4 classes."),
    ],
)  # fmt: skip
def test_run_analysis_names_the_setting_and_flag_it_refuses(args, message):
    change = ChangeFactory()
    with nothing_written():
        assert _refusal("experiment", "--change", str(change.pk), *args) == message


@pytest.mark.django_db
def test_run_analysis_refuses_a_concept_the_dataset_lacks():
    model = BuiltinModelFactory()
    with nothing_written():
        message = _refusal("profile", "--model", str(model.pk), "--concept", "wings")
    assert message == (
        "concept (--concept): shapes has no class or attribute 'wings'; use one of line, arc, "
        "circle, corner, curvature, orientation."
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--seeds", "5"], "--seeds applies to experiment runs only."),
        (["ablation", "--concept", "circle"],
         "--concept applies to experiment and profile runs only."),
    ],
)  # fmt: skip
def test_run_analysis_refuses_a_flag_its_kind_of_run_does_not_take(args, message):
    with nothing_written():
        assert _refusal(*args) == message


def test_benchmark_engine_quick_prints_a_table_and_one_json_line():
    """The whole quick suite, end to end with its two real worker processes. Timings on a
    loaded test machine say nothing, so only the report's shape is asserted."""
    out = StringIO()
    call_command("benchmark", "engine", "--quick", stdout=out)
    lines = out.getvalue().strip().splitlines()
    names = [
        "profile_vs_forward", "ablation_vs_forward", "plain_vs_harness",
        "transformer_profile_vs_forward", "transformer_ablation_vs_forward",
        "transformer_plain_vs_harness", "profile_peak_memory", "transformer_profile_peak_memory",
        "two_workers_vs_one",
    ]  # fmt: skip
    memories = {"profile_peak_memory", "transformer_profile_peak_memory"}
    assert lines[0].split()[:3] == ["benchmark", "reference", "s"]
    assert [line.split()[0] for line in lines[1:10]] == names
    assert "once per call:" in lines[1]
    summary = json.loads(lines[-1])
    assert summary["benchmark"] == "engine" and summary["quick"] is True
    assert [result["name"] for result in summary["results"]] == names
    assert set(summary["ratios"]) == set(names) - memories
    assert all(ratio > 0 for ratio in summary["ratios"].values())
    assert summary["ok"] is all(result["ok"] for result in summary["results"])
    profile = summary["results"][0]
    assert profile["probe_size"] == 2048 and profile["call_overhead_ms"] > 0
    memory, transformer_memory = summary["results"][6], summary["results"][7]
    assert memory["probe_sizes"] == [1024, 4096] and len(memory["peak_growth_bytes"]) == 2
    assert transformer_memory["probe_sizes"] == [512, 2048]
    scaling = summary["results"][8]
    assert (scaling["seeds"], scaling["jobs"], scaling["repeats"]) == (2, 6, 1)


# --- transformers and the random control's policy -------------------------------------------

TINY_TRANSFORMER = {
    "family": "transformer", "d_vocab": 12, "n_ctx": 16, "d_model": 16, "d_head": 8,
    "blocks": [{"n_heads": 2}, {"n_heads": 2, "d_mlp": 24}],
    "hyperparameters": {"batch_size": 8},
}  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_run_analysis_profiles_a_transformer_on_a_sequence_task():
    model = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    output = _run_analysis(
        "profile", "--model", str(model.pk), "--dataset", "induction", "--length", "12",
        "--segment", "3", "--steps", "3", "--probe-size", "8", "--seed", "2",
    )  # fmt: skip
    run = AnalysisRun.objects.get()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert run.config["dataset"] == {"name": "induction", "length": 12, "segment": 3,
                                     "eval_seed": 10_000}  # fmt: skip
    assert (run.config["train"]["steps"], run.config["probe_size"], run.config["seed"]) == (
        3, 8, 2,
    )  # fmt: skip
    assert f"Run {run.pk} succeeded." in output
    proposed = [f"  proposed: {p['text']}" for p in run.result["proposed_findings"]]
    assert [line for line in output.splitlines() if line.startswith("  proposed: ")] == proposed


@pytest.mark.django_db(transaction=True)
def test_run_analysis_runs_a_cnn_experiment_under_the_any_operation_control():
    change = ChangeFactory()
    output = _run_analysis(
        "experiment", "--change", str(change.pk), "--seeds", "3", "--epochs", "1",
        "--samples", "80", "--control-policy", "any_operation", "--control-seed", "1",
    )  # fmt: skip
    run = AnalysisRun.objects.get()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    control = run.config["plan"]["control"]
    assert (run.config["control_policy"], control["policy"]) == ("any_operation",) * 2
    assert f"  random control (any_operation): {control['result']['description']}" in output


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kind", "args", "message"),
    [
        ("profile", ["--steps", "0", "--probe-size", "4"],
         "train.steps (--steps): must be a whole number from 1 to 20000, got 0.; "
         "probe_size (--probe-size): must be a whole number from 8 to 4096, got 4."),
        ("profile", ["--dataset", "induction", "--length", "17"],
         "dataset.length (--length): the model takes at most 16 positions (n_ctx)."),
        ("profile", ["--segment", "9"],
         "dataset.segment (--segment): must be at most half the length, so it can repeat."),
        ("profile", ["--train-fraction", "0.99"],
         "dataset.train_fraction (--train-fraction): must be a number from 0.05 to 0.95, "
         "got 0.99."),
        ("profile", ["--dataset", "modular-addition", "--length", "12"],
         "dataset.length (--length): unknown setting. Expected one of name, p, "
         "train_fraction, split_seed."),
        ("profile", ["--epochs", "2"],
         "train.epochs (--epochs): unknown setting. Expected one of steps, batch_size, "
         "learning_rate, weight_decay, optimizer."),
        ("profile", ["--dataset", "shapes"],
         "dataset.name (--dataset): must be one of induction, modular-addition, got 'shapes'."),
        ("profile", ["--dataset", "induction", "--samples", "80"],
         "--samples sets an image dataset's size; the induction task's probe set is "
         "--probe-size."),
        ("ablation", ["--mode", "half", "--random-sets", "1"],
         "mode (--mode): must be one of zero, mean, got 'half'.; "
         "random_sets (--random-sets): must be a whole number from 2 to 500, got 1."),
        ("experiment", ["--control-policy", "nearby", "--seeds", "3"],
         "control_policy (--control-policy): must be one of same_operation, any_operation, "
         "got 'nearby'."),
    ],
)  # fmt: skip
def test_run_analysis_names_the_transformer_setting_and_flag_it_refuses(kind, args, message):
    model = BuiltinModelFactory(architecture_spec=TINY_TRANSFORMER)
    change = ChangeFactory(target_model=model, operation="add_heads",
                           parameters={"block": 0, "heads": 1}, expected_metric="test_loss",
                           expected_direction="decrease")  # fmt: skip
    finding = FindingFactory(subject_model=model, layer_name="blocks.0.attn", unit_indices=[1])
    target = {"profile": ["--model", str(model.pk)], "ablation": ["--finding", str(finding.pk)],
              "experiment": ["--change", str(change.pk)]}[kind]  # fmt: skip
    with nothing_written():
        assert _refusal(kind, *target, *args) == message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "3"], "train.steps (--steps): unknown setting. Expected one of "
                           "learning_rate, optimizer, epochs, batch_size, weight_decay."),
        (["--control-policy", "any"], "control_policy (--control-policy): must be one of "
                                      "same_operation, any_operation, got 'any'."),
    ],
)  # fmt: skip
def test_run_analysis_refuses_transformer_and_policy_settings_a_cnn_does_not_take(args, message):
    change = ChangeFactory()
    with nothing_written():
        assert _refusal("experiment", "--change", str(change.pk), *args) == message


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["profile", "--mode", "mean"], "--mode applies to ablation runs only."),
        (["ablation", "--control-policy", "any_operation"],
         "--control-policy applies to experiment runs only."),
        (["experiment", "--seed", "1"], "--seed applies to profile and ablation runs only."),
    ],
)  # fmt: skip
def test_run_analysis_refuses_a_run_setting_its_kind_does_not_take(args, message):
    with nothing_written():
        assert _refusal(*args) == message
