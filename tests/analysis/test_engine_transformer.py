"""Transformer specs (errors keyed by field), the built modules, hook names and training."""

import copy

import pytest
import torch

from analysis.engine.builder import set_seed
from analysis.engine.sequence_tasks import InductionTask, ModularAdditionTask
from analysis.engine.specs import SpecError
from analysis.engine.transformer import (
    build_transformer,
    hook_names,
    hooked_transformer_config,
    hooked_transformer_state_dict,
)
from analysis.engine.transformer_specs import (
    TransformerSpecError,
    count_transformer_parameters,
    is_transformer_spec,
    transformer_hyperparameters,
    transformer_unit_layers,
    validate_transformer_spec,
)
from analysis.engine.transformer_training import (
    SequenceTrainConfig,
    evaluate_sequences,
    held_out_batch,
    train_transformer,
)
from tests.analysis.transformer_helpers import TINY_TRANSFORMER, planted_spec

QUICK = SequenceTrainConfig(steps=6, batch_size=8, eval_size=16)


def _spec(**changes):
    spec = copy.deepcopy(TINY_TRANSFORMER)
    spec.update(changes)
    return spec


def test_validation_fills_defaults_and_counts_parameters_like_the_built_model():
    config = validate_transformer_spec(planted_spec())
    assert (config.act_fn, config.normalization, config.causal) == ("relu", None, True)
    assert config.n_layers == 2 and config.uniform
    for spec in (TINY_TRANSFORMER, planted_spec()):
        model = build_transformer(spec)
        built = sum(parameter.numel() for parameter in model.parameters())
        assert count_transformer_parameters(spec) == built
    attention = 4 * 2 * 16 * 8 + 3 * 2 * 8 + 16  # W_Q/K/V/O, b_Q/K/V, b_O
    block0 = attention + 2 * 16  # ln1
    block1 = attention + 4 * 16 + (2 * 16 * 24 + 24 + 16)  # ln1, ln2, the MLP
    embeddings, final = 12 * 16 + 16 * 16, 2 * 16 + 16 * 12 + 12  # ln_final, unembed
    assert count_transformer_parameters(TINY_TRANSFORMER) == embeddings + block0 + block1 + final
    assert transformer_unit_layers(TINY_TRANSFORMER) == {
        "blocks.0.attn": 2,
        "blocks.1.attn": 2,
        "blocks.1.mlp": 24,
    }
    assert transformer_hyperparameters(TINY_TRANSFORMER)["optimizer"] == "adamw"
    assert is_transformer_spec(TINY_TRANSFORMER) and not is_transformer_spec({"layers": []})


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"d_model": 0}, {"d_model": ["must be a whole number from 1 to 4096, got 0."]}),
        ({"d_vocab": True}, {"d_vocab": ["must be a whole number from 2 to 65536, got True."]}),
        ({"family": "cnn"}, {"family": ["must be 'transformer', got 'cnn'."]}),
        ({"blocks": []}, {"blocks": ["must be a list of 1 to 48 block objects."]}),
        (
            {"blocks": [{"n_heads": 2}, {"n_heads": 0, "d_mlp": 8, "width": 3}]},
            {
                "blocks.1.width": ["unknown field. Expected one of n_heads, d_mlp."],
                "blocks.1.n_heads": ["must be a whole number from 1 to 64, got 0."],
            },
        ),
        ({"blocks": [{"d_mlp": 8}]}, {"blocks.0.n_heads": ["is required."]}),
        ({"blocks": ["attn"]}, {"blocks.0": ['must be an object such as {"n_heads": 2}.']}),
        ({"act_fn": "swish"}, {"act_fn": ["must be one of relu, gelu, got 'swish'."]}),
        ({"normalization": "rms"}, {"normalization": ["must be null or 'ln', got 'rms'."]}),
        ({"causal": 1}, {"causal": ["must be true or false, got 1."]}),
        (
            {"hyperparameters": {"learning_rate": 0}},
            {"hyperparameters.learning_rate": ["must be a number from 1e-06 to 10, got 0."]},
        ),
    ],
)
def test_each_bad_field_is_reported_under_its_own_key(changes, errors):
    with pytest.raises(TransformerSpecError) as caught:
        validate_transformer_spec(_spec(**changes))
    assert caught.value.field_errors == errors
    assert isinstance(caught.value, SpecError)  # callers catching SpecError catch it too


def test_a_spec_too_large_for_a_worker_is_refused_though_each_field_is_in_bounds():
    huge = _spec(d_vocab=65_536, d_model=4096, d_head=1024, n_ctx=4096,
                 blocks=[{"n_heads": 64, "d_mlp": 16_384}] * 2)  # fmt: skip
    with pytest.raises(TransformerSpecError) as caught:
        validate_transformer_spec(huge)
    # embeddings 65,536*4,096 + 4,096^2; per block attention 4*64*4,096*1,024 + 3*64*1,024 +
    # 4,096, MLP 2*4,096*16,384 + 16,384 + 4,096, LayerNorms 4*4,096; final LayerNorm 2*4,096;
    # unembedding 4,096*65,536 + 65,536.
    assert caught.value.field_errors == {
        "spec": ["has 2,970,116,096 parameters; at most 50,000,000."],
        "blocks.0.n_heads": [
            "64 heads over n_ctx 4096 make attention patterns of 1,073,741,824 entries per "
            "example; at most 16,777,216."
        ],
        "blocks.1.n_heads": [
            "64 heads over n_ctx 4096 make attention patterns of 1,073,741,824 entries per "
            "example; at most 16,777,216."
        ],
    }


def test_several_problems_are_reported_together_and_unknown_fields_named():
    with pytest.raises(TransformerSpecError) as caught:
        validate_transformer_spec(_spec(d_head=-1, n_ctx="16", layers=[]))
    assert sorted(caught.value.field_errors) == ["d_head", "layers", "n_ctx"]
    with pytest.raises(TransformerSpecError) as caught:
        validate_transformer_spec(["not", "a", "spec"])
    assert caught.value.field_errors == {"spec": ["must be an object, got list."]}


def test_forward_shapes_and_every_hook_point_named_as_transformer_lens_names_it():
    set_seed(0)
    model = build_transformer(TINY_TRANSFORMER)
    tokens = torch.randint(12, (3, 10))
    seen = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, output, name=name: seen.update({name: tuple(output.shape)})
        )
        for name, module in model.named_modules()
        if name in hook_names(model)
    ]
    try:
        logits = model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    assert logits.shape == (3, 10, 12)
    per_block = {
        "hook_resid_pre": (3, 10, 16),
        "attn.hook_q": (3, 10, 2, 8),
        "attn.hook_k": (3, 10, 2, 8),
        "attn.hook_v": (3, 10, 2, 8),
        "attn.hook_attn_scores": (3, 2, 10, 10),
        "attn.hook_pattern": (3, 2, 10, 10),
        "attn.hook_z": (3, 10, 2, 8),
        "hook_attn_out": (3, 10, 16),
        "hook_resid_post": (3, 10, 16),
    }
    mlp = {
        "hook_resid_mid": (3, 10, 16),
        "mlp.hook_pre": (3, 10, 24),
        "mlp.hook_post": (3, 10, 24),
        "hook_mlp_out": (3, 10, 16),
    }
    expected = {"hook_embed": (3, 10, 16), "hook_pos_embed": (3, 10, 16)}
    expected |= {f"blocks.0.{name}": shape for name, shape in per_block.items()}
    expected |= {f"blocks.1.{name}": shape for name, shape in (per_block | mlp).items()}
    assert seen == expected


def test_attention_is_causal_and_patterns_sum_to_one():
    set_seed(1)
    model = build_transformer(TINY_TRANSFORMER).eval()
    patterns = []
    handle = model.blocks[0].attn.hook_pattern.register_forward_hook(
        lambda _m, _i, output: patterns.append(output)
    )
    try:
        model(torch.randint(12, (2, 7)))
    finally:
        handle.remove()
    pattern = patterns[0]  # [2, 2, 7, 7]
    assert torch.all(pattern.triu(1) == 0)
    assert torch.allclose(pattern.sum(dim=-1), torch.ones(2, 2, 7))
    # a later token cannot change an earlier position's logits
    tokens = torch.randint(12, (1, 7))
    changed = tokens.clone()
    changed[0, 6] = (tokens[0, 6] + 1) % 12
    assert torch.equal(model(tokens)[0, :6], model(changed)[0, :6])


def test_too_long_sequences_are_refused():
    model = build_transformer(TINY_TRANSFORMER)
    with pytest.raises(ValueError, match=r"positions <= 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_transformer_lens_layout_keys_and_shapes():
    model = build_transformer(TINY_TRANSFORMER)
    state = hooked_transformer_state_dict(model)
    assert state["embed.W_E"].shape == (12, 16)
    assert state["pos_embed.W_pos"].shape == (16, 16)
    assert state["blocks.0.attn.W_Q"].shape == (2, 16, 8)
    assert state["blocks.0.attn.W_O"].shape == (2, 8, 16)
    assert state["blocks.0.attn.b_K"].shape == (2, 8)
    assert state["blocks.1.mlp.W_in"].shape == (16, 24)
    assert state["blocks.1.ln2.w"].shape == (16,)
    assert state["unembed.W_U"].shape == (16, 12)
    assert "blocks.0.mlp.W_in" not in state and "blocks.0.ln2.w" not in state
    with pytest.raises(ValueError, match="same heads and MLP"):
        hooked_transformer_config(validate_transformer_spec(TINY_TRANSFORMER))
    config = hooked_transformer_config(validate_transformer_spec(planted_spec()))
    assert config["attn_only"] and config["n_heads"] == 2 and config["normalization_type"] is None


def test_training_twice_with_one_seed_is_bitwise_identical():
    task = InductionTask(d_vocab=12, length=16, segment=4)
    first = train_transformer(TINY_TRANSFORMER, task, QUICK, seed=3)
    second = train_transformer(TINY_TRANSFORMER, task, QUICK, seed=3)
    other = train_transformer(TINY_TRANSFORMER, task, QUICK, seed=4)
    assert first.metrics == second.metrics and first.history == second.history
    assert first.model.state_dict().keys() == second.model.state_dict().keys()
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, second.model.state_dict()[key])
    assert not torch.equal(first.model.embed.W_E, other.model.embed.W_E)
    assert not first.model.training
    # the reported test metrics are the held-out batch's, measured again
    again = evaluate_sequences(first.model, held_out_batch(task, QUICK))
    assert (again["loss"], again["accuracy"]) == (
        first.metrics["test_loss"],
        first.metrics["test_accuracy"],
    )


def test_modular_addition_trains_a_one_layer_model_and_learns_from_its_split():
    task = ModularAdditionTask(p=5, train_fraction=0.6)
    spec = _spec(d_vocab=6, n_ctx=3, blocks=[{"n_heads": 2, "d_mlp": 32}])
    config = SequenceTrainConfig(steps=150, batch_size=15, learning_rate=0.01)
    result = train_transformer(spec, task, config, seed=0)
    train, _test = task.split()
    # the training split (15 pairs) is learnt; the held-out pairs are what test_* measures
    assert evaluate_sequences(result.model, train)["accuracy"] == 1.0
    assert (
        result.metrics["test_accuracy"]
        == evaluate_sequences(result.model, held_out_batch(task, config))["accuracy"]
    )
