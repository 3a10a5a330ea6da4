"""Writes for guided-search studies: request, cancel, resume, and the orchestration that decides
each track's rounds and plans its next (study_advance, called by the worker after every study
job).

A study is an AnalysisRun of kind "study" (analysis.models.Study), so its jobs are claimed,
leased, swept, cancelled and retried by analysis/services.py like every run's. What this module
adds is the order of rounds, per track (analysis/study_rounds.py says what depends on what):
the jobs of a track's round k ("r{k}:{track}:s{seed}") are created once its round k-1 is
decided (and, for a control track, once the guided candidate of round k is planned), so a
track may train round k+1 while another still trains round k. Rows are decided, rounds
recorded (finding, insight, change, outcome, once all of a round's rows are decided), next
rounds planned and the study finished with the engine's final report under a lock on the
study's row, by whichever worker finishes the job that allows it.

Torch-free at import: the web process requests, cancels and resumes studies. Only deciding a
round (study_advance, in workers) loads the engine's torch code, for the mechanism summary.
"""

import json
import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from analysis import services
from analysis.dispatch import BrokerUnavailable, jobs_send
from analysis.engine.changes import ChangeError, validate_change_parameters
from analysis.engine.model_specs import count_model_parameters
from analysis.engine.plans import baseline_spec
from analysis.engine.run_settings import SettingsError
from analysis.engine.specs import SpecError
from analysis.engine.stats import compare_arms, verdict
from analysis.engine.study_plans import rejected_candidates
from analysis.engine.study_report import (
    study_final_report,
    study_round_decide,
    study_values_summary,
)
from analysis.engine.study_settings import study_config_clean
from analysis.engine.transformer_specs import is_transformer_spec
from analysis.frozen import study_config_freeze
from analysis.models import AnalysisJob, AnalysisRun, Study, StudyRound
from analysis.study_rounds import (
    rounds_in_words,
    study_job_key,
    study_job_parse,
    study_round_keys,
    study_steps,
    study_track_plans,
)
from analysis.study_selectors import round_sat_out, study_progress_of, study_row_states
from kb import events
from kb.models import ArchitectureChange, Finding, Insight, Outcome, SubjectModel
from kb.services.changes import change_create
from kb.services.insights import insight_create
from kb.services.records import record_create
from kb.services.subjects import finding_create

logger = logging.getLogger(__name__)

Track = StudyRound.Track
BASE, GUIDED, RANDOM, UNIFORM = Track.BASE, Track.GUIDED, Track.RANDOM, Track.UNIFORM
CONTROL_TRACKS = (RANDOM, UNIFORM)


# --- job keys (study_rounds: "r{index}:{track}:s{seed}") -----------------------------------


def _profiles(track: str) -> bool:
    """Whether a track's job at the first seed profiles its trained model: the base model and
    guided candidates, whose profile is what the guided rule reads next round."""
    return track in (BASE, GUIDED)


def study_job_inputs(*, run_id: int, key: str) -> dict:
    """What a study job trains, from its round's row (written once, when the round was
    planned): {"spec", "seed", "profile" (bool), "mechanism" (the check's request or None)}.
    A transformer's base and guided candidates are profiled at every seed: the head mechanism
    check pairs each seed's candidate with the current model of the same seed, and it is made
    when the round is decided, so the job itself gets no mechanism request."""
    index, track, seed = study_job_parse(key)
    row = StudyRound.objects.select_related("study").get(study_id=run_id, index=index, track=track)
    config = row.study.config
    transformer = is_transformer_spec(row.spec)
    return {
        "spec": row.spec,
        "seed": seed,
        "profile": _profiles(track) and (seed == config["seeds"][0] or transformer),
        "mechanism": row.plan.get("mechanism_request")
        if track == GUIDED and not transformer
        else None,
    }


# --- request, cancel, resume ------------------------------------------------------------------


def _cleaned_settings(model: SubjectModel, settings: dict | None) -> dict:
    """The study's settings cleaned by the engine's one validator, errors keyed by field."""
    if model.kind != SubjectModel.Kind.BUILTIN:
        raise ValidationError({"model": "Only built-in models can be studied by the engine."})
    try:
        return study_config_clean(settings, spec=model.architecture_spec)
    except SettingsError as error:
        raise ValidationError(error.field_errors) from None


def study_request(
    *, actor, model: SubjectModel, settings: dict | None = None, dispatch: bool = True
) -> Study:
    """Queue a guided-search study of a built-in model: validate the settings (nothing is
    written when they are refused), freeze the design, save the study with its round 0 (the
    base model over every seed) and send round 0's jobs once the transaction commits.
    `dispatch=False` leaves the jobs to the caller (command line, tests)."""
    with transaction.atomic():
        # Locked so that the model cannot be edited between freezing it and the study's save.
        model = SubjectModel.objects.select_for_update().get(pk=model.pk)
        cleaned = _cleaned_settings(model, settings)
        study = services._run_create(
            actor=actor,
            kind=AnalysisRun.Kind.STUDY,
            config=study_config_freeze(model, cleaned),
            subject_model=model,
            dispatch=dispatch,
            run_class=Study,
        )
        base = baseline_spec(model.architecture_spec, cleaned["train"])
        _row_save(
            StudyRound(
                study=study, index=0, track=BASE, spec=base,
                # Whether later rounds go to the workers too, or to the caller that runs
                # them (the command line's in-process mode, tests).
                plan={"source": "the model under study, with the study's training settings",
                      "dispatch": dispatch},
                parameters=count_model_parameters(base), params_added=0,
            )
        )  # fmt: skip
        _progress_write(study.pk)
    return study


def study_cancel(*, actor, study: Study) -> Study:
    """Cancel a queued or running study; its running jobs stop at their next progress report.
    Decided rounds, and the records they wrote, are kept."""
    return services.run_cancel(actor=actor, run=study)


def study_resume(*, actor, study: Study) -> Study:
    """Continue a cancelled or failed study where each track stopped: its unfinished jobs are
    sent again (finished jobs keep their results), and the worker that finishes one decides
    whatever can be decided. When every job had finished, one message of a done job is sent
    (services' nudge): its worker decides the rows.
    From here on the workers send each next round, even for a study its caller ran
    (dispatch=False): that caller is gone."""
    with transaction.atomic():
        resumed = services.run_retry(actor=actor, run=study)
        _hand_to_workers(study.pk)
    return resumed


def _hand_to_workers(study_id: int) -> None:
    """Record on round 0 that the workers, not the caller that requested the study, send its
    next rounds (StudyRound.plan["dispatch"], read by _workers_send)."""
    base = StudyRound.objects.select_for_update().get(study_id=study_id, index=0)
    if base.plan.get("dispatch", True) is False:
        base.plan = {**base.plan, "dispatch": True}
        base.save(update_fields=["plan"])


# --- advancing a study (called from workers after every study job) ----------------------------

# More passes than any study needs: each pass decides or plans a row, or records a round, and a
# study has at most 1 + 10 rounds x 3 tracks rows and 10 rounds. A loop that makes no progress
# is a bug, not a wait.
MAX_PASSES = 100


def study_advance(*, run_id: int) -> bool:
    """Move the study on as far as its finished jobs allow (study_rounds.study_steps): decide
    every row whose jobs are all done, write the records of each round whose rows are all
    decided, plan each track's next round as soon as its own last round is decided (and, for
    a control, the guided candidate of that round is planned), and finish the study once
    every track's last round is decided. A track may thus run ahead of the others; the new
    jobs are sent once the transaction commits, the guided track's first.

    Safe to call any number of times, from any number of workers at once: all of it happens
    under a lock on the study's row, and a decided row, a recorded round or a planned row is
    never done again. Returns True for the one call that finished the study; a failure of a
    decision fails the study (resume decides it again)."""
    try:
        return _advance(run_id) == "finished"
    except services.TRANSIENT_ERRORS:
        raise  # the task retries; the transaction wrote nothing
    except Exception as error:
        logger.exception("internal error deciding a round of study %s", run_id)
        services.run_finish(
            run_id=run_id,
            status=AnalysisRun.Status.FAILED,
            error=f"deciding a round: internal error ({type(error).__name__}); the "
            "traceback is in the worker log",
            failure=AnalysisRun.Failure.INTERNAL,
        )
        return False


def _advance(run_id: int) -> str:
    """Every step the study can take now, under its row lock, in one transaction: 'waiting'
    (nothing to do, or the study is not live), 'advanced' or 'finished'."""
    with transaction.atomic():
        study = (
            Study.objects.select_for_update(of=("self",))
            .select_related("subject_model")
            .filter(pk=run_id, status__in=services.LIVE_STATUSES)
            .first()
        )
        if study is None:
            return "waiting"
        keys: list[str] = []
        steps_taken = 0
        while steps := study_steps(study.config, study_row_states(study)):
            steps_taken += 1
            if steps_taken > MAX_PASSES:
                raise RuntimeError(f"study {run_id} still had steps after {MAX_PASSES} passes")
            for index, track in steps.decide:
                _row_decide(study, index, track)
            for index in steps.record:
                _round_records_write(study, index)
            for index, track in steps.plan:
                keys += _row_plan(study, index, track)
            if steps.finished:
                _study_finish(study)
                return "finished"
        if not steps_taken:
            return "waiting"
        _jobs_send_on_commit(study, keys)
        _progress_write(study.pk)
        return "advanced"


def _row_results(study: AnalysisRun, row: StudyRound) -> dict[str, dict]:
    """{job key: result} of the row's jobs (all done: study_steps decides only such rows)."""
    keys = study_round_keys(study.config, row.index, row.track)
    return dict(
        AnalysisJob.objects.filter(
            run=study, key__in=keys, status=AnalysisJob.Status.DONE
        ).values_list("key", "result")
    )


def _values(study: AnalysisRun, row: StudyRound, results: dict[str, dict]) -> list[float | None]:
    """The metric per seed, in the study's seed order, from the row's job results; None for
    a seed whose metric was no number (NaN or infinite, stored as None by the job): the
    statistics it enters are undefined and its candidate is not kept."""
    metric = study.config["metric"]
    values = [
        results[key]["metrics"][metric]
        for key in study_round_keys(study.config, row.index, row.track)
    ]
    return [None if value is None else float(value) for value in values]


def _undefined_seeds(study: AnalysisRun, values: list[float | None]) -> list[int]:
    """The seeds whose value is None (the metric was no number), in the study's seed order."""
    return [
        seed for seed, value in zip(study.config["seeds"], values, strict=True) if value is None
    ]


def _current_rows(study: AnalysisRun, *, before: int) -> dict[str, StudyRound]:
    """Each track's current model before round `before`: its last kept candidate, else the
    base model (round 0, decided or not: round 1 is planned once it is profiled). Right for
    a track whose rows before that round are all decided (a track with a row in round
    `before` has them all; another track may still be behind)."""
    rows = StudyRound.objects.filter(study=study, index__lt=before).filter(
        Q(index=0) | Q(decided_at__isnull=False)
    )
    base = next(row for row in rows if row.track == BASE)
    current = {track: base for track in study.config["tracks"]}
    for row in sorted(rows, key=lambda row: row.index):
        if row.track != BASE and row.kept:
            current[row.track] = row
    return current


def _row_decide(study: Study, index: int, track: str) -> None:
    """Write one row's values, summary and keep decision (a row sitting out is decided as
    not kept, with nothing to measure). Its round's records wait for the round's last row."""
    row = StudyRound.objects.get(study=study, index=index, track=track)
    row.decided_at = timezone.now()
    if round_sat_out(row):
        row.kept = False
        _row_save(row)
        return
    results = _row_results(study, row)
    row.values = _values(study, row, results)
    row.summary = study_values_summary(row.values)
    if track != BASE:  # the base model has nothing to decide: every track's starting point
        current = _current_rows(study, before=index)[track]
        row.decision = study_round_decide(study.config, current.values, row.values)
        row.kept = bool(row.decision["kept"])
        if track == GUIDED:
            row.mechanism = _mechanism_summary(study, row, results, current)
    _row_save(row)


def _round_records_write(study: Study, index: int) -> None:
    """The records of a round whose rows are all decided (_round_records)."""
    rows = {row.track: row for row in StudyRound.objects.filter(study=study, index=index)}
    _round_records(study, rows, _current_rows(study, before=index))
    for row in rows.values():
        _row_save(row)


def _mechanism_summary(
    study: AnalysisRun, row: StudyRound, results: dict, current: StudyRound
) -> dict | None:
    """The guided candidate's mechanism check over its seeds: a CNN's from its jobs' checks;
    a transformer's head check, each seed's candidate against the same seed's current model
    (their jobs' head profiles)."""
    # Imported here: the summary lives with the experiments' engine code, which loads torch;
    # only workers decide rounds.
    from analysis.engine.experiments import summarise_mechanism
    from analysis.engine.studies import study_head_mechanism

    keys = study_round_keys(study.config, row.index, row.track)
    candidate = [results[key] for key in keys]
    if not is_transformer_spec(row.spec):
        return summarise_mechanism(candidate)
    current_keys = study_round_keys(study.config, current.index, current.track)
    stored = dict(
        AnalysisJob.objects.filter(run=study, key__in=current_keys).values_list("key", "result")
    )
    before = [stored[key] for key in current_keys if stored.get(key)]
    return study_head_mechanism(row.plan.get("mechanism_request"), before, candidate)


def _row_plan(study: Study, index: int, track: str) -> list[str]:
    """Plan one track's round `index` from its current model (and, for a control, the guided
    track's: study_rounds.study_track_plans): its row (a track that cannot form a candidate
    sits the round out: its row keeps its current spec, no jobs) and its jobs. Returns the
    new jobs' keys."""
    current = _current_rows(study, before=index)
    decided = [
        {"index": row.index, "track": row.track, "spec": row.spec, "plan": row.plan,
         "kept": row.kept, "sat_out": round_sat_out(row)}
        for row in StudyRound.objects.filter(study=study, index__lt=index, decided_at__isnull=False)
    ]  # fmt: skip
    state = {
        name: {"spec": current[name].spec,
               "profile": _profile_of(study, current[name]) if name == GUIDED else None,
               "rejected": rejected_candidates(decided, name)}
        for name in {GUIDED, track}
    }  # fmt: skip
    candidate = study_track_plans(study.config, index, [track], state)[track]
    if candidate["spec"] is None:
        _row_save(StudyRound(
            study=study, index=index, track=track, spec=current[track].spec,
            plan=candidate["plan"], parameters=current[track].parameters, params_added=0,
            kept=False,
        ))  # fmt: skip
        return []
    plan = {**candidate["plan"],
            "change": {"operation": candidate["operation"],
                       "parameters": candidate["change_parameters"]},
            "mechanism_request": candidate["mechanism"]}  # fmt: skip
    _row_save(StudyRound(
        study=study, index=index, track=track, spec=candidate["spec"], plan=plan,
        parameters=candidate["parameters"], params_added=candidate["params_added"],
    ))  # fmt: skip
    keys = study_round_keys(study.config, index, track)
    AnalysisJob.objects.bulk_create(AnalysisJob(run=study, key=key) for key in keys)
    return keys


def _jobs_send_on_commit(study: Study, keys: list[str]) -> None:
    """Send the new jobs, in the order they were planned, once the transaction commits;
    unless the study's caller runs its jobs (_workers_send).

    The study counts as not dispatched until the broker takes them, so the sweeper sends its
    unfinished jobs should the broker be down or this worker die first. Only the jobs
    planned here are sent, the study's other unfinished jobs being on the queue already;
    unless that is not sure: the study was not dispatched when these were planned (an
    earlier send failed, or is still on its way), or its caller's jobs just passed to the
    workers. Then every unfinished job goes (a worker ignores a copy of a job that is done
    or held)."""
    if not keys:
        return
    route = _workers_send(study)
    if route == "caller":
        return
    unsure = route == "handed over" or (
        AnalysisRun.objects.filter(pk=study.pk, dispatched_at__isnull=True).exists()
    )
    AnalysisRun.objects.filter(pk=study.pk).update(dispatched_at=None)
    if unsure:
        services._dispatch_on_commit(study)
        return
    last = AnalysisJob.objects.filter(run=study).aggregate(last=Max("pk"))["last"]
    transaction.on_commit(lambda: _jobs_send(study.pk, keys, last))


def _jobs_send(study_id: int, keys: list[str], last: int) -> None:
    try:
        jobs_send([(study_id, key) for key in keys])
    except BrokerUnavailable:
        # Another worker's send may have marked the study dispatched meanwhile: unmark it.
        AnalysisRun.objects.filter(pk=study_id).update(dispatched_at=None)
        return
    # Marked dispatched by the latest planning only: jobs planned after these ones (by another
    # worker, committed meanwhile) may still wait for their own send.
    AnalysisRun.objects.filter(pk=study_id, dispatched_at__isnull=True).exclude(
        jobs__pk__gt=last
    ).update(dispatched_at=timezone.now())


def _workers_send(study: AnalysisRun) -> str:
    """Who sends the study's new jobs: "workers"; "caller" while the study's caller runs its
    jobs (round 0's plan["dispatch"] is False) and no worker has run one of them; "handed
    over" when a worker has (the sweeper sent it a job whose caller died, or the study was
    retried): from now on the workers send its jobs, as round 0 records, and the caller's
    planned jobs that nobody sent go with the new ones."""
    if not StudyRound.objects.filter(study=study, index=0, plan__dispatch=False).exists():
        return "workers"
    if not _worker_ran_a_job(study.pk):
        return "caller"
    _hand_to_workers(study.pk)
    return "handed over"


def _worker_ran_a_job(study_id: int) -> bool:
    # A worker claims a job under its node name; the caller's own process claims with none.
    return AnalysisJob.objects.filter(run_id=study_id).exclude(claimed_by="").exists()


def _profile_of(study: AnalysisRun, row: StudyRound) -> dict | None:
    """The profile of a track's current model: stored in the result of the job that trained
    it at the first seed (round 0's base, or a kept guided candidate)."""
    key = study_job_key(row.index, row.track, study.config["seeds"][0])
    result = AnalysisJob.objects.filter(run=study, key=key).values_list("result", flat=True).first()
    return (result or {}).get("profile")


def _study_finish(study: Study) -> None:
    rows = StudyRound.objects.filter(study=study).order_by("index", "track")
    report = study_final_report(
        study.config,
        [{"index": row.index, "track": row.track, "values": row.values,
          "parameters": row.parameters, "kept": row.kept, "summary": row.summary,
          "sat_out": round_sat_out(row)} for row in rows],
    )  # fmt: skip
    services.run_finish(
        run_id=study.pk,
        status=AnalysisRun.Status.SUCCEEDED,
        result=report,
        environment=_study_environment(study),
    )


def _study_environment(study: AnalysisRun) -> dict:
    """Each distinct job environment with the jobs that ran there, and the data's fingerprint
    (the same for every job: one dataset, one split)."""
    # Imported here: the execution module is the workers' (it loads torch), as is this call.
    from analysis.execution import run_environment

    fingerprint = (
        AnalysisJob.objects.filter(run=study, key=study_job_key(0, BASE, study.config["seeds"][0]))
        .values_list("result__dataset_fingerprint", flat=True)
        .first()
    )
    return run_environment(study, dataset_fingerprint=fingerprint)


def _row_save(row: StudyRound) -> None:
    row.full_clean()
    row.save()


# --- progress -------------------------------------------------------------------------------


def study_progress_write(*, run_id: int, message: str = "") -> None:
    """Store the study's progress (study_selectors.study_progress_of): the share of its rows
    decided, an undecided row counting its jobs' progress, out of rounds + 1 (round 0 is the
    base model); the message says which round each track is running ("round k of K" while
    they are all in one) and the undecided rows' jobs done. Called for every job progress
    report (services.job_progress)."""
    _progress_write(run_id, message)


def _progress_write(run_id: int, message: str = "") -> None:
    config = AnalysisRun.objects.values_list("config", flat=True).get(pk=run_id)
    progress = study_progress_of(run_id, config)
    if not progress.in_flight:
        return
    text = (
        f"{rounds_in_words(config, progress.in_flight)}: {progress.jobs_done} of "
        f"{progress.jobs_total} jobs done"
    )
    AnalysisRun.objects.filter(pk=run_id, status__in=services.LIVE_STATUSES).update(
        progress_percent=min(99, int(100 * progress.fraction)),
        progress_message=(f"{text} ({message})" if message else text)[:200],
    )


# --- records: what each decided round writes into the knowledge base ------------------------


def _round_records(study: Study, rows: dict[str, StudyRound], current: dict) -> None:
    """The guided round's finding, insight, change and outcome; the control tracks' changes and
    outcomes, marked as controls. Tracks that sat the round out write nothing."""
    guided = rows.get(GUIDED)
    insight = None
    if guided is not None and not round_sat_out(guided):
        guided.finding = _profile_finding(study, guided, current[GUIDED])
        insight = guided.insight = _guided_insight(study, guided)
        random = rows.get(RANDOM)
        control = random.values if random is not None and not round_sat_out(random) else []
        guided.change = _round_change(study, guided, current[GUIDED], insight)
        guided.outcome = _round_outcome(study, guided, current[GUIDED], control, RANDOM)
    for track in CONTROL_TRACKS:
        row = rows.get(track)
        if row is None or round_sat_out(row):
            continue
        row.insight = insight or _controls_insight(study)
        row.change = _round_change(study, row, current[track], row.insight)
        row.outcome = _round_outcome(study, row, current[track], [], "")


def _finding_location(study: Study, plan: dict) -> tuple[str, list[int], str] | None:
    """(layer, units, note) on the study's model of the profiled layer the rule chose (for a
    widening, its most selective unit), or None when that layer is not one of the model's
    (a layer an earlier guided round inserted)."""
    if plan.get("operation") == "insert_layer":
        after = plan.get("parameters", {}).get("after")
        chosen = [row for row in plan.get("inputs", []) if row.get("profiled_layer") == after]
    else:
        chosen = [row for row in plan.get("inputs", []) if row.get("layer") == plan.get("layer")]
    if not chosen:
        return None
    layer, top = chosen[0]["profiled_layer"], chosen[0].get("top_unit")
    widths = study.subject_model.known_layer_widths()
    if layer not in widths:
        return None
    if top is None:
        return layer, [], ""
    if top < widths[layer]:
        return layer, [top], ""
    return layer, [], f" Its most selective unit, {top}, is one an earlier round added."


def _profile_finding(study: Study, row: StudyRound, current: StudyRound) -> Finding | None:
    """The profile the guided rule read, in words, as a hypothesis finding on the study's
    model (None when the chosen layer is not one of that model's layers)."""
    plan = row.plan
    if is_transformer_spec(row.spec):
        return _head_profile_finding(study, row, current)
    location = _finding_location(study, plan)
    if location is None:
        return None
    layer, units, note = location
    compared = "; ".join(_input_words(item) for item in plan.get("inputs", []))
    model = "the base model" if current.index == 0 else f"the round {current.index} candidate"
    return finding_create(
        actor=None,
        subject_model=study.subject_model,
        title=f"Study {study.pk} round {row.index}: {plan.get('concept', '')} profile "
        f"of the guided track's model"[:200],
        layer_name=layer,
        unit_indices=units,
        concept=plan.get("concept", "")[:120],
        kind=Finding.Kind.UNIT_CLUSTER,
        status=Finding.Status.HYPOTHESIS,
        confidence=0.5,
        description=(
            f"Profiled by study {study.pk} before round {row.index} ({model} of the guided "
            f"track, trained at seed {study.config['seeds'][0]}). The rule compared: "
            f"{compared}.{note}"
        ),
        evidence_runs=[study],
    )


def _head_profile_words(plan: dict) -> tuple[dict | None, str]:
    """The best head the transformer rule saw, and the profile in words: "no head reaches the
    induction threshold 0.50; best 0.16 at layer 0 head 1" (or "layer 1 head 0 reaches ...")."""
    role = plan.get("concept", "")
    inputs = plan.get("inputs", [])
    threshold = inputs[0].get("threshold") if inputs else None
    scored = [item for item in inputs if item.get("best_score") is not None]
    best = max(scored, key=lambda item: (item["best_score"], -item["block"])) if scored else None
    level = f" {threshold:.2f}" if threshold is not None else ""
    if best is None:
        return None, f"no head has a measurable {role} score"
    where = f"layer {best['block']} head {best['best_head']}"
    if threshold is not None and best["best_score"] >= threshold:
        return best, f"{where} reaches the {role} threshold{level} (score {best['best_score']:.2f})"
    return best, (
        f"no head reaches the {role} threshold{level}; best {best['best_score']:.2f} at {where}"
    )


def _head_profile_finding(study: Study, row: StudyRound, current: StudyRound) -> Finding | None:
    """The head profile the transformer rule read, as a hypothesis finding on the study's
    model at the best head (None when that layer or head is not one of the model's: an
    earlier guided round added it)."""
    plan = row.plan
    best, words = _head_profile_words(plan)
    if best is None:
        return None
    widths = study.subject_model.known_layer_widths()
    if best["layer"] not in widths or best["best_head"] >= widths[best["layer"]]:
        return None
    per_layer = "; ".join(
        f"{item['layer']}: best {item['best_score']:.3f} (head {item['best_head']})"
        if item.get("best_score") is not None
        else f"{item['layer']}: no measurable score"
        for item in plan.get("inputs", [])
    )
    model = "the base model" if current.index == 0 else f"the round {current.index} candidate"
    return finding_create(
        actor=None,
        subject_model=study.subject_model,
        title=f"Study {study.pk} round {row.index}: {words}"[:200],
        layer_name=best["layer"],
        unit_indices=[best["best_head"]],
        concept=plan.get("concept", "")[:120],
        kind=Finding.Kind.FEATURE,
        status=Finding.Status.HYPOTHESIS,
        confidence=0.5,
        description=(
            f"Head profile by study {study.pk} before round {row.index} ({model} of the guided "
            f"track, trained at seed {study.config['seeds'][0]}, its heads scored on "
            f"{study.config.get('probe_size', 'the')} held-out sequences): {words}. Per "
            f"layer: {per_layer}."
        ),
        evidence_runs=[study],
    )


def _input_words(item: dict) -> str:
    numbers = ", ".join(
        f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}"
        for key, value in item.items()
        if key not in ("profiled_layer", "layer")
    )
    return f"{item.get('profiled_layer', item.get('layer'))} ({numbers})"


def _guided_insight(study: Study, row: StudyRound) -> Insight:
    plan = row.plan
    rule = plan.get("rule_text") or plan.get("rule", "the study's guided rule")
    return insight_create(
        actor=None,
        title=f"Study {study.pk} round {row.index}: {rule}"[:200],
        statement=(
            f"Guided rule of study {study.pk} ({plan.get('rule', '')}): {rule}.\n\n"
            f"Round {row.index}: {plan.get('reason', plan.get('description', ''))}."
        ),
        supporting_findings=[row.finding] if row.finding else [],
        understanding_level=Insight.Level.WEIGHTS_AND_ACTIVATIONS,
    )


def _controls_insight(study: Study) -> Insight:
    """The study's one insight for control changes in rounds without a guided candidate."""
    title = f"Study {study.pk}: control tracks"
    existing = Insight.objects.filter(title=title).first()
    if existing is not None:
        return existing
    return insight_create(
        actor=None,
        title=title,
        statement=(
            f"Changes made by the control tracks of study {study.pk} (random tweaks and uniform "
            "widening at the guided track's budget), to compare the guided track with."
        ),
    )


def _change_fields(study: Study, row: StudyRound, current: StudyRound) -> tuple[str, dict]:
    """The change as an ArchitectureChange can hold it. Its target is the study's model, so a
    typed change is recorded only when the track's current model is still that model and the
    change applies to it; otherwise (a later round, or several steps) it is recorded as a
    manual change whose description lists its steps: it is never run again as a change
    experiment, and the round's plan keeps the steps themselves."""
    planned = row.plan.get("change", {})
    operation, parameters = planned.get("operation", "manual"), planned.get("parameters", {})
    if operation != ArchitectureChange.Operation.MANUAL and current.index == 0:
        try:
            validate_change_parameters(operation, parameters, study.subject_model.architecture_spec)
            return operation, parameters
        except (ChangeError, SpecError):
            pass
    if operation == ArchitectureChange.Operation.MANUAL:
        steps = parameters.get("steps", [])
    else:
        steps = [{"operation": operation, "parameters": parameters}]
    words = row.plan.get("description") or parameters.get("description") or "a study change"
    description = (
        f"{words}, applied to {_model_words(current)}; steps: {json.dumps(steps, sort_keys=True)}"
    )
    return ArchitectureChange.Operation.MANUAL, {"description": description}


def _model_words(current: StudyRound) -> str:
    if current.index == 0:
        return "the base model"
    return f"the {current.track} track's round {current.index} candidate"


def _round_change(
    study: Study, row: StudyRound, current: StudyRound, insight: Insight
) -> ArchitectureChange:
    operation, parameters = _change_fields(study, row, current)
    description = row.plan.get("description", "")
    role = "Guided track" if row.track == GUIDED else f"Control track ({row.track})"
    rationale = (
        f"{role} of study #{study.pk}, round {row.index}, applied to {_model_words(current)}: "
        f"{description or row.plan.get('reason', '')} ({row.params_added:+,} parameters)."
    )
    return change_create(
        actor=None,
        insight=insight,
        target_model=study.subject_model,
        operation=operation,
        parameters=parameters,
        rationale=rationale,
        expected_metric=study.config["metric"],
        expected_direction=study.config["direction"],
        status=ArchitectureChange.Status.EVALUATED,
    )


def _round_outcome(
    study: Study, row: StudyRound, current: StudyRound, control: list, control_track: str
) -> Outcome | None:
    """The candidate against the track's current model, paired by seed (the keep decision's
    comparison); the guided outcome also against the random candidate of the round.

    None when that comparison is undefined: a seed of the candidate or of the current model
    has no number, so the keep decision had no effect to weigh (the candidate is not kept)
    and an outcome, whose effect and per-seed values are numbers, cannot hold it. The round's
    decision then says that no outcome was recorded, and why."""
    comparison = row.decision["comparison"]
    effect, low, high = comparison["difference"], comparison["ci_low"], comparison["ci_high"]
    undefined = {"candidate": _undefined_seeds(study, row.values),
                 "current model": _undefined_seeds(study, current.values)}  # fmt: skip
    if effect is None or any(undefined.values()):
        _decision_note(row, undefined)
        return None
    extra = []
    if control and None in control:
        seeds = ", ".join(map(str, _undefined_seeds(study, control)))
        extra.append(f"- Not compared with the {control_track} candidate: its metric is no "
                     f"number at seed(s) {seeds}.")  # fmt: skip
        control = []
    if low is not None and high is not None:
        # The interval is centred on the mean difference; rounding in its last digit must
        # not break the outcome's rule that the interval contains the effect.
        low, high = min(low, effect), max(high, effect)
    versus_control = (
        compare_arms(row.values, control, paired=True, level=study.config["level"])
        if control
        else {}
    )
    minimum_effect = ArchitectureChange._meta.get_field("minimum_effect").default
    outcome = Outcome(
        change=row.change,
        metric=study.config["metric"],
        baseline_values=current.values,
        variant_values=row.values,
        control_values=list(control),
        effect=effect,
        ci_low=low,
        ci_high=high,
        p_value=comparison["p_value"],
        effect_vs_control=versus_control.get("difference"),
        control_ci_low=versus_control.get("ci_low"),
        control_ci_high=versus_control.get("ci_high"),
        verdict=verdict(
            low, high, direction=study.config["direction"], minimum_effect=minimum_effect
        ),
        source=Outcome.Source.STUDY,
        notes="\n".join([_outcome_notes(study, row), *extra]),
    )
    record_create(outcome, actor=None)
    events.record_outcome_recorded(actor=None, outcome=outcome)
    return outcome


def _decision_note(row: StudyRound, undefined: dict[str, list[int]]) -> None:
    """Say in the row's decision that the round recorded no outcome, and why."""
    where = "; ".join(
        f"the {whose}'s at seed(s) {', '.join(map(str, seeds))}"
        for whose, seeds in undefined.items()
        if seeds
    )
    why = (
        f"no outcome recorded: the metric is no number ({where or 'undefined'}), so the "
        "effect is undefined"
    )
    row.decision = {**row.decision, "outcome": why, "reason": f"{row.decision['reason']}; {why}"}


def _outcome_notes(study: Study, row: StudyRound) -> str:
    lines = [f"- Round {row.index} of study #{study.pk}: {row.decision['reason']}."]
    if row.track != GUIDED:
        lines.append(f"- Control track ({row.track}) of study #{study.pk}.")
    mechanism = row.mechanism
    if mechanism and mechanism.get("interpretation"):
        lines.append(f"- Mechanism check: {mechanism['interpretation']}.")
    return "\n".join(lines)


# --- sending a study's jobs again -----------------------------------------------------------


def studies_nudge_stalled() -> int:
    """Nudge (services.run_nudge) the live studies that wait for a decision nobody will make: every
    job done, the last one more than a lease ago (its worker died before deciding), and not
    nudged within a lease; studies whose caller runs the jobs (dispatch=False) are left to it.
    Called by every worker's sweeper. Returns how many were nudged; raises BrokerUnavailable
    when the broker is down.

    First, a caller-run study that a worker has taken over (the sweeper sent it a job whose
    lease ran out: its caller died) is handed to the workers: round 0 records that they send
    its rounds, and it counts as never dispatched, so the next sweep sends its unfinished
    jobs, which its dead caller never will."""
    _studies_adopt_abandoned()
    stale = timezone.now() - services._lease()
    callers = StudyRound.objects.filter(index=0, plan__dispatch=False).values("study_id")
    stalled = (
        AnalysisRun.objects.filter(
            kind=AnalysisRun.Kind.STUDY,
            status__in=services.LIVE_STATUSES,
            dispatched_at__lt=stale,
        )
        .exclude(jobs__status__in=[AnalysisJob.Status.PENDING, AnalysisJob.Status.RUNNING,
                                   AnalysisJob.Status.FAILED])
        .exclude(pk__in=callers)
        .annotate(last_finished=Max("jobs__finished_at"))
        .filter(last_finished__lt=stale)
        .values_list("pk", flat=True)
    )  # fmt: skip
    nudged = 0
    for run_id in stalled[: services.SWEEP_BATCH]:
        if not services.run_nudge(run_id=run_id):
            raise BrokerUnavailable(f"study {run_id} could not be nudged")
        # Nudged again only once another lease has passed without a decision.
        AnalysisRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        nudged += 1
    return nudged


def _studies_adopt_abandoned() -> None:
    """Hand to the workers each live study whose caller runs its jobs but one of whose jobs a
    worker has claimed (studies_nudge_stalled's docstring says why)."""
    abandoned = (
        StudyRound.objects.filter(
            index=0,
            plan__dispatch=False,
            study__status__in=services.LIVE_STATUSES,
            study__jobs__claimed_by__gt="",
        )
        .values_list("study_id", flat=True)
        .distinct()
    )
    for study_id in list(abandoned[: services.SWEEP_BATCH]):
        with transaction.atomic():
            # The run row first, as study_advance locks it, so the two never wait on each other.
            AnalysisRun.objects.select_for_update().filter(pk=study_id).first()
            _hand_to_workers(study_id)
            AnalysisRun.objects.filter(pk=study_id).update(dispatched_at=None)
