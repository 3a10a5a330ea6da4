"""Worker-side execution of analysis jobs: load rows, call the engine, store results.

Imported only by worker processes and the command line (it loads torch). Every function is
safe to run twice for the same job: claims are conditional, results are stored once, and a
run's write-back happens in the same transaction as its one conditional finish.
"""

import contextlib
import functools
import hashlib
import json
import logging
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath

import numpy as np
import torch
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from safetensors import SafetensorError
from safetensors.torch import load_file

from analysis import services
from analysis.engine import figures
from analysis.engine.ablation import measure_ablation
from analysis.engine.activations import profile_activations
from analysis.engine.builder import WeightsError, build_model, load_weights, select_device
from analysis.engine.changes import ChangeError
from analysis.engine.datasets import DatasetUnavailable, load_dataset
from analysis.engine.experiments import aggregate_experiment, run_arm
from analysis.engine.head_profiles import HEAD_SCORES, TransformerProfile, profile_transformer
from analysis.engine.model_specs import spec_family
from analysis.engine.profiles import cluster_units, localise_concept, top_units
from analysis.engine.runtime import configure_cpu_runtime
from analysis.engine.sequence_tasks import SequenceBatch, make_sequence_task
from analysis.engine.specs import SpecError
from analysis.engine.studies import study_job_run
from analysis.engine.training import TrainConfig, evaluate, train_model
from analysis.engine.transformer import build_transformer
from analysis.engine.transformer_ablation import measure_transformer_ablation
from analysis.engine.transformer_experiments import (
    aggregate_transformer_experiment,
    run_transformer_arm,
)
from analysis.engine.transformer_training import (
    SequenceTrainConfig,
    evaluate_sequences,
    held_out_batch,
    train_transformer,
)
from analysis.frozen import experiment_settings
from analysis.models import AnalysisJob, AnalysisRun
from analysis.studies import study_advance, study_job_inputs

logger = logging.getLogger(__name__)


class WeightsChanged(Exception):
    """The stored weights file is missing or no longer has the digest the run froze."""


# Errors of the request itself: retrying cannot help, so the run fails as a bad request with
# the message. Anything else is a bug: the run fails as an internal error, traceback logged.
BAD_REQUEST_ERRORS = (SpecError, ChangeError, DatasetUnavailable, WeightsChanged, WeightsError)
# Raised through the generic handlers: the task records a time limit, and a lost database or
# broker is retried.
NOT_OURS_TO_HANDLE = (SoftTimeLimitExceeded, *services.TRANSIENT_ERRORS)


def configure_torch() -> None:
    """One torch thread per worker process, freed tensors kept in the heap (see
    analysis/engine/runtime.py for what each was measured to cost)."""
    configure_cpu_runtime(threads=1)


def execute_job(*, run_id: int, key: str, worker: str = "") -> str:
    """Claim and run one job for `worker` (the Celery node name), then finish the run if it
    was the last. Returns 'done', 'finished' (this call finished the run), 'held', 'gone',
    'cancelled' or 'failed'."""
    configure_torch()
    job = services.job_claim(run_id=run_id, key=key, worker=worker)
    if job is None:
        state = services.job_is_live(job=AnalysisJob.objects.get(run_id=run_id, key=key))
        if state == "done":
            return "finished" if finish_run_if_complete(run_id) else "done"
        return state
    if "version" not in job.run.config:
        services.job_fail(
            job=job, error=services.UNFROZEN_RUN, failure=AnalysisRun.Failure.BAD_REQUEST
        )
        return "failed"
    try:
        result = JOB_RUNNERS[job.run.kind](job)
    except services.RunCancelled:
        return "cancelled"
    except NOT_OURS_TO_HANDLE:
        raise  # time limit: the task records it; transient: the task retries under the lease
    except BAD_REQUEST_ERRORS as error:
        services.job_fail(
            job=job,
            error=f"{type(error).__name__}: {error}",
            failure=AnalysisRun.Failure.BAD_REQUEST,
        )
        return "failed"
    except Exception as error:
        # A bug: fail the run visibly rather than leave it running forever.
        logger.exception("internal error in run %s job %s", run_id, key)
        services.job_fail(
            job=job,
            error=f"internal error ({type(error).__name__}); the traceback is in the worker log",
            failure=AnalysisRun.Failure.INTERNAL,
        )
        return "failed"
    services.job_complete(job=job, result=result, environment=environment())
    return "finished" if finish_run_if_complete(run_id) else "done"


def fail_job_on_time_limit(*, run_id: int, key: str) -> None:
    job = AnalysisJob.objects.get(run_id=run_id, key=key)
    services.job_fail(
        job=job, error="the job ran past its time limit", failure=AnalysisRun.Failure.TIME_LIMIT
    )


def _progress_callback(job: AnalysisJob) -> Callable[[float, str], None]:
    def report(fraction: float, message: str) -> None:
        services.job_progress(job=job, fraction=fraction, message=f"{job.key}: {message}")

    return report


# --- environment -------------------------------------------------------------------------


@functools.cache
def code_revision() -> str:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=settings.BASE_DIR,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip()


def environment() -> dict:
    """Where a job ran: versions, device, code revision and host."""
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(select_device()),
        "threads": torch.get_num_threads(),
        "code_revision": code_revision(),
        "host": socket.gethostname(),
    }


def run_environment(run: AnalysisRun, **inputs) -> dict:
    """A finished run's environment: each distinct job environment with the jobs that ran
    there (jobs of one run may run on several hosts), and the inputs that identify the data."""
    places: dict[str, dict] = {}
    for key, job_environment in run.jobs.values_list("key", "environment"):
        same = json.dumps(job_environment, sort_keys=True)
        places.setdefault(same, {"environment": job_environment, "jobs": []})["jobs"].append(key)
    return {"jobs": list(places.values()), **inputs}


def _save_figure(run: AnalysisRun, name: str, png: bytes) -> str:
    """Store a figure of the run under a fixed name (through the storage API: a folder or a
    bucket); a finish that runs again replaces it instead of leaving a renamed copy."""
    path = f"runs/{run.pk}/{name}.png"
    default_storage.delete(path)  # no error when absent, on the filesystem and on S3
    return default_storage.save(path, ContentFile(png))


# --- models on which profiling and ablation work -------------------------------------------


@contextlib.contextmanager
def _frozen_weights_copy(model_snapshot: dict) -> Iterator[str]:
    """The path of a local copy of the stored weights file the run froze, checked to have the
    frozen digest, deleted when the block ends. The bytes are hashed as they are copied, so
    the file torch loads is the one checked, whatever the storage (a folder, an S3 bucket)."""
    name, expected = model_snapshot["weights"], model_snapshot["weights_sha256"]
    if not default_storage.exists(name):
        raise WeightsChanged(f"the weights file {name} is gone")
    # The suffix stays: the weights loader reads the format from it.
    with tempfile.NamedTemporaryFile(
        prefix="insightkb-", suffix=PurePosixPath(name).suffix
    ) as copy:
        digest = hashlib.sha256()
        with default_storage.open(name, "rb") as stored:
            for chunk in iter(lambda: stored.read(1 << 20), b""):
                digest.update(chunk)
                copy.write(chunk)
        copy.flush()
        if digest.hexdigest() != expected:
            raise WeightsChanged(f"the weights file {name} no longer has the digest the run froze")
        yield copy.name


def _trained_model(run: AnalysisRun, job: AnalysisJob):
    """The model under study and its held-out split, from the run's frozen config: built from
    the frozen spec with the frozen weights when the model had them, else trained with the
    run's seed.

    Out: (model in eval mode, test split, dataset, metrics of the trained or loaded model).
    """
    config = run.config
    dataset = load_dataset(**config["dataset"])
    spec = config["model"]["architecture_spec"]
    train_config = TrainConfig.from_spec(spec, **config["train"])
    _, test = dataset.split(train_config.test_fraction, seed=train_config.split_seed)
    if config["model"]["weights"]:
        with _frozen_weights_copy(config["model"]) as path:
            model = load_weights(build_model(spec).to(select_device()), path)
        model.eval()
        return model, test, dataset, {"source": "stored weights", **evaluate(model, test)}
    trained = train_model(
        spec, dataset, train_config, seed=config["seed"], on_progress=_scaled(job, 0.0, 0.7)
    )
    return trained.model, test, dataset, {"source": "trained for this run", **trained.metrics}


def _scaled(job: AnalysisJob, low: float, high: float) -> Callable[[float, str], None]:
    report = _progress_callback(job)
    return lambda fraction, message: report(low + (high - low) * fraction, message)


# TransformerLens keeps its causal mask and masking value as buffers in a HookedTransformer's
# state dict; they hold no learned weights (the model builds its own mask), so they are
# dropped before loading.
HOOKED_TRANSFORMER_BUFFERS = (".attn.mask", ".attn.IGNORE")


def _load_transformer_weights(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """Load a state dict saved as safetensors, ours or a HookedTransformer's (same keys).
    Raises WeightsError when the file is not safetensors or does not fit the model."""
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"not a valid safetensors file ({error})") from error
    state = {key: value for key, value in state.items()
             if not key.endswith(HOOKED_TRANSFORMER_BUFFERS)}  # fmt: skip
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"the weights do not fit this model: {error}") from error
    return model


def _sequence_train_config(config: dict) -> SequenceTrainConfig:
    """The frozen run's training settings; its probe set is the task's held-out sequences
    (probe_size of them, drawn by the task's eval_seed, for the induction task)."""
    task = config["dataset"]
    extra = {"eval_seed": task["eval_seed"]} if "eval_seed" in task else {}
    return SequenceTrainConfig(**config["train"], eval_size=config["probe_size"], **extra)


def _trained_transformer(run: AnalysisRun, job: AnalysisJob):
    """The transformer under study and its probe sequences, from the run's frozen config:
    built from the frozen spec with the frozen weights when the model had them, else trained
    on the task with the run's seed.

    Out: (model in eval mode, probe SequenceBatch, metrics of the model on the probe,
    fingerprint of the probe's tokens).
    """
    config = run.config
    spec = config["model"]["architecture_spec"]
    task = make_sequence_task(config["dataset"], d_vocab=spec["d_vocab"])
    train_config = _sequence_train_config(config)
    probe = held_out_batch(task, train_config)
    if config["model"]["weights"]:
        with _frozen_weights_copy(config["model"]) as path:
            model = _load_transformer_weights(build_transformer(spec), path)
        model = model.to(select_device()).eval()
        metrics = {"source": "stored weights", **evaluate_sequences(model, probe)}
    else:
        trained = train_transformer(
            spec, task, train_config, seed=config["seed"], on_progress=_scaled(job, 0.0, 0.7)
        )
        model, metrics = trained.model, {"source": "trained for this run", **trained.metrics}
    return model, probe, metrics, _tokens_fingerprint(probe)


def _tokens_fingerprint(probe: SequenceBatch) -> str:
    return hashlib.sha256(probe.tokens.contiguous().numpy().tobytes()).hexdigest()


def head_score_rows(profile: TransformerProfile) -> list[dict]:
    """Out: one row per head, {"layer", "head", score name: value or None (undefined)}."""
    rows = []
    for layer, scores in profile.heads.items():
        values = scores.to_dict()
        for head in range(len(values[HEAD_SCORES[0]])):
            rows.append({"layer": layer, "head": head,
                         **{name: values[name][head] for name in HEAD_SCORES}})  # fmt: skip
    return rows


def run_transformer_profile_job(job: AnalysisJob) -> dict:
    model, probe, metrics, fingerprint = _trained_transformer(job.run, job)
    _progress_callback(job)(0.75, "profiling heads and neurons")
    profile = profile_transformer(model, probe)
    return {
        "concept": "",
        "head_scores": head_score_rows(profile),
        "proposed_findings": profile.proposed_findings(),
        "profile": profile.to_dict(),
        "model_metrics": metrics,
        "dataset_fingerprint": fingerprint,
    }


def run_transformer_ablation_job(job: AnalysisJob) -> dict:
    run = job.run
    finding = run.config["finding"]
    model, probe, metrics, fingerprint = _trained_transformer(run, job)
    _, block, component = finding["layer_name"].split(".")  # "blocks.{i}.attn" or ".mlp"
    kind = "heads" if component == "attn" else "neurons"
    _progress_callback(job)(0.8, f"ablating {kind}")
    result = measure_transformer_ablation(
        model,
        probe,
        block=int(block),
        kind=kind,
        units=finding["unit_indices"],
        mode=run.config["mode"],
        random_sets=run.config["random_sets"],
        seed=run.config["seed"],
    )
    return {
        "ablation": result.to_dict(),
        "model_metrics": metrics,
        "dataset_fingerprint": fingerprint,
    }


def _is_transformer_run(run: AnalysisRun) -> bool:
    return spec_family(run.config["model"]["architecture_spec"]) == "transformer"


def run_profile_job(job: AnalysisJob) -> dict:
    run = job.run
    if _is_transformer_run(run):
        return run_transformer_profile_job(job)
    model, probe, dataset, metrics = _trained_model(run, job)
    _progress_callback(job)(0.75, "profiling activations")
    profile = profile_activations(model, probe, layers=None)
    concept = run.config["concept"] or profile.class_names[0]
    localisation = localise_concept(profile, concept)
    best_layer = localisation[0]["layer"]
    n_clusters = min(4, profile.layers[best_layer].width)
    return {
        "concept": concept,
        "localisation": localisation,
        "top_units": [list(item) for item in top_units(profile, concept, run.config["top_k"])],
        "clusters": cluster_units(profile, best_layer, n_clusters) if profile.class_names else [],
        "profile": profile.to_dict(),
        "model_metrics": metrics,
        "dataset_fingerprint": dataset.fingerprint,
    }


def run_ablation_job(job: AnalysisJob) -> dict:
    run = job.run
    if _is_transformer_run(run):
        return run_transformer_ablation_job(job)
    finding = run.config["finding"]
    model, test, dataset, metrics = _trained_model(run, job)
    _progress_callback(job)(0.8, "ablating units")
    result = measure_ablation(
        model,
        test,
        layer=finding["layer_name"],
        units=finding["unit_indices"],
        mode=run.config["mode"],
        random_sets=run.config["random_sets"],
        seed=run.config["seed"],
    )
    return {
        "ablation": result.to_dict(),
        "model_metrics": metrics,
        "dataset_fingerprint": dataset.fingerprint,
    }


def _is_transformer_experiment(config: dict) -> bool:
    return config.get("family") == "transformer"


def run_transformer_experiment_job(job: AnalysisJob) -> dict:
    """One (arm, seed) of a transformer change experiment: trained on the frozen task, its
    heads profiled when the mechanism check needs them (baseline and variant only)."""
    config = job.run.config
    arm, seed = job.key.split(":")
    return run_transformer_arm(
        config["arms"][arm],
        services.transformer_experiment_settings(config),
        seed=int(seed),
        profile=config["mechanism"] is not None and arm != "control",
        on_progress=_progress_callback(job),
    )


def run_experiment_job(job: AnalysisJob) -> dict:
    config = job.run.config
    if _is_transformer_experiment(config):
        return run_transformer_experiment_job(job)
    arm, seed = job.key.split(":")
    return run_arm(
        config["arms"][arm],
        experiment_settings(config),
        seed=int(seed),
        on_progress=_progress_callback(job),
        mechanism=config["mechanism"] if arm == "variant" else None,
    )


def run_study_job(job: AnalysisJob) -> dict:
    """One (round, track, seed) of a study: its candidate trained on the study's data, the
    trained model profiled when it is the base or a guided candidate at the first seed."""
    inputs = study_job_inputs(run_id=job.run_id, key=job.key)
    return study_job_run(
        job.run.config,
        inputs["spec"],
        seed=inputs["seed"],
        profile=inputs["profile"],
        mechanism=inputs["mechanism"],
        on_progress=_progress_callback(job),
    )


JOB_RUNNERS = {
    AnalysisRun.Kind.PROFILE: run_profile_job,
    AnalysisRun.Kind.ABLATION: run_ablation_job,
    AnalysisRun.Kind.CHANGE_EXPERIMENT: run_experiment_job,
    AnalysisRun.Kind.STUDY: run_study_job,
}


# --- finishing a run: aggregate, figures, write-back ----------------------------------------


def finish_run_if_complete(run_id: int) -> bool:
    """When every job is done, aggregate and finish the run. Returns True for the one call
    whose conditional finish won. A study instead decides each row whose jobs are all done,
    plans what that allows, or finishes (analysis.studies.study_advance)."""
    if AnalysisRun.objects.filter(pk=run_id, kind=AnalysisRun.Kind.STUDY).exists():
        return study_advance(run_id=run_id)
    if not services.run_ready_to_finish(run_id=run_id):
        return False
    run = AnalysisRun.objects.select_related(
        "change__target_model", "finding", "subject_model", "reproduces"
    ).get(pk=run_id)
    jobs = {job.key: job.result for job in run.jobs.all()}
    try:
        result, write_back, env = FINISHERS[run.kind](run, jobs)
    except NOT_OURS_TO_HANDLE:
        raise
    except Exception as error:
        logger.exception("internal error aggregating run %s", run_id)
        return services.run_finish(
            run_id=run_id,
            status=AnalysisRun.Status.FAILED,
            error=f"aggregation: internal error ({type(error).__name__}); the traceback is "
            "in the worker log",
            failure=AnalysisRun.Failure.INTERNAL,
        )
    return services.run_finish(
        run_id=run_id,
        status=AnalysisRun.Status.SUCCEEDED,
        result=result,
        environment=env,
        write_back=write_back,
    )


def _finish_profile(run: AnalysisRun, jobs: dict):
    result = dict(jobs["main"])
    if "head_scores" in result:
        # A transformer's profile is shown as its table of head scores, not a heatmap.
        result["figures"] = {}
    else:
        png = figures.selectivity_heatmap_png(result["profile"], result["concept"])
        result["figures"] = {"selectivity": _save_figure(run, "selectivity", png)}
    env = run_environment(run, dataset_fingerprint=result["dataset_fingerprint"])
    return result, services.finding_propose_from_profile, env


def _finish_ablation(run: AnalysisRun, jobs: dict):
    result = dict(jobs["main"])
    png = figures.ablation_effect_png(result["ablation"])
    result["figures"] = {"ablation": _save_figure(run, "ablation", png)}
    env = run_environment(run, dataset_fingerprint=result["dataset_fingerprint"])
    return result, services.finding_attach_ablation, env


def _finish_experiment(run: AnalysisRun, jobs: dict):
    arm_results = {arm: [] for arm in ("baseline", "variant", "control")}
    for seed in run.config["seeds"]:
        for arm in arm_results:
            arm_results[arm].append(jobs[f"{arm}:{seed}"])
    if _is_transformer_experiment(run.config):
        aggregate = aggregate_transformer_experiment(
            arm_results, services.transformer_experiment_settings(run.config),
            run.config["mechanism"],
        )  # fmt: skip
        curve = "train_loss"  # a transformer's history logs its training loss by step
    else:
        aggregate = aggregate_experiment(arm_results, experiment_settings(run.config))
        curve = "test_accuracy"
    plan = {**run.config["plan"], "arms": run.config["arms"]}
    result = {"plan": plan, "aggregate": aggregate, "arms": arm_results}
    if run.reproduces_id is not None:
        result["reproduction"] = compare_reproduction(run.reproduces, arm_results)
    result["figures"] = {
        "training_curves": _save_figure(
            run, "training_curves", figures.training_curves_png(arm_results, curve)
        ),
        "metric_by_arm": _save_figure(run, "metric_by_arm", figures.metric_by_arm_png(aggregate)),
    }
    env = run_environment(
        run, dataset_fingerprint=arm_results["baseline"][0].get("dataset_fingerprint")
    )
    return result, services.outcome_record_from_run, env


def compare_reproduction(earlier: AnalysisRun, arm_results: dict[str, list[dict]]) -> dict:
    """Whether every per-seed metric of this experiment equals the earlier run's bit for bit.

    Out: {"of_run", "compared" (values compared), "matched" (bool), "mismatched" (how many
    differ), "mismatches" (the first 20 of them: arm, seed, metric, earlier, now)}.
    """
    before = {
        (arm, result["seed"]): result["metrics"]
        for arm, results in earlier.result["arms"].items()
        for result in results
    }
    compared, mismatches = 0, []
    for arm, results in arm_results.items():
        for result in results:
            earlier_metrics = before.get((arm, result["seed"]), {})
            for metric, value in result["metrics"].items():
                compared += 1
                if earlier_metrics.get(metric) != value:
                    mismatches.append(
                        {"arm": arm, "seed": result["seed"], "metric": metric,
                         "earlier": earlier_metrics.get(metric), "now": value}
                    )  # fmt: skip
    return {
        "of_run": earlier.pk,
        "compared": compared,
        "matched": not mismatches,
        "mismatched": len(mismatches),
        "mismatches": mismatches[:20],
    }


FINISHERS = {
    AnalysisRun.Kind.PROFILE: _finish_profile,
    AnalysisRun.Kind.ABLATION: _finish_ablation,
    AnalysisRun.Kind.CHANGE_EXPERIMENT: _finish_experiment,
}
