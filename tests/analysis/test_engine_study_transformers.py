"""Studies of transformers in the engine: the settings (a sequence task, steps, a head role),
the guided rule on hand-built head profiles, the control tracks' budgets, a round's plan, one
job as a transformer experiment's arm, and a whole tiny study run twice to the same result."""

import pytest

from analysis.engine.changes import ChangeError, apply_change
from analysis.engine.run_settings import SettingsError
from analysis.engine.studies import run_study_locally, study_head_mechanism, study_job_run
from analysis.engine.study_plans import study_round_plan
from analysis.engine.study_rules import (
    GUIDED_RULES,
    INSERT_ATTENTION_UNTIL_ROLE,
    round_budget,
    transformer_guided_change,
)
from analysis.engine.study_settings import study_config_clean
from analysis.engine.study_tracks import (
    TRANSFORMER_UNIFORM_POLICY,
    random_track_change,
    uniform_track_change,
)
from analysis.engine.transformer_changes import TRANSFORMER_ANY_CHANGE_POLICY
from analysis.engine.transformer_experiments import run_transformer_arm
from analysis.engine.transformer_specs import count_transformer_parameters
from kb.demo import ONE_LAYER_ATTENTION_SPEC, SHAPES_CNN_SPEC
from tests.analysis.transformer_helpers import TINY_TRANSFORMER

# One attention-only layer of 2 heads (d_model 32, d_head 16): 7,328 parameters; a head costs
# 4 * 32 * 16 + 3 * 16 = 2,096, an attention-only block 2,096 per head + 32 (b_O).
DEMO = ONE_LAYER_ATTENTION_SPEC
HEAD = 2096
TINY_SETTINGS = {
    "dataset": {"name": "induction", "length": 16, "segment": 4},
    "train": {"steps": 6},
    "seeds": [0, 1],
    "probe_size": 16,
    "rounds": 2,
    "budget_fraction": 0.3,
}


def _profile(spec_scores: dict[str, list]) -> dict:
    """A head profile with these induction scores per layer (other scores zero)."""
    return {
        "heads": {
            layer: {"induction": scores, "previous_token": [0.0] * len(scores),
                    "duplicate_token": [0.0] * len(scores), "entropy": [1.0] * len(scores)}
            for layer, scores in spec_scores.items()
        }
    }  # fmt: skip


def _config(**changes) -> dict:
    return study_config_clean({**TINY_SETTINGS, **changes}, spec=TINY_TRANSFORMER, allow_small=True)


# --- settings -------------------------------------------------------------------------------


def test_a_transformer_study_takes_the_task_steps_and_a_head_role_with_defaults():
    assert study_config_clean({}, spec=DEMO) == {
        "dataset": {"name": "induction", "length": 32, "segment": 8, "eval_seed": 10_000},
        "train": {"steps": 300, "batch_size": 64, "learning_rate": 0.01, "weight_decay": 0.0,
                  "optimizer": "adamw"},
        "seeds": [0, 1, 2, 3, 4],
        "probe_size": 256,
        "rounds": 4,
        "budget_fraction": 0.1,
        "head_role": "induction",
        "threshold": 0.5,
        "rule": "insert_attention_until_role",
        "tracks": ["guided", "random", "uniform"],
        "metric": "test_loss",
        "direction": "decrease",
        "random_seed": 0,
        "tolerance": 0.05,
        "level": 0.95,
    }  # fmt: skip


def test_cleaning_a_transformer_studys_config_again_changes_nothing():
    config = _config()
    assert study_config_clean(config, spec=TINY_TRANSFORMER, allow_small=True) == config


def test_bad_transformer_settings_are_refused_by_field():
    with pytest.raises(SettingsError) as error:
        study_config_clean(
            {"dataset": {"name": "induction", "length": 40}, "train": {"steps": 0},
             "head_role": "copying", "threshold": 1.5, "rule": "widen_most_selective",
             "concept": "induction"},
            spec=TINY_TRANSFORMER,
        )  # fmt: skip
    errors = error.value.field_errors
    assert set(errors) == {"dataset.length", "train.steps", "head_role", "threshold", "rule",
                           "concept"}  # fmt: skip
    assert errors["dataset.length"] == ["the model takes at most 16 positions (n_ctx)."]
    assert errors["head_role"] == [
        "must be one of previous_token, induction, duplicate_token, got 'copying'."
    ]
    assert errors["threshold"] == ["must be a number from 0.0 to 1.0, got 1.5."]
    assert errors["rule"] == [
        "must be one of insert_attention_until_role, got 'widen_most_selective'."
    ]
    assert errors["concept"][0].startswith("unknown setting for a transformer.")


def test_a_cnn_study_cannot_take_the_transformer_rule():
    with pytest.raises(SettingsError) as error:
        study_config_clean(
            {"concept": "curvature", "rule": INSERT_ATTENTION_UNTIL_ROLE}, spec=SHAPES_CNN_SPEC
        )
    assert error.value.field_errors == {
        "rule": [
            "must be one of widen_most_selective, insert_after_tightest_clusters, got "
            "'insert_attention_until_role'."
        ]
    }


# --- the guided rule on hand-built head profiles ----------------------------------------------


def test_below_the_threshold_the_rule_inserts_an_attention_layer_sized_to_the_budget():
    budget = round_budget(DEMO, 0.6)  # 4,397: two heads (4,224) are nearest
    choice = transformer_guided_change(DEMO, _profile({"blocks.0.attn": [0.12, 0.16]}),
                                       budget=budget)  # fmt: skip
    assert (choice.operation, choice.parameters) == ("insert_block", {"after": 0, "n_heads": 2})
    assert choice.layer == "blocks.1.attn"
    assert choice.params_added == 2 * HEAD + 32
    assert choice.rule == INSERT_ATTENTION_UNTIL_ROLE
    assert choice.rule_text == GUIDED_RULES[INSERT_ATTENTION_UNTIL_ROLE]
    assert choice.concept == "induction"
    assert choice.inputs == [{"layer": "blocks.0.attn", "block": 0, "heads": 2, "best_head": 1,
                              "best_score": 0.16, "threshold": 0.5}]  # fmt: skip
    assert choice.reason == (
        "no head reaches the induction threshold 0.50 (best 0.16 at layer 0 head 1): insert an "
        "attention-only layer of 2 heads after block 0, +4,224 parameters of a 4,397 budget"
    )


def test_a_small_budget_still_inserts_one_head():
    choice = transformer_guided_change(DEMO, _profile({"blocks.0.attn": [0.1, 0.1]}), budget=500)
    assert choice.parameters == {"after": 0, "n_heads": 1}
    assert choice.params_added == HEAD + 32


def test_heads_without_a_measurable_score_count_as_below_the_threshold():
    choice = transformer_guided_change(DEMO, _profile({"blocks.0.attn": [None, None]}), budget=5000)
    assert choice.operation == "insert_block"
    assert "no head has a measurable induction score" in choice.reason


def test_once_a_head_reaches_the_threshold_heads_are_added_where_the_best_head_sits():
    two = apply_change(DEMO, "insert_block", {"after": 0, "n_heads": 2}).spec
    profile = _profile({"blocks.0.attn": [0.55, 0.2], "blocks.1.attn": [0.1, 0.76]})
    choice = transformer_guided_change(two, profile, budget=3 * HEAD)
    assert (choice.operation, choice.parameters) == ("add_heads", {"block": 1, "heads": 3})
    assert choice.layer == "blocks.1.attn"
    assert choice.params_added == 3 * HEAD
    assert choice.reason == (
        "a head reaches the induction threshold 0.50 (best 0.76 at layer 1 head 1): add 3 heads "
        "to block 1, +6,288 parameters of a 6,288 budget"
    )


def test_the_threshold_and_the_role_are_the_studys_settings():
    two = apply_change(DEMO, "insert_block", {"after": 0, "n_heads": 2}).spec
    profile = _profile({"blocks.0.attn": [0.3, 0.2], "blocks.1.attn": [0.3, 0.1]})
    # equal best scores: the earlier layer wins
    lower = transformer_guided_change(two, profile, budget=HEAD, threshold=0.25)
    assert lower.parameters == {"block": 0, "heads": 1}
    higher = transformer_guided_change(two, profile, budget=HEAD, threshold=0.35)
    assert higher.parameters == {"after": 1, "n_heads": 1}
    previous = transformer_guided_change(two, profile, budget=HEAD, role="previous_token")
    assert previous.concept == "previous_token" and previous.operation == "insert_block"


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (_profile({"blocks.0.attn": [0.1, 0.2, 0.3]}), "profile"),  # three heads, the model two
        (_profile({"blocks.1.attn": [0.1, 0.2]}), "profile"),  # a layer the model lacks
        ({"layers": {}}, "profile"),
    ],
)
def test_a_profile_of_another_model_is_refused(profile, field):
    with pytest.raises(ChangeError) as error:
        transformer_guided_change(DEMO, profile, budget=HEAD)
    assert list(error.value.field_errors) == [field]


# --- the control tracks -------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [HEAD + 32, 2 * HEAD + 32, 3 * HEAD])
@pytest.mark.parametrize("spec", [DEMO, TINY_TRANSFORMER], ids=["demo", "tiny"])
def test_the_control_tracks_spend_the_budget_within_five_percent(spec, budget):
    uniform = uniform_track_change(spec, budget)
    random = random_track_change(spec, budget, seed=7)
    for change in (uniform, random):
        assert abs(change.params_added - budget) <= 0.05 * budget
        replayed = spec
        for step in change.changes:
            replayed = apply_change(replayed, step["operation"], step["parameters"]).spec
        assert replayed == change.spec
        assert count_transformer_parameters(change.spec) == (
            count_transformer_parameters(spec) + change.params_added
        )
    assert uniform.policy == TRANSFORMER_UNIFORM_POLICY
    assert random.policy == TRANSFORMER_ANY_CHANGE_POLICY


def test_uniform_growth_adds_the_same_heads_everywhere_when_whole_heads_allow():
    change = uniform_track_change(DEMO, 2 * HEAD + 32)
    assert change.changes == [{"operation": "add_heads", "parameters": {"block": 0, "heads": 2}}]
    assert change.widths == {"blocks.0.attn": [2, 4]}
    # Tiny: a head costs 4 * 16 * 8 + 3 * 8 = 536, an MLP neuron 2 * 16 + 1 = 33. Of the sizes
    # within 5% of 1,200, heads 2->3 everywhere and the MLP 24->29 grow most nearly alike
    # (x1.5 and x1.21; 24->27, nearer the budget, would grow by x1.125).
    tiny = uniform_track_change(TINY_TRANSFORMER, 1200)
    assert tiny.widths == {"blocks.0.attn": [2, 3], "blocks.1.attn": [2, 3],
                           "blocks.1.mlp": [24, 29]}  # fmt: skip
    assert tiny.params_added == 2 * 536 + 5 * 33


def test_a_budget_whole_heads_cannot_meet_is_refused_with_the_nearest_sizes():
    with pytest.raises(ChangeError) as error:
        uniform_track_change(DEMO, 1000)
    assert error.value.field_errors == {"budget": "no uniform growth fits this budget"}
    assert "nearest: +2,096" in str(error.value)


# --- a round's plan -----------------------------------------------------------------------------


def test_a_transformer_round_is_planned_at_the_guided_candidates_budget():
    config = study_config_clean({"budget_fraction": 0.6, "seeds": 3}, spec=DEMO)
    profile = _profile({"blocks.0.attn": [0.12, 0.16]})
    current = {"guided": {"spec": DEMO, "profile": profile},
               "random": {"spec": DEMO, "profile": None},
               "uniform": {"spec": DEMO, "profile": None}}  # fmt: skip
    planned = study_round_plan(config, 1, current)
    guided = planned["guided"]
    assert (guided["operation"], guided["change_parameters"]) == (
        "insert_block",
        {"after": 0, "n_heads": 2},
    )
    assert guided["mechanism"] == {"layer": "blocks.1.attn", "added_heads": [0, 1],
                                   "score": "induction"}  # fmt: skip
    for track in ("random", "uniform"):
        assert planned[track]["plan"]["budget"] == guided["params_added"] == 4224
        assert planned[track]["plan"]["budget_source"] == "guided"
        assert abs(planned[track]["params_added"] - 4224) <= 0.05 * 4224
    assert planned["uniform"]["change_parameters"] == {"block": 0, "heads": 2}
    # Inserting the twin block before block 0 would build the guided candidate bit for bit:
    # the random track leaves the guided model out while both start from the same model.
    random = planned["random"]
    assert random["plan"]["excluded"] == {"operation": "insert_block",
                                          "parameters": {"after": 0, "n_heads": 2}}  # fmt: skip
    assert random["spec"] != guided["spec"]
    drawn = [(item["operation"], item["parameters"]) for item in random["plan"]["candidates"]]
    assert ("insert_block", {"after": -1, "n_heads": 2}) not in drawn
    assert ("add_heads", {"block": 0, "heads": 2}) in drawn


# --- jobs and a whole study ---------------------------------------------------------------------


def test_a_job_trains_as_a_transformer_experiments_arm_and_profiles_its_heads():
    config = _config()
    result = study_job_run(config, TINY_TRANSFORMER, seed=1, profile=True, mechanism=None)
    arm = run_transformer_arm(
        TINY_TRANSFORMER,
        {"dataset": config["dataset"], "train": config["train"], "seeds": config["seeds"],
         "probe_size": config["probe_size"]},
        seed=1,
    )  # fmt: skip
    assert result["metrics"] == arm["metrics"]
    assert result["profile"] == arm["head_profile"]
    assert set(result["profile"]["heads"]) == {"blocks.0.attn", "blocks.1.attn"}
    assert result["parameters"] == count_transformer_parameters(TINY_TRANSFORMER)
    assert result["mechanism"] is None
    unprofiled = study_job_run(config, TINY_TRANSFORMER, seed=1, profile=False, mechanism=None)
    assert unprofiled["profile"] is None
    assert unprofiled["metrics"] == result["metrics"]


def test_the_head_mechanism_check_pairs_each_seed_with_the_current_model():
    current = [{"seed": 0, "profile": _profile({"blocks.0.attn": [0.1, 0.2]})},
               {"seed": 1, "profile": _profile({"blocks.0.attn": [0.3, 0.1]})}]  # fmt: skip
    grown = [{"blocks.0.attn": [0.1, 0.2], "blocks.1.attn": [0.5, 0.6]},
             {"blocks.0.attn": [0.3, 0.1], "blocks.1.attn": [0.4, 0.2]}]  # fmt: skip
    candidate = [{"seed": seed, "profile": _profile(heads)} for seed, heads in enumerate(grown)]
    request = {"layer": "blocks.1.attn", "added_heads": [0, 1], "score": "induction"}
    check = study_head_mechanism(request, current, candidate)
    rows = [(row["seed"], row["added_best"], row["baseline_best"]) for row in check["per_seed"]]
    assert rows == [(0, 0.6, 0.2), (1, 0.4, 0.3)]
    assert check["seeds_added_exceeds_baseline"] == 2
    assert check["difference"] == pytest.approx(0.25)
    assert study_head_mechanism(None, current, candidate) is None


def test_a_tiny_transformer_study_runs_locally_and_replays_bit_for_bit():
    config = _config()
    first = run_study_locally(config, TINY_TRANSFORMER)
    assert run_study_locally(config, TINY_TRANSFORMER) == first
    rounds = first["rounds"]
    assert [(row["index"], row["track"]) for row in rounds] == [
        (0, "base"), (1, "guided"), (1, "random"), (1, "uniform"),
        (2, "guided"), (2, "random"), (2, "uniform"),
    ]  # fmt: skip
    guided = rounds[1]
    assert guided["operation"] == "insert_block"
    assert guided["plan"]["rule"] == INSERT_ATTENTION_UNTIL_ROLE
    assert len(guided["values"]) == 2
    mechanism = guided["mechanism"]
    assert mechanism["layer"] == guided["plan"]["layer"]
    assert [row["seed"] for row in mechanism["per_seed"]] == [0, 1]
    for row in rounds[2:4]:
        assert row["plan"]["budget"] == guided["params_added"]
        assert abs(row["params_added"] - guided["params_added"]) <= 0.05 * guided["params_added"]
        assert row["mechanism"] is None
    report = first["report"]
    assert report["metric"] == "test_loss" and report["direction"] == "decrease"
    assert set(report["comparisons"]) == {"guided_vs_random", "guided_vs_uniform"}
