"""What a study can do next (analysis/study_rounds.py): per-track dependencies instead of a
barrier per round, each step due once; planning some tracks of a round gives the very
candidates planning the whole round gives; the progress arithmetic."""

import numpy as np
import pytest

from analysis.engine.changes import apply_change
from analysis.engine.study_plans import rejected_candidates, study_round_plan
from analysis.engine.study_settings import study_config_clean
from analysis.study_rounds import (
    RowState,
    StudySteps,
    progress_fraction,
    rounds_decided,
    rounds_in_words,
    study_job_key,
    study_job_parse,
    study_round_keys,
    study_steps,
    study_track_plans,
    track_rounds,
)
from kb.demo import ONE_LAYER_ATTENTION_SPEC, SHAPES_CNN_SPEC

CONFIG = {"rounds": 2, "tracks": ["guided", "random", "uniform"], "seeds": [0, 1, 2]}
TRACKS = ("guided", "random", "uniform")


def _decided(index: int, track: str, **fields) -> RowState:
    return RowState(index=index, track=track, decided=True, jobs_done=True, **fields)


def _running(index: int, track: str, *, jobs_done: bool = False) -> RowState:
    return RowState(index=index, track=track, decided=False, jobs_done=jobs_done)


BASE = _decided(0, "base")


# --- job keys ---------------------------------------------------------------------------------


def test_a_job_key_names_its_round_track_and_seed_and_parses_back():
    assert study_job_key(10, "uniform", 3) == "r10:uniform:s3"
    assert study_job_parse("r10:uniform:s3") == (10, "uniform", 3)
    assert study_round_keys(CONFIG, 2, "guided") == ["r2:guided:s0", "r2:guided:s1", "r2:guided:s2"]


# --- the steps --------------------------------------------------------------------------------


def test_nothing_happens_before_the_base_models_first_job_is_done():
    steps = study_steps(CONFIG, [_running(0, "base")])
    assert steps == StudySteps()
    assert not steps


def test_round_one_is_planned_once_the_base_model_is_profiled_guided_first():
    """Its first seed's job profiles the base model: all that planning round 1 reads."""
    profiled = RowState(0, "base", decided=False, profiled=True)
    steps = study_steps(CONFIG, [profiled])
    assert steps == StudySteps(plan=((1, "guided"), (1, "random"), (1, "uniform")))


def test_a_round_one_row_waits_for_the_base_model_it_compares_with():
    profiled = RowState(0, "base", decided=False, profiled=True)
    rows = [profiled, _running(1, "guided", jobs_done=True), _running(1, "random"),
            _running(1, "uniform")]  # fmt: skip
    assert study_steps(CONFIG, rows) == StudySteps()
    rows[0] = RowState(0, "base", decided=False, jobs_done=True, profiled=True)
    steps = study_steps(CONFIG, rows)
    assert steps == StudySteps(decide=((0, "base"), (1, "guided")), plan=((2, "guided"),))


def test_the_base_model_decided_plans_every_tracks_first_round_guided_first():
    steps = study_steps(CONFIG, [RowState(0, "base", decided=False, jobs_done=True, profiled=True)])
    assert steps == StudySteps(
        decide=((0, "base"),), plan=((1, "guided"), (1, "random"), (1, "uniform"))
    )


def test_the_guided_track_runs_ahead_while_the_controls_still_train_their_round():
    rows = [BASE, _running(1, "guided", jobs_done=True), _running(1, "random"),
            _running(1, "uniform")]  # fmt: skip
    steps = study_steps(CONFIG, rows)
    assert steps == StudySteps(decide=((1, "guided"),), plan=((2, "guided"),))


def test_a_control_waits_for_the_guided_candidate_of_its_next_round():
    rows = [BASE, _running(1, "guided"), _decided(1, "random"), _running(1, "uniform")]
    assert study_steps(CONFIG, rows) == StudySteps()
    # once the guided candidate of round 2 is planned, the random track follows it
    rows = [BASE, _decided(1, "guided"), _running(2, "guided"), _decided(1, "random"),
            _running(1, "uniform")]  # fmt: skip
    assert study_steps(CONFIG, rows) == StudySteps(plan=((2, "random"),))


def test_a_control_is_planned_in_the_same_step_as_the_guided_candidate_it_follows():
    rows = [BASE, _running(1, "guided", jobs_done=True), _decided(1, "random"),
            _running(1, "uniform")]  # fmt: skip
    assert study_steps(CONFIG, rows).plan == ((2, "guided"), (2, "random"))


def test_a_round_is_recorded_once_all_its_rows_are_decided_and_only_once():
    rows = [BASE, _decided(1, "guided"), _decided(1, "random"), _running(1, "uniform")]
    assert study_steps(CONFIG, rows).record == ()
    rows[-1] = _running(1, "uniform", jobs_done=True)
    steps = study_steps(CONFIG, rows)
    assert (steps.decide, steps.record) == (((1, "uniform"),), (1,))
    recorded = [BASE, *(_decided(1, track, recorded=True) for track in TRACKS)]
    assert study_steps(CONFIG, recorded).record == ()


def test_a_round_every_track_sat_out_has_no_records_and_is_decided_at_once():
    rows = [BASE, *(RowState(1, track, decided=False, sat_out=True) for track in TRACKS)]
    steps = study_steps(CONFIG, rows)
    assert steps.decide == ((1, "guided"), (1, "random"), (1, "uniform"))
    assert steps.record == ()
    assert steps.plan == ((2, "guided"), (2, "random"), (2, "uniform"))


def test_the_study_finishes_when_every_tracks_last_round_is_decided():
    rows = [BASE, *(_decided(1, track, recorded=True) for track in TRACKS),
            _decided(2, "guided"), _decided(2, "random"), _running(2, "uniform")]  # fmt: skip
    steps = study_steps(CONFIG, rows)
    assert steps == StudySteps()
    rows[-1] = _running(2, "uniform", jobs_done=True)
    steps = study_steps(CONFIG, rows)
    assert steps == StudySteps(decide=((2, "uniform"),), record=(2,), finished=True)


def test_no_track_is_planned_past_the_last_round():
    rows = [BASE, *(_decided(index, "guided") for index in (1, 2)), _running(1, "random"),
            _running(1, "uniform")]  # fmt: skip
    assert study_steps(CONFIG, rows) == StudySteps()


def test_a_study_of_two_tracks_plans_only_its_own():
    config = {**CONFIG, "tracks": ["guided", "uniform"]}
    steps = study_steps(config, [RowState(0, "base", decided=False, profiled=True)])
    assert steps.plan == ((1, "guided"), (1, "uniform"))


# --- planning some tracks of a round ----------------------------------------------------------

WIDTHS = {"relu1": 8, "relu2": 12, "relu3": 32}  # the shapes CNN's probed layers


def _cnn_profile(peaks: dict[str, list[float]], widths=WIDTHS) -> dict:
    """A stored profile of the shapes CNN: low curvature correlations except `peaks`."""
    rng = np.random.default_rng(0)
    layers = {}
    for name, width in widths.items():
        curvature = ([*peaks.get(name, []), *[0.05] * width])[:width]
        means = rng.uniform(0.1, 1.0, (4, width))
        layers[name] = {
            "n": 40, "mean": means.mean(axis=0).tolist(), "variance": [1.0] * width,
            "maximum": means.max(axis=0).tolist(), "fraction_inactive": [0.0] * width,
            "class_means": means.tolist(), "class_counts": [10] * 4,
            "correlations": {"curvature": curvature, "orientation": [0.0] * width},
        }  # fmt: skip
    return {"n_examples": 40, "class_names": ["line", "arc", "circle", "corner"],
            "attribute_names": ["curvature", "orientation"], "layers": layers}  # fmt: skip


def _head_profile(scores: dict[str, list[float]]) -> dict:
    return {"heads": {layer: {"induction": values, "previous_token": [0.0] * len(values),
                              "duplicate_token": [0.0] * len(values),
                              "entropy": [1.0] * len(values)}
                      for layer, values in scores.items()}}  # fmt: skip


def _cnn_config() -> dict:
    settings = {"concept": "curvature", "seeds": 3, "train": {"epochs": 1}}
    return study_config_clean(settings, spec=SHAPES_CNN_SPEC)


def _from_base(config, spec, profile) -> dict:
    return {track: {"spec": spec, "profile": profile if track == "guided" else None,
                    "rejected": []} for track in config["tracks"]}  # fmt: skip


def _cnn_apart() -> tuple[dict, int, dict]:
    """Round 2 of a CNN study whose tracks stand apart: guided's round-1 candidate rejected,
    random's kept (it starts from another model), uniform back at the base model."""
    config = _cnn_config()
    profile = _cnn_profile({"relu2": [0.2, 0.9], "relu3": [0.5]})
    current = _from_base(config, SHAPES_CNN_SPEC, profile)
    first = study_round_plan(config, 1, current)
    rows = [{"index": 1, "track": "guided", "spec": first["guided"]["spec"],
             "plan": first["guided"]["plan"], "kept": False, "sat_out": False}]  # fmt: skip
    current["guided"]["rejected"] = rejected_candidates(rows, "guided")
    current["random"]["spec"] = first["random"]["spec"]
    return config, 2, current


def _cnn_without_profile() -> tuple[dict, int, dict]:
    config = _cnn_config()
    return config, 1, _from_base(config, SHAPES_CNN_SPEC, None)


def _transformer_same_model() -> tuple[dict, int, dict]:
    """A transformer whose guided and random tracks start from the same model: the random
    track leaves the guided change out."""
    config = study_config_clean({"budget_fraction": 0.6, "seeds": 3}, spec=ONE_LAYER_ATTENTION_SPEC)
    profile = _head_profile({"blocks.0.attn": [0.12, 0.16]})
    return config, 1, _from_base(config, ONE_LAYER_ATTENTION_SPEC, profile)


def _cnn_from_base() -> tuple[dict, int, dict]:
    config = _cnn_config()
    return config, 1, _from_base(config, SHAPES_CNN_SPEC, _cnn_profile({"relu3": [0.7]}))


@pytest.mark.parametrize(
    "case", [_cnn_from_base, _cnn_apart, _cnn_without_profile, _transformer_same_model]
)
@pytest.mark.parametrize(
    "tracks",
    [["guided"], ["random"], ["uniform"], ["random", "uniform"], ["guided", "random", "uniform"]],
)
def test_planning_some_tracks_gives_the_candidates_of_planning_the_whole_round(case, tracks):
    config, index, current = case()
    whole = study_round_plan(config, index, current)

    some = study_track_plans(config, index, tracks, current)

    assert some == {track: whole[track] for track in tracks}


def test_the_cases_compared_are_the_ones_they_claim():
    config, index, current = _cnn_apart()
    whole = study_round_plan(config, index, current)
    assert whole["guided"]["spec"] is not None
    assert whole["guided"]["plan"]["layer"] != current["guided"]["rejected"][0]["layer"]
    assert whole["random"]["plan"]["budget"] == whole["guided"]["params_added"]
    _, _, bare = _cnn_without_profile()
    without = study_round_plan(config, 1, bare)
    assert without["guided"]["spec"] is None
    assert without["random"]["plan"]["budget_source"] == "own"
    config, index, current = _transformer_same_model()
    planned = study_round_plan(config, index, current)
    assert "excluded" in planned["random"]["plan"]
    # A guided-only call has no random track to exclude anything from, and plans the same.
    replayed = apply_change(ONE_LAYER_ATTENTION_SPEC, planned["guided"]["operation"],
                            planned["guided"]["change_parameters"]).spec  # fmt: skip
    assert study_track_plans(config, index, ["guided"], current)["guided"]["spec"] == replayed


# --- progress ---------------------------------------------------------------------------------


def test_each_tracks_latest_round_and_the_rounds_every_track_has_decided():
    rows = [BASE, *(_decided(1, track) for track in TRACKS), _running(2, "guided"),
            _decided(2, "random")]  # fmt: skip
    assert track_rounds(CONFIG, rows) == {"guided": 2, "random": 2, "uniform": 1}
    assert rounds_decided(CONFIG, rows) == 1
    assert track_rounds(CONFIG, [BASE]) == {"guided": 0, "random": 0, "uniform": 0}
    assert rounds_decided(CONFIG, [BASE]) == 0


def test_progress_counts_round_zero_as_one_round_and_each_tracks_row_as_its_share():
    assert progress_fraction(CONFIG, [_running(0, "base")], {(0, "base"): 0.5}) == 0.5 / 3
    rows = [BASE, _decided(1, "guided"), _running(1, "random"), _running(1, "uniform")]
    share = {(1, "random"): 0.5}
    assert progress_fraction(CONFIG, rows, share) == pytest.approx((1 + 1 / 3 + 0.5 / 3) / 3)


def test_the_rounds_in_words_name_each_track_only_when_they_stand_apart():
    assert rounds_in_words(CONFIG, {"base": 0}) == "round 0 of 2"
    assert (
        rounds_in_words(CONFIG, {"base": 0, "guided": 1, "random": 1})
        == "base model, guided round 1, random round 1 of 2"
    )
    assert rounds_in_words(CONFIG, {"random": 1, "uniform": 1}) == "round 1 of 2"
    assert (
        rounds_in_words(CONFIG, {"uniform": 1, "guided": 2, "random": 1})
        == "guided round 2, random round 1, uniform round 1 of 2"
    )
