"""What a study can do next, from where its rows stand. Pure: no Django, no torch; the
orchestration (analysis/studies.py) loads the rows, asks here, and acts.

A study has no barrier per round: its dependencies are per track.
- Round 0 (the base model) comes first: every track starts from it. Planning round 1 reads
  only its spec and its profile, which its first seed's job makes, so round 1 is planned as
  soon as that job is done; round 1's rows are decided once the base model is (they compare
  with its values over every seed).
- The guided track's round k is planned once its round k-1 is decided: its current model,
  and that model's profile, are then known.
- A control track's round k is planned once its own round k-1 is decided and the guided
  track's round k is planned: the controls spend what the guided candidate adds, and a
  transformer's random track leaves the guided change out (study_plans.study_round_plan).
- A row is decided once its jobs are done (a row sitting its round out has none): its values
  and keep decision need only its own jobs and its track's current model.
- A round's records (finding, insight, change, outcome) are written once all its rows are
  decided: the guided outcome compares with the random candidate of the same round.
So one track may train round k+1 while another still trains round k, and a round's records
are never on the guided track's path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from analysis.engine.study_plans import study_round_plan
from analysis.engine.study_report import BASE
from analysis.engine.study_settings import GUIDED

TRACK_ORDER = (BASE, GUIDED, "random", "uniform")
RowKey = tuple[int, str]  # (round index, track)


# --- job keys ---------------------------------------------------------------------------------


def study_job_key(index: int, track: str, seed: int) -> str:
    """The key of the job that trains round `index`'s candidate of `track` with `seed`."""
    return f"r{index}:{track}:s{seed}"


def study_job_parse(key: str) -> tuple[int, str, int]:
    """Out: (round index, track, seed) of a study job key "r{index}:{track}:s{seed}"."""
    index, track, seed = key.split(":")
    return int(index[1:]), track, int(seed[1:])


def study_round_keys(config: dict, index: int, track: str) -> list[str]:
    """The job keys of one track's candidate in one round, in the study's seed order."""
    return [study_job_key(index, track, seed) for seed in config["seeds"]]


# --- what can happen next ---------------------------------------------------------------------


@dataclass(frozen=True)
class RowState:
    """Where one StudyRound row stands: decided or not, whether every job of it is done (a
    row sitting its round out has none), whether its first seed's job, which profiles a
    base or guided model, is done, and whether its round's records are written (a
    candidate's row then holds its change)."""

    index: int
    track: str
    decided: bool
    jobs_done: bool = False
    sat_out: bool = False
    recorded: bool = False
    profiled: bool = False


@dataclass(frozen=True)
class StudySteps:
    """What a study can do now, in this order: decide these rows, write these rounds' records,
    plan these rows (the guided track's first: its jobs are the critical path), finish."""

    decide: tuple[RowKey, ...] = ()
    record: tuple[int, ...] = ()
    plan: tuple[RowKey, ...] = ()
    finished: bool = False

    def __bool__(self) -> bool:
        return bool(self.decide or self.record or self.plan or self.finished)


def _row_order(key: RowKey) -> tuple[int, int]:
    index, track = key
    return index, TRACK_ORDER.index(track)


def study_steps(config: dict, rows: Iterable[RowState]) -> StudySteps:
    """What the study can do now, given its rows.

    In: the study's config ("rounds", "tracks") and the state of each of its rows. Out: the
    rows to decide (undecided, every job done or sitting out, and the base model decided, or
    being decided now: a candidate compares with it), the rounds whose records are due and
    the rows to plan, both as they stand once those rows are decided, and whether the study
    is then finished (every track's last round decided). Nothing is due twice: a decided
    row, a recorded round and a planned row are left alone."""
    by_key = {(row.index, row.track): row for row in rows}
    base = by_key.get((0, BASE))
    base_decided = base is not None and (base.decided or base.jobs_done)
    decide = tuple(
        sorted(
            (
                key
                for key, row in by_key.items()
                if not row.decided
                and (row.jobs_done or row.sat_out)
                and (row.index == 0 or base_decided)
            ),
            key=_row_order,
        )
    )
    after = {
        key: replace(row, decided=True) if key in decide else row for key, row in by_key.items()
    }
    return StudySteps(
        decide=decide,
        record=_rounds_to_record(config, after),
        plan=_rows_to_plan(config, after),
        finished=_all_decided(config, after),
    )


def _plans_from(row: RowState) -> bool:
    """Whether a track's next round can be planned from this row, its latest: once it is
    decided (its current model is then known); from the base model, once it is profiled."""
    return row.decided or (row.index == 0 and row.profiled)


def _latest_index(rows: dict[RowKey, RowState], track: str) -> int:
    """The track's latest planned round; 0 (the base model) before its first."""
    return max((index for index, row_track in rows if row_track == track), default=0)


def _rows_to_plan(config: dict, rows: dict[RowKey, RowState]) -> tuple[RowKey, ...]:
    base = rows.get((0, BASE))
    if base is None:
        return ()
    planned: list[RowKey] = []
    for track in sorted(config["tracks"], key=lambda track: track != GUIDED):
        latest = _latest_index(rows, track)
        if latest >= config["rounds"] or not _plans_from(rows.get((latest, track), base)):
            continue
        index = latest + 1
        if track != GUIDED and (index, GUIDED) not in rows and (index, GUIDED) not in planned:
            continue  # the controls spend what the guided candidate of their round adds
        planned.append((index, track))
    return tuple(planned)


def _rounds_to_record(config: dict, rows: dict[RowKey, RowState]) -> tuple[int, ...]:
    due = []
    for index in range(1, config["rounds"] + 1):
        round_rows = [rows.get((index, track)) for track in config["tracks"]]
        if any(row is None or not row.decided for row in round_rows):
            continue
        if any(row.recorded for row in round_rows) or all(row.sat_out for row in round_rows):
            continue  # written already, or nothing to write: every track sat the round out
        due.append(index)
    return tuple(due)


def _all_decided(config: dict, rows: dict[RowKey, RowState]) -> bool:
    last = [rows.get((config["rounds"], track)) for track in config["tracks"]]
    return all(row is not None and row.decided for row in last)


# --- planning some tracks of a round ----------------------------------------------------------


def study_track_plans(
    config: dict, index: int, tracks: Sequence[str], current: dict[str, dict]
) -> dict[str, dict]:
    """Plan round `index` of `tracks` alone: the very candidates study_round_plan gives them
    when it plans the whole round, since the guided plan reads only the guided track's
    current model and each control's reads only its own and the guided candidate.

    In: the cleaned study config, the round's index, the tracks to plan, and the current
    model (as study_round_plan takes it) of each of them and of the guided track. Out: per
    track of `tracks`, study_round_plan's candidate."""
    planned_tracks = [track for track in config["tracks"] if track == GUIDED or track in tracks]
    planned = study_round_plan(
        {**config, "tracks": planned_tracks},
        index,
        {track: current[track] for track in planned_tracks},
    )
    return {track: planned[track] for track in planned_tracks if track in tracks}


# --- progress ---------------------------------------------------------------------------------


def track_rounds(config: dict, rows: Iterable[RowState]) -> dict[str, int]:
    """Each track's latest planned round (0 while it still starts from the base model)."""
    by_key = {(row.index, row.track): row for row in rows}
    return {track: _latest_index(by_key, track) for track in config["tracks"]}


def rounds_decided(config: dict, rows: Iterable[RowState]) -> int:
    """How many of rounds 1..K have every track's row decided."""
    decided = {(row.index, row.track) for row in rows if row.decided}
    return sum(
        all((index, track) in decided for track in config["tracks"])
        for index in range(1, config["rounds"] + 1)
    )


def progress_fraction(
    config: dict, rows: Iterable[RowState], job_share: dict[RowKey, float]
) -> float:
    """The study's share done, out of rounds + 1 equal parts (round 0, the base model, is
    one): a decided row counts whole, an undecided one its jobs' mean progress (job_share),
    each track's row 1/len(tracks) of its round."""
    done = 0.0
    for row in rows:
        part = 1.0 if row.decided else job_share.get((row.index, row.track), 0.0)
        done += part if row.index == 0 else part / len(config["tracks"])
    return done / (config["rounds"] + 1)


def rounds_in_words(config: dict, in_flight: dict[str, int]) -> str:
    """ "round 1 of 4" while every undecided row is in one round; else each track's:
    "guided round 2, random round 1, uniform round 1 of 4" ("base model" for round 0)."""
    rounds = config["rounds"]
    if len(set(in_flight.values())) == 1:
        return f"round {next(iter(in_flight.values()))} of {rounds}"
    ordered = sorted(in_flight.items(), key=lambda item: TRACK_ORDER.index(item[0]))
    words = [
        "base model" if track == BASE else f"{track} round {index}" for track, index in ordered
    ]
    return f"{', '.join(words)} of {rounds}"


__all__ = [
    "RowState",
    "StudySteps",
    "progress_fraction",
    "rounds_decided",
    "rounds_in_words",
    "study_job_key",
    "study_job_parse",
    "study_round_keys",
    "study_steps",
    "study_track_plans",
    "track_rounds",
]
