"""Reads for guided-search studies: their rounds, progress and trajectory, for pages, the API
and the command line. Torch-free."""

from django.db.models import Count, Q

from analysis.engine.study_report import study_trajectory as trajectory_of
from analysis.models import AnalysisJob, AnalysisRun, StudyRound


def round_sat_out(row: StudyRound) -> bool:
    """Whether the row's track sat its round out (it could not form a candidate): its plan
    then holds the error instead of a choice."""
    return "error" in row.plan


def study_rounds(study: AnalysisRun) -> list[StudyRound]:
    """The study's rows in round order (round 0's base model first; within a round the tracks
    base, guided, random, uniform), with the records each decided round wrote."""
    return list(
        StudyRound.objects.filter(study=study)
        .select_related("finding", "insight", "change", "outcome")
        .order_by("index", "track")
    )


def study_progress(study: AnalysisRun) -> dict:
    """Out: {"round" (the round being run: the first undecided one, 0 for the base model, or
    the last round once every round is decided), "rounds" (K), "rounds_decided" (of 1..K),
    "jobs_done" and "jobs_total" (of the round being run), "percent", "message", "status"}."""
    rounds = study.config.get("rounds", 0)
    current = (
        StudyRound.objects.filter(study=study, decided_at__isnull=True)
        .order_by("index")
        .values_list("index", flat=True)
        .first()
    )
    decided = (
        StudyRound.objects.filter(study=study, decided_at__isnull=False, index__gte=1)
        .values("index")
        .distinct()
        .count()
    )
    index = current if current is not None else rounds
    jobs = AnalysisJob.objects.filter(run=study, key__startswith=f"r{index}:").aggregate(
        total=Count("pk"), done=Count("pk", filter=Q(status=AnalysisJob.Status.DONE))
    )
    return {
        "round": index,
        "rounds": rounds,
        "rounds_decided": decided,
        "jobs_done": jobs["done"],
        "jobs_total": jobs["total"],
        "percent": study.progress_percent,
        "message": study.progress_message,
        "status": study.status,
    }


def study_trajectory(study: AnalysisRun) -> dict[str, list[dict]]:
    """The metric against parameter count per track, from the decided rows: {track: [{"round",
    "parameters", "mean", "ci_low", "ci_high", "kept"}]}, each starting at the base model;
    the final report's "trajectory" has the same shape (analysis.engine.study_report)."""
    rows = StudyRound.objects.filter(study=study, decided_at__isnull=False).order_by(
        "index", "track"
    )
    rounds = [
        {"index": row.index, "track": row.track, "values": row.values,
         "parameters": row.parameters, "kept": row.kept, "sat_out": round_sat_out(row)}
        for row in rows
    ]  # fmt: skip
    return trajectory_of(study.config, rounds)
