"""Writes for analysis runs: request (validate, save, dispatch on commit), claim, progress,
finish, cancel and retry. Runs and jobs change state only through conditional UPDATEs here,
so every Celery task built on them is safe to deliver twice."""

import datetime
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Avg, F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from analysis.configs import (
    MIN_SEEDS,
    ablation_config_clean,
    dataset_fit_model,
    experiment_config_clean,
    profile_config_clean,
)
from analysis.engine.changes import ChangeError, random_control_change
from analysis.engine.specs import SpecError
from analysis.models import AnalysisJob, AnalysisRun
from kb import events
from kb.models import ArchitectureChange, Finding, Outcome, SubjectModel
from kb.services.insights import change_set_status
from kb.services.records import record_create
from kb.services.subjects import finding_attach_evidence, finding_create

# Failures that can succeed on a later try (a lost database or broker); only these retry.
TRANSIENT_ERRORS = (OperationalError, InterfaceError, BrokerOperationalError)


class RunCancelled(Exception):
    """Raised inside a job when its run was cancelled; the job stops without writing."""


def _lease() -> datetime.timedelta:
    return datetime.timedelta(seconds=settings.ANALYSIS_JOB_LEASE_SECONDS)


def _dispatch_on_commit(run: AnalysisRun) -> None:
    # Imported here: the dispatch module only names tasks, it never imports torch.
    from analysis.dispatch import dispatch_run

    transaction.on_commit(lambda: dispatch_run(run.pk))


def _job_keys(run: AnalysisRun) -> list[str]:
    if run.kind != AnalysisRun.Kind.CHANGE_EXPERIMENT:
        return ["main"]
    return [
        f"{arm}:{seed}"
        for arm in ("baseline", "variant", "control")
        for seed in run.config["seeds"]
    ]


def _run_create(*, actor, kind: str, config: dict, dispatch: bool, **target) -> AnalysisRun:
    run = AnalysisRun(kind=kind, config=config, requested_by=_user_or_none(actor), **target)
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
    """Queue a change experiment: baseline, guided variant and random control over N seeds."""
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
    cleaned = experiment_config_clean(config, min_seeds=min_seeds)
    cleaned["dataset"] = dataset_fit_model(
        cleaned["dataset"], change.target_model.architecture_spec
    )
    _require_budget_matched_control(change, cleaned["control_seed"])
    if not cleaned["concept"]:
        cleaned["concept"] = _motivating_concept(change)
    with transaction.atomic():
        run = _run_create(
            actor=actor,
            kind=AnalysisRun.Kind.CHANGE_EXPERIMENT,
            config=cleaned,
            change=change,
            dispatch=dispatch,
        )
        change_set_status(actor=actor, change=change, status=ArchitectureChange.Status.RUNNING)
    return run


def _require_budget_matched_control(change: ArchitectureChange, control_seed: int) -> None:
    """Refuse now, not in a worker, a change for which no random control of the same size
    exists: without it the experiment cannot say whether understanding helped."""
    try:
        random_control_change(
            change.target_model.architecture_spec,
            change.operation,
            change.parameters,
            seed=control_seed,
        )
    except (ChangeError, SpecError) as error:
        raise ValidationError({"change": str(error)}) from None


def _fitted(config: dict, model: SubjectModel) -> dict:
    return {**config, "dataset": dataset_fit_model(config["dataset"], model.architecture_spec)}


def _motivating_concept(change: ArchitectureChange) -> str:
    """The concept of the first supporting finding on the changed model, if any."""
    finding = (
        change.insight.findings.filter(
            subject_model=change.target_model, insight_links__stance="supports"
        )
        .exclude(concept="")
        .order_by("pk")
        .first()
    )
    return finding.concept if finding else ""


def profile_request(
    *, actor, subject_model: SubjectModel, config: dict | None = None, dispatch: bool = True
) -> AnalysisRun:
    """Queue activation profiling of a built-in model over a probe set."""
    _require_builtin(subject_model, "subject_model")
    return _run_create(
        actor=actor,
        kind=AnalysisRun.Kind.PROFILE,
        config=_fitted(profile_config_clean(config), subject_model),
        subject_model=subject_model,
        dispatch=dispatch,
    )


def ablation_request(
    *, actor, finding: Finding, config: dict | None = None, dispatch: bool = True
) -> AnalysisRun:
    """Queue an ablation of a finding's units next to random unit sets of the same size."""
    _require_builtin(finding.subject_model, "finding")
    if not finding.unit_indices:
        raise ValidationError({"finding": "The finding names no units to ablate."})
    return _run_create(
        actor=actor,
        kind=AnalysisRun.Kind.ABLATION,
        config=_fitted(ablation_config_clean(config), finding.subject_model),
        finding=finding,
        dispatch=dispatch,
    )


# --- claiming and progress (called from worker tasks) ---------------------------------------


def job_claim(*, run_id: int, key: str) -> AnalysisJob | None:
    """Claim a job: pending, or running under an expired lease (its worker died).

    Returns the job, or None when another worker holds a live lease, the job is done, or
    the run is finished; exactly one caller wins each claim.
    """
    now = timezone.now()
    claimable = Q(status=AnalysisJob.Status.PENDING) | Q(
        status=AnalysisJob.Status.RUNNING, heartbeat_at__lt=now - _lease()
    )
    live_run = Q(run__status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING])
    jobs = AnalysisJob.objects.filter(claimable & live_run, run_id=run_id, key=key)
    if (
        jobs.update(
            status=AnalysisJob.Status.RUNNING,
            heartbeat_at=now,
            started_at=now,
            progress=0.0,
            attempts=F("attempts") + 1,
        )
        != 1
    ):
        return None
    AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.QUEUED).update(
        status=AnalysisRun.Status.RUNNING, started_at=now
    )
    return AnalysisJob.objects.select_related("run").get(run_id=run_id, key=key)


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
    mean = AnalysisJob.objects.filter(run_id=run_id).aggregate(mean=Avg("progress"))["mean"] or 0.0
    AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.RUNNING).update(
        progress_percent=min(99, int(mean * 100)), progress_message=message[:200]
    )


def job_complete(*, job: AnalysisJob, result: dict) -> bool:
    """Store a job's result once; a second completion of the same job writes nothing."""
    now = timezone.now()
    stored = (
        AnalysisJob.objects.filter(pk=job.pk)
        .exclude(status=AnalysisJob.Status.DONE)
        .update(
            status=AnalysisJob.Status.DONE,
            result=result,
            progress=1.0,
            finished_at=now,
            heartbeat_at=now,
            error="",
        )
    )
    _roll_up_progress(job.run_id, f"{job.key} done")
    return stored == 1


def job_fail(*, job: AnalysisJob, error: str) -> None:
    """Mark a job and its run failed, keeping the error for the run page."""
    now = timezone.now()
    AnalysisJob.objects.filter(pk=job.pk).exclude(status=AnalysisJob.Status.DONE).update(
        status=AnalysisJob.Status.FAILED, error=error[:5000], finished_at=now
    )
    run_finish(run_id=job.run_id, status=AnalysisRun.Status.FAILED, error=f"{job.key}: {error}")


def run_ready_to_finish(*, run_id: int) -> bool:
    """True while the run is running and every one of its jobs is done. Several workers may
    see True at once; `run_finish`'s conditional UPDATE lets only one of them write."""
    return (
        AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.RUNNING).exists()
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
    environment: dict | None = None,
    write_back: Callable[[AnalysisRun], None] | None = None,
) -> bool:
    """Move a running run to a final status once, with its result and write-back in one
    transaction. Returns False when the run had already finished (or was cancelled)."""
    fields = {"status": status, "finished_at": timezone.now(), "error": error[:5000]}
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
    with transaction.atomic():
        reopened = AnalysisRun.objects.filter(
            pk=run.pk, status__in=[AnalysisRun.Status.FAILED, AnalysisRun.Status.CANCELLED]
        ).update(
            status=AnalysisRun.Status.QUEUED,
            error="",
            finished_at=None,
            progress_message="queued again",
        )
        if reopened != 1:
            raise ValidationError({"status": f"A {run.status} run cannot be retried."})
        run.jobs.exclude(status=AnalysisJob.Status.DONE).update(
            status=AnalysisJob.Status.PENDING, error="", progress=0.0, heartbeat_at=None
        )
        events.record_run_requested(actor=actor, run=run)
        if run.change_id:
            change_set_status(
                actor=actor, change=run.change, status=ArchitectureChange.Status.RUNNING
            )
        _dispatch_on_commit(run)
    run.refresh_from_db()
    return run


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
        notes=_outcome_notes(aggregate),
    )
    record_create(outcome, actor=None)
    events.record_outcome_recorded(actor=None, outcome=outcome)
    change_set_status(actor=None, change=run.change, status=ArchitectureChange.Status.EVALUATED)
    return outcome


def _outcome_notes(aggregate: dict) -> str:
    lines = [f"- {warning}" for warning in aggregate.get("warnings", [])]
    mechanism = aggregate.get("mechanism")
    if mechanism and mechanism.get("interpretation"):
        lines.append(f"- Mechanism check: {mechanism['interpretation']}.")
    return "\n".join(lines)


def finding_propose_from_profile(run: AnalysisRun) -> Finding:
    """Propose a hypothesis finding where profiling located the run's concept."""
    result = run.result
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


def finding_attach_ablation(run: AnalysisRun) -> Finding:
    """Attach a finished ablation to its finding as evidence."""
    return finding_attach_evidence(actor=None, finding=run.finding, runs=[run])
