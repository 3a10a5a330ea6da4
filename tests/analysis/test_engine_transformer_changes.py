"""Transformer changes, their budget-matched random controls under both policies, and the
head mechanism check (engine only, no database)."""

import copy

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis.engine.changes import (
    ChangeError,
    apply_change,
    random_any_change,
    random_control_change,
    random_control_for,
    validate_change_parameters,
)
from analysis.engine.head_profiles import HeadScores, TransformerProfile
from analysis.engine.transformer import build_transformer
from analysis.engine.transformer_changes import (
    ANY_OPERATION,
    SAME_OPERATION,
    add_heads,
    apply_transformer_change,
    insert_block,
    remove_block,
    set_transformer_hyperparameter,
    transformer_control_for,
    transformer_random_any_change,
    widen_mlp,
)
from analysis.engine.transformer_experiments import HEAD_MECHANISM_TEST, head_mechanism_check
from analysis.engine.transformer_specs import count_transformer_parameters
from tests.analysis.engine_helpers import TINY_CNN
from tests.analysis.transformer_helpers import TINY_TRANSFORMER

# Blocks 0 and 1 are equal and block 2 costs within 5% of them (1692 and 1688 parameters):
# every operation has another place of about the same cost.
MIXED = {
    "family": "transformer",
    "d_vocab": 10,
    "n_ctx": 12,
    "d_model": 16,
    "d_head": 4,
    "blocks": [
        {"n_heads": 2, "d_mlp": 32},
        {"n_heads": 2, "d_mlp": 32},
        {"n_heads": 3, "d_mlp": 24},
    ],
    "act_fn": "gelu",
    "normalization": "ln",
}
HEAD_COST = 4 * 16 * 8 + 3 * 8  # one head of TINY_TRANSFORMER: W_Q/K/V/O and b_Q/K/V
NEURON_COST = 2 * 16 + 1  # one MLP neuron of TINY_TRANSFORMER: W_in column, W_out row, b_in


def built_parameters(spec: dict) -> int:
    """Out: the trainable parameters of the model transformer.py builds from the spec."""
    return sum(p.numel() for p in build_transformer(spec).parameters() if p.requires_grad)


def assert_counts_real(result) -> None:
    assert result.params_before == built_parameters(TINY_TRANSFORMER)
    assert result.params_after == built_parameters(result.spec)
    assert result.params_added == result.params_after - result.params_before


# --- the changes ------------------------------------------------------------------------------


def test_insert_attention_only_block():
    original = copy.deepcopy(TINY_TRANSFORMER)
    result = insert_block(TINY_TRANSFORMER, after=0, n_heads=3)
    assert result.spec["blocks"] == [{"n_heads": 2}, {"n_heads": 3}, {"n_heads": 2, "d_mlp": 24}]
    assert result.touched_layer == "blocks.1.attn"
    assert result.added_units == [0, 1, 2]
    assert result.added == {"blocks.1.attn": [0, 1, 2]}
    assert result.description == "insert an attention-only block with 3 heads after block 0"
    # attention (3 heads, b_O) plus the block's one LayerNorm (w, b)
    assert result.params_added == 3 * HEAD_COST + 16 + 2 * 16
    assert_counts_real(result)
    assert original == TINY_TRANSFORMER


def test_insert_attention_and_mlp_block_before_the_first():
    result = insert_block(TINY_TRANSFORMER, after=-1, n_heads=1, d_mlp=8)
    assert result.spec["blocks"][0] == {"n_heads": 1, "d_mlp": 8}
    assert result.added == {"blocks.0.attn": [0], "blocks.0.mlp": list(range(8))}
    assert result.added_units == [0]
    assert result.description == (
        "insert an attention + MLP (8 neurons) block with 1 heads before block 0"
    )
    assert result.params_added == HEAD_COST + 16 + 8 * NEURON_COST + 16 + 2 * 2 * 16
    assert_counts_real(result)


def test_remove_block():
    result = remove_block(TINY_TRANSFORMER, block=0)
    assert result.spec["blocks"] == [{"n_heads": 2, "d_mlp": 24}]
    assert (result.touched_layer, result.added_units, result.added) == ("blocks.0", [], {})
    assert result.description == "remove block 0"
    assert result.params_added == -(2 * HEAD_COST + 16 + 2 * 16)
    assert_counts_real(result)


def test_add_heads():
    result = add_heads(TINY_TRANSFORMER, block=1, heads=2)
    assert result.spec["blocks"][1] == {"n_heads": 4, "d_mlp": 24}
    assert (result.touched_layer, result.added_units) == ("blocks.1.attn", [2, 3])
    assert result.description == "add 2 heads to block 1 (2 to 4)"
    assert result.params_added == 2 * HEAD_COST
    assert_counts_real(result)


def test_widen_mlp():
    result = widen_mlp(TINY_TRANSFORMER, block=1, units=5)
    assert result.spec["blocks"][1] == {"n_heads": 2, "d_mlp": 29}
    assert (result.touched_layer, result.added_units) == ("blocks.1.mlp", [24, 25, 26, 27, 28])
    assert result.description == "widen block 1's MLP from 24 to 29 neurons (+5)"
    assert result.params_added == 5 * NEURON_COST
    assert_counts_real(result)


def test_set_hyperparameter():
    result = set_transformer_hyperparameter(TINY_TRANSFORMER, name="learning_rate", value=0.01)
    assert result.spec["hyperparameters"]["learning_rate"] == 0.01
    assert (result.params_added, result.touched_layer, result.added_units) == (0, "", [])
    assert result.description == "set learning_rate from 0.003 to 0.01"
    assert_counts_real(result)


@pytest.mark.parametrize(
    ("operation", "parameters"),
    [
        ("insert_block", {"after": 1, "n_heads": 2, "d_mlp": 16}),
        ("remove_block", {"block": 1}),
        ("add_heads", {"block": 0, "heads": 1}),
        ("widen_mlp", {"block": 1, "units": 3}),
        ("set_hyperparameter", {"name": "batch_size", "value": 32}),
    ],
)
def test_one_entry_point_for_both_families(operation, parameters):
    direct = apply_transformer_change(TINY_TRANSFORMER, operation, parameters)
    assert apply_change(TINY_TRANSFORMER, operation, parameters) == direct
    assert validate_change_parameters(operation, parameters, TINY_TRANSFORMER) is parameters
    assert_counts_real(direct)


def _many_blocks() -> dict:
    return {**TINY_TRANSFORMER, "blocks": [{"n_heads": 1}] * 48}


@pytest.mark.parametrize(
    ("operation", "parameters", "field"),
    [
        ("insert_block", {"after": 2, "n_heads": 1}, "after"),
        ("insert_block", {"after": -2, "n_heads": 1}, "after"),
        ("insert_block", {"after": 0, "n_heads": 0}, "n_heads"),
        ("insert_block", {"after": 0, "n_heads": 65}, "n_heads"),
        ("insert_block", {"after": 0, "n_heads": 1, "d_mlp": 0}, "d_mlp"),
        ("insert_block", {"after": 0, "n_heads": 1, "d_mlp": 16_385}, "d_mlp"),
        ("insert_block", {"after": "0", "n_heads": 1}, "after"),
        ("remove_block", {"block": 2}, "block"),
        ("remove_block", {"block": True}, "block"),
        ("add_heads", {"block": -1, "heads": 1}, "block"),
        ("add_heads", {"block": 0, "heads": 0}, "heads"),
        ("add_heads", {"block": 0, "heads": 63}, "heads"),
        ("widen_mlp", {"block": 0, "units": 4}, "block"),
        ("widen_mlp", {"block": 1, "units": 0}, "units"),
        ("widen_mlp", {"block": 1, "units": 16_361}, "units"),
        ("set_hyperparameter", {"name": "momentum", "value": 0.9}, "name"),
        ("set_hyperparameter", {"name": "learning_rate", "value": -1}, "value"),
        ("set_hyperparameter", {"name": "", "value": 1}, "name"),
        ("set_hyperparameter", {"name": "epochs", "value": 3}, "name"),
        ("add_heads", {"block": 0}, "heads"),
        ("add_heads", {"block": 0, "heads": 1, "layer": "x"}, "layer"),
        ("explode", {}, "operation"),
        ("widen_layer", {"layer": "fc1", "units": 1}, "operation"),
        ("add_heads", [], "__all__"),
    ],
)
def test_change_refusals_are_keyed_by_parameter(operation, parameters, field):
    original = copy.deepcopy(TINY_TRANSFORMER)
    with pytest.raises(ChangeError) as error:
        apply_change(TINY_TRANSFORMER, operation, parameters)
    assert field in error.value.field_errors
    with pytest.raises(ChangeError) as again:
        validate_change_parameters(operation, parameters, TINY_TRANSFORMER)
    assert again.value.field_errors == error.value.field_errors
    assert original == TINY_TRANSFORMER


def test_exact_messages_for_a_few_refusals():
    with pytest.raises(ChangeError) as error:
        add_heads(TINY_TRANSFORMER, block=0, heads=63)
    assert error.value.field_errors == {
        "heads": "must be a whole number from 1 to 62 (the block has 2; at most 64 in all)"
    }
    with pytest.raises(ChangeError) as error:
        widen_mlp(TINY_TRANSFORMER, block=0, units=4)
    assert error.value.field_errors == {
        "block": "block 0 has no MLP; choose a block with one or insert a block"
    }
    with pytest.raises(ChangeError) as error:
        remove_block(TINY_TRANSFORMER, block=5)
    assert error.value.field_errors == {"block": "must be a block index from 0 to 1"}


def test_cannot_remove_the_only_block_nor_exceed_the_block_limit():
    single = {**TINY_TRANSFORMER, "blocks": [{"n_heads": 2}]}
    with pytest.raises(ChangeError) as error:
        remove_block(single, block=0)
    assert error.value.field_errors == {"block": "cannot remove the only block"}
    with pytest.raises(ChangeError) as error:
        insert_block(_many_blocks(), after=0, n_heads=1)
    assert error.value.field_errors == {
        "after": "the model already has the most blocks allowed (48)"
    }


def test_an_invalid_spec_is_refused_under_spec():
    with pytest.raises(ChangeError) as error:
        add_heads({**TINY_TRANSFORMER, "d_model": 0}, block=0, heads=1)
    assert list(error.value.field_errors) == ["spec"]


def test_validation_without_a_spec_checks_only_the_shape():
    assert validate_change_parameters("add_heads", {"block": 7, "heads": 1}) == {
        "block": 7,
        "heads": 1,
    }
    with pytest.raises(ChangeError) as error:
        validate_change_parameters("insert_block", {"after": -3, "d_mlp": "x"})
    assert error.value.field_errors == {
        "n_heads": "this field is required",
        "after": "must be a whole number >= -1",
        "d_mlp": "must be null or >= 1",
    }


def test_transformer_operations_are_refused_on_a_cnn_and_manual_stays_valid():
    with pytest.raises(ChangeError) as error:
        validate_change_parameters("add_heads", {"block": 0, "heads": 1}, TINY_CNN)
    assert list(error.value.field_errors) == ["operation"]
    with pytest.raises(ChangeError) as error:
        apply_change(TINY_CNN, "add_heads", {"block": 0, "heads": 1})
    assert list(error.value.field_errors) == ["operation"]
    manual = {"description": "prune by hand"}
    assert validate_change_parameters("manual", manual, TINY_TRANSFORMER) is manual


# --- random controls ------------------------------------------------------------------------

GUIDED = [
    ("add_heads", {"block": 1, "heads": 1}),
    ("widen_mlp", {"block": 0, "units": 8}),
    ("insert_block", {"after": 0, "n_heads": 2}),
    ("insert_block", {"after": 2, "n_heads": 1, "d_mlp": 16}),
    ("remove_block", {"block": 1}),
]


def _within(added: int, budget: int) -> bool:
    return abs(added - budget) <= 0.05 * abs(budget)


@pytest.mark.parametrize(("operation", "parameters"), GUIDED)
@pytest.mark.parametrize("policy", [SAME_OPERATION, ANY_OPERATION])
def test_control_budget_within_5_percent_over_many_seeds(operation, parameters, policy):
    guided = apply_change(MIXED, operation, parameters)
    drawn = set()
    for seed in range(40):
        control = transformer_control_for(MIXED, operation, parameters, seed=seed, policy=policy)
        assert control.policy == policy
        assert _within(control.result.params_added, guided.params_added)
        recount = count_transformer_parameters(control.result.spec)
        assert recount - count_transformer_parameters(MIXED) == control.result.params_added
        assert (control.operation, control.parameters) != (operation, parameters)
        assert control.result.spec != guided.spec
        entry = {**control.parameters, "params_added": control.result.params_added}
        if policy == ANY_OPERATION:
            entry = {
                "operation": control.operation,
                "parameters": control.parameters,
                "params_added": control.result.params_added,
            }
        else:
            assert control.operation == operation
        assert entry in control.candidates
        assert all(_within(c["params_added"], guided.params_added) for c in control.candidates)
        drawn.add((control.operation, str(control.parameters)))
    # the draw reaches every candidate
    assert len(drawn) == len(control.candidates)


def test_control_matches_the_built_model():
    control = transformer_control_for(
        MIXED, "insert_block", {"after": 0, "n_heads": 2}, seed=3, policy=ANY_OPERATION
    )
    built_added = built_parameters(control.result.spec) - built_parameters(MIXED)
    assert built_added == control.result.params_added


def test_any_operation_candidates_for_an_added_head():
    control = transformer_random_any_change(MIXED, 4 * 16 * 4 + 3 * 4, seed=0)
    operations = {candidate["operation"] for candidate in control.candidates}
    # one head (268) is 8 neurons (264) or an attention-only 1-head block (+16 b_O +32 LN: 316)
    assert operations == {"add_heads", "widen_mlp"}
    assert len(control.candidates) == 6  # three blocks, two ways each


@pytest.mark.parametrize("policy", [SAME_OPERATION, ANY_OPERATION])
def test_controls_are_deterministic_from_the_seed(policy):
    first = transformer_control_for(MIXED, *GUIDED[0], seed=11, policy=policy).to_dict()
    again = transformer_control_for(MIXED, *GUIDED[0], seed=11, policy=policy).to_dict()
    assert first == again
    others = {
        str(transformer_control_for(MIXED, *GUIDED[0], seed=s, policy=policy).parameters)
        for s in range(20)
    }
    assert len(others) > 1


def test_dispatch_from_the_cnn_entry_points():
    same = random_control_change(MIXED, "add_heads", {"block": 0, "heads": 1}, seed=2)
    assert same == transformer_control_for(MIXED, "add_heads", {"block": 0, "heads": 1}, seed=2)
    anywhere = random_any_change(MIXED, 268, seed=2)
    assert anywhere == transformer_random_any_change(MIXED, 268, seed=2)
    assert (same.policy, anywhere.policy) == (SAME_OPERATION, ANY_OPERATION)
    assert random_any_change(TINY_CNN, 200, seed=0).policy == ANY_OPERATION


@pytest.mark.parametrize("policy", [SAME_OPERATION, ANY_OPERATION])
def test_hyperparameter_control_under_both_policies(policy):
    guided = {"name": "learning_rate", "value": 0.01}
    control = transformer_control_for(MIXED, "set_hyperparameter", guided, seed=4, policy=policy)
    assert control.operation == "set_hyperparameter"
    assert control.parameters["name"] not in ("learning_rate", "epochs")
    assert control.result.params_added == 0
    assert control.policy == policy


def test_a_control_never_builds_the_guided_model():
    # removing block 0 or block 1 of MIXED leaves the same model: only block 2 is a control
    same = transformer_control_for(MIXED, "remove_block", {"block": 1}, seed=0)
    assert same.candidates == [{"block": 2, "params_added": -1692}]
    anywhere = transformer_control_for(
        MIXED, "remove_block", {"block": 1}, seed=0, policy=ANY_OPERATION
    )
    assert anywhere.candidates == [
        {"operation": "remove_block", "parameters": {"block": 2}, "params_added": -1692}
    ]
    # inserting a block equal to blocks 0 and 1 anywhere before block 2 builds the same model
    equal = {"after": -1, "n_heads": 2, "d_mlp": 32}
    control = transformer_control_for(MIXED, "insert_block", equal, seed=0)
    assert [c["after"] for c in control.candidates] == [2]


def test_control_refusals():
    with pytest.raises(ChangeError) as error:
        transformer_control_for(MIXED, *GUIDED[0], seed=0, policy="nearby")
    assert error.value.field_errors == {"policy": "must be one of same_operation, any_operation"}
    # TINY_TRANSFORMER's blocks differ: no other block costs what removing block 0 saves
    with pytest.raises(ChangeError) as error:
        transformer_control_for(TINY_TRANSFORMER, "remove_block", {"block": 0}, seed=0)
    assert error.value.field_errors == {
        "operation": "no budget-matched random control exists for this change"
    }
    with pytest.raises(ChangeError) as error:
        transformer_random_any_change(MIXED, 0, seed=0)
    assert list(error.value.field_errors) == ["budget"]
    with pytest.raises(ChangeError) as error:
        transformer_random_any_change(MIXED, 7, seed=0)
    assert error.value.field_errors == {"budget": "no change of any kind fits this budget"}


# --- the head mechanism check --------------------------------------------------------------


def _profile(layers: dict[str, list]) -> dict:
    """A profile dict whose heads carry the given induction scores (other scores constant)."""
    return {
        "n_sequences": 8,
        "neurons": None,
        "heads": {
            layer: {
                "previous_token": [0.1] * len(scores),
                "induction": scores,
                "duplicate_token": [0.2] * len(scores),
                "entropy": [1.0] * len(scores),
            }
            for layer, scores in layers.items()
        },
    }


BASELINE = {
    0: _profile({"blocks.0.attn": [0.10, 0.30]}),
    1: _profile({"blocks.0.attn": [0.25, 0.05]}),
    2: _profile({"blocks.0.attn": [0.20, 0.15]}),
}


def _variants(added: dict[int, list]) -> dict[int, dict]:
    return {
        seed: _profile({"blocks.0.attn": [0.1, 0.1], "blocks.1.attn": scores})
        for seed, scores in added.items()
    }


def test_added_head_better_in_every_seed_is_positive():
    variants = _variants({0: [0.2, 0.9], 1: [0.7, 0.1], 2: [0.5, 0.85]})
    check = head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0, 1])
    added, baseline = [0.9, 0.7, 0.85], [0.30, 0.25, 0.20]
    reference = scipy_stats.ttest_rel(added, baseline)
    interval = reference.confidence_interval()
    assert check["test"] == HEAD_MECHANISM_TEST
    assert check["seeds"] == 3 and check["seeds_added_exceeds_baseline"] == 3
    assert [row["added_head"] for row in check["per_seed"]] == [1, 0, 1]
    assert [row["baseline_head"] for row in check["per_seed"]] == [1, 0, 0]
    assert check["difference"] == pytest.approx(np.mean(np.subtract(added, baseline)))
    assert check["p_value"] == pytest.approx(reference.pvalue)
    assert check["statistic"] == pytest.approx(reference.statistic)
    assert (check["ci_low"], check["ci_high"]) == pytest.approx((interval.low, interval.high))
    assert check["p_value"] < 0.05
    assert "took on the role" in check["interpretation"]
    assert check["errors"] == []


def test_added_head_never_better_is_not_positive():
    variants = _variants({0: [0.05, 0.1], 1: [0.2, 0.01], 2: [0.02, 0.12]})
    check = head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0, 1])
    assert check["seeds_added_exceeds_baseline"] == 0
    assert check["difference"] < 0
    assert check["p_value"] == pytest.approx(
        scipy_stats.ttest_rel([0.1, 0.2, 0.12], [0.30, 0.25, 0.20]).pvalue
    )
    assert check["interpretation"].startswith(
        "the added heads' best induction score exceeded the baseline's best on 0 of 3 seeds: "
        "the added heads did not clearly take on the role (mean difference -0.11"
    )


def test_added_head_consistently_worse_is_reported_as_worse():
    variants = _variants({0: [0.05, 0.1], 1: [0.04, 0.01], 2: [0.03, 0.01]})
    check = head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0, 1])
    reference = scipy_stats.ttest_rel([0.1, 0.04, 0.03], [0.30, 0.25, 0.20])
    assert check["p_value"] == pytest.approx(reference.pvalue)
    assert check["p_value"] < 0.05
    assert "the added heads scored below the baseline's best head" in check["interpretation"]


def test_undefined_numbers_are_none():
    # the same difference on every seed: no spread, so no test
    same = {s: _profile({"blocks.0.attn": [0.2]}) for s in range(3)}
    variants = _variants({s: [0.6] for s in range(3)})
    check = head_mechanism_check(same, variants, layer="blocks.1.attn", added_heads=[0])
    assert check["difference"] == pytest.approx(0.4)
    assert (check["p_value"], check["ci_low"], check["statistic"]) == (None, None, None)
    # one seed only
    one = head_mechanism_check(
        {0: BASELINE[0]}, _variants({0: [0.5]}), layer="blocks.1.attn", added_heads=[0]
    )
    assert one["seeds"] == 1 and one["p_value"] is None


def test_unmeasurable_seeds_are_left_out_and_named():
    variants = _variants({0: [None, None], 1: [0.7, 0.1], 2: [0.5, 0.85]})
    check = head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0, 1])
    assert check["seeds"] == 2
    assert check["errors"] == ["seed 0: no measurable induction score"]
    missing = head_mechanism_check(BASELINE, variants, layer="blocks.5.attn", added_heads=[0])
    assert missing["seeds"] == 0 and missing["interpretation"] == "mechanism check failed"
    with pytest.raises(ValueError):
        head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0], score="x")


def test_profile_objects_are_accepted():
    def as_object(data: dict) -> TransformerProfile:
        heads = {name: HeadScores.from_dict(name, raw) for name, raw in data["heads"].items()}
        return TransformerProfile(heads, None, data["n_sequences"])

    variants = _variants({0: [0.2, 0.9], 1: [0.7, 0.1], 2: [0.5, 0.85]})
    from_dicts = head_mechanism_check(BASELINE, variants, layer="blocks.1.attn", added_heads=[0, 1])
    from_objects = head_mechanism_check(
        {s: as_object(p) for s, p in BASELINE.items()},
        {s: as_object(p) for s, p in variants.items()},
        layer="blocks.1.attn",
        added_heads=[0, 1],
    )
    assert from_objects == from_dicts


# --- one entry point for both families and both policies -----------------------------------

CNN = {
    "input_shape": [10],
    "num_classes": 2,
    "layers": [
        {"name": "fc1", "type": "linear", "out_features": 8},
        {"name": "relu1", "type": "relu"},
        {"name": "fc2", "type": "linear", "out_features": 8},
        {"name": "relu2", "type": "relu"},
        {"name": "fc_out", "type": "linear", "out_features": 2},
    ],
}


def test_cnn_any_operation_control_within_budget_and_never_the_guided_change():
    guided = apply_change(CNN, "widen_layer", {"layer": "fc1", "units": 2})
    drawn = set()
    for seed in range(40):
        control = random_control_for(
            CNN, "widen_layer", {"layer": "fc1", "units": 2}, seed=seed, policy=ANY_OPERATION
        )
        assert control.policy == ANY_OPERATION
        assert _within(control.result.params_added, guided.params_added)
        assert (control.operation, control.parameters) != (
            "widen_layer",
            {"layer": "fc1", "units": 2},
        )
        drawn.add((control.operation, str(control.parameters)))
    assert len(drawn) > 1


def test_cnn_policy_refusals_and_hyperparameter_control():
    with pytest.raises(ChangeError) as error:
        random_control_for(CNN, "remove_layer", {"layer": "relu1"}, seed=0, policy="nearby")
    assert error.value.field_errors == {"policy": "must be one of same_operation, any_operation"}
    with pytest.raises(ChangeError) as error:
        random_control_for(CNN, "remove_layer", {"layer": "fc2"}, seed=0, policy=ANY_OPERATION)
    assert error.value.field_errors == {
        "policy": "the any-operation control needs a change that adds parameters"
    }
    guided = {"name": "learning_rate", "value": 0.05}
    control = random_control_for(CNN, "set_hyperparameter", guided, seed=1, policy=ANY_OPERATION)
    assert (control.operation, control.policy) == ("set_hyperparameter", ANY_OPERATION)
    assert control.parameters["name"] != "learning_rate"


def test_the_entry_point_dispatches_transformers():
    for policy in (SAME_OPERATION, ANY_OPERATION):
        assert random_control_for(
            MIXED, *GUIDED[0], seed=5, policy=policy
        ) == transformer_control_for(MIXED, *GUIDED[0], seed=5, policy=policy)
