"""A study's jobs: one (track, seed) training, with its profile and mechanism check.

study_job_run is what one study job does, on a worker or in run_study_locally: train the
round's candidate with one seed exactly as a change experiment trains an arm (the same
dataset, training settings and split: experiments.dataset_for and training.train_model, as
experiments.run_arm calls them), check the added units' mechanism when asked, and profile the
trained model when asked (the first seed of a base or guided candidate), so the next guided
round reads the profile without a retrain or a weights hand-off.

run_study_locally runs a whole study in this process, with no database or broker: the
command line's local mode and the benchmark's reference for the same work back to back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from analysis.engine.activations import profile_activations
from analysis.engine.experiments import dataset_for, mechanism_check, summarise_mechanism
from analysis.engine.model_specs import count_model_parameters
from analysis.engine.study_plans import (
    probe_layers,
    rejected_candidates,
    study_base_spec,
    study_round_plan,
)
from analysis.engine.study_report import (
    BASE,
    json_safe,
    study_final_report,
    study_round_decide,
    study_values_summary,
)
from analysis.engine.study_settings import GUIDED, experiment_settings_of
from analysis.engine.training import TrainConfig, train_model
from analysis.engine.transformer_experiments import head_mechanism_check, run_transformer_arm
from analysis.engine.transformer_plans import TransformerExperimentConfig
from analysis.engine.transformer_specs import count_transformer_parameters, is_transformer_spec

ProgressCallback = Callable[[float, str], None]
# A job's progress: training up to here, then the checks and the profile.
TRAINING_SHARE = 0.9


def _scaled(on_progress: ProgressCallback | None, share: float) -> ProgressCallback | None:
    if on_progress is None:
        return None
    return lambda fraction, message: on_progress(share * fraction, message)


def study_job_run(
    config: dict,
    spec: dict,
    *,
    seed: int,
    profile: bool,
    mechanism: dict[str, Any] | None,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Train one candidate of a study with one seed (one worker job).

    In: the cleaned study config, the candidate's spec (the round's stored spec; the study's
    training settings are written in again, which changes nothing for a planned spec), the
    seed, whether to profile the trained model, the mechanism request {"layer",
    "added_units", "concept"} or None, an optional on_progress(fraction, message).
    Out (strict JSON): {"seed", "metrics" (test_accuracy, test_loss, train_loss of the last
    epoch, as run_arm gives them), "history", "parameters", "seconds" (training),
    "device", "dataset_fingerprint", "mechanism" (experiments.mechanism_check, or {"error",
    ...} when it failed, or None), "profile" (ActivationProfile.to_dict() of probe_layers on
    the test split: per-unit statistics only, no activations; or None)}.

    A transformer candidate (its spec of the transformer family) trains as a transformer
    change experiment's arm (transformer_experiments.run_transformer_arm: the same task,
    steps and held-out sequences, so the metrics match), and its profile is the head profile
    {"heads": ...} of the held-out sequences. Its "mechanism" is None here: the head check
    compares each seed's candidate with the same seed's current model, so it is made when the
    round is decided (study_head_mechanism), from the profiles of both.
    """
    if is_transformer_spec(spec):
        return _transformer_job_run(config, spec, seed=seed, profile=profile,
                                    on_progress=on_progress)  # fmt: skip
    spec = study_base_spec(config, spec)
    dataset = dataset_for(experiment_settings_of(config))
    train_config = TrainConfig.from_spec(spec)
    trained = train_model(
        spec, dataset, train_config, seed=seed, on_progress=_scaled(on_progress, TRAINING_SHARE)
    )
    _, test = dataset.split(train_config.test_fraction, seed=train_config.split_seed)
    checked = None
    if mechanism:
        try:
            checked = mechanism_check(trained.model, test, mechanism)
        except (KeyError, ValueError) as error:
            checked = {"error": str(error), **mechanism}
    profiled = None
    if profile:
        profiled = profile_activations(trained.model, test, layers=probe_layers(spec)).to_dict()
    if on_progress is not None:
        on_progress(1.0, f"seed {seed} done")
    return json_safe({
        "seed": seed,
        "metrics": trained.metrics,
        "history": trained.history,
        "parameters": count_model_parameters(spec),
        "seconds": trained.seconds,
        "device": trained.device,
        "dataset_fingerprint": dataset.fingerprint,
        "mechanism": checked,
        "profile": profiled,
    })  # fmt: skip


def transformer_settings_of(config: dict) -> TransformerExperimentConfig:
    """The TransformerExperimentConfig of a cleaned transformer study config: the same task,
    training steps, seeds and probe set, so a study's job trains as an experiment's arm."""
    return TransformerExperimentConfig(
        dataset=config["dataset"], train=config["train"], seeds=config["seeds"],
        probe_size=config["probe_size"], metric=config["metric"],
        direction=config["direction"], score=config["head_role"],
    )  # fmt: skip


def _task_fingerprint(config: dict) -> str:
    """The sequence task is procedural: its settings and probe size fix every sequence."""
    task = {"dataset": config["dataset"], "probe_size": config["probe_size"]}
    canonical = json.dumps(task, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _transformer_job_run(config, spec, *, seed, profile, on_progress) -> dict[str, Any]:
    spec = study_base_spec(config, spec)
    arm = run_transformer_arm(
        spec, transformer_settings_of(config), seed=seed, profile=profile,
        on_progress=_scaled(on_progress, TRAINING_SHARE),
    )  # fmt: skip
    if on_progress is not None:
        on_progress(1.0, f"seed {seed} done")
    return json_safe({
        "seed": seed,
        "metrics": arm["metrics"],
        "history": arm["history"],
        "parameters": count_transformer_parameters(spec),
        "seconds": arm["seconds"],
        "device": arm["device"],
        "dataset_fingerprint": _task_fingerprint(config),
        "mechanism": None,
        "profile": arm["head_profile"],
    })  # fmt: skip


def study_profiles_every_seed(spec: dict) -> bool:
    """Whether a base or guided candidate of this model is profiled at every seed rather than
    only the first: a transformer's are (head profiling is a forward pass over the probe set),
    because the head mechanism check pairs each seed's candidate with its current model."""
    return is_transformer_spec(spec)


def study_head_mechanism(
    request: dict[str, Any] | None, current_results: list[dict], candidate_results: list[dict]
) -> dict[str, Any] | None:
    """The guided transformer candidate's head mechanism check: did its added heads take on
    the role, seed by seed, against the best head of the track's current model at the same
    seed (transformer_experiments.head_mechanism_check)?

    In: the round's request {"layer", "added_heads", "score"} (study_plans), the job results
    of the current model and of the candidate, each with its seed's head profile. Out: the
    check (JSON-able), or None without a request.
    """
    if not request:
        return None
    profiles = [
        {result["seed"]: result["profile"] for result in results if result.get("profile")}
        for results in (current_results, candidate_results)
    ]
    return json_safe(head_mechanism_check(
        profiles[0], profiles[1], layer=request["layer"], added_heads=request["added_heads"],
        score=request["score"],
    ))  # fmt: skip


class _LocalStudy:
    """The state run_study_locally carries from round to round: each track's current model
    (spec, profile, values) and the rows written so far."""

    def __init__(self, config: dict, on_progress: ProgressCallback | None) -> None:
        self.config = config
        self.on_progress = on_progress
        self.rows: list[dict[str, Any]] = []
        self.current: dict[str, dict[str, Any]] = {}
        seeds, tracks = len(config["seeds"]), len(config["tracks"])
        self.jobs_total = seeds * (1 + config["rounds"] * tracks)  # at most; sat-outs skip
        self.jobs_done = 0

    def train(self, spec: dict, *, profile_first: bool, mechanism: dict | None, label: str):
        """Out: the job results of `spec` over the seeds, the first seed profiled when asked
        (every seed, for a transformer: study_profiles_every_seed)."""
        results = []
        every = study_profiles_every_seed(spec)
        for position, seed in enumerate(self.config["seeds"]):
            results.append(study_job_run(
                self.config, spec, seed=seed,
                profile=profile_first and (position == 0 or every), mechanism=mechanism,
            ))  # fmt: skip
            self.jobs_done += 1
            if self.on_progress is not None:
                fraction = min(1.0, self.jobs_done / self.jobs_total)
                self.on_progress(fraction, f"{label} seed {seed} done")
        return results

    def values(self, results: list[dict]) -> list[float]:
        return [result["metrics"][self.config["metric"]] for result in results]


def _row(index: int, track: str, planned: dict, spec: dict) -> dict[str, Any]:
    return {
        "index": index, "track": track, "spec": spec, "plan": planned["plan"],
        "parameters": planned["parameters"], "params_added": planned["params_added"],
        "operation": planned["operation"], "change_parameters": planned["change_parameters"],
        "values": None, "summary": None, "mechanism": None, "decision": None, "kept": False,
        "sat_out": planned["spec"] is None,
    }  # fmt: skip


def _base_round(study: _LocalStudy, spec: dict) -> None:
    base = study_base_spec(study.config, spec)
    results = study.train(base, profile_first=True, mechanism=None, label="round 0 base")
    values = study.values(results)
    study.rows.append({
        "index": 0, "track": BASE, "spec": base, "plan": {},
        "parameters": count_model_parameters(base), "params_added": 0, "operation": "",
        "change_parameters": {}, "values": values,
        "summary": study_values_summary(values), "mechanism": None, "decision": None,
        "kept": None, "sat_out": False,
    })  # fmt: skip
    for track in study.config["tracks"]:
        profile = results[0]["profile"] if track == GUIDED else None
        study.current[track] = {"spec": base, "profile": profile, "values": values,
                                "results": results}  # fmt: skip


def _track_round(study: _LocalStudy, index: int, track: str, planned: dict) -> None:
    current = study.current[track]
    row = _row(index, track, planned, planned["spec"] or current["spec"])
    study.rows.append(row)
    if planned["spec"] is None:
        return
    results = study.train(
        planned["spec"], profile_first=track == GUIDED, mechanism=planned["mechanism"],
        label=f"round {index} {track}",
    )  # fmt: skip
    values = study.values(results)
    decision = study_round_decide(study.config, current["values"], values)
    if is_transformer_spec(planned["spec"]):
        mechanism = study_head_mechanism(planned["mechanism"], current["results"], results)
    else:
        mechanism = summarise_mechanism(results)
    row.update(values=values, summary=study_values_summary(values), decision=decision,
               kept=decision["kept"], mechanism=mechanism)  # fmt: skip
    if decision["kept"]:
        study.current[track] = {"spec": planned["spec"], "profile": results[0]["profile"],
                                "values": values, "results": results}  # fmt: skip


def run_study_locally(
    config: dict, spec: dict, *, on_progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Run a whole study in this process, round by round, with no database or broker.

    In: the cleaned study config (study_settings.study_config_clean for this spec), the base
    model's spec, an optional on_progress(fraction, message) called after each job. The work
    is exactly the workers': round 0 trains the base model over the seeds (the first seed
    profiled), then each round plans every track's candidate (study_round_plan), trains it
    over the seeds (a guided candidate's first seed profiled, its mechanism checked on every
    seed), and decides it (study_round_decide). Deterministic on CPU: the same config and
    spec give the same rounds and report.
    Out (strict JSON): {"rounds": [rows as StudyRound stores them: "index", "track", "spec",
    "plan", "parameters", "params_added", "values", "summary", "mechanism" (summarised over
    seeds), "decision", "kept", plus "sat_out", "operation", "change_parameters"],
    "report": study_final_report(config, rounds)}. on_progress gets the share of the (at most
    seeds x (1 + rounds x tracks)) jobs done, and 1.0 at the end when tracks sat rounds out.
    """
    study = _LocalStudy(config, on_progress)
    _base_round(study, spec)
    for index in range(1, config["rounds"] + 1):
        current = {track: {"spec": state["spec"], "profile": state["profile"],
                           "rejected": rejected_candidates(study.rows, track)}
                   for track, state in study.current.items()}  # fmt: skip
        planned = study_round_plan(config, index, current)
        for track in config["tracks"]:
            _track_round(study, index, track, planned[track])
    if on_progress is not None and study.jobs_done < study.jobs_total:
        on_progress(1.0, "study done (tracks sat some rounds out)")
    rounds = json_safe(study.rows)
    return {"rounds": rounds, "report": study_final_report(config, rounds)}


__all__ = [
    "run_study_locally",
    "study_head_mechanism",
    "study_job_run",
    "study_profiles_every_seed",
    "transformer_settings_of",
]
