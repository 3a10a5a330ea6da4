"""Reads for guided-search studies: their rounds, progress and trajectory, for pages, the API
and the command line. Torch-free."""

from dataclasses import dataclass

from django.db.models import Q

from analysis.engine.study_report import study_trajectory as trajectory_of
from analysis.models import AnalysisJob, AnalysisRun, StudyRound
from analysis.study_rounds import (
    RowKey,
    RowState,
    progress_fraction,
    rounds_decided,
    study_job_key,
    study_job_parse,
    track_rounds,
)


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


def study_row_states(study: AnalysisRun) -> list[RowState]:
    """Where each of the study's rows stands (study_rounds.RowState), in two queries: its
    rows, and its jobs that are not done."""
    unfinished = set(
        AnalysisJob.objects.filter(run=study)
        .exclude(status=AnalysisJob.Status.DONE)
        .values_list("key", flat=True)
    )
    unfinished_rows = {study_job_parse(key)[:2] for key in unfinished}
    first_seed = study.config["seeds"][0]
    return [
        RowState(
            index=row.index,
            track=row.track,
            decided=row.decided_at is not None,
            jobs_done=(row.index, row.track) not in unfinished_rows,
            sat_out=round_sat_out(row),
            recorded=row.change_id is not None,
            profiled=study_job_key(row.index, row.track, first_seed) not in unfinished,
        )
        for row in StudyRound.objects.filter(study=study).only(
            "index", "track", "decided_at", "plan", "change_id"
        )
    ]


@dataclass(frozen=True)
class StudyProgress:
    """Where a study stands: "round" (the earliest round with an undecided row, 0 for the
    base model; the last round once none is undecided), "tracks" (each track's latest planned
    round: a track may run ahead of the others), "in_flight" ({track: round} of its undecided
    rows), "rounds_decided" (of 1..K, every track's row decided), the jobs of the undecided
    rows done and in all (of the last round once none is undecided), and "fraction" done."""

    round: int
    rounds: int
    tracks: dict[str, int]
    in_flight: dict[str, int]
    rounds_decided: int
    jobs_done: int
    jobs_total: int
    fraction: float


def study_progress_of(study_id: int, config: dict) -> StudyProgress:
    """The study's progress from its rows and the jobs of its undecided rows (two queries)."""
    rows = [
        RowState(index=index, track=track, decided=decided_at is not None)
        for index, track, decided_at in StudyRound.objects.filter(study_id=study_id).values_list(
            "index", "track", "decided_at"
        )
    ]
    undecided = [(row.index, row.track) for row in rows if not row.decided]
    rounds = config.get("rounds", 0)
    index = min((index for index, _ in undecided), default=rounds)
    jobs = _job_counts(study_id, undecided, index)
    share = {key: progress / total for key, (_, total, progress) in jobs.items() if total}
    return StudyProgress(
        round=index,
        rounds=rounds,
        tracks=track_rounds(config, rows) if config else {},
        in_flight={track: index for index, track in undecided},
        rounds_decided=rounds_decided(config, rows) if config else 0,
        jobs_done=sum(done for done, _, _ in jobs.values()),
        jobs_total=sum(total for _, total, _ in jobs.values()),
        fraction=progress_fraction(config, rows, share) if config else 0.0,
    )


def _job_counts(
    study_id: int, rows: list[RowKey], index: int
) -> dict[RowKey, tuple[int, int, float]]:
    """{(index, track): (jobs done, jobs, summed progress)} of these rows' jobs; of round
    `index`'s jobs when there are no rows (one query either way)."""
    prefixes = Q(key__startswith=f"r{index}:") if not rows else Q()
    for row_index, track in rows:
        prefixes |= Q(key__startswith=f"r{row_index}:{track}:")
    counts: dict[RowKey, tuple[int, int, float]] = {}
    jobs = AnalysisJob.objects.filter(prefixes, run_id=study_id)
    for key, status, progress in jobs.values_list("key", "status", "progress"):
        row = study_job_parse(key)[:2]
        done, total, summed = counts.get(row, (0, 0, 0.0))
        counts[row] = (done + (status == AnalysisJob.Status.DONE), total + 1, summed + progress)
    return counts


def study_progress(study: AnalysisRun) -> dict:
    """Out: {"round", "rounds", "tracks", "rounds_decided", "jobs_done", "jobs_total" (as
    StudyProgress says), "percent", "message", "status"}."""
    progress = study_progress_of(study.pk, study.config or {})
    return {
        "round": progress.round,
        "rounds": progress.rounds,
        "tracks": progress.tracks,
        "rounds_decided": progress.rounds_decided,
        "jobs_done": progress.jobs_done,
        "jobs_total": progress.jobs_total,
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
