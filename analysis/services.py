"""Writes for analysis runs: request (validate, save, dispatch on commit), claim, progress,
finish, cancel and retry, and the sweep that sends what the broker lost or never got. Runs
and jobs change state only through conditional UPDATEs here, so every Celery task built on
them is safe to deliver twice."""

import dataclasses
import datetime
import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Avg, F, Max, Q, QuerySet
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from analysis.configs import (
    MIN_SEEDS,
    ablation_config_clean,
    dataset_concepts,
    dataset_fit_model,
    experiment_config_clean,
    profile_config_clean,
    transformer_experiment_config_clean,
    transformer_run_config_clean,
)
from analysis.dispatch import (
    BrokerUnavailable,
    broker_mark,
    broker_started_empty,
    jobs_send,
)
from analysis.engine.changes import ChangeError
from analysis.engine.model_specs import model_unit_layers, spec_family
from analysis.engine.run_settings import SettingsError
from analysis.engine.specs import SpecError
from analysis.engine.transformer_plans import (
    TransformerExperimentConfig,
    head_mechanism_target,
    plan_transformer_experiment,
)
from analysis.frozen import (
    FROZEN_VERSION,
    _model_snapshot,
    ablation_config_freeze,
    config_digest,
    experiment_config_freeze,
    profile_config_freeze,
)
from analysis.models import AnalysisJob, AnalysisRun
from kb import events
from kb.models import ArchitectureChange, Finding, Outcome, SubjectModel
from kb.services.changes import change_set_status
from kb.services.records import record_create
from kb.services.subjects import finding_attach_evidence, finding_create

logger = logging.getLogger(__name__)

# Failures that can succeed on a later try (a lost database or broker); only these retry.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerOperationalError)

LIVE_STATUSES = (AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING)
# The most runs, and the most jobs, one sweep sends; the next sweep sends the rest.
SWEEP_BATCH = 200


UNFROZEN_RUN = (
    "This run was requested before runs froze what they measure, so it cannot run again; "
    "request a new run."
)


class RunCancelled(Exception):
    """Raised inside a job when its run was cancelled; the job stops without writing."""


def _lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS)


def _dispatch_on_commit(run: AnalysisRun) -> None:
    """Send the run once its transaction commits, and tell the caller's `run` whether the
    broker took it (`run.waiting_for_queue`)."""

    def dispatch() -> None:
        run_dispatch(run_id=run.pk)
        run.refresh_from_db(fields=["dispatched_at"])

    transaction.on_commit(dispatch)


def _job_keys(run: AnalysisRun) -> list[str]:
    if run.kind == AnalysisRun.Kind.STUDY:
        # A study is created with round 0's jobs; a track's later rounds get theirs when the
        # track's round before is decided (analysis/studies.py, analysis/study_rounds.py).
        from analysis.studies import study_round_keys

        return study_round_keys(run.config, 0, "base")
    if run.kind != AnalysisRun.Kind.CHANGE_EXPERIMENT:
        return ["main"]
    return [
        f"{arm}:{seed}"
        for arm in ("baseline", "variant", "control")
        for seed in run.config["seeds"]
    ]


def _run_create(
    *,
    actor,
    kind: str,
    config: dict,
    dispatch: bool,
    run_class: type[AnalysisRun] = AnalysisRun,
    **target,
) -> AnalysisRun:
    """Save a run (an instance of `run_class`: AnalysisRun, or its Study proxy) with its
    frozen config; a run whose config equals an earlier succeeded run's is recorded as a
    reproduction of it."""
    digest = config_digest(config)
    earlier = (
        AnalysisRun.objects.filter(
            kind=kind, config_digest=digest, status=AnalysisRun.Status.SUCCEEDED
        )
        .order_by("finished_at", "pk")
        .first()
    )
    run = run_class(
        kind=kind,
        config=config,
        config_digest=digest,
        reproduces=earlier,
        requested_by=_user_or_none(actor),
        # Not dispatched: the caller runs the jobs itself (the command line, tests), so the
        # sweeper must not send them to the workers as well.
        dispatched_at=None if dispatch else timezone.now(),
        **target,
    )
    with transaction.atomic():
        run.full_clean()
        run.save()
        AnalysisJob.objects.bulk_create(AnalysisJob(run=run, key=key) for key in _job_keys(run))
        events.record_run_requested(actor=actor, run=run)
        if dispatch:
            _dispatch_on_commit(run)
    return run


def _user_or_none(actor):
    return actor if actor is not None and actor.is_authenticated else None


def _require_builtin(model: SubjectModel, field: str) -> None:
    if model.kind != SubjectModel.Kind.BUILTIN:
        raise ValidationError({field: "Only built-in models can be analysed by the engine."})


def experiment_request(
    *,
    actor,
    change: ArchitectureChange,
    config: dict | None = None,
    dispatch: bool = True,
    min_seeds: int = MIN_SEEDS,
) -> AnalysisRun:
    """Queue a change experiment: baseline, guided variant and random control over N seeds.
    The change, the model and the arms are frozen into the run as they are now."""
    with transaction.atomic():
        # Locked so that the change cannot be edited between freezing it and the run's save.
        change = (
            ArchitectureChange.objects.select_for_update(of=("self", "target_model"))
            .select_related("target_model", "insight")
            .get(pk=change.pk)
        )
        _require_runnable(change)
        if _is_transformer(change.target_model):
            frozen = _transformer_experiment_frozen(change, config, min_seeds)
        else:
            frozen = _cnn_experiment_frozen(change, config, min_seeds)
        run = _run_create(
            actor=actor,
            kind=AnalysisRun.Kind.CHANGE_EXPERIMENT,
            config=frozen,
            change=change,
            dispatch=dispatch,
        )
        change_set_status(actor=actor, change=change, status=ArchitectureChange.Status.RUNNING)
    return run


def _cnn_experiment_frozen(change: ArchitectureChange, config: dict | None, min_seeds: int):
    cleaned = experiment_config_clean(config, min_seeds=min_seeds)
    cleaned["dataset"] = dataset_fit_model(
        cleaned["dataset"], change.target_model.architecture_spec
    )
    if not cleaned["concept"]:
        cleaned["concept"] = _motivating_concept(change, cleaned["dataset"]["name"])
    try:
        # Refused now, not in a worker, when no random control of the same size exists:
        # without it the experiment cannot say whether understanding helped.
        return experiment_config_freeze(change, cleaned)
    except (ChangeError, SpecError) as error:
        raise ValidationError({"change": str(error)}) from None


# The change's own fields that the transformer experiment config checks, and where a
# refusal of each belongs: the change states them, the run settings do not.
_CHANGE_SETTINGS = {"metric": "change", "direction": "change", "minimum_effect": "change"}


def _transformer_experiment_frozen(
    change: ArchitectureChange, config: dict | None, min_seeds: int
) -> dict:
    """The frozen config of a change experiment on a transformer: the cleaned settings, the
    change, the model snapshot, the three arms (the control drawn under the run's
    control_policy, recorded in the plan) and the heads the mechanism check looks at."""
    model = change.target_model
    cleaned = transformer_experiment_config_clean(
        config, spec=model.architecture_spec, min_seeds=min_seeds
    )
    settings = {**cleaned, "metric": change.expected_metric,
                "direction": change.expected_direction,
                "minimum_effect": change.minimum_effect}  # fmt: skip
    try:
        engine_config = TransformerExperimentConfig.coerce(
            transformer_experiment_settings(settings)
        )
        plan = plan_transformer_experiment(
            model.architecture_spec, change.operation, change.parameters, engine_config
        )
    except SettingsError as error:
        raise ValidationError(
            {
                _CHANGE_SETTINGS.get(key, key): messages
                for key, messages in error.field_errors.items()
            }
        ) from None
    except (ChangeError, SpecError) as error:
        raise ValidationError({"change": str(error)}) from None
    planned = plan.to_dict()
    return {
        **settings,
        "version": FROZEN_VERSION,
        "family": "transformer",
        "score": engine_config.score,
        "change": {"id": change.pk, "operation": change.operation,
                   "parameters": change.parameters},
        "model": _model_snapshot(model),
        "arms": planned.pop("arms"),
        "plan": planned,
        "mechanism": head_mechanism_target(plan),
    }  # fmt: skip


def transformer_experiment_settings(config: dict) -> dict:
    """The engine's TransformerExperimentConfig fields, read from a frozen transformer
    experiment config (or the cleaned settings it is made from)."""
    fields = ("dataset", "train", "seeds", "probe_size", "metric", "direction",
              "minimum_effect", "control_policy", "control_seed")  # fmt: skip
    return {key: config[key] for key in fields} | {"score": config.get("score", "induction")}


def _require_runnable(change: ArchitectureChange) -> None:
    _require_builtin(change.target_model, "change")
    if change.operation == ArchitectureChange.Operation.MANUAL:
        raise ValidationError({"change": "A manual change cannot be run; record its outcome."})
    in_progress = change.runs.filter(
        status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING]
    ).first()
    if in_progress is not None:
        raise ValidationError(
            {"change": f"Run {in_progress.pk} of this change is still in progress."}
        )


def _fitted(config: dict, model: SubjectModel) -> dict:
    return {**config, "dataset": dataset_fit_model(config["dataset"], model.architecture_spec)}


def _is_transformer(model: SubjectModel) -> bool:
    return spec_family(model.architecture_spec) == "transformer"


def _profile_settings(config: dict | None, model: SubjectModel) -> dict:
    """A profiling run's cleaned settings: a CNN's dataset fitted to the model, or a
    transformer's sequence task with the layers profiled ({layer: heads or neurons})."""
    if not _is_transformer(model):
        return _fitted(profile_config_clean(config), model)
    spec = model.architecture_spec
    cleaned = transformer_run_config_clean(config, kind="profile", spec=spec)
    return {**cleaned, "profiled": model_unit_layers(spec)}


def _ablation_settings(config: dict | None, finding: Finding) -> dict:
    model = finding.subject_model
    if not _is_transformer(model):
        return _fitted(ablation_config_clean(config), model)
    layers = model_unit_layers(model.architecture_spec)
    if finding.layer_name not in layers:
        raise ValidationError(
            {"finding": f"The model has no layer {finding.layer_name!r} with heads or neurons; "
             f"ablation takes one of {', '.join(layers)}."}
        )  # fmt: skip
    return transformer_run_config_clean(config, kind="ablation", spec=model.architecture_spec)


def _motivating_concept(change: ArchitectureChange, dataset: str) -> str:
    """The concept of the first supporting finding on the changed model that the dataset
    can measure (a class or attribute of it), if any."""
    finding = (
        change.insight.findings.filter(
            subject_model=change.target_model,
            insight_links__stance="supports",
            concept__in=dataset_concepts(dataset),
        )
        .order_by("pk")
        .first()
    )
    return finding.concept if finding else ""


def profile_request(
    *, actor, subject_model: SubjectModel, config: dict | None = None, dispatch: bool = True
) -> AnalysisRun:
    """Queue activation profiling of a built-in model over a probe set (a transformer's heads
    and neurons over a sequence task); the model's spec and weights are frozen into the run
    as they are now."""
    with transaction.atomic():
        # Locked so that the model cannot be edited between freezing it and the run's save.
        subject_model = SubjectModel.objects.select_for_update().get(pk=subject_model.pk)
        _require_builtin(subject_model, "subject_model")
        cleaned = _profile_settings(config, subject_model)
        return _run_create(
            actor=actor,
            kind=AnalysisRun.Kind.PROFILE,
            config=profile_config_freeze(subject_model, cleaned),
            subject_model=subject_model,
            dispatch=dispatch,
        )


def ablation_request(
    *, actor, finding: Finding, config: dict | None = None, dispatch: bool = True
) -> AnalysisRun:
    """Queue an ablation of a finding's units next to random unit sets of the same size; the
    finding's units and its model are frozen into the run as they are now."""
    with transaction.atomic():
        finding = (
            Finding.objects.select_for_update(of=("self", "subject_model"))
            .select_related("subject_model")
            .get(pk=finding.pk)
        )
        _require_builtin(finding.subject_model, "finding")
        if not finding.unit_indices:
            raise ValidationError({"finding": "The finding names no units to ablate."})
        cleaned = _ablation_settings(config, finding)
        return _run_create(
            actor=actor,
            kind=AnalysisRun.Kind.ABLATION,
            config=ablation_config_freeze(finding, cleaned),
            finding=finding,
            dispatch=dispatch,
        )


# --- claiming and progress (called from worker tasks) ---------------------------------------


def job_claim(*, run_id: int, key: str, worker: str = "") -> AnalysisJob | None:
    """Claim a job for `worker` (a Celery node name; empty outside workers): pending, or
    running under an expired lease (its worker died).

    Returns the job, or None when another worker holds a live lease, the job is done, or
    the run is finished; exactly one caller wins each claim.
    """
    now = timezone.now()
    claimable = Q(status=AnalysisJob.Status.PENDING) | Q(
        status=AnalysisJob.Status.RUNNING, heartbeat_at__lt=now - _lease()
    )
    live_run = Q(run__status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING])
    jobs = AnalysisJob.objects.filter(claimable & live_run, run_id=run_id, key=key)
    with transaction.atomic():
        if (
            jobs.update(
                status=AnalysisJob.Status.RUNNING,
                claimed_by=worker,
                heartbeat_at=now,
                started_at=now,
                progress=0.0,
                attempts=F("attempts") + 1,
            )
            != 1
        ):
            return None
        started = AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.QUEUED).update(
            status=AnalysisRun.Status.RUNNING, started_at=now
        )
        job = AnalysisJob.objects.select_related("run").get(run_id=run_id, key=key)
        if job.attempts > settings.ANALYSIS_JOB_MAX_ATTEMPTS:
            # A job whose worker dies every time (out of memory, say) would otherwise take
            # down one worker after another for ever.
            job_fail(
                job=job,
                error=f"its worker was lost {job.attempts - 1} times (killed, or out of "
                "memory?); it is not tried again",
                failure=AnalysisRun.Failure.INTERNAL,
            )
            return None
        if started:
            events.record_status_changed(
                actor=None,
                instance=job.run,
                old=AnalysisRun.Status.QUEUED,
                new=AnalysisRun.Status.RUNNING,
            )
        if job.attempts > 1:
            events.record_job_claimed_again(run=job.run, key=key, attempt=job.attempts)
    return job


def job_is_live(*, job: AnalysisJob) -> str:
    """'done', 'held' (another worker's live lease) or 'gone' (run finished or cancelled)."""
    job.refresh_from_db(fields=["status", "heartbeat_at"])
    run_status = AnalysisRun.objects.values_list("status", flat=True).get(pk=job.run_id)
    if run_status in AnalysisRun.FINISHED_STATUSES:
        return "gone"
    if job.status == AnalysisJob.Status.DONE:
        return "done"
    return "held"


def job_progress(*, job: AnalysisJob, fraction: float, message: str) -> None:
    """Store a job's progress, renew its lease and roll the run's percent up; raise
    RunCancelled when the run was cancelled meanwhile."""
    now = timezone.now()
    updated = AnalysisJob.objects.filter(
        pk=job.pk, status=AnalysisJob.Status.RUNNING, run__status=AnalysisRun.Status.RUNNING
    ).update(progress=min(max(fraction, 0.0), 1.0), heartbeat_at=now)
    if updated != 1:
        raise RunCancelled(f"run {job.run_id} is no longer running")
    _roll_up_progress(job.run_id, message)


def _roll_up_progress(run_id: int, message: str) -> None:
    if AnalysisRun.objects.filter(pk=run_id, kind=AnalysisRun.Kind.STUDY).exists():
        # A study's jobs come as its tracks advance: its percent counts rounds, not jobs so far.
        from analysis.studies import study_progress_write

        study_progress_write(run_id=run_id, message=message)
        return
    mean = AnalysisJob.objects.filter(run_id=run_id).aggregate(mean=Avg("progress"))["mean"] or 0.0
    AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.RUNNING).update(
        progress_percent=min(99, int(mean * 100)), progress_message=message[:200]
    )


def job_complete(*, job: AnalysisJob, result: dict, environment: dict | None = None) -> bool:
    """Store a job's result and the environment it ran in once; a second completion of the
    same job writes nothing."""
    now = timezone.now()
    stored = (
        AnalysisJob.objects.filter(pk=job.pk)
        .exclude(status=AnalysisJob.Status.DONE)
        .update(
            status=AnalysisJob.Status.DONE,
            result=result,
            environment=environment or {},
            progress=1.0,
            finished_at=now,
            heartbeat_at=now,
            error="",
        )
    )
    _roll_up_progress(job.run_id, f"{job.key} done")
    return stored == 1


def job_fail(*, job: AnalysisJob, error: str, failure: str) -> None:
    """Mark a job and its run failed, keeping the error for the run page. `failure` says
    whether the request cannot run (bad_request), the code failed (internal) or the job ran
    out of time (time_limit)."""
    now = timezone.now()
    AnalysisJob.objects.filter(pk=job.pk).exclude(status=AnalysisJob.Status.DONE).update(
        status=AnalysisJob.Status.FAILED, error=error[:5000], finished_at=now
    )
    run_finish(
        run_id=job.run_id,
        status=AnalysisRun.Status.FAILED,
        error=f"{job.key}: {error}",
        failure=failure,
    )


def run_ready_to_finish(*, run_id: int) -> bool:
    """True while the run is live and every one of its jobs is done (a retried run whose jobs
    were all done is still queued: nothing was left to claim). Several workers may see True
    at once; `run_finish`'s conditional UPDATE lets only one of them write."""
    return (
        AnalysisRun.objects.filter(pk=run_id, status__in=LIVE_STATUSES).exists()
        and not AnalysisJob.objects.filter(run_id=run_id)
        .exclude(status=AnalysisJob.Status.DONE)
        .exists()
    )


def run_finish(
    *,
    run_id: int,
    status: str,
    result: dict | None = None,
    error: str = "",
    failure: str = AnalysisRun.Failure.NONE,
    environment: dict | None = None,
    write_back: Callable[[AnalysisRun], None] | None = None,
) -> bool:
    """Move a running run to a final status once, with its result and write-back in one
    transaction. Returns False when the run had already finished (or was cancelled)."""
    fields = {
        "status": status,
        "finished_at": timezone.now(),
        "error": error[:5000],
        "failure": failure,
    }
    if status == AnalysisRun.Status.SUCCEEDED:
        fields.update(progress_percent=100, progress_message="done")
    if result is not None:
        fields["result"] = result
    if environment is not None:
        fields["environment"] = environment
    with transaction.atomic():
        finished = AnalysisRun.objects.filter(
            pk=run_id, status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING]
        ).update(**fields)
        if finished != 1:
            return False
        run = AnalysisRun.objects.select_related("change", "finding", "subject_model").get(
            pk=run_id
        )
        if write_back is not None:
            write_back(run)
        events.record_run_finished(run=run)
    return True


# --- cancel and retry (called from pages, API and CLI) ------------------------------------


def run_cancel(*, actor, run: AnalysisRun) -> AnalysisRun:
    """Cancel a queued or running run; its jobs stop at their next progress report."""
    if not run_finish(run_id=run.pk, status=AnalysisRun.Status.CANCELLED, error="cancelled"):
        raise ValidationError({"status": f"A {run.status} run cannot be cancelled."})
    _release_change(run, actor)
    run.refresh_from_db()
    return run


def _release_change(run: AnalysisRun, actor) -> None:
    if run.change_id and run.change.status == ArchitectureChange.Status.RUNNING:
        change_set_status(actor=actor, change=run.change, status=ArchitectureChange.Status.PROPOSED)


def run_retry(*, actor, run: AnalysisRun) -> AnalysisRun:
    """Queue a failed or cancelled run again; finished jobs keep their results."""
    if "version" not in run.config:
        raise ValidationError({"status": UNFROZEN_RUN})
    with transaction.atomic():
        reopened = AnalysisRun.objects.filter(
            pk=run.pk, status__in=[AnalysisRun.Status.FAILED, AnalysisRun.Status.CANCELLED]
        ).update(
            status=AnalysisRun.Status.QUEUED,
            error="",
            failure=AnalysisRun.Failure.NONE,
            finished_at=None,
            dispatched_at=None,
            progress_message="queued again",
        )
        if reopened != 1:
            raise ValidationError({"status": f"A {run.status} run cannot be retried."})
        events.record_status_changed(
            actor=actor, instance=run, old=run.status, new=AnalysisRun.Status.QUEUED
        )
        run.jobs.exclude(status=AnalysisJob.Status.DONE).update(
            status=AnalysisJob.Status.PENDING, error="", progress=0.0, heartbeat_at=None
        )
        events.record_run_requested(actor=actor, run=run)
        if run.change_id:
            change_set_status(
                actor=actor, change=run.change, status=ArchitectureChange.Status.RUNNING
            )
        _dispatch_on_commit(run)
        if (
            run.kind == AnalysisRun.Kind.STUDY
            or not run.jobs.exclude(status=AnalysisJob.Status.DONE).exists()
        ):
            # A run whose jobs were all done (it failed or was cancelled while finishing)
            # has nothing to send; a study may hold a row whose jobs are all done but that
            # is undecided, which nothing would decide before another job finishes. So one
            # done job goes too, whose worker finishes the run or advances the study.
            transaction.on_commit(lambda: run_nudge(run_id=run.pk))
    run.refresh_from_db()
    return run


# --- sending to the broker, and sending again what it lost or never got --------------------


def run_dispatch(*, run_id: int) -> bool:
    """Send the unfinished jobs of a queued or running run that the broker has not taken
    yet, and record when (a run already sent, or finished, is left alone). Returns False only
    when the broker is down: the run stays saved and queued, and the workers' sweeper sends
    it once the broker answers."""
    try:
        _run_send(run_id=run_id, skip_locked=False)
    except BrokerUnavailable:
        return False
    return True


def _run_send(*, run_id: int, skip_locked: bool) -> bool:
    """Send the run's unfinished jobs under a lock on the run, so that a request's own
    dispatch and the sweepers of several workers send it once. Returns whether this call
    sent it; raises BrokerUnavailable (nothing recorded) when the broker is down."""
    with transaction.atomic():
        run = (
            AnalysisRun.objects.select_for_update(skip_locked=skip_locked)
            .filter(pk=run_id, status__in=LIVE_STATUSES, dispatched_at__isnull=True)
            .first()
        )
        if run is None:
            return False
        keys = run.jobs.exclude(status=AnalysisJob.Status.DONE).values_list("key", flat=True)
        jobs_send([(run_id, key) for key in keys])
        AnalysisRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
    return True


@dataclasses.dataclass(frozen=True)
class Swept:
    """What one sweep sent: runs the broker never took, jobs given back to the queue, studies
    with undecided rows but no job left to bring a decision, and runs whose jobs were all
    done but that nobody finished (`unfinished`)."""

    runs: int = 0
    jobs: int = 0
    studies: int = 0
    unfinished: int = 0


def runs_sweep() -> Swept:
    """Send what the broker should hold and does not: runs it never took (it was down when
    they were requested) and jobs whose lease ran out (their worker died or lost the
    database). Several workers sweep at once; each skips the rows another sweep holds.
    Raises BrokerUnavailable while the broker is down (what was sent before stays sent).

    A broker that started empty (Redis restarted without persistence) lost the messages of
    every live run: those runs count as never dispatched and go out again (jobs that are
    done, or running under a live lease, ignore the copy)."""
    if broker_started_empty():
        lost = AnalysisRun.objects.filter(status__in=LIVE_STATUSES, dispatched_at__isnull=False)
        logger.warning("the broker started empty: sending %d live run(s) again", lost.count())
        lost.update(dispatched_at=None)
        broker_mark()
    not_dispatched = (
        AnalysisRun.objects.filter(status__in=LIVE_STATUSES, dispatched_at__isnull=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    runs = sum(
        _run_send(run_id=run_id, skip_locked=True) for run_id in not_dispatched[:SWEEP_BATCH]
    )
    expired = AnalysisJob.objects.filter(
        status=AnalysisJob.Status.RUNNING,
        heartbeat_at__lt=timezone.now() - _lease(),
        run__status__in=LIVE_STATUSES,
        run__dispatched_at__isnull=False,
    )
    from analysis.studies import studies_nudge_stalled

    return Swept(
        runs=runs,
        jobs=_jobs_send_again(expired),
        studies=studies_nudge_stalled(),
        unfinished=runs_nudge_unfinished(),
    )


def runs_nudge_unfinished() -> int:
    """Send again one done job of each live run (studies: studies_nudge_stalled) whose jobs
    are all done, the last more than a lease ago, and that was not sent within a lease: the
    worker that finished its last job died before finishing the run (aggregate, figures,
    write-back). The worker that receives the job finds it done and finishes the run. Called
    by every worker's sweeper; a run is nudged again only after another lease. Returns how
    many were nudged; raises BrokerUnavailable when the broker is down."""
    stale = timezone.now() - _lease()
    unfinished = (
        AnalysisRun.objects.filter(status__in=LIVE_STATUSES, dispatched_at__lt=stale)
        .exclude(kind=AnalysisRun.Kind.STUDY)
        .exclude(jobs__status__in=[AnalysisJob.Status.PENDING, AnalysisJob.Status.RUNNING,
                                   AnalysisJob.Status.FAILED])
        .annotate(last_finished=Max("jobs__finished_at"))
        .filter(last_finished__lt=stale)
        .order_by("pk")
        .values_list("pk", flat=True)
    )  # fmt: skip
    nudged = 0
    for run_id in unfinished[:SWEEP_BATCH]:
        with transaction.atomic():
            run = (
                AnalysisRun.objects.select_for_update(skip_locked=True)
                .filter(pk=run_id, status__in=LIVE_STATUSES, dispatched_at__lt=stale)
                .first()
            )
            if run is None:
                continue  # another sweep holds it, or it finished meanwhile
            if not run_nudge(run_id=run_id):
                raise BrokerUnavailable(f"run {run_id} could not be nudged")
            AnalysisRun.objects.filter(pk=run_id).update(dispatched_at=timezone.now())
        nudged += 1
    return nudged


def run_nudge(*, run_id: int) -> bool:
    """Send the run's latest done job again: the worker that receives it finds the job done
    and finishes the run, or advances the study (a study with undecided rows whose jobs are
    all done). Returns False when the broker is down (the sweeper tries again)."""
    key = (
        AnalysisJob.objects.filter(run_id=run_id, status=AnalysisJob.Status.DONE)
        .order_by("-finished_at", "-pk")
        .values_list("key", flat=True)
        .first()
    )
    if key is None:
        return True
    try:
        jobs_send([(run_id, key)])
    except BrokerUnavailable:
        return False
    logger.info("run %s: sent its done job %s again", run_id, key)
    return True


def jobs_release_worker(*, worker: str) -> int:
    """Give back, and send again, the jobs that a worker of this node name held when it
    died. Called when the worker starts, so that its jobs run again at once instead of when
    their leases run out; node names must therefore be unique among live workers (`-n`).
    Returns the number of jobs sent; raises BrokerUnavailable when the broker is down."""
    if not worker:
        return 0
    held = AnalysisJob.objects.filter(
        status=AnalysisJob.Status.RUNNING, claimed_by=worker, run__status__in=LIVE_STATUSES
    )
    return _jobs_send_again(held)


def _jobs_send_again(jobs: QuerySet) -> int:
    """Put running jobs back to pending and send them, in one transaction: if the broker
    refuses, they stay as they were for the next sweep. Rows another sweep holds are
    skipped."""
    with transaction.atomic():
        rows = list(
            jobs.select_for_update(skip_locked=True, of=("self",))
            .order_by("pk")
            .values_list("pk", "run_id", "key")[:SWEEP_BATCH]
        )
        if not rows:
            return 0
        AnalysisJob.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
            status=AnalysisJob.Status.PENDING, heartbeat_at=None, claimed_by=""
        )
        jobs_send([(run_id, key) for _, run_id, key in rows])
    logger.info("sent %d job(s) again: %s", len(rows), [f"{r}/{k}" for _, r, k in rows])
    return len(rows)


# --- write-backs: run inside run_finish's transaction, once per run ------------------------


def outcome_record_from_run(run: AnalysisRun) -> Outcome:
    """Write the experiment's Outcome (one per run: the run is a unique key) and mark the
    change evaluated."""
    aggregate = run.result["aggregate"]
    versus_baseline = aggregate["variant_vs_baseline"] or {}
    versus_control = aggregate["variant_vs_control"] or {}
    arms = aggregate["arms"]
    outcome = Outcome(
        change=run.change,
        metric=aggregate["metric"],
        baseline_values=arms["baseline"]["values"],
        variant_values=arms["variant"]["values"],
        control_values=arms.get("control", {}).get("values", []),
        effect=versus_baseline.get("difference")
        if versus_baseline
        else arms["variant"]["mean"] - arms["baseline"]["mean"],
        ci_low=versus_baseline.get("ci_low"),
        ci_high=versus_baseline.get("ci_high"),
        p_value=versus_baseline.get("p_value"),
        effect_vs_control=versus_control.get("difference"),
        control_ci_low=versus_control.get("ci_low"),
        control_ci_high=versus_control.get("ci_high"),
        verdict=aggregate["verdict"],
        source=Outcome.Source.ANALYSIS_RUN,
        analysis_run=run,
        notes=_outcome_notes(aggregate, run.result.get("reproduction")),
    )
    record_create(outcome, actor=None)
    events.record_outcome_recorded(actor=None, outcome=outcome)
    change_set_status(actor=None, change=run.change, status=ArchitectureChange.Status.EVALUATED)
    return outcome


def _outcome_notes(aggregate: dict, reproduction: dict | None = None) -> str:
    lines = [f"- {warning}" for warning in aggregate.get("warnings", [])]
    if reproduction:
        lines.append(f"- {reproduction_summary(reproduction)}.")
    mechanism = aggregate.get("mechanism")
    if mechanism and mechanism.get("interpretation"):
        lines.append(f"- Mechanism check: {mechanism['interpretation']}.")
    return "\n".join(lines)


def reproduction_summary(reproduction: dict) -> str:
    """One sentence on whether a rerun reproduced its earlier run bit for bit."""
    earlier = reproduction["of_run"]
    if reproduction["matched"]:
        return (
            f"Reproduces run {earlier}: all {reproduction['compared']} per-seed values are "
            "identical bit for bit"
        )
    return (
        f"Repeats run {earlier} with the same config, but {reproduction['mismatched']} of "
        f"{reproduction['compared']} per-seed values differ"
    )


def finding_propose_from_profile(run: AnalysisRun) -> Finding | list[Finding]:
    """Propose a hypothesis finding where profiling located the run's concept (on a
    transformer: one per head role that profiling found, see _findings_from_head_roles)."""
    result = run.result
    if "proposed_findings" in result:
        return _findings_from_head_roles(run)
    best = result["localisation"][0]
    units = sorted(unit for layer, unit, _ in result["top_units"] if layer == best["layer"])
    finding = finding_create(
        actor=None,
        subject_model=run.subject_model,
        title=f"{result['concept']} units in {best['layer']} (run {run.pk})",
        layer_name=best["layer"],
        unit_indices=units or [best["top_unit"]],
        concept=result["concept"],
        kind=Finding.Kind.UNIT_CLUSTER,
        status=Finding.Status.HYPOTHESIS,
        confidence=0.5,
        description=(
            f"Proposed by profiling run {run.pk}: `{best['layer']}` holds the units most "
            f"selective for *{result['concept']}* (layer score {best['score']:.3f})."
        ),
        evidence_runs=[run],
    )
    return finding


def _findings_from_head_roles(run: AnalysisRun) -> list[Finding]:
    """One hypothesis finding per head role whose best head reached the threshold, e.g.
    "layer 1 head 0 is an induction head (score 0.77)", located at that head."""
    findings = []
    for proposal in run.result["proposed_findings"]:
        findings.append(
            finding_create(
                actor=None,
                subject_model=run.subject_model,
                title=f"{proposal['text']} (run {run.pk})",
                layer_name=proposal["layer"],
                unit_indices=[proposal["head"]],
                concept=proposal["role"].replace("_", "-"),
                kind=Finding.Kind.UNIT_CLUSTER,
                status=Finding.Status.HYPOTHESIS,
                confidence=0.5,
                description=(
                    f"Proposed by profiling run {run.pk}: in `{proposal['layer']}`, head "
                    f"{proposal['head']} has the highest {proposal['role'].replace('_', '-')} "
                    f"score of the model ({proposal['score']:.3f})."
                ),
                evidence_runs=[run],
            )
        )
    return findings


def finding_attach_ablation(run: AnalysisRun) -> Finding:
    """Attach a finished ablation to its finding as evidence."""
    return finding_attach_evidence(actor=None, finding=run.finding, runs=[run])
